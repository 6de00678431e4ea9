"""Diffusion paths on synthetic trajectories whose channels and drift are known by construction."""

import numpy as np
import pytest

from analysis.diffusion_paths import (
    bhattacharyya_overlap,
    framework_drift,
    grid_shape,
    occupancy_density,
    wrong_channel_fraction,
)

CELL_A = np.diag([8.7, 8.7, 12.6])  # LGPS-like tetragonal cell
GRID = grid_shape(CELL_A)


def _channel_walk(rng, n_frames, n_li, xy_frac):
    """Li hopping along c inside a narrow channel at fractional (x, y) = xy_frac."""
    frac = np.empty((n_frames, n_li, 3))
    frac[:, :, :2] = np.asarray(xy_frac) + rng.normal(0.0, 0.01, size=(n_frames, n_li, 2))
    frac[:, :, 2] = np.cumsum(rng.normal(0.0, 0.02, size=(n_frames, n_li)), axis=0) + rng.random(n_li)
    return (frac % 1.0) @ CELL_A


def test_grid_shape_gives_about_half_angstrom_voxels():
    assert grid_shape(CELL_A) == (17, 17, 25)


def test_density_is_normalised_and_puts_mass_where_the_atoms_are():
    positions = np.tile(np.array([[0.15, 0.15, 0.15], [0.65, 0.65, 0.65]]) @ CELL_A, (5, 1, 1))  # [5, 2, 3]
    density = occupancy_density(positions, CELL_A, (10, 10, 10))
    assert density.sum() == pytest.approx(1.0)
    assert density[1, 1, 1] == pytest.approx(0.5)
    assert density[6, 6, 6] == pytest.approx(0.5)


def test_same_channel_overlaps_and_is_not_flagged():
    rng = np.random.default_rng(0)
    reference = occupancy_density(_channel_walk(rng, 4000, 4, (0.25, 0.25)), CELL_A, GRID)
    same = occupancy_density(_channel_walk(rng, 4000, 4, (0.25, 0.25)), CELL_A, GRID)
    assert bhattacharyya_overlap(same, reference) > 0.95
    assert wrong_channel_fraction(same, reference) < 0.02


def test_uniform_spread_and_wrong_channel_are_flagged():
    rng = np.random.default_rng(1)
    reference = occupancy_density(_channel_walk(rng, 4000, 4, (0.25, 0.25)), CELL_A, GRID)
    uniform = occupancy_density(rng.random((4000, 4, 3)) @ CELL_A, CELL_A, GRID)
    other_channel = occupancy_density(_channel_walk(rng, 4000, 4, (0.75, 0.25)), CELL_A, GRID)
    # The channel fills a 1-2 voxel-wide column of the 17 x 17 cross-section: nearly all uniform mass is outside.
    assert wrong_channel_fraction(uniform, reference) > 0.95
    assert bhattacharyya_overlap(uniform, reference) < 0.3
    assert wrong_channel_fraction(other_channel, reference) > 0.99
    assert bhattacharyya_overlap(other_channel, reference) < 0.01


def test_overlap_of_a_density_with_itself_is_one_and_with_a_disjoint_one_zero():
    p = np.zeros((4, 4, 4))
    q = np.zeros((4, 4, 4))
    p[0, 0, :2] = 0.5
    q[3, 3, :] = 0.25
    assert bhattacharyya_overlap(p, p) == pytest.approx(1.0)
    assert bhattacharyya_overlap(p, q) == 0.0
    with pytest.raises(ValueError, match="different grids"):
        bhattacharyya_overlap(p, np.ones((2, 2, 2)) / 8)


def _lattice(rng, n_frames, drift_A_per_frame):
    """4 Li + 8 S + 2 P vibrating about fixed sites; the S sublattice moves by drift per frame."""
    numbers = np.array([3] * 4 + [16] * 8 + [15] * 2)
    sites = rng.random((len(numbers), 3)) @ CELL_A
    positions = sites + rng.normal(0.0, 0.05, size=(n_frames, len(numbers), 3))
    positions[:, numbers == 16] += np.arange(n_frames)[:, None, None] * np.asarray(drift_A_per_frame)
    frac = (positions @ np.linalg.inv(CELL_A)) % 1.0
    return frac @ CELL_A, numbers


def test_static_framework_is_not_drifting():
    positions, numbers = _lattice(np.random.default_rng(2), 500, [0.0, 0.0, 0.0])
    drift = framework_drift(positions, CELL_A, numbers)
    assert not drift.drifting
    assert drift.framework_A < 0.3
    assert set(drift.sublattice_A) == {"S", "P"}


def test_sliding_sublattice_is_detected_across_the_periodic_boundary():
    # S slides 0.05 Å per frame along a: 25 Å in 500 frames, crossing the 8.7 Å cell about three times.
    positions, numbers = _lattice(np.random.default_rng(3), 500, [0.05, 0.0, 0.0])
    drift = framework_drift(positions, CELL_A, numbers)
    assert drift.drifting
    assert drift.sublattice_A["S"] == pytest.approx(0.05 * 499, abs=0.2)
    assert drift.sublattice_A["P"] < 0.3
    assert drift.framework_A == pytest.approx(0.05 * 499 * 8 / 10, abs=0.2)
