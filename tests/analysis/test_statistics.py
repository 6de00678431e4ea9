"""Statistics across repetitions, against truths: coverage, textbook intervals, known windows."""

import numpy as np
import pytest
from scipy.stats import binomtest

from analysis.statistics import (
    bootstrap_arrhenius,
    bootstrap_mean,
    diffusive_window,
    wilson_interval,
)
from analysis.transport import conductivity_at_mS_cm
from records.units import BOLTZMANN_EV_K


def test_bootstrap_mean_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    true_mean, n_trials = 3.0, 400
    hits = 0
    for trial in range(n_trials):
        sample = rng.normal(true_mean, 2.0, size=30)
        estimate = bootstrap_mean(sample, n_resamples=1000, seed=trial)
        assert estimate.value == pytest.approx(sample.mean())
        hits += estimate.low <= true_mean <= estimate.high
    # Percentile bootstrap of a mean of 30 normal values: ~94 % coverage; binomial noise of 400 trials ~1 %.
    assert 0.90 <= hits / n_trials <= 0.98


def test_bootstrap_mean_interval_width_matches_the_standard_error():
    rng = np.random.default_rng(2)
    sample = rng.exponential(1.0, size=400)
    estimate = bootstrap_mean(sample, n_resamples=4000)
    expected_half_width = 1.96 * sample.std() / np.sqrt(sample.size)
    assert (estimate.high - estimate.low) / 2 == pytest.approx(expected_half_width, rel=0.1)


def test_bootstrap_mean_rejects_bad_input():
    with pytest.raises(ValueError, match="non-finite"):
        bootstrap_mean([1.0, np.nan])
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_mean([])


@pytest.mark.parametrize(("k", "n"), [(0, 10), (5, 10), (6, 6), (3, 7), (17, 40)])
def test_wilson_interval_matches_scipy(k, n):
    expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((expected.low, expected.high), abs=1e-12)


def test_wilson_interval_textbook_values():
    # 0 of n: upper bound z²/(n + z²) (Wilson 1927); all n of n mirrors it.
    z2 = 1.959963984540054**2
    assert wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))
    assert wilson_interval(10, 10) == pytest.approx((10 / (10 + z2), 1.0))
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_bootstrap_arrhenius_recovers_a_known_activation_energy():
    rng = np.random.default_rng(3)
    ea_true, prefactor = 0.25, 1e-3  # eV, cm²/s
    temperatures = [800.0, 900.0, 1000.0, 1100.0, 1200.0]
    runs = {
        t: prefactor * np.exp(-ea_true / (BOLTZMANN_EV_K * t)) * rng.lognormal(0.0, 0.1, size=8) for t in temperatures
    }
    estimate = bootstrap_arrhenius(runs, 300.0, n_carriers=20, volume_A3=870.0)
    assert estimate.n_rejected == 0
    assert estimate.activation_energy_eV.low <= ea_true <= estimate.activation_energy_eV.high
    assert estimate.activation_energy_eV.high - estimate.activation_energy_eV.low < 0.1
    # The point estimate is the campaign's fit of the mean D per temperature.
    sigma, fit = conductivity_at_mS_cm(temperatures, [runs[t].mean() for t in temperatures], 300.0, 20, 870.0)
    assert estimate.conductivity_target_mS_cm.value == pytest.approx(sigma)
    assert estimate.activation_energy_eV.value == pytest.approx(fit.activation_energy_eV)
    sigma_low, sigma_high = estimate.conductivity_target_mS_cm.low, estimate.conductivity_target_mS_cm.high
    assert sigma_low < sigma < sigma_high


def test_bootstrap_arrhenius_without_scatter_has_a_zero_width_interval():
    runs = {t: [np.exp(-2000.0 / t)] * 4 for t in (800.0, 1000.0, 1200.0)}
    estimate = bootstrap_arrhenius(runs, 300.0, n_carriers=1, volume_A3=100.0)
    assert estimate.activation_energy_eV.value == pytest.approx(2000.0 * BOLTZMANN_EV_K)
    assert estimate.activation_energy_eV.low == pytest.approx(estimate.activation_energy_eV.high)


def test_diffusive_window_skips_the_ballistic_start():
    # MSD = v² t² up to t_c, then linear with the same value and slope at t_c (continuous, smooth).
    t = np.arange(10000) * 2.0  # fs
    t_c, v2 = 200.0, 0.01
    msd = np.where(t < t_c, v2 * t**2, v2 * t_c**2 + 2 * v2 * t_c * (t - t_c))
    window = diffusive_window(msd, t)
    assert window.start_fs >= 3 * t_c  # well past the crossover, where the log-log slope -> 1
    assert window.end_fs / window.start_fs >= 3.0
    assert window.loglog_slope == pytest.approx(1.0, abs=0.05)
    inside = (t >= window.start_fs) & (t <= window.end_fs)
    slope = np.polyfit(t[inside], msd[inside], 1)[0]
    assert slope == pytest.approx(2 * v2 * t_c, rel=1e-9)


def test_diffusive_window_can_be_made_to_reach_beyond_the_vibrations():
    # A rattle in a cage (1 Å², 50 fs) on top of slow diffusion: at short lags the cage's rise and a
    # slope of 1 can pass for diffusion. Asked to reach 4 Å², the window ends where hops dominate.
    t = np.arange(10000) * 2.0  # fs
    msd = 1.0 - np.exp(-t / 50.0) + 1e-3 * t
    unconstrained = diffusive_window(msd, t)
    assert np.interp(unconstrained.end_fs, t, msd) < 1.0  # inside the cage's rise
    window = diffusive_window(msd, t, min_end_msd_A2=4.0)
    assert np.interp(window.end_fs, t, msd) >= 4.0
    inside = (t >= window.start_fs) & (t <= window.end_fs)
    assert np.polyfit(t[inside], msd[inside], 1)[0] == pytest.approx(1e-3, rel=0.01)  # the diffusive slope
    with pytest.raises(ValueError, match="ends at 100 Å² or more"):
        diffusive_window(msd, t, min_end_msd_A2=100.0)  # the MSD reaches ~11 Å² by half the run


def test_diffusive_window_rejects_too_short_msd():
    with pytest.raises(ValueError, match="too short"):
        diffusive_window(np.arange(5.0), np.arange(5.0))
