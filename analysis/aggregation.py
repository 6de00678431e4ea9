"""From runs to verdicts: the per-temperature and per-material summaries of one source on one material.

Pure functions over the per-run numbers (``analysis.runs``):

* the fractions of runs consistent with the reference (the noise-aware verdict, with Wilson intervals)
  and stable by the paper's threshold;
* D and σ per temperature: means over the runs that diffused and did not fuse or stop early, with
  bootstrap intervals over repetitions (``analysis.statistics``) when there are at least two values
  (a spread of one value is no interval); and the runs pooled by their own intervals (inverse variance in
  ln D, ``statistics.pool_log``), with a χ² check that the spread between them is what their intervals say;
* the Arrhenius fit of D(T), extrapolated to the target temperature: only when at least
  ``MIN_ARRHENIUS_TEMPERATURES`` temperatures have a diffusive D and the activation energy is
  positive; otherwise Ea and σ(target) are None and ``arrhenius_reason`` says why. With pooled D at every
  temperature the fit is weighted in ln D and Ea, the prefactor and σ(target) get intervals from its
  covariance (``transport.fit_arrhenius_weighted``); the bootstrap over repetitions is kept as a check where
  every temperature has at least ``MIN_BOOTSTRAP_RUNS`` runs. Without pooled D (runs without intervals) the
  mean D(T) is fitted unweighted and the bootstrap gives the intervals;
* the survival curve: the fraction of runs still valid (not collapsed, ``analysis.runs``) against
  time, and its normalised area, the stability score (1: every run valid to its end).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from analysis.statistics import (
    CONFIDENCE,
    Estimate,
    Pooled,
    bootstrap_arrhenius,
    bootstrap_mean,
    pool_log,
    wilson_interval,
)
from analysis.transport import conductivity_at_mS_cm, conductivity_mS_cm, fit_arrhenius_weighted

MIN_ARRHENIUS_TEMPERATURES = 3
MIN_BOOTSTRAP_RUNS = 3  # runs per temperature for the bootstrap check of the weighted fit
SURVIVAL_POINTS = 101  # times of the survival curve, from 0 to the longest run


@dataclass(frozen=True)
class RunVerdict:
    """What aggregation needs of one run."""

    temperature_K: float
    stability: str  # analysis.stability.STABILITY_CLASSES
    rdf_mae: float | None
    diffusive: bool
    diffusivity_cm2_s: float | None  # None unless the run diffused
    conductivity_mS_cm: float | None
    analysed_ps: float
    collapse_ps: float | None  # since the start of production; None: valid to the end
    length_ps: float  # the production time the run was meant to cover
    diffusivity_low_cm2_s: float | None = None  # D's 95 % interval, of a run that diffused
    diffusivity_high_cm2_s: float | None = None
    paper_stable: bool | None = None  # the paper's verdict (RDF MAE below its threshold); None without a reference

    @property
    def counts_for_transport(self) -> bool:
        """Diffused, and neither fused nor stopped early."""
        return self.diffusive and self.stability != "atom_fusion" and self.diffusivity_cm2_s is not None


@dataclass(frozen=True)
class TemperatureSummary:
    """The runs of one source on one material at one temperature."""

    temperature_K: float
    n_runs: int
    n_consistent: int
    n_diffusive: int  # that count for D and σ
    consistent_fraction: float  # of runs classed consistent with the reference (analysis.rdf_noise)
    consistent_interval: tuple[float, float]  # its Wilson 95 % interval
    paper_stable_fraction: float | None  # of runs stable by the paper's threshold; None without a reference
    rdf_mae_mean: float | None
    diffusivity_cm2_s: Estimate | None  # mean over the runs that count, bootstrap 95 % interval (NaN from one)
    diffusivity_cm2_s_std: float | None
    conductivity_mS_cm: Estimate | None
    diffusivity_pooled_cm2_s: Pooled | None = None  # the runs that count, by their own intervals
    conductivity_pooled_mS_cm: Pooled | None = None  # the same, as σ at this temperature


@dataclass(frozen=True)
class MaterialSummary:
    """All runs of one source on one material: stability, survival and the Arrhenius extrapolation of D."""

    temperatures_K: list[float]
    consistent_fraction: float
    paper_stable_fraction: float | None
    rdf_mae_mean: float | None
    activation_energy_eV: Estimate | None  # of the mean D(T); interval from the bootstrap over repetitions
    arrhenius_prefactor_cm2_s: float | None
    conductivity_target_mS_cm: Estimate | None  # σ at the target temperature, same fit
    arrhenius_reason: str | None  # why there is no Ea and σ(target), or None
    n_carriers: int
    volume_A3: float
    survival_time_ps: list[float]
    survival_fraction: list[float]
    stability_score: float
    prefactor_interval_cm2_s: tuple[float, float] | None = None  # from the weighted fit's covariance
    arrhenius_chi2_per_dof: float | None = None  # of the weighted fit; None with 2 points or unweighted
    arrhenius_widened: bool = False  # the fit's intervals were widened by its Birge ratio
    activation_energy_bootstrap_eV: tuple[float, float] | None = None  # the check, where there are enough runs
    conductivity_target_bootstrap_mS_cm: tuple[float, float] | None = None


def _mean(values: Sequence[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _estimate(values: Sequence[float]) -> Estimate | None:
    """The mean with its bootstrap interval; from one value no interval (NaN ends); None from none."""
    if not values:
        return None
    if len(values) == 1:
        return Estimate(float(values[0]), np.nan, np.nan, 1)
    return bootstrap_mean(values)


def _paper_stable_fraction(runs: Sequence[RunVerdict]) -> float | None:
    """The fraction of the runs with a paper's verdict that are stable by it; None when none has one."""
    verdicts = [run.paper_stable for run in runs if run.paper_stable is not None]
    return sum(verdicts) / len(verdicts) if verdicts else None


