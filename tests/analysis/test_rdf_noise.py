"""The noise-aware stability test (analysis/rdf_noise.py through analysis/verdicts.py) against truths.

The physics is a harmonic crystal: rock-salt LiF (32 atoms) whose atoms vibrate about their sites. Runs of it
are the reference's own physics, so they must be classed consistent 95 % of the time; a copy stretched by 2 %
is a lattice mismatch, found where the test's stated resolution is below the excess that the strain causes.
"""

import numpy as np
import pytest
from ase.build import bulk

from analysis.rdf import block_rdfs, mean_rdf, rdf
from analysis.rdf_noise import FALSE_ALARM_RATE
from analysis.settings import AnalysisSettings
from analysis.statistics import wilson_interval
from analysis.verdicts import RunFrames, assess_run, reference_at

CRYSTAL = bulk("LiF", "rocksalt", a=4.0, cubic=True).repeat((2, 2, 1))
SITES_A, CELL_A, NUMBERS = CRYSTAL.positions, CRYSTAL.cell.array, CRYSTAL.numbers
FRAME_FS = 20.0
SETTINGS = AnalysisSettings.model_validate({"rdf": {"r_max_A": 4.0, "n_bins": 40, "pairs": [["Li", "F"]]},
                                            "diffusing_specie": "Li"})


def _frames(positions_A: np.ndarray, name: str, strain: float = 0.0) -> RunFrames:
    """A run of these frames [n, n_atoms, 3], wrapped into the crystal's cell (stretched by ``strain``)."""
    fractional = positions_A @ np.linalg.inv(CELL_A)
    wrapped_A = (fractional - np.floor(fractional)) @ (CELL_A * (1.0 + strain))
    time_fs = FRAME_FS * np.arange(len(positions_A))
    return RunFrames(name, wrapped_A, time_fs, wrapped_A, time_fs, CELL_A * (1.0 + strain), NUMBERS, 0, None)


def _independent(rng, n_frames: int, amplitude_A: float = 0.12) -> np.ndarray:
    """Independent samples of the crystal: every frame a fresh thermal displacement, ``amplitude_A`` per axis."""
    return SITES_A + rng.normal(0.0, amplitude_A, (n_frames, *SITES_A.shape))


def _correlated(rng, n_frames: int, memory: float = 0.6) -> np.ndarray:
    """One MD-like run: displacements an AR(1) process, each frame remembering ``memory`` of the last."""
    step = rng.normal(0.0, 0.12 * np.sqrt(1 - memory**2), (n_frames, *SITES_A.shape))
    displacement = np.empty_like(step)
    displacement[0] = rng.normal(0.0, 0.12, SITES_A.shape)
    for i in range(1, n_frames):
        displacement[i] = memory * displacement[i - 1] + step[i]
    return SITES_A + displacement


def _assess(run: RunFrames, reference_runs: list[RunFrames], settings: AnalysisSettings = SETTINGS):
    return assess_run(run, 1000.0, settings, reference_at(reference_runs, settings), None, 0.0)


def test_blocks_average_to_the_rdf_of_all_frames():
    positions = _independent(np.random.default_rng(0), 30)
    blocks = block_rdfs(positions, CELL_A, NUMBERS, 4.0, 40, 4, pairs=[("Li", "F")])
    whole = rdf(positions, CELL_A, NUMBERS, 4.0, 40, pairs=[("Li", "F")])
    mean = mean_rdf(blocks, [8, 7, 8, 7])  # 30 frames in 4 consecutive blocks
    for label in whole.g:
        np.testing.assert_allclose(mean.g[label], whole.g[label], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("n_reference_runs", "lengths"), [(3, (40, 80, 160)), (1, (40, 160))],
                         ids=["three reference runs", "one reference run"])
def test_runs_of_the_reference_physics_are_consistent_at_the_stated_false_alarm_rate(n_reference_runs, lengths):
    """Independent runs of the crystal against a reference of 80-frame runs: each length is classed consistent
    in 95 % of runs (the Wilson interval of the fraction reaches 0.95), and over all of them the false-alarm rate
    is 5 +- 3 %. Each comparison has its own reference, so the trials are independent."""
    rng = np.random.default_rng(7)
    alarms = {}
    for n_frames in lengths:
        outcomes = []
        for trial in range(120):
            reference = [_frames(_independent(rng, 80), f"reference{i}") for i in range(n_reference_runs)]
            assessed = _assess(_frames(_independent(rng, n_frames), "run"), reference)
            assert assessed.rdf_mae_resolution > 0 and assessed.rdf_mae_noise_floor > 0
            outcomes.append(assessed.stability)
        assert set(outcomes) <= {"consistent", "lattice_mismatch"}
        alarms[n_frames] = outcomes.count("lattice_mismatch")
        consistent_high = wilson_interval(outcomes.count("consistent"), len(outcomes))[1]
        assert consistent_high >= 1 - FALSE_ALARM_RATE, (n_frames, alarms)
    rate = sum(alarms.values()) / (120 * len(lengths))
    assert 0.02 <= rate <= 0.08, alarms


def test_the_second_half_of_a_run_is_consistent_with_its_first():
    """Correlated, MD-like runs: the second half against the first half as the only reference run."""
    rng = np.random.default_rng(11)
    outcomes = []
    for trial in range(120):
        positions = _correlated(rng, 320)
        outcomes.append(_assess(_frames(positions[160:], "second"), [_frames(positions[:160], "first")]).stability)
    assert wilson_interval(outcomes.count("consistent"), len(outcomes))[1] >= 1 - FALSE_ALARM_RATE, outcomes


def test_a_lattice_stretched_by_two_percent_is_found_where_the_resolution_allows():
    """A run of the reference's physics and its copy stretched by 2 %: the strain adds ``excess`` to the RDF MAE.
    Over 300 frames the stated resolution is below that excess, and the copy is a lattice mismatch; over 2 frames
    it is above, and the copy is consistent. Hot (0.2 Å), so the peaks are wide and the strain hides in short runs."""
    hot = SETTINGS.model_copy(update={"fusion_distance_A": 0.3})
    rng = np.random.default_rng(3)
    reference = [_frames(_independent(rng, 300, 0.2), f"reference{i}") for i in range(3)]
    run = _independent(rng, 300, 0.2)
    for n_frames, resolvable in ((300, True), (2, False)):
        stretched = _assess(_frames(run[:n_frames], "stretched", strain=0.02), reference, hot)
        excess = stretched.rdf_mae - _assess(_frames(run[:n_frames], "run"), reference, hot).rdf_mae
        assert (stretched.rdf_mae_resolution < excess) == resolvable, (n_frames, stretched.rdf_mae_resolution, excess)
        assert stretched.stability == ("lattice_mismatch" if resolvable else "consistent")


def test_without_a_measured_noise_the_verdict_is_unknown():
    rng = np.random.default_rng(5)
    two_frames = [_frames(_independent(rng, 2), "reference")]  # fewer frames than blocks: no noise to measure
    assessed = _assess(_frames(_independent(rng, 40), "run"), two_frames)
    assert assessed.stability == "unknown" and assessed.rdf_mae_resolution is None
