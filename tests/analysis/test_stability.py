import math

import numpy as np
import pytest
from ase import Atoms

from analysis.stability import (
    RDF_MAE_STABLE,
    classify_stability,
    min_distance_A,
)


def _brute_force_min_distance(frames, cell):
    out = []
    for p in frames:
        d = Atoms("H" * len(p), positions=p, cell=cell, pbc=True).get_all_distances(mic=True)
        out.append(d[np.triu_indices(len(p), k=1)].min())
    return np.array(out)


@pytest.mark.parametrize(
    "cell",
    [
        np.array([[6.1, 0.0, 0.0], [2.3, 5.7, 0.0], [-1.4, 1.9, 6.6]]),  # triclinic
        np.array([[5.0, 0.0, 0.0], [4.2, 2.1, 0.0], [3.9, 1.7, 2.2]]),  # strongly skewed
    ],
)
def test_min_distance_matches_ase_mic_brute_force(cell):
    rng = np.random.default_rng(3)
    # unwrapped positions spread over several cells: PBC must handle them
    frames = rng.uniform(-1.5, 2.5, size=(6, 9, 3)) @ cell
    ours = min_distance_A(frames, cell)
    assert ours.shape == (6,)
    np.testing.assert_allclose(ours, _brute_force_min_distance(frames, cell), rtol=1e-10)


def test_min_distance_detects_fusion_across_boundary():
    cell = np.diag([8.7, 8.7, 12.6])
    frame = np.array([[0.1, 4.0, 4.0], [8.65, 4.0, 4.0], [4.0, 1.0, 6.0]])
    assert min_distance_A(frame[None], cell)[0] == pytest.approx(0.15, abs=1e-12)


def test_classify_stability_all_three_classes():
    assert classify_stability(0.005, 1.8) == "consistent"
    assert classify_stability(0.05, 1.8) == "lattice_mismatch"
    assert classify_stability(0.005, 0.6) == "atom_fusion"
    # fusion takes precedence over a bad RDF
    assert classify_stability(0.5, 0.6) == "atom_fusion"
    # threshold semantics: stable iff rdf_mae < threshold
    assert classify_stability(RDF_MAE_STABLE, 1.8) == "lattice_mismatch"
    assert classify_stability(0.03, 1.8, rdf_mae_threshold=0.04) == "consistent"
    assert classify_stability(0.005, 1.2, fusion_distance_A=1.5) == "atom_fusion"


def test_classify_stability_nan_raises():
    with pytest.raises(ValueError, match="NaN"):
        classify_stability(math.nan, 2.0)
    with pytest.raises(ValueError, match="NaN"):
        classify_stability(0.01, float("nan"))


def test_min_distance_pruning_is_exact_on_a_smooth_trajectory_with_a_collision():
    # Atoms vibrate smoothly (the case the block pruning skips most pairs for); atom 0 runs into
    # atom 1 mid-block and passes through it, so the per-frame minimum changes inside blocks.
    rng = np.random.default_rng(5)
    cell = np.diag([7.0, 7.5, 8.0])
    n_frames, n_atoms = 137, 12
    sites = rng.random((n_atoms, 3)) @ cell
    phase = rng.random((n_atoms, 3)) * 2 * np.pi
    t = np.arange(n_frames)[:, None, None]
    frames = sites + 0.2 * np.sin(0.3 * t + phase)
    frames[:, 0] = sites[1] + np.array([-3.0, 0.2, 0.0]) + np.arange(n_frames)[:, None] * np.array([0.05, 0.0, 0.0])
    np.testing.assert_allclose(min_distance_A(frames, cell), _brute_force_min_distance(frames, cell), rtol=1e-10)
