"""Carriers hopping between lattice sites with a known D: the truth the diffusion intervals are tested against.

Each of ``n_atoms`` carriers hops by ``hop_A`` along ±x, ±y or ±z at random times (a Poisson process, so the
hops are independent), and vibrates about its site (independent Gaussian offsets of ``vibration_A`` per axis
and frame). Over the (n_frames − 1) intervals of ``frame_fs`` the mean number of hops per carrier is
``hops_per_atom``, so D = rate · hop² / 6 exactly.
"""

from __future__ import annotations

import numpy as np

from records.units import A2_PER_FS_TO_CM2_PER_S


def hopping_walk(rng: np.random.Generator, n_frames: int, n_atoms: int, hops_per_atom: float, hop_A: float = 3.0,
                 frame_fs: float = 20.0, vibration_A: float = 0.15) -> tuple[np.ndarray, np.ndarray, float]:
    """(continuous positions [n_frames, n_atoms, 3], times [n_frames] in fs, the true D in cm²/s)."""
    steps = np.zeros((n_frames, n_atoms, 3))
    n_hops = rng.poisson(hops_per_atom * n_atoms)
    frames, atoms, axes = rng.integers(1, n_frames, n_hops), rng.integers(0, n_atoms, n_hops), rng.integers(0, 3, n_hops)
    np.add.at(steps, (frames, atoms, axes), rng.choice([-hop_A, hop_A], n_hops))
    positions = np.cumsum(steps, axis=0) + rng.normal(0.0, vibration_A, size=steps.shape)
    rate_per_fs = hops_per_atom / ((n_frames - 1) * frame_fs)
    return positions, np.arange(n_frames) * frame_fs, rate_per_fs * hop_A**2 / 6 * A2_PER_FS_TO_CM2_PER_S
