"""One run's verdicts against truths: diffusion that is and is not, a collapse at a known time, noise floors."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.rdf import RDF, leave_one_out_maes, rdf
from analysis.runs import RDFSettings, analyse_run, hop_distance_A
from records.units import A2_PER_FS_TO_CM2_PER_S

CELL_A = np.diag([12.0, 12.0, 12.0])
SITES = np.array([[i, j, k] for i in range(3) for j in range(3) for k in range(3)], dtype=float) * 4.0  # 27, 4 Å apart
FRAME_FS = 10.0
SETTINGS = RDFSettings(r_max_A=5.0, n_bins=50, frame_stride=5)


def _frames(li_A: np.ndarray) -> np.ndarray:
    """Li [n_frames, 27, 3] beside a fixed S on every site's far corner: [n_frames, 54, 3], wrapped."""
    s_A = np.broadcast_to(SITES + 2.0, li_A.shape)
    return np.concatenate([li_A, s_A], axis=1) % 12.0


NUMBERS = np.array([3] * len(SITES) + [16] * len(SITES))


def _analyse(positions_A, reference=None, **options):
    time_fs = np.arange(len(positions_A)) * FRAME_FS
    return analyse_run(positions_A, time_fs, positions_A, time_fs, CELL_A, NUMBERS, 1000.0, 3, reference, SETTINGS,
                       **options)


def test_the_hop_is_the_distance_between_neighbouring_sites():
    assert hop_distance_A(SITES, CELL_A) == pytest.approx(4.0)
    assert hop_distance_A(SITES[:1], CELL_A) == pytest.approx(12.0)  # one atom: its own nearest image


def test_a_vibrating_lattice_is_not_diffusive(tmp_path):
    """Li rattling about its sites (0.2 Å, uncorrelated frames) for 20 ps: the MSD plateaus far below one hop."""
    rng = np.random.default_rng(0)
    li = SITES + rng.normal(0.0, 0.2, size=(2000, len(SITES), 3))
    measured = _analyse(_frames(li))
    assert not measured.verdict.diffusive and measured.diffusivity_cm2_s is None and measured.conductivity_mS_cm is None
    assert "below one hop" in measured.verdict.reason or "slope" in measured.verdict.reason
    assert measured.verdict.hop_A == pytest.approx(4.0, abs=0.6)  # sites 4 Å apart, atoms 0.2 Å off them
    assert measured.verdict.upper_bound_cm2_s > 0


def test_a_random_walk_is_diffusive_and_its_d_recovered():
    """Independent Gaussian steps of variance s² per axis and frame: D = s² / (2 Δt) exactly."""
    rng = np.random.default_rng(1)
    step_A = 0.15
    li = SITES + np.cumsum(rng.normal(0.0, step_A, size=(3000, len(SITES), 3)), axis=0)
    measured = _analyse(_frames(li))
    d_true = step_A**2 / (2 * FRAME_FS) * A2_PER_FS_TO_CM2_PER_S
    assert measured.verdict.diffusive, measured.verdict.reason
    assert measured.verdict.check_slope == pytest.approx(1.0, abs=0.15)
    assert measured.diffusivity_cm2_s == pytest.approx(d_true, rel=0.2)  # 27 walkers: ~10 % scatter


def test_a_run_that_collapses_at_a_known_time_is_dated_within_one_window():
    """A lattice that turns into a random gas at 6 ps (an MLFF losing its structure), 1 ps windows."""
    rng = np.random.default_rng(2)
    n_frames, collapse_frame = 1000, 600  # 10 ps; collapse at 6 ps
    li = SITES + rng.normal(0.0, 0.1, size=(n_frames, len(SITES), 3))
    li[collapse_frame:] = rng.uniform(0.0, 12.0, size=(n_frames - collapse_frame, len(SITES), 3))
    crystal = _frames(SITES + rng.normal(0.0, 0.1, size=(200, len(SITES), 3)))
    reference = rdf(crystal, CELL_A, NUMBERS, SETTINGS.r_max_A, SETTINGS.n_bins, frame_stride=SETTINGS.frame_stride)
    measured = _analyse(_frames(li), reference, collapse_window_fs=1000.0, rdf_mae_threshold=0.2,
                        fusion_distance_A=0.01)
    assert measured.collapse.reason == "rdf_mismatch"
    assert 6000.0 <= measured.collapse.time_fs <= 6000.0 + 1000.0
    assert max(measured.collapse.window_maes[:6]) < 0.2 < min(measured.collapse.window_maes[6:])
    steady = _analyse(_frames(li[:collapse_frame]), reference, collapse_window_fs=1000.0, rdf_mae_threshold=0.2,
                      fusion_distance_A=0.01)
    assert steady.collapse.time_fs is None


def test_the_noise_floor_of_two_samples_of_one_distribution_is_recovered():
    """Two RDFs = one curve + independent Gaussian noise of σ per bin: E|g1 − g2| = 2σ / √π."""
    rng = np.random.default_rng(3)
    r_A = np.linspace(0.05, 4.95, 2000)
    truth = 1.0 + np.sin(r_A)
    sigma = 0.01
    samples = [RDF(r_A, {"total": truth + rng.normal(0.0, sigma, r_A.shape)}) for _ in range(2)]
    floors = leave_one_out_maes(samples)
    assert floors[0] == floors[1] == pytest.approx(2 * sigma / np.sqrt(np.pi), rel=0.05)
    with pytest.raises(ValueError, match="at least 2"):
        leave_one_out_maes(samples[:1])