def summarise_temperature(runs: Sequence[RunVerdict]) -> TemperatureSummary:
    """The runs at one temperature (at least one)."""
    n_consistent = sum(run.stability == "consistent" for run in runs)
    counted = [run for run in runs if run.counts_for_transport]
    diffusivities = [run.diffusivity_cm2_s for run in counted]
    conductivities = [run.conductivity_mS_cm for run in counted if run.conductivity_mS_cm is not None]
    bounded = [run for run in counted if run.diffusivity_low_cm2_s is not None and run.diffusivity_high_cm2_s is not None]
    pooled = pool_log(*zip(*[(run.diffusivity_cm2_s, run.diffusivity_low_cm2_s, run.diffusivity_high_cm2_s)
                             for run in bounded], strict=True)) if bounded else None
    per_d = [run.conductivity_mS_cm / run.diffusivity_cm2_s for run in bounded
             if run.conductivity_mS_cm is not None and run.diffusivity_cm2_s > 0]  # σ/D: one number per T
    pooled_sigma = None if pooled is None or not per_d else Pooled(
        pooled.value * per_d[0], pooled.low * per_d[0], pooled.high * per_d[0], pooled.n, pooled.chi2_per_dof,
        pooled.p_value, pooled.consistent)
    return TemperatureSummary(
        temperature_K=runs[0].temperature_K,
        n_runs=len(runs),
        n_consistent=n_consistent,
        n_diffusive=len(counted),
        consistent_fraction=n_consistent / len(runs),
        consistent_interval=wilson_interval(n_consistent, len(runs)),
        paper_stable_fraction=_paper_stable_fraction(runs),
        rdf_mae_mean=_mean([run.rdf_mae for run in runs]),
        diffusivity_cm2_s=_estimate(diffusivities),
        diffusivity_cm2_s_std=float(np.std(diffusivities)) if diffusivities else None,
        conductivity_mS_cm=_estimate(conductivities),
        diffusivity_pooled_cm2_s=pooled,
        conductivity_pooled_mS_cm=pooled_sigma,
    )


def survival(runs: Sequence[RunVerdict]) -> tuple[list[float], list[float], float]:
    """The survival curve (times in ps [SURVIVAL_POINTS], fraction of runs still valid) and its normalised
    area (the stability score). A run is valid until its collapse, and to its end when it never collapsed."""
    end_ps = max(run.length_ps for run in runs)
    times = np.linspace(0.0, end_ps, SURVIVAL_POINTS)
    collapsed = np.array([run.collapse_ps is not None for run in runs])
    until = np.array([run.length_ps if run.collapse_ps is None else max(run.collapse_ps, 0.0) for run in runs])
    # A collapsed run is valid before its collapse; one that never collapsed, to its end inclusive.
    valid = np.where(collapsed, until > times[:, None], until >= times[:, None])  # [SURVIVAL_POINTS, n_runs]
    fraction = valid.mean(axis=1)
    score = float(np.trapezoid(fraction, times) / end_ps) if end_ps > 0 else 1.0
    return times.tolist(), fraction.tolist(), score


@dataclass(frozen=True)
class _Arrhenius:
    activation: Estimate | None = None
    prefactor_cm2_s: float | None = None
    sigma: Estimate | None = None
    reason: str | None = None
    prefactor_interval_cm2_s: tuple[float, float] | None = None
    chi2_per_dof: float | None = None
    widened: bool = False
    activation_bootstrap: tuple[float, float] | None = None
    sigma_bootstrap: tuple[float, float] | None = None


