"""The torch engine's Nosé–Hoover chains (mlff/md/thermostat.py) on their own, against ASE's thermostat
(``ase.md.nose_hoover_chain.NoseHooverChainThermostat``, what the ASE engine integrates with).

Both thermostats get the same targets, thermostat times and momenta, and between half steps the same
random kicks, so that they see the same kinetic-energy history as long as they agree: after every half
step the momenta and the chain variables must agree to rounding, over hundreds of half steps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.md.nose_hoover_chain import NoseHooverChainThermostat

from mlff.md.protocol import NOSE_HOOVER_CHAIN_LENGTH
from mlff.md.thermostat import NoseHooverChains
from records.units import ASE_TIME_PER_FS, BOLTZMANN_EV_K

N_ATOMS = 8
TEMPERATURES_K = (300.0, 900.0, 1500.0)
TDAMP_FS = (25.0, 100.0, 40.0)
HALF_DT = 1.0 * ASE_TIME_PER_FS  # of a 2 fs step
N_HALF_STEPS = 400
KICK_EV_A = 0.3  # the spread of the random forces between half steps
RELATIVE_TOLERANCE = 1e-12  # float64 rounding over the history (measured 3e-14), with a margin


def ase_thermostat(temperature_K: float, tdamp_fs: float, masses: np.ndarray) -> NoseHooverChainThermostat:
    """ASE's thermostat with our kB T: ASE's kB (CODATA 2014) differs from records.units' (SI 2019) in the
    seventh digit, so ASE gets the temperature that gives the same kB T."""
    return NoseHooverChainThermostat(
        num_atoms_global=N_ATOMS, masses=masses[:, None], temperature_K=temperature_K,
        tdamp=tdamp_fs * ASE_TIME_PER_FS, tchain=NOSE_HOOVER_CHAIN_LENGTH, tloop=1,
    )


def histories(device: torch.device | None, thermostatted: list[bool], ase_tdamp_factor: float = 1.0):
    """Momenta [n_half_steps, n_replicas, n_atoms, 3] and chain variables ``eta``, ``p_eta``
    [n_half_steps, n_replicas, chain] after every half step, ours and ASE's (ASE's thermostat times scaled
    by ``ase_tdamp_factor``); a replica not ``thermostatted`` gets delta 0 from us and no thermostat from ASE."""
    rng = np.random.default_rng(7)
    masses = rng.choice([6.94, 32.06, 30.97], size=N_ATOMS)  # [n_atoms] amu: Li, S, P
    # Start well below each target, so that the chains have work to do.
    momenta = np.stack([
        rng.normal(size=(N_ATOMS, 3)) * np.sqrt(0.2 * BOLTZMANN_EV_K * kelvin * masses)[:, None]
        for kelvin in TEMPERATURES_K
    ])  # [n_replicas, n_atoms, 3]
    kicks = rng.normal(scale=KICK_EV_A * HALF_DT, size=(N_HALF_STEPS, *momenta.shape))
    ours = NoseHooverChains(list(TEMPERATURES_K), [t * ASE_TIME_PER_FS for t in TDAMP_FS], N_ATOMS, device)
    theirs = [ase_thermostat(t, ase_tdamp_factor * tdamp, masses) for t, tdamp in zip(TEMPERATURES_K, TDAMP_FS)]
    delta = [HALF_DT if on else 0.0 for on in thermostatted]
    ours_p, theirs_p = torch.as_tensor(momenta), momenta.copy()
    inverse_masses = torch.as_tensor(1.0 / masses)[None, :, None]  # [1, n_atoms, 1]
    if device is not None:
        delta = torch.tensor(delta, dtype=torch.float64, device=device)
    record = {"ours": ([], [], []), "ase": ([], [], [])}
    for kick in kicks:
        twice_kinetic = (ours_p.square() * inverse_masses).sum(dim=(1, 2))  # [n_replicas]
        ours_p, _ = ours.half_step(ours_p, delta, twice_kinetic if device is not None else twice_kinetic.tolist())
        theirs_p = np.stack([
            thermostat.integrate_nhc(p.copy(), HALF_DT) if on else p
            for thermostat, p, on in zip(theirs, theirs_p, thermostatted)
        ])
        for name, p, (eta, p_eta) in [("ours", ours_p.numpy(), ours.state()),
                                       ("ase", theirs_p, ([t._eta for t in theirs], [t._p_eta for t in theirs]))]:
            for column, value in zip(record[name], (p, eta, p_eta)):
                column.append(np.array(value))
        ours_p, theirs_p = ours_p + torch.as_tensor(kick), theirs_p + kick
    return {name: [np.stack(column) for column in columns] for name, columns in record.items()}


def worst_disagreement(ours: np.ndarray, theirs: np.ndarray) -> float:
    """The largest difference of ``ours`` from ``theirs`` [n_half_steps, ...], each value relative to the largest
    magnitude that value reaches over the history."""
    return float((np.abs(ours - theirs) / np.abs(theirs).max(axis=0)).max())


@pytest.mark.parametrize("device", [None, torch.device("cpu")], ids=["host", "tensors"])
def test_chains_follow_ase_over_many_half_steps(device):
    """Momenta and the chains' eta, p_eta match ASE's after each of 400 half steps, for replicas of different
    targets and thermostat times advanced together; a replica with delta 0 is left untouched."""
    thermostatted = [True, False, True]
    record = histories(device, thermostatted)
    (ours_p, ours_eta, ours_p_eta), (ase_p, ase_eta, ase_p_eta) = record["ours"], record["ase"]
    on = np.array(thermostatted)
    assert worst_disagreement(ours_p, ase_p) < RELATIVE_TOLERANCE
    for ours, theirs in [(ours_eta, ase_eta), (ours_p_eta, ase_p_eta)]:
        assert worst_disagreement(ours[:, on], theirs[:, on]) < RELATIVE_TOLERANCE
        assert np.all(ours[:, ~on] == 0.0)  # never advanced
    # The chains did work: the thermostatted replicas' first thermostat variable moved far from zero.
    assert np.all(np.abs(ase_eta[-1, on, 0]) > 0.1)


def test_a_different_thermostat_mass_is_seen():
    """The comparison has teeth: ASE with a thermostat time 1 % longer (thermostat masses 2 % larger)
    departs from our chains by far more than the tolerance."""
    record = histories(None, [True, True, True], ase_tdamp_factor=1.01)
    assert worst_disagreement(record["ours"][0], record["ase"][0]) > 1e6 * RELATIVE_TOLERANCE
