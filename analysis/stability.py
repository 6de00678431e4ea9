"""Stability of an MLFF-MD run: the paper's two failure modes.

* "atom_fusion": two atoms collapse onto each other (minimum interatomic distance below
  ``FUSION_DISTANCE_A``) — the force field lacks short-range repulsion.
* "lattice_mismatch": no fusion, but the structure differs from the reference: its RDF MAE against
  the reference (``analysis.rdf.rdf_mae``) is above a threshold. The campaign's verdict takes the
  noise-aware threshold of ``analysis.rdf_noise``; the paper's takes ``RDF_MAE_STABLE``.
* otherwise "consistent" (with the reference).
"""

from __future__ import annotations

import math

import numpy as np

from analysis.rdf import image_shifts, validated_cell, validated_positions

__all__ = [
    "FUSION_DISTANCE_A",
    "RDF_MAE_STABLE",
    "STABILITY_CLASSES",
    "min_distance_A",
    "classify_stability",
    "run_stability",
]

# Shortest real bonds in Li10GeP2S12 and related thiophosphates: P–S ≈ 2.05 Å, Ge–S ≈ 2.2 Å,
# Li–S ≈ 2.4 Å; even a very hot MD run does not bring atoms within ~1.5 Å. Two atoms closer
# than 1 Å are therefore not bonded but fused (a failure of the force field's repulsion).
FUSION_DISTANCE_A = 1.0

# Duangdangchote et al., Digital Discovery 2024: an MLFF-MD run whose RDF-MAE vs the AIMD
# reference is below 0.02 is counted as stable.
RDF_MAE_STABLE = 0.02

# Frames per block of the pair pruning in min_distance_A (80 fs at 2 fs/frame: atoms move < ~1 Å), and the
# largest number of pair vectors held at once.
_BLOCK_FRAMES = 40
_MAX_VECTORS_PER_CHUNK = 500_000

STABILITY_CLASSES = ("consistent", "lattice_mismatch", "atom_fusion", "unknown")


def _image_shifts_A(cell: np.ndarray, reach_A: float) -> np.ndarray:
    """[n_shifts, 3] Cartesian lattice translations to try so that every vector up to reach_A is found.

    For a cell with mutually orthogonal lattice vectors, rounding the fractional difference already
    gives the shortest image (|v|² separates into independent per-axis terms), so only the zero
    translation is needed; otherwise those of ``analysis.rdf.image_shifts``.
    """
    metric = cell @ cell.T
    if np.allclose(metric - np.diag(np.diag(metric)), 0.0, atol=1e-12 * metric.max()):
        return np.zeros((1, 3))
    return image_shifts(cell, reach_A) @ cell


def _shortest_A(vectors_A: np.ndarray, shifts_A: np.ndarray) -> np.ndarray:
    """Length of the shortest of vectors_A [3, ...] (component first) + each translation in shifts_A [n_shifts, 3]."""
    best2 = np.full(vectors_A.shape[1:], np.inf)
    for shift in shifts_A:
        length2 = sum((vectors_A[x] + shift[x]) ** 2 for x in range(3))
        np.minimum(best2, length2, out=best2)
    return np.sqrt(best2)