def _arrhenius(runs, temperatures, target_temperature_K, n_carriers, volume_A3) -> _Arrhenius:
    """The fit when it may be made (see the module docstring), or why not."""
    points = [(t.temperature_K, t.diffusivity_cm2_s.value) for t in temperatures
              if t.diffusivity_cm2_s is not None and t.diffusivity_cm2_s.value > 0]
    if len(points) < MIN_ARRHENIUS_TEMPERATURES:
        if not points:
            analysed_ps = max((run.analysed_ps for run in runs), default=0.0)
            return _Arrhenius(reason=f"not diffusive at {analysed_ps:.3g} ps")
        return _Arrhenius(reason=f"{len(points)} of {len(temperatures)} temperatures diffusive, "
                                 f"{MIN_ARRHENIUS_TEMPERATURES} needed")
    sigma_value, fit = conductivity_at_mS_cm(*zip(*points, strict=True), target_temperature_K, n_carriers, volume_A3)
    pooled = [t.diffusivity_pooled_cm2_s for t in temperatures if t.temperature_K in dict(points)]
    z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)
    weighted = None
    if all(p is not None for p in pooled):
        errors = [(np.log(p.high) - np.log(p.low)) / (2 * z) for p in pooled]
        weighted = fit_arrhenius_weighted([t for t, _ in points], [p.value for p in pooled], errors)
    ea = weighted.activation_energy_eV if weighted else fit.activation_energy_eV
    if not ea > 0:
        return _Arrhenius(reason=f"Ea = {ea:.3g} eV is not positive")
    per_d = conductivity_mS_cm(1.0, n_carriers, volume_A3, target_temperature_K)
    result = _Arrhenius(Estimate(ea, np.nan, np.nan, len(runs)), fit.prefactor,
                        Estimate(sigma_value, np.nan, np.nan, len(runs)))
    if weighted is not None:
        ln_d, ln_sd = weighted.ln_value_at(target_temperature_K)
        ln_d0, ln_d0_sd = weighted.intercept, float(np.sqrt(weighted.covariance[1][1]))
        ea_sd = weighted.activation_energy_sd_eV
        result = _Arrhenius(
            Estimate(ea, ea - z * ea_sd, ea + z * ea_sd, len(runs)), float(np.exp(ln_d0)),
            Estimate(float(np.exp(ln_d)) * per_d, float(np.exp(ln_d - z * ln_sd)) * per_d,
                     float(np.exp(ln_d + z * ln_sd)) * per_d, len(runs)),
            prefactor_interval_cm2_s=(float(np.exp(ln_d0 - z * ln_d0_sd)), float(np.exp(ln_d0 + z * ln_d0_sd))),
            chi2_per_dof=weighted.chi2_per_dof, widened=weighted.widened)
    per_temperature: dict[float, list[float]] = {}
    for run in runs:
        if run.counts_for_transport and run.temperature_K in dict(points):
            per_temperature.setdefault(run.temperature_K, []).append(run.diffusivity_cm2_s)
    enough = MIN_BOOTSTRAP_RUNS if weighted is not None else 2  # unweighted: the bootstrap is the interval
    if all(len(values) >= enough for values in per_temperature.values()):  # else the resamples show little spread
        try:
            bootstrap = bootstrap_arrhenius(per_temperature, target_temperature_K, n_carriers, volume_A3)
        except ValueError:  # a resample with no positive mean D at some temperature
            bootstrap = None
        if bootstrap is not None:
            e, c = bootstrap.activation_energy_eV, bootstrap.conductivity_target_mS_cm
            if weighted is None:
                result = _Arrhenius(Estimate(ea, e.low, e.high, e.n), fit.prefactor,
                                    Estimate(sigma_value, c.low, c.high, c.n))
            result = _Arrhenius(**{**result.__dict__, "activation_bootstrap": (e.low, e.high),
                                   "sigma_bootstrap": (c.low, c.high)})
    return result


def summarise_material(
    runs: Sequence[RunVerdict], temperatures: Sequence[TemperatureSummary], target_temperature_K: float,
    n_carriers: int, volume_A3: float,
) -> MaterialSummary:
    """All runs and their per-temperature summaries."""
    fit = _arrhenius(runs, temperatures, target_temperature_K, n_carriers, volume_A3)
    times, fraction, score = survival(runs)
    return MaterialSummary(
        temperatures_K=[t.temperature_K for t in temperatures],
        consistent_fraction=sum(run.stability == "consistent" for run in runs) / len(runs),
        paper_stable_fraction=_paper_stable_fraction(runs),
        rdf_mae_mean=_mean([run.rdf_mae for run in runs]),
        activation_energy_eV=fit.activation,
        arrhenius_prefactor_cm2_s=fit.prefactor_cm2_s,
        conductivity_target_mS_cm=fit.sigma,
        arrhenius_reason=fit.reason,
        n_carriers=n_carriers,
        volume_A3=volume_A3,
        survival_time_ps=times,
        survival_fraction=fraction,
        stability_score=score,
        prefactor_interval_cm2_s=fit.prefactor_interval_cm2_s,
        arrhenius_chi2_per_dof=fit.chi2_per_dof,
        arrhenius_widened=fit.widened,
        activation_energy_bootstrap_eV=fit.activation_bootstrap,
        conductivity_target_bootstrap_mS_cm=fit.sigma_bootstrap,
    )
