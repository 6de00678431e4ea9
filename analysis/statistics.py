"""Uncertainty across MD repetitions, and the choice of the diffusive MSD window. Pure numpy.

Why a bootstrap over repetitions, not block averaging: the campaign runs >= 6 independent MD
repetitions (different seeds) per (model, material, T), and each repetition yields one D and one σ.
Those per-run values are independent and identically distributed, so resampling whole runs is the
natural unit of the bootstrap and needs no correlation time. Block averaging estimates the error of
a mean along *one* correlated time series; it cannot propagate the spread into a non-linear
derived quantity. The bootstrap does: Ea and σ(300 K) are refitted on every resample (repetitions
drawn with replacement at each temperature independently), so their intervals include how the
scatter at each temperature moves the Arrhenius line. Intervals are percentile intervals; with
only ~6 repetitions they are somewhat too narrow (coverage ~ 90 % at a nominal 95 %), which is the
price of making no distributional assumption.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import scipy.stats

import numpy as np

from analysis.transport import conductivity_mS_cm, extrapolate_arrhenius, fit_arrhenius

from records.units import BOLTZMANN_EV_K

__all__ = [
    "CONFIDENCE",
    "N_RESAMPLES",
    "Estimate",
    "ArrheniusEstimate",
    "DiffusiveWindow",
    "bootstrap_mean",
    "bootstrap_arrhenius",
    "wilson_interval",
    "diffusive_window",
    "Pooled",
    "pool_log",
]

CONFIDENCE = 0.95
N_RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval [low, high] from n independent values."""

    value: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class ArrheniusEstimate:
    """Arrhenius fit of the mean D(T) with bootstrap intervals.

    activation_energy_eV: Ea of D(T). conductivity_target_mS_cm: σ at target_temperature_K
    (D extrapolated, then Nernst–Einstein). n_rejected: resamples whose mean D at some
    temperature was <= 0 (no logarithm), left out of the intervals.
    """

    activation_energy_eV: Estimate
    conductivity_target_mS_cm: Estimate
    target_temperature_K: float
    n_rejected: int


@dataclass(frozen=True)
class DiffusiveWindow:
    """The MSD fit window [start_fs, end_fs] and the log-log slope of MSD(t) inside it (1 = diffusive)."""

    start_fs: float
    end_fs: float
    loglog_slope: float


def _percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def bootstrap_mean(
    values, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> Estimate:
    """Mean of per-repetition values (e.g. D or σ of each run) and its percentile-bootstrap interval.

    values: [n_repetitions] finite numbers. With one value the interval is [value, value]
    (no spread can be estimated; the caller should show n).
    """
    _check_confidence(confidence)
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("bootstrap_mean needs at least one value")
    n_bad = int(np.count_nonzero(~np.isfinite(x)))
    if n_bad:
        raise ValueError(f"values contain {n_bad} non-finite value(s)")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)  # [n_resamples]
    low, high = _percentile_interval(means, confidence)
    return Estimate(value=float(x.mean()), low=low, high=high, n=int(x.size))


