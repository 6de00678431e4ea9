"""One run's verdicts against truths: diffusion that is and is not, a collapse at a known time, noise floors."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.rdf import rdf
from analysis.runs import analyse_run, hop_distance_A
from analysis.settings import RDFSettings
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
    assert "2 needed" in measured.verdict.reason and measured.verdict.hops < 0.1  # a flat MSD implies no hop
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


def test_a_few_hops_give_a_d_with_a_wide_interval_not_none():
    """Li on 4 Å sites, 20 ps, 6 hops among the 27 Li in all: the mean MSD stays far below one hop squared, yet
    the run diffused, and its interval (a Poisson count's) holds the hops' D."""
    rng = np.random.default_rng(3)
    n_frames, hops = 2000, [(300, 0, 0), (700, 5, 1), (900, 9, 2), (1200, 13, 0), (1500, 20, 1), (1800, 26, 2)]
    li = np.broadcast_to(SITES, (n_frames, len(SITES), 3)).copy()
    for frame, atom, axis in hops:
        li[frame:, atom, axis] += 4.0
    li += rng.normal(0.0, 0.1, size=li.shape)
    measured = _analyse(_frames(li))
    assert measured.verdict.diffusive, measured.verdict.reason
    fit = measured.diffusivity_fit
    d_hops = len(hops) * 16.0 / (6 * len(SITES) * (n_frames - 1) * FRAME_FS) * A2_PER_FS_TO_CM2_PER_S
    assert fit.low_cm2_s < d_hops < fit.high_cm2_s
    assert fit.high_cm2_s / fit.low_cm2_s > 2  # a handful of hops: a wide interval
    assert measured.conductivity_interval_mS_cm[0] < measured.conductivity_mS_cm < measured.conductivity_interval_mS_cm[1]
