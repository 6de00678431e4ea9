"""Verdicts over runs: a known Ea recovered only from enough diffusive temperatures, and survival curves."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.aggregation import RunVerdict, summarise_material, summarise_temperature, survival
from records.units import BOLTZMANN_EV_K

EA_EV, D0_CM2_S = 0.25, 1e-3


def _run(temperature_K, d_cm2_s=None, *, stability="stable", diffusive=True, collapse_ps=None, length_ps=10.0):
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