def _cartesian_A(frac_difference: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """[3, ...] Cartesian vectors of fractional differences [3, ...] (component first), wrapped into [-0.5, 0.5]."""
    wrapped = frac_difference - np.round(frac_difference)
    # Zero cell entries (orthogonal cells have six) are skipped: this runs on millions of pairs.
    return np.stack([sum(wrapped[k] * cell[k, x] for k in range(3) if cell[k, x] != 0.0) for x in range(3)])


def min_distance_A(positions_A, cell_A) -> np.ndarray:
    """[n_frames] minimum distance between two distinct atoms per frame, with PBC.

    positions_A [n_frames, n_atoms, 3] (wrapped or not), cell_A [3, 3] rows = lattice vectors.
    Exact (the true shortest periodic image, also for skewed triclinic cells; an atom's distance
    to its own images is not included), but only the pairs that can be the closest are evaluated
    at every frame, like a Verlet list with a skin:

    * Frames are cut into blocks of ``_BLOCK_FRAMES``. At each block's first (key) frame every
      pair distance d_ij is computed; δ_i is the largest displacement of atom i from the key frame
      within the block (any periodic representative: distances are periodic and 1-Lipschitz in
      each position, so no assumption about the motion is needed).
    * At every frame of the block d_ij(t) >= d_ij − δ_i − δ_j, and the frame's minimum is
      <= U = min_ij (d_ij + δ_i + δ_j). Only pairs with d_ij − δ_i − δ_j <= U can be the minimum;
      they are evaluated at every frame of the block.

    Needs >= 2 atoms.
    """
    pos, cell = validated_positions(positions_A), validated_cell(cell_A)
    if pos.shape[1] < 2:
        raise ValueError("need at least 2 atoms for an interatomic distance")

    n_frames, n_atoms, _ = pos.shape
    frac = (pos.reshape(-1, 3) @ np.linalg.inv(cell)).reshape(pos.shape)  # [n_frames, n_atoms, 3]
    keys = np.arange(0, n_frames, _BLOCK_FRAMES)  # [n_blocks] first frame of each block
    moved = frac - frac[keys][np.arange(n_frames) // _BLOCK_FRAMES]
    moved -= np.round(moved)
    moved = (moved.reshape(-1, 3) @ cell).reshape(moved.shape)
    delta_A = np.sqrt(np.maximum.reduceat(np.einsum("fax,fax->fa", moved, moved), keys, axis=0))  # [n_blocks, n_atoms]

    upper_pair = np.triu(np.ones((n_atoms, n_atoms), dtype=bool), k=1)  # i < j
    blocks_per_chunk = max(1, _MAX_VECTORS_PER_CHUNK // (n_atoms * n_atoms))
    components = frac.transpose(2, 0, 1)  # [3, n_frames, n_atoms]
    candidate_block, candidate_i, candidate_j, upper_A = [], [], [], []
    for first in range(0, len(keys), blocks_per_chunk):
        chunk = slice(first, first + blocks_per_chunk)
        key_frac = components[:, keys[chunk]]  # [3, n_chunk, n_atoms]
        vectors = _cartesian_A(key_frac[:, :, None, :] - key_frac[:, :, :, None], cell)  # [3, n_chunk, n_atoms, n_atoms]
        slack_A = delta_A[chunk, :, None] + delta_A[chunk, None, :]  # [n_chunk, n_atoms, n_atoms]
        rounded_A = np.sqrt(sum(vectors[x] ** 2 for x in range(3)))
        rounded_A[:, np.arange(n_atoms), np.arange(n_atoms)] = np.inf  # not a pair
        upper = (rounded_A + slack_A).min(axis=(1, 2))  # [n_chunk]
        shifts_A = _image_shifts_A(cell, float((upper + 2.0 * delta_A[chunk].max(axis=1)).max()))
        key_A = rounded_A if len(shifts_A) == 1 else _shortest_A(vectors, shifts_A)
        block, i, j = np.nonzero((key_A - slack_A <= upper[:, None, None]) & upper_pair)
        candidate_block.append(block + first)
        candidate_i.append(i)
        candidate_j.append(j)
        upper_A.append(upper)
    block, i, j = (np.concatenate(c) for c in (candidate_block, candidate_i, candidate_j))

    frames = keys[block][:, None] + np.arange(_BLOCK_FRAMES)  # [n_candidates, _BLOCK_FRAMES]
    inside = frames < n_frames
    frames = frames[inside]
    i, j = (np.broadcast_to(k[:, None], inside.shape)[inside] for k in (i, j))
    flat = components.reshape(3, -1)  # [3, n_frames * n_atoms]
    vectors = _cartesian_A(flat[:, frames * n_atoms + j] - flat[:, frames * n_atoms + i], cell)  # [3, n_evaluations]
    distance_A = _shortest_A(vectors, _image_shifts_A(cell, float(np.concatenate(upper_A).max())))
    out = np.full(n_frames, np.inf)
    np.minimum.at(out, frames, distance_A)
    return out


def classify_stability(
    rdf_mae: float,
    min_distance_A: float,
    rdf_mae_threshold: float = RDF_MAE_STABLE,
    fusion_distance_A: float = FUSION_DISTANCE_A,
) -> str:
    """Classify an MD run as "consistent", "lattice_mismatch" or "atom_fusion".

    "atom_fusion" if min_distance_A < fusion_distance_A (takes precedence: a fused structure
    usually also has a bad RDF); else "lattice_mismatch" if rdf_mae >= rdf_mae_threshold;
    else "consistent". min_distance_A is the smallest interatomic distance over the analysed
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
    return "consistent"


def run_stability(
    stopped_early_reason: str | None,
    rdf_mae: float | None,
    min_distance_A: float,
    rdf_mae_threshold: float = RDF_MAE_STABLE,
    fusion_distance_A: float = FUSION_DISTANCE_A,
) -> str:
    """The stability class of an MD run, one of ``STABILITY_CLASSES``.

    A run the MD engine stopped early (any reason: non-finite forces and temperature blow-ups come
    from atoms running into each other) is "atom_fusion"; otherwise ``classify_stability``. A run with
    no RDF MAE (no reference to compare with) is "atom_fusion" if it fused and "unknown" otherwise:
    nothing says it is consistent.
    """
    if stopped_early_reason is not None:
        return "atom_fusion"
    if rdf_mae is None:
        return "atom_fusion" if min_distance_A < fusion_distance_A else "unknown"
    return classify_stability(rdf_mae, min_distance_A, rdf_mae_threshold, fusion_distance_A)
