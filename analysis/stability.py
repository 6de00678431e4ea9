"""Stability of an MLFF-MD run: the paper's two failure modes.

* "atom_fusion": two atoms collapse onto each other (minimum interatomic distance below
  ``FUSION_DISTANCE_A``) — the force field lacks short-range repulsion.
* "lattice_mismatch": no fusion, but the structure drifts away from the reference (RDF-MAE
  vs the AIMD reference >= ``RDF_MAE_STABLE``, see ``analysis.rdf.rdf_mae``).
* otherwise "stable".
"""

from __future__ import annotations

import math

import numpy as np

from analysis.rdf import image_shifts

__all__ = [
    "FUSION_DISTANCE_A",
    "RDF_MAE_STABLE",
    "STABILITY_CLASSES",
    "min_distance_A",
    "classify_stability",
]

# Shortest real bonds in Li10GeP2S12 and related thiophosphates: P–S ≈ 2.05 Å, Ge–S ≈ 2.2 Å,
# Li–S ≈ 2.4 Å; even a very hot MD run does not bring atoms within ~1.5 Å. Two atoms closer
# than 1 Å are therefore not bonded but fused (a failure of the force field's repulsion).
FUSION_DISTANCE_A = 1.0

# Duangdangchote et al., Digital Discovery 2024: an MLFF-MD run whose RDF-MAE vs the AIMD
# reference is below 0.02 is counted as stable.
RDF_MAE_STABLE = 0.02

_MAX_VECTORS_PER_CHUNK = 500_000

STABILITY_CLASSES = ("stable", "lattice_mismatch", "atom_fusion")


def min_distance_A(positions_A, cell_A) -> np.ndarray:
    """[n_frames] minimum distance between two distinct atoms per frame, with PBC.

    positions_A [n_frames, n_atoms, 3] (wrapped or not), cell_A [3, 3] rows = lattice vectors.
    The true shortest periodic image is used, also for skewed triclinic cells: pair differences
    are wrapped into [-0.5, 0.5] in fractional coordinates, giving an upper bound m0 on the
    minimum; every lattice translation that could give a vector shorter than m0 is then
    searched (see ``analysis.rdf.image_shifts``). Distances of an atom to its own images are
    not included. Needs >= 2 atoms.
    """
    pos = np.asarray(positions_A, dtype=float)
    cell = np.asarray(cell_A, dtype=float)
    if pos.ndim != 3 or pos.shape[2] != 3:
        raise ValueError(f"positions_A must be [n_frames, n_atoms, 3], got {pos.shape}")
    if pos.shape[1] < 2:
        raise ValueError("need at least 2 atoms for an interatomic distance")
    n_bad = int(np.count_nonzero(~np.isfinite(pos)))
    if n_bad:
        raise ValueError(f"positions_A contains {n_bad} non-finite value(s)")
    if cell.shape != (3, 3) or abs(np.linalg.det(cell)) < 1e-10:
        raise ValueError("cell_A must be [3, 3] with non-zero volume")

    n_frames, n_atoms, _ = pos.shape
    i_idx, j_idx = np.triu_indices(n_atoms, k=1)
    frac = pos @ np.linalg.inv(cell)

    # Pass 1: wrapped fractional differences -> Cartesian; per-frame minimum is an upper bound.
    chunk = max(1, _MAX_VECTORS_PER_CHUNK // len(i_idx))
    d0_min2 = np.empty(n_frames)
    for start in range(0, n_frames, chunk):
        df = frac[start : start + chunk, j_idx] - frac[start : start + chunk, i_idx]
        df -= np.round(df)
        d = df @ cell
        d0_min2[start : start + chunk] = np.einsum("fpx,fpx->fp", d, d).min(axis=1)

    shifts = image_shifts(cell, float(np.sqrt(d0_min2.max())))
    if len(shifts) == 1:  # only the zero translation can beat the bound
        return np.sqrt(d0_min2)

    # Pass 2: search the lattice translations that can still give a shorter vector.
    shifts_cart = shifts @ cell
    chunk = max(1, _MAX_VECTORS_PER_CHUNK // (len(i_idx) * len(shifts)))
    out2 = np.empty(n_frames)
    for start in range(0, n_frames, chunk):
        df = frac[start : start + chunk, j_idx] - frac[start : start + chunk, i_idx]
        df -= np.round(df)
        vec = (df @ cell)[:, :, None, :] + shifts_cart[None, None, :, :]
        out2[start : start + chunk] = np.einsum("fpsx,fpsx->fps", vec, vec).min(axis=(1, 2))
    return np.sqrt(out2)


def classify_stability(
    rdf_mae: float,
    min_distance_A: float,
    rdf_mae_threshold: float = RDF_MAE_STABLE,
    fusion_distance_A: float = FUSION_DISTANCE_A,
) -> str:
    """Classify an MD run as "stable", "lattice_mismatch" or "atom_fusion".

    "atom_fusion" if min_distance_A < fusion_distance_A (takes precedence: a fused structure
    usually also has a bad RDF); else "lattice_mismatch" if rdf_mae >= rdf_mae_threshold;
    else "stable". min_distance_A is the smallest interatomic distance over the analysed
    frames (e.g. ``min_distance_A(...).min()``). NaN / negative inputs raise ValueError.
    """
    for name, value in (("rdf_mae", rdf_mae), ("min_distance_A", min_distance_A)):
        if value is None or math.isnan(float(value)):
            raise ValueError(f"{name} is NaN")
        if float(value) < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if float(min_distance_A) < fusion_distance_A:
        return "atom_fusion"
    if float(rdf_mae) >= rdf_mae_threshold:
        return "lattice_mismatch"
    return "stable"
