"""From runs to verdicts: the per-temperature and per-material summaries of one source on one material.

Pure functions over the per-run numbers (``analysis.runs``): stable fractions with Wilson intervals,
means with bootstrap intervals over repetitions (``analysis.statistics``), and the Arrhenius fit of
the mean D(T) extrapolated to the target temperature, with its bootstrap intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis.statistics import Estimate, bootstrap_arrhenius, bootstrap_mean, wilson_interval
from analysis.transport import conductivity_at_mS_cm


@dataclass(frozen=True)
class RunVerdict:
    """What aggregation needs of one run."""

    temperature_K: float
    stability: str  # analysis.stability.STABILITY_CLASSES
    rdf_mae: float | None
    diffusivity_cm2_s: float | None
    conductivity_mS_cm: float | None


@dataclass(frozen=True)
class TemperatureSummary:
    """The runs of one source on one material at one temperature."""

    temperature_K: float
    n_runs: int
    n_stable: int
    stable_fraction: float
    stable_interval: tuple[float, float]  # Wilson 95 % interval of the stable fraction
    rdf_mae_mean: float | None
    diffusivity_cm2_s: Estimate | None  # mean over the runs with a D, bootstrap 95 % interval
    diffusivity_cm2_s_std: float | None
    conductivity_mS_cm: Estimate | None


@dataclass(frozen=True)
class MaterialSummary:
    """All runs of one source on one material: the stable fraction and the Arrhenius extrapolation of D."""

    temperatures_K: list[float]
    stable_fraction: float
    rdf_mae_mean: float | None
    activation_energy_eV: Estimate | None  # of the mean D(T); interval from the bootstrap over repetitions
    arrhenius_prefactor_cm2_s: float | None
    conductivity_target_mS_cm: Estimate | None  # σ at the target temperature, same fit
    n_carriers: int
    volume_A3: float


def _mean(values: Sequence[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarise_temperature(runs: Sequence[RunVerdict]) -> TemperatureSummary:
    """The runs at one temperature (at least one)."""
    n_stable = sum(run.stability == "stable" for run in runs)
    diffusivities = [run.diffusivity_cm2_s for run in runs if run.diffusivity_cm2_s is not None]
    conductivities = [run.conductivity_mS_cm for run in runs if run.conductivity_mS_cm is not None]
    return TemperatureSummary(
        temperature_K=runs[0].temperature_K,
        n_runs=len(runs),
        n_stable=n_stable,
        stable_fraction=n_stable / len(runs),
        stable_interval=wilson_interval(n_stable, len(runs)),
        rdf_mae_mean=_mean([run.rdf_mae for run in runs]),
        diffusivity_cm2_s=bootstrap_mean(diffusivities) if diffusivities else None,
        diffusivity_cm2_s_std=float(np.std(diffusivities)) if diffusivities else None,
        conductivity_mS_cm=bootstrap_mean(conductivities) if conductivities else None,
    )


def summarise_material(
    runs: Sequence[RunVerdict], temperatures: Sequence[TemperatureSummary], target_temperature_K: float,
    n_carriers: int, volume_A3: float,
) -> MaterialSummary:
    """All runs and their per-temperature summaries. Ea and σ(target) come from the Arrhenius fit of the
    mean D at the temperatures where it is positive (at least two); their intervals resample the
    repetitions at every temperature with a D (``statistics.bootstrap_arrhenius``), when that fit exists."""
    points = [(t.temperature_K, t.diffusivity_cm2_s.value) for t in temperatures
              if t.diffusivity_cm2_s is not None and t.diffusivity_cm2_s.value > 0]
    activation = prefactor = sigma = None
    if len(points) >= 2:
        sigma_value, fit = conductivity_at_mS_cm(*zip(*points, strict=True), target_temperature_K, n_carriers, volume_A3)
        prefactor = fit.prefactor
        activation = Estimate(fit.activation_energy_eV, np.nan, np.nan, n=len(runs))
        sigma = Estimate(sigma_value, np.nan, np.nan, n=len(runs))
        per_temperature: dict[float, list[float]] = {}
        for run in runs:
            if run.diffusivity_cm2_s is not None:
                per_temperature.setdefault(run.temperature_K, []).append(run.diffusivity_cm2_s)
        try:
            bootstrap = bootstrap_arrhenius(per_temperature, target_temperature_K, n_carriers, volume_A3)
        except ValueError:  # a resample with no positive mean D at some temperature
            bootstrap = None
        if bootstrap is not None:
            e, c = bootstrap.activation_energy_eV, bootstrap.conductivity_target_mS_cm
            activation = Estimate(activation.value, e.low, e.high, e.n)
            sigma = Estimate(sigma.value, c.low, c.high, c.n)
    return MaterialSummary(
        temperatures_K=[t.temperature_K for t in temperatures],
        stable_fraction=sum(run.stability == "stable" for run in runs) / len(runs),
        rdf_mae_mean=_mean([run.rdf_mae for run in runs]),
        activation_energy_eV=activation,
        arrhenius_prefactor_cm2_s=prefactor,
        conductivity_target_mS_cm=sigma,
        n_carriers=n_carriers,
        volume_A3=volume_A3,
    )