def bootstrap_arrhenius(
    diffusivities_cm2_s: Mapping[float, Sequence[float]],
    target_temperature_K: float,
    n_carriers: int,
    volume_A3: float,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> ArrheniusEstimate:
    """Ea and σ(target) from the per-run diffusivities at each temperature, with bootstrap intervals.

    diffusivities_cm2_s: temperature_K -> the D of every repetition at that temperature (cm²/s);
    >= 2 temperatures. The point estimate fits the mean D per temperature (the campaign's
    convention, ``transport.conductivity_at_mS_cm``); each resample draws the repetitions of every
    temperature with replacement, averages, and refits.
    """
    _check_confidence(confidence)
    temperatures = np.array(sorted(diffusivities_cm2_s), dtype=float)  # [n_T]
    if temperatures.size < 2:
        raise ValueError(f"need diffusivities at >= 2 temperatures, got {temperatures.size}")
    per_t = [np.asarray(diffusivities_cm2_s[t], dtype=float).ravel() for t in sorted(diffusivities_cm2_s)]
    for t, d in zip(temperatures, per_t, strict=True):
        if d.size == 0 or not np.all(np.isfinite(d)):
            raise ValueError(f"diffusivities at {t:g} K must be a non-empty list of finite values")

    point = fit_arrhenius(temperatures, [d.mean() for d in per_t])
    ea = point.activation_energy_eV
    sigma = conductivity_mS_cm(
        extrapolate_arrhenius(point, target_temperature_K), n_carriers, volume_A3, target_temperature_K
    )
    rng = np.random.default_rng(seed)
    means = np.stack(
        [d[rng.integers(0, d.size, size=(n_resamples, d.size))].mean(axis=1) for d in per_t], axis=1
    )  # [n_resamples, n_T]
    usable = np.all(means > 0, axis=1)
    # Ea and ln σ(target) are linear in ln(mean D): fit all resamples at once by least squares.
    inverse_t = 1.0 / temperatures
    design = np.stack([inverse_t, np.ones_like(inverse_t)], axis=1)  # [n_T, 2]
    coefficients, *_ = np.linalg.lstsq(design, np.log(means[usable]).T, rcond=None)  # [2, n_usable]
    ea_samples = -coefficients[0] * BOLTZMANN_EV_K
    d_target = np.exp(coefficients[1] + coefficients[0] / target_temperature_K)
    sigma_samples = d_target * conductivity_mS_cm(1.0, n_carriers, volume_A3, target_temperature_K)
    n_used = int(usable.sum())
    if n_used == 0:
        raise ValueError("every bootstrap resample had a non-positive mean diffusivity")
    n_runs = int(sum(d.size for d in per_t))
    return ArrheniusEstimate(
        activation_energy_eV=Estimate(ea, *_percentile_interval(ea_samples, confidence), n=n_runs),
        conductivity_target_mS_cm=Estimate(sigma, *_percentile_interval(sigma_samples, confidence), n=n_runs),
        target_temperature_K=float(target_temperature_K),
        n_rejected=n_resamples - n_used,
    )


def wilson_interval(n_success: int, n_total: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (e.g. the fraction of stable runs).

    Unlike the normal (Wald) interval it stays inside [0, 1] and is not degenerate at 0/n or n/n,
    which is the common case for a handful of repetitions.
    """
    _check_confidence(confidence)
    if n_total < 1 or not 0 <= n_success <= n_total:
        raise ValueError(f"need 0 <= n_success <= n_total and n_total >= 1, got {n_success}/{n_total}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = n_success / n_total
    denominator = 1.0 + z * z / n_total
    centre = (p + z * z / (2.0 * n_total)) / denominator
    half = z * np.sqrt(p * (1.0 - p) / n_total + z * z / (4.0 * n_total * n_total)) / denominator
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def diffusive_window(
    msd_A2,
    time_fs,
    min_span: float = 3.0,
    max_lag_fraction: float = 0.5,
    n_grid: int = 40,
    min_end_msd_A2: float = 0.0,
) -> DiffusiveWindow:
    """The lag window where MSD(t) is most diffusive: log-log slope of MSD vs t closest to 1.

    msd_A2, time_fs: [n_lags] from ``transport.mean_square_displacement`` (lag 0 at time 0 is
    skipped). Candidate window ends lie on a log-spaced grid of ``n_grid`` lags between the
    first lag and ``max_lag_fraction`` of the last one (longer lags average over few time
    origins and are noisy). Every window with end/start >= ``min_span`` (the minimum length, as a
    ratio of times) gets a straight-line fit of ln MSD vs ln t; the window whose slope is
    closest to 1 wins, the longer one on a tie. The ballistic start (slope 2) and a caged
    plateau (slope ~ 0) are thereby excluded. With ``min_end_msd_A2``, only windows ending at an
    MSD of at least that count (``analysis.runs`` asks for one hop squared, so that D is measured
    over hops, not over the vibrations between them). Fit D inside the returned window, and record it.
    """
    msd = np.asarray(msd_A2, dtype=float)
    t = np.asarray(time_fs, dtype=float)
    if msd.ndim != 1 or t.shape != msd.shape:
        raise ValueError(f"msd_A2 and time_fs must be 1-D of equal length, got {msd.shape}, {t.shape}")
    if len(t) < 2 or t[1] <= 0 or np.any(np.diff(t) <= 0):
        raise ValueError("time_fs must be strictly increasing with time_fs[1] > 0 (lag 0 at index 0)")
    if min_span <= 1.0 or not 0.0 < max_lag_fraction <= 1.0:
        raise ValueError("min_span must be > 1 and max_lag_fraction in (0, 1]")
    last = int(max_lag_fraction * (len(t) - 1))
    if last < 2 or t[last] / t[1] < min_span:
        raise ValueError(
            f"MSD too short for a diffusive window: lags 1..{last} span {t[max(last, 1)] / t[1]:.2g}x "
            f"in time, need >= {min_span}x"
        )
    lags = np.unique(np.geomspace(1, last, n_grid).round().astype(int))  # [n_candidates]
    if not np.all(np.isfinite(msd[1 : last + 1])) or np.any(msd[1 : last + 1] <= 0):
        raise ValueError("MSD must be finite and > 0 at every non-zero lag to take its logarithm")
    log_t, log_msd = np.log(t[1 : last + 1]), np.log(msd[1 : last + 1])  # [last], lag k at index k - 1
    # Prefix sums give the least-squares slope over any contiguous lag range [i, j] in O(1).
    sums = [np.concatenate([[0.0], np.cumsum(v)]) for v in (np.ones_like(log_t), log_t, log_msd, log_t**2, log_t * log_msd)]
    start, end = np.meshgrid(lags, lags, indexing="ij")
    valid = (end > start) & (t[end] >= min_span * t[start]) & (msd[end] >= min_end_msd_A2)
    if not valid.any():
        raise ValueError(f"no window of the MSD ends at {min_end_msd_A2:.3g} Å² or more")
    start, end = start[valid], end[valid]
    n, sx, sy, sxx, sxy = (s[end] - s[start - 1] for s in sums)
    slope = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    best = np.lexsort((-(t[end] / t[start]), np.abs(slope - 1.0)))[0]
    return DiffusiveWindow(
        start_fs=float(t[start[best]]), end_fs=float(t[end[best]]), loglog_slope=float(slope[best])
    )



@dataclass(frozen=True)
class Pooled:
    """Positive values pooled by inverse variance in their logarithm (:func:`pool_log`), with the check that the
    spread between them agrees with their own intervals."""

    value: float  # exp of the weighted mean of the logarithms
    low: float
    high: float
    n: int  # values with a finite interval, those pooled
    chi2_per_dof: float | None  # Σ w (ln x − mean)² / (n − 1): ~1 when the spread is what the intervals say; None from one
    p_value: float | None  # of that χ² with n − 1 degrees of freedom
    consistent: bool  # p_value >= 1 − confidence (always, from one value)


def pool_log(values, lows, highs, confidence: float = CONFIDENCE) -> Pooled | None:
    """Pool positive values [n] with intervals [lows, highs] (at ``confidence``) by inverse variance in ln x.

    Each interval gives the standard error of ln x, (ln high − ln low) / (2 z) (z the normal quantile); a value
    with no finite interval (low 0, high inf) carries no weight. χ² = Σ w (ln x − mean)² tests whether the
    spread between the values is what their intervals say (n − 1 degrees of freedom). When it is not (p below
    1 − confidence), the pooled interval is widened by the Birge ratio sqrt(χ² / (n − 1)), and ``consistent``
    is False. None when no value has a finite interval.
    """
    _check_confidence(confidence)
    x, lo, hi = (np.asarray(v, dtype=float).ravel() for v in (values, lows, highs))
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = (np.log(hi) - np.log(lo)) / (2.0 * z)
    kept = (x > 0) & np.isfinite(sd) & (sd > 0)
    if not kept.any():
        return None
    ln_x, weight = np.log(x[kept]), 1.0 / sd[kept] ** 2
    mean = float((weight * ln_x).sum() / weight.sum())
    error = float(1.0 / np.sqrt(weight.sum()))
    n = int(kept.sum())
    chi2_per_dof = p_value = None
    consistent = True
    if n > 1:
        chi2 = float((weight * (ln_x - mean) ** 2).sum())
        chi2_per_dof, p_value = chi2 / (n - 1), float(scipy.stats.chi2.sf(chi2, n - 1))
        consistent = p_value >= 1.0 - confidence
        if not consistent:
            error *= np.sqrt(chi2_per_dof)
    return Pooled(float(np.exp(mean)), float(np.exp(mean - z * error)), float(np.exp(mean + z * error)), n,
                  chi2_per_dof, p_value, consistent)
