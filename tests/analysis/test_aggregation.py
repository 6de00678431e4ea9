"""Verdicts over runs: a known Ea recovered only from enough diffusive temperatures, and survival curves."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.aggregation import RunVerdict, summarise_material, summarise_temperature, survival
from records.units import A2_PER_FS_TO_CM2_PER_S, BOLTZMANN_EV_K

EA_EV, D0_CM2_S = 0.25, 1e-3


def _run(temperature_K, d_cm2_s=None, *, stability="consistent", diffusive=True, collapse_ps=None, length_ps=10.0):
    d = d_cm2_s if d_cm2_s is not None else D0_CM2_S * np.exp(-EA_EV / (BOLTZMANN_EV_K * temperature_K))
    return RunVerdict(temperature_K, stability, 0.01, diffusive, d if diffusive else None, 1.0 if diffusive else None,
                      35.0, collapse_ps, length_ps)


def _material(runs):
    temperatures = [summarise_temperature([r for r in runs if r.temperature_K == t])
                    for t in sorted({r.temperature_K for r in runs})]
    return summarise_material(runs, temperatures, 300.0, n_carriers=20, volume_A3=950.0)


def test_a_known_activation_energy_is_recovered_from_three_diffusive_temperatures():
    rng = np.random.default_rng(0)
    runs = [_run(t, D0_CM2_S * np.exp(-EA_EV / (BOLTZMANN_EV_K * t)) * rng.uniform(0.95, 1.05))
            for t in (800.0, 1000.0, 1200.0) for _ in range(4)]
    material = _material(runs)
    assert material.arrhenius_reason is None
    assert material.activation_energy_eV.value == pytest.approx(EA_EV, abs=0.02)
    assert material.activation_energy_eV.low < material.activation_energy_eV.value < material.activation_energy_eV.high
    assert material.arrhenius_prefactor_cm2_s == pytest.approx(D0_CM2_S, rel=0.3)


@pytest.mark.parametrize("runs, reason", [
    ([_run(t) for t in (800.0, 1200.0) for _ in range(2)], "2 of 2 temperatures diffusive, 3 needed"),
    ([_run(t, diffusive=t != 1200.0) for t in (800.0, 1000.0, 1200.0)], "2 of 3 temperatures diffusive, 3 needed"),
    ([_run(t, diffusive=False) for t in (800.0, 1000.0, 1200.0)], "not diffusive at 35 ps"),
    ([_run(t, 1e-5 * 800.0 / t) for t in (800.0, 1000.0, 1200.0)], "is not positive"),  # D falling with T
], ids=["two temperatures", "one not diffusive", "none diffusive", "negative Ea"])
def test_no_activation_energy_or_conductivity_without_enough_diffusive_temperatures(runs, reason):
    material = _material(runs)
    assert material.activation_energy_eV is None and material.conductivity_target_mS_cm is None
    assert reason in material.arrhenius_reason


def test_fused_runs_stay_out_of_d_and_one_value_has_no_interval():
    runs = [_run(1000.0, 2e-5), _run(1000.0, 9e-5, stability="atom_fusion")]
    summary = summarise_temperature(runs)
    assert summary.n_diffusive == 1 and summary.diffusivity_cm2_s.value == 2e-5
    assert np.isnan(summary.diffusivity_cm2_s.low) and np.isnan(summary.diffusivity_cm2_s.high)
    material = _material([_run(t) for t in (800.0, 1000.0, 1200.0)])  # one repetition per temperature
    assert material.activation_energy_eV.value == pytest.approx(EA_EV)
    assert np.isnan(material.activation_energy_eV.low) and np.isnan(material.conductivity_target_mS_cm.high)


def test_the_survival_curve_and_its_score():
    """Of two 10 ps runs one collapses at 5 ps: all valid before, half after, area 3/4."""
    times, fraction, score = survival([_run(1000.0, collapse_ps=5.0), _run(1000.0)])
    fraction = np.array(fraction)
    assert times[0] == 0.0 and times[-1] == 10.0
    assert np.all(fraction[np.array(times) < 5.0] == 1.0) and np.all(fraction[np.array(times) >= 5.0] == 0.5)
    assert score == pytest.approx(0.75, abs=0.01)
    assert survival([_run(1000.0, collapse_ps=-0.5)])[2] == 0.0  # collapsed during the ramp
    assert survival([_run(1000.0), _run(1000.0)])[2] == 1.0


def test_pooling_weights_runs_by_their_intervals_and_flags_a_spread_they_do_not_allow():
    from analysis.statistics import pool_log

    agreeing = pool_log([1.0, 1.2], [0.5, 0.6], [2.0, 2.4])
    assert agreeing.consistent and agreeing.n == 2 and agreeing.low < 1.1 < agreeing.high
    assert agreeing.value == pytest.approx(np.sqrt(1.2))  # equal weights in ln D: the geometric mean
    # The tighter run dominates: weights 1 / sd², sd ∝ the log-width of the interval.
    weighted = pool_log([1.0, 2.0], [0.9, 1.0], [1.1111, 4.0])
    assert weighted.value < 1.1
    scattered = pool_log([1.0, 10.0, 1.1], [0.9, 9.0, 1.0], [1.11, 11.1, 1.21])
    assert not scattered.consistent and scattered.p_value < 0.05 and scattered.chi2_per_dof > 10
    assert scattered.high / scattered.low > 1.5  # widened by the Birge ratio
    assert pool_log([1.0], [0.0], [np.inf]) is None  # no finite interval: nothing to weight


@pytest.mark.slow
def test_intervals_of_ea_and_sigma_at_target_cover_the_truth():
    """200 synthetic campaigns: carriers hopping with a known Ea (0.3 eV), 4 temperatures x 2 runs each, D and its
    interval from every run's GLS fit, pooled per temperature and fitted in ln D. The 95 % intervals of Ea and of
    σ(300 K) cover the truth in 95 ± 5 % of the campaigns."""
    from analysis.transport import conductivity_mS_cm, diffusivity_interval, msd_of_positions_A2
    from random_walks import hopping_walk

    ea_eV, hop_A, frame_fs, n_frames, n_atoms, volume_A3 = 0.3, 3.0, 20.0, 600, 16, 950.0
    temperatures_K, hottest_hops = (700.0, 900.0, 1100.0, 1300.0), 40.0  # ~4 hops per carrier at 700 K
    rate_hot = hottest_hops / ((n_frames - 1) * frame_fs)  # per fs
    d0 = rate_hot * hop_A**2 / 6 * A2_PER_FS_TO_CM2_PER_S * np.exp(ea_eV / (BOLTZMANN_EV_K * temperatures_K[-1]))
    sigma_true = conductivity_mS_cm(d0 * np.exp(-ea_eV / (BOLTZMANN_EV_K * 300.0)), n_atoms, volume_A3, 300.0)
    rng = np.random.default_rng(17)
    covered_ea, covered_sigma = [], []
    for _ in range(200):
        runs = []
        for t in temperatures_K:
            hops = hottest_hops * np.exp(-ea_eV / BOLTZMANN_EV_K * (1 / t - 1 / temperatures_K[-1]))
            for _ in range(2):
                positions, time_fs, _ = hopping_walk(rng, n_frames, n_atoms, hops, hop_A, frame_fs)
                end_fs = time_fs[-1] / 2
                fit = diffusivity_interval(positions, msd_of_positions_A2(positions), time_fs, end_fs / 4, end_fs)
                sigma = conductivity_mS_cm(fit.diffusivity_cm2_s, n_atoms, volume_A3, t)
                runs.append(RunVerdict(t, "consistent", 0.01, True, fit.diffusivity_cm2_s, sigma, 12.0, None, 12.0,
                                       fit.low_cm2_s, fit.high_cm2_s))
        temperatures = [summarise_temperature([r for r in runs if r.temperature_K == t]) for t in temperatures_K]
        material = summarise_material(runs, temperatures, 300.0, n_carriers=n_atoms, volume_A3=volume_A3)
        ea, sigma = material.activation_energy_eV, material.conductivity_target_mS_cm
        covered_ea.append(ea.low <= ea_eV <= ea.high)
        covered_sigma.append(sigma.low <= sigma_true <= sigma.high)
    assert abs(np.mean(covered_ea) - 0.95) <= 0.05, np.mean(covered_ea)
    assert abs(np.mean(covered_sigma) - 0.95) <= 0.05, np.mean(covered_sigma)
