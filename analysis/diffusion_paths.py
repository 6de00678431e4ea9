"""Where the ions go: Li occupancy density, its overlap with the reference, framework drift. Pure numpy.

The paper (Figs. S23–S25) compares the Li probability density of MLFF-MD with AIMD to see whether a
force field moves Li through the right channels, and notices runs where the whole framework slides.

* Density: fraction of (frame, atom) samples in each voxel of a grid over fractional coordinates,
  so it sums to 1 and is comparable between runs of the same cell with different lengths.
* Overlap: the Bhattacharyya coefficient BC = Σ_v sqrt(p_v q_v), 1 for identical densities, 0 for
  disjoint ones. Chosen over histogram intersection Σ min(p, q) because it is less sensitive to
  sampling noise in sparsely visited voxels (it is the fidelity of the two amplitude vectors).
* Wrong channels: the fraction of the density lying in voxels the reference leaves empty.
* Drift: mean displacement of the framework (all non-Li atoms, and each element's sublattice)
  from frame 0, from explicitly unwrapped coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.rdf import CHEMICAL_SYMBOLS, validated_cell, validated_positions
from analysis.transport import unwrap

__all__ = [
    "VOXEL_A",
    "EMPTY_FRACTION_OF_MEAN",
    "WRONG_CHANNEL_FRACTION",
    "DRIFT_THRESHOLD_A",
    "FrameworkDrift",
    "grid_shape",
    "occupancy_density",
    "bhattacharyya_overlap",
    "wrong_channel_fraction",
    "framework_drift",
    "PathComparison",
    "compare_paths",
]

# Voxel edge of the density grid: finer than the ~1.5 Å spacing of Li sites, coarse enough to fill.
VOXEL_A = 0.5
# A reference voxel is "empty" when its density is below this fraction of the mean voxel density.
EMPTY_FRACTION_OF_MEAN = 0.05
# More than this fraction of the Li density in reference-empty voxels flags "wrong channels".
WRONG_CHANNEL_FRACTION = 0.1
# A framework (or sublattice) whose mean displacement exceeds this has drifted: thermal motion of
# the mean of tens of atoms is ~0.05 Å, and momentum exchange with diffusing Li a few tenths.
DRIFT_THRESHOLD_A = 1.0


@dataclass(frozen=True)
class FrameworkDrift:
    """Largest mean displacement from frame 0, in Å, of the framework and of each element's sublattice.

    framework_A: all framework atoms together (whole-cell drift); sublattice_A: element symbol ->
    largest mean displacement of that element; drifting: any of them >= the threshold used.
    """

    framework_A: float
    sublattice_A: dict[str, float]
    drifting: bool


def grid_shape(cell_A, voxel_A: float = VOXEL_A) -> tuple[int, int, int]:
    """Number of voxels along each lattice vector so that each voxel edge is about voxel_A."""
    cell = validated_cell(cell_A)
    if voxel_A <= 0:
        raise ValueError(f"voxel_A must be positive, got {voxel_A}")
    lengths_A = np.linalg.norm(cell, axis=1)
    return tuple(int(n) for n in np.maximum(1, np.round(lengths_A / voxel_A)))


def occupancy_density(positions_A, cell_A, n_grid: tuple[int, int, int]) -> np.ndarray:
    """Occupancy density [nx, ny, nz] on a fractional grid, summing to 1.

    positions_A: [n_frames, n_atoms, 3] Cartesian positions of the atoms of interest (e.g. Li),
    wrapped or not (they are wrapped here); cell_A [3, 3] rows are lattice vectors.
    """
    pos, cell = validated_positions(positions_A), validated_cell(cell_A)
    grid = np.asarray(n_grid, dtype=int)
    if grid.shape != (3,) or np.any(grid < 1):
        raise ValueError(f"n_grid must be three positive integers, got {n_grid}")
    frac = (pos.reshape(-1, 3) @ np.linalg.inv(cell)) % 1.0  # [n_samples, 3]
    voxel = np.minimum((frac * grid).astype(np.int64), grid - 1)  # [n_samples, 3]
    flat = np.ravel_multi_index(voxel.T, grid)
    counts = np.bincount(flat, minlength=int(grid.prod())).astype(float)
    return (counts / counts.sum()).reshape(tuple(grid))


def _densities(density, reference) -> tuple[np.ndarray, np.ndarray]:
    p, q = np.asarray(density, dtype=float), np.asarray(reference, dtype=float)
    if p.shape != q.shape:
        raise ValueError(f"densities are on different grids: {p.shape} vs {q.shape}")
    for name, d in (("density", p), ("reference", q)):
        if not np.all(np.isfinite(d)) or np.any(d < 0) or not np.isclose(d.sum(), 1.0):
            raise ValueError(f"{name} must be finite, non-negative and sum to 1")
    return p, q


def bhattacharyya_overlap(density, reference) -> float:
    """Bhattacharyya coefficient Σ sqrt(p q) of two densities on the same grid: 1 identical, 0 disjoint."""
    p, q = _densities(density, reference)
    return float(np.sqrt(p * q).sum())


def wrong_channel_fraction(density, reference, empty_fraction_of_mean: float = EMPTY_FRACTION_OF_MEAN) -> float:
    """Fraction of ``density`` in voxels where ``reference`` is empty (< that fraction of its mean voxel)."""
    p, q = _densities(density, reference)
    empty = q < empty_fraction_of_mean / q.size
    return float(p[empty].sum())


def framework_drift(
    positions_A, cell_A, numbers, mobile_number: int = 3, threshold_A: float = DRIFT_THRESHOLD_A
) -> FrameworkDrift:
    """Whole-framework and per-sublattice drift of a wrapped trajectory.

    positions_A [n_frames, n_atoms, 3] wrapped into the cell (unwrapped here, see
    ``transport.unwrap``), numbers [n_atoms] atomic numbers; atoms with ``mobile_number`` (Li) are
    not framework. Displacements are unweighted means over atoms (as pymatgen's DiffusionAnalyzer
    removes drift).
    """
    numbers = np.asarray(numbers)
    pos = unwrap(positions_A, cell_A)
    if numbers.shape != (pos.shape[1],):
        raise ValueError(f"numbers must have shape ({pos.shape[1]},), got {numbers.shape}")
    framework = numbers != mobile_number
    if not framework.any():
        raise ValueError("no framework atoms: every atom has the mobile atomic number")
    displacement = pos - pos[:1]  # [n_frames, n_atoms, 3]

    def largest_mean_displacement(mask: np.ndarray) -> float:
        return float(np.linalg.norm(displacement[:, mask].mean(axis=1), axis=1).max())

    whole = largest_mean_displacement(framework)
    per_element = {
        CHEMICAL_SYMBOLS[z]: largest_mean_displacement(numbers == z) for z in np.unique(numbers[framework])
    }
    drifting = max(whole, *per_element.values()) >= threshold_A
    return FrameworkDrift(framework_A=whole, sublattice_A=per_element, drifting=bool(drifting))


@dataclass(frozen=True)
class PathComparison:
    """How one source's runs move the mobile element compared with the reference's runs (one temperature).

    density, reference_density: [nx, ny, nz] occupancy densities of the mobile element over all runs;
    overlap: their Bhattacharyya coefficient; wrong_channel_fraction: of the density in voxels the
    reference leaves empty, and whether it exceeds ``WRONG_CHANNEL_FRACTION``; drifts: per run.
    """

    density: np.ndarray
    reference_density: np.ndarray
    overlap: float
    wrong_channel_fraction: float
    wrong_channels: bool
    drifts: list[FrameworkDrift]


def compare_paths(runs_A: list[np.ndarray], references_A: list[np.ndarray], cell_A, numbers, mobile_number: int = 3) -> PathComparison:
    """Compare the runs ``runs_A`` with the reference runs ``references_A`` (each [n_frames, n_atoms, 3],
    wrapped, one cell and atom order) on a grid of ``grid_shape(cell_A)``."""
    numbers = np.asarray(numbers)
    mobile = numbers == mobile_number
    grid = grid_shape(cell_A)
    density = occupancy_density(np.concatenate([run[:, mobile] for run in runs_A]), cell_A, grid)
    reference = occupancy_density(np.concatenate([run[:, mobile] for run in references_A]), cell_A, grid)
    wrong = wrong_channel_fraction(density, reference)
    return PathComparison(
        density=density,
        reference_density=reference,
        overlap=bhattacharyya_overlap(density, reference),
        wrong_channel_fraction=wrong,
        wrong_channels=wrong > WRONG_CHANNEL_FRACTION,
        drifts=[framework_drift(run, cell_A, numbers, mobile_number=mobile_number) for run in runs_A],
    )
