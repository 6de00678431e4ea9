"""The ASE engine: one replica, forces from any ASE calculator, ASE's Nosé–Hoover chain in production.

The ramp is our velocity-Verlet step (``velocity_verlet_step``) with velocities rescaled after it;
production is ``ase.md.nose_hoover_chain.NoseHooverChainNVT`` (chain length 3, tdamp =
``thermostat_time_fs``). Its state is the positions and momenta, and in production the chain's
variables, which ASE keeps private (``_thermostat._eta``, ``_p_eta``).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from ase.md.nose_hoover_chain import NoseHooverChainNVT

from mlff.md.engine import Engine, Observation
from mlff.md.protocol import NOSE_HOOVER_CHAIN_LENGTH, MDProtocol, min_pair_distance_A, rescale_to_temperature
from records.units import ASE_TIME_PER_FS


def velocity_verlet_step(atoms: Atoms, timestep_fs: float, forces_eV_A: np.ndarray) -> np.ndarray:
    """Advance ``atoms`` by one velocity-Verlet step (NVE). ``forces_eV_A`` are the forces at the
    current positions; returns the forces at the new positions for the next step."""
    dt = timestep_fs * ASE_TIME_PER_FS
    masses = atoms.get_masses()[:, None]  # [n_atoms, 1]
    half_kicked = atoms.get_momenta() + 0.5 * dt * forces_eV_A  # [n_atoms, 3]
    atoms.set_positions(atoms.get_positions() + dt * half_kicked / masses)
    atoms.set_momenta(half_kicked)
    new_forces = atoms.get_forces()  # [n_atoms, 3]
    atoms.set_momenta(half_kicked + 0.5 * dt * new_forces)
    return new_forces


class AseEngine(Engine):
    """One replica of ``atoms`` with ``calculator``'s forces."""

    name = "ase"

    def __init__(self, atoms: Atoms, calculator: BaseCalculator):
        super().__init__(atoms, type(calculator).__name__)
        self._calculator = calculator
        self.dynamics = None  # the Nosé–Hoover chain, from the first production step on
        self._chain = None  # saved chain variables (eta, p_eta) to give it when it starts

    @classmethod
    def from_model(cls, model, atoms: Atoms) -> AseEngine:
        from mlff.calculator import MLFFCalculator

        return cls(atoms, MLFFCalculator(model))

    def _begin(self, protocols: list[MDProtocol], positions_A: np.ndarray, momenta: np.ndarray) -> None:
        (self.protocol,) = protocols
        self.replica = self.atoms.copy()
        self.replica.calc = self._calculator
        self.replica.set_positions(positions_A)
        self.replica.set_momenta(momenta)
        self.forces_eV_A = self.replica.get_forces()  # [n_atoms, 3]

    def start(self, protocols, momenta) -> None:
        self._begin(protocols, self.atoms.positions, momenta[0])

    def restore(self, protocols, state) -> None:
        self._begin(protocols, state["positions_A"], state["momenta"])
        if "chain_eta" in state:
            self._chain = (state["chain_eta"].copy(), state["chain_p_eta"].copy())

    def state(self) -> dict[str, np.ndarray]:
        saved = {"positions_A": self.replica.positions, "momenta": self.replica.get_momenta()}
        if self.dynamics is not None:
            saved.update(chain_eta=self.dynamics._thermostat._eta, chain_p_eta=self.dynamics._thermostat._p_eta)
        return saved

    def advance(self, ramp_targets_K: list[float | None]) -> Observation:
        (target_K,) = ramp_targets_K
        atoms = self.replica
        if target_K is not None:
            self.forces_eV_A = velocity_verlet_step(atoms, self.protocol.timestep_fs, self.forces_eV_A)
            if np.isfinite(self.forces_eV_A).all():
                rescale_to_temperature(atoms, target_K)
        else:
            if self.dynamics is None:
                self.dynamics = NoseHooverChainNVT(
                    atoms,
                    timestep=self.protocol.timestep_fs * ASE_TIME_PER_FS,
                    temperature_K=self.protocol.temperature_K,
                    tdamp=self.protocol.thermostat_time_fs * ASE_TIME_PER_FS,
                    tchain=NOSE_HOOVER_CHAIN_LENGTH,
                )
                if self._chain is not None:
                    self.dynamics._thermostat._eta, self.dynamics._thermostat._p_eta = self._chain
            self.dynamics.step()
            self.forces_eV_A = atoms.get_forces()
        energy_eV = atoms.get_potential_energy()
        finite = bool(np.isfinite(energy_eV) and np.isfinite(self.forces_eV_A).all() and np.isfinite(atoms.positions).all())
        return Observation([energy_eV], [atoms.get_temperature()], [finite])

    def shortest_pair_A(self, cutoff_A: float) -> list[float]:
        return [min_pair_distance_A(self.replica, cutoff_A)]

    def frames(self, with_forces: bool) -> tuple[np.ndarray, np.ndarray | None]:
        return self.replica.positions[None], self.forces_eV_A[None] if with_forces else None


ENGINE = AseEngine
