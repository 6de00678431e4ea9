"""From runs to verdicts: the per-temperature and per-material summaries of one source on one material.

Pure functions over the per-run numbers (``analysis.runs``):

* stable fractions with Wilson intervals;
* D and σ per temperature: means over the runs that diffused and did not fuse or stop early, with
  bootstrap intervals over repetitions (``analysis.statistics``) when there are at least two values
  (a spread of one value is no interval);
* the Arrhenius fit of the mean D(T), extrapolated to the target temperature: only when at least
  ``MIN_ARRHENIUS_TEMPERATURES`` temperatures have a diffusive D and the activation energy is
  positive; otherwise Ea and σ(target) are None and ``arrhenius_reason`` says why;
* the survival curve: the fraction of runs still valid (not collapsed, ``analysis.runs``) against
  time, and its normalised area, the stability score (1: every run valid to its end).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis.statistics import Estimate, bootstrap_arrhenius, bootstrap_mean, wilson_interval
from analysis.transport import conductivity_at_mS_cm

MIN_ARRHENIUS_TEMPERATURES = 3
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

    @property
    def counts_for_transport(self) -> bool:
        """Diffused, and neither fused nor stopped early."""
        return self.diffusive and self.stability != "atom_fusion" and self.diffusivity_cm2_s is not None


@dataclass(frozen=True)
class TemperatureSummary:
    """The runs of one source on one material at one temperature."""

    temperature_K: float
    n_runs: int
    n_stable: int
    n_diffusive: int  # that count for D and σ
    stable_fraction: float
    stable_interval: tuple[float, float]  # Wilson 95 % interval of the stable fraction
    rdf_mae_mean: float | None
    diffusivity_cm2_s: Estimate | None  # mean over the runs that count, bootstrap 95 % interval (NaN from one)
    diffusivity_cm2_s_std: float | None
    conductivity_mS_cm: Estimate | None


@dataclass(frozen=True)
class MaterialSummary:
    """All runs of one source on one material: stability, survival and the Arrhenius extrapolation of D."""

    temperatures_K: list[float]
    stable_fraction: float
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


def summarise_temperature(runs: Sequence[RunVerdict]) -> TemperatureSummary:
    """The runs at one temperature (at least one)."""
    n_stable = sum(run.stability == "stable" for run in runs)
    counted = [run for run in runs if run.counts_for_transport]
    diffusivities = [run.diffusivity_cm2_s for run in counted]
    conductivities = [run.conductivity_mS_cm for run in counted if run.conductivity_mS_cm is not None]
    return TemperatureSummary(
        temperature_K=runs[0].temperature_K,
        n_runs=len(runs),
        n_stable=n_stable,
        n_diffusive=len(counted),
        stable_fraction=n_stable / len(runs),
        stable_interval=wilson_interval(n_stable, len(runs)),
        rdf_mae_mean=_mean([run.rdf_mae for run in runs]),
        diffusivity_cm2_s=_estimate(diffusivities),
        diffusivity_cm2_s_std=float(np.std(diffusivities)) if diffusivities else None,
        conductivity_mS_cm=_estimate(conductivities),
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


def _arrhenius(runs, temperatures, target_temperature_K, n_carriers, volume_A3):
    """(Ea, prefactor, σ(target), reason): the fit when it may be made (see the module docstring)."""
    points = [(t.temperature_K, t.diffusivity_cm2_s.value) for t in temperatures
              if t.diffusivity_cm2_s is not None and t.diffusivity_cm2_s.value > 0]
    if len(points) < MIN_ARRHENIUS_TEMPERATURES:
        if not points:
            analysed_ps = max((run.analysed_ps for run in runs), default=0.0)
            return None, None, None, f"not diffusive at {analysed_ps:.3g} ps"
        return None, None, None, f"{len(points)} of {len(temperatures)} temperatures diffusive, " \
                                 f"{MIN_ARRHENIUS_TEMPERATURES} needed"
    sigma_value, fit = conductivity_at_mS_cm(*zip(*points, strict=True), target_temperature_K, n_carriers, volume_A3)
    if not fit.activation_energy_eV > 0:
        return None, None, None, f"Ea = {fit.activation_energy_eV:.3g} eV is not positive"
    per_temperature: dict[float, list[float]] = {}
    for run in runs:
        if run.counts_for_transport and run.temperature_K in dict(points):
            per_temperature.setdefault(run.temperature_K, []).append(run.diffusivity_cm2_s)
    activation = Estimate(fit.activation_energy_eV, np.nan, np.nan, len(runs))
    sigma = Estimate(sigma_value, np.nan, np.nan, len(runs))
    if all(len(values) >= 2 for values in per_temperature.values()):  # else the resamples have no spread to show
        try:
            bootstrap = bootstrap_arrhenius(per_temperature, target_temperature_K, n_carriers, volume_A3)
        except ValueError:  # a resample with no positive mean D at some temperature
            bootstrap = None
        if bootstrap is not None:
            e, c = bootstrap.activation_energy_eV, bootstrap.conductivity_target_mS_cm
            activation = Estimate(activation.value, e.low, e.high, e.n)
            sigma = Estimate(sigma.value, c.low, c.high, c.n)
    return activation, fit.prefactor, sigma, None


def summarise_material(
    runs: Sequence[RunVerdict], temperatures: Sequence[TemperatureSummary], target_temperature_K: float,
    n_carriers: int, volume_A3: float,
) -> MaterialSummary:
    """All runs and their per-temperature summaries."""
    activation, prefactor, sigma, reason = _arrhenius(runs, temperatures, target_temperature_K, n_carriers, volume_A3)
    times, fraction, score = survival(runs)
    return MaterialSummary(
        temperatures_K=[t.temperature_K for t in temperatures],
        stable_fraction=sum(run.stability == "stable" for run in runs) / len(runs),
        rdf_mae_mean=_mean([run.rdf_mae for run in runs]),
        activation_energy_eV=activation,
        arrhenius_prefactor_cm2_s=prefactor,
        conductivity_target_mS_cm=sigma,
        arrhenius_reason=reason,
        n_carriers=n_carriers,
        volume_A3=volume_A3,
        survival_time_ps=times,
        survival_fraction=fraction,
        stability_score=score,
    )
