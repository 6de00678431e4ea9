"""The MD protocol every engine follows, its starting velocities, its instability checks and its run summary.

Protocol (Duangdangchote et al., Digital Discovery 2024): Maxwell–Boltzmann velocities at
``ramp_start_K``; velocity-Verlet steps whose velocities are rescaled after every step to a target
that rises linearly from ``ramp_start_K`` to ``temperature_K`` over ``ramp_ps``; then
``production_ps`` of Nosé–Hoover-chain NVT (chain length 3). Only production frames are written.

A physically unstable run (non-finite numbers, fused atoms, runaway temperature) is a result, not an
error: it stops, and its summary says why and when.

Engines work in ASE's units (Å, eV, amu; time in ASE units; conversions in ``records.units``), so
momenta and thermostat variables mean the same in every engine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from vesin import NeighborList

from records.units import BOLTZMANN_EV_K, FS_PER_NS, FS_PER_PS, S_PER_DAY

NOSE_HOOVER_CHAIN_LENGTH = 3
CHECK_EVERY_STEPS = 10  # fusion and temperature checks at least this often (non-finite numbers: every step)
DEFAULT_MAX_TEMPERATURE_FACTOR = 10.0  # default blow-up threshold, times the target temperature
STEP_COUNT_TOLERANCE = 1e-6  # durations must be this close to a whole number of timesteps
PAPER_DISCARD_PS = 15.0  # production time the paper discards as equilibration before analysis
CHECKPOINT_EVERY_STEPS = 100  # default cadence of MD checkpoints
INSTABILITIES = ("non_finite", "atom_fusion", "temperature_blowup")


@dataclass(frozen=True)
class MDProtocol:
    """Ramp-then-NVT MD protocol.

    ``thermostat_time_fs`` is the Nosé–Hoover relaxation time (ASE's ``tdamp``; the first
    thermostat mass is Q = 3 N k_B T tdamp²). 100 fs (50 steps at 2 fs) lets the thermostat
    correct temperature drifts within a few hundred fs, well inside the 15 ps discarded before
    analysis, while staying slower than the Li–S vibrational periods so it does not distort the
    dynamics being measured.
    """

    temperature_K: float
    timestep_fs: float = 2.0
    ramp_start_K: float = 100.0
    ramp_ps: float = 5.0
    production_ps: float = 50.0
    save_every_steps: int = 1
    thermostat_time_fs: float = 100.0

    def __post_init__(self):
        for name in ("temperature_K", "timestep_fs", "ramp_start_K", "production_ps", "thermostat_time_fs"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ValueError(f"MDProtocol.{name} must be a positive number, got {value!r}")
        if not (isinstance(self.ramp_ps, (int, float)) and np.isfinite(self.ramp_ps) and self.ramp_ps >= 0):
            raise ValueError(f"MDProtocol.ramp_ps must be a number >= 0, got {self.ramp_ps!r}")
        if not (isinstance(self.save_every_steps, int) and self.save_every_steps >= 1):
            raise ValueError(f"MDProtocol.save_every_steps must be an integer >= 1, got {self.save_every_steps!r}")
        for name in ("ramp_ps", "production_ps"):
            n_steps = getattr(self, name) * FS_PER_PS / self.timestep_fs
            if abs(n_steps - round(n_steps)) > STEP_COUNT_TOLERANCE:
                raise ValueError(
                    f"MDProtocol.{name}={getattr(self, name)} is not a whole number of "
                    f"{self.timestep_fs} fs timesteps ({n_steps:.6g})"
                )
        if self.n_production_steps < self.save_every_steps:
            raise ValueError(
                f"MDProtocol: production ({self.n_production_steps} steps) is shorter than "
                f"save_every_steps={self.save_every_steps}; no frame would be written"
            )

    @property
    def n_ramp_steps(self) -> int:
        return round(self.ramp_ps * FS_PER_PS / self.timestep_fs)

    @property
    def n_production_steps(self) -> int:
        return round(self.production_ps * FS_PER_PS / self.timestep_fs)

    @property
    def n_steps(self) -> int:
        return self.n_ramp_steps + self.n_production_steps

    def ramp_target_K(self, step: int) -> float | None:
        """The temperature velocities are rescaled to after ``step`` (counted from 1), or None in production."""
        if step > self.n_ramp_steps:
            return None
        return self.ramp_start_K + (self.temperature_K - self.ramp_start_K) * step / self.n_ramp_steps


def set_maxwell_boltzmann_velocities(atoms: Atoms, temperature_K: float, rng: np.random.Generator) -> None:
    """Random Maxwell–Boltzmann momenta with zero total momentum, scaled to exactly ``temperature_K``."""
    masses = atoms.get_masses()[:, None]  # [n_atoms, 1]
    momenta = rng.standard_normal((len(atoms), 3)) * np.sqrt(masses * BOLTZMANN_EV_K * temperature_K)
    momenta -= masses * momenta.sum(axis=0) / masses.sum()  # [n_atoms, 3]
    atoms.set_momenta(momenta)
    rescale_to_temperature(atoms, temperature_K)


def rescale_to_temperature(atoms: Atoms, temperature_K: float) -> None:
    """Scale all velocities so the kinetic temperature equals ``temperature_K``."""
    current_K = atoms.get_temperature()
    atoms.set_momenta(atoms.get_momenta() * np.sqrt(temperature_K / current_K))


def min_pair_distance_A(atoms: Atoms, cutoff_A: float) -> float:
    """Smallest periodic interatomic distance below ``cutoff_A``, or ``inf`` when there is none."""
    (distances,) = NeighborList(cutoff=cutoff_A, full_list=False).compute(
        atoms.get_positions(), atoms.cell.array, periodic=True, quantities="d"
    )
    return float(distances.min()) if len(distances) else float("inf")


def instability(
    finite: bool, shortest_A: float, temperature_K: float, fusion_distance_A: float, max_temperature_K: float
) -> str | None:
    """Why a state is physically unstable (one of ``INSTABILITIES``), or None: non-finite energy, forces or
    positions; a pair closer than ``fusion_distance_A``; a temperature above ``max_temperature_K``."""
    if not finite:
        return "non_finite"
    if shortest_A < fusion_distance_A:
        return "atom_fusion"
    if temperature_K > max_temperature_K:
        return "temperature_blowup"
    return None


def trajectory_metadata(
    protocol: MDProtocol, seed: int, engine: str, calculator: str, fusion_distance_A: float,
    max_temperature_K: float, metadata: dict | None,
) -> dict:
    """The metadata every engine writes into a run's trajectory file; ``metadata`` adds to it."""
    return {
        **dataclasses.asdict(protocol),
        "seed": seed,
        "engine": engine,
        "target_temperature_K": protocol.temperature_K,
        "calculator": calculator,
        "fusion_distance_A": fusion_distance_A,
        "max_temperature_K": max_temperature_K,
        **(metadata or {}),
    }


def run_summary(
    protocol: MDProtocol, seed: int, engine: str, *, n_steps_run: int, n_frames: int, reason: str | None,
    mean_temperature_K: float | None, wall_s: float, resumed_from_step: int | None,
) -> dict:
    """The summary of one run (see ``mlff.md.driver.run_md``)."""
    return {
        "n_steps_run": n_steps_run,
        "n_frames_written": n_frames,
        "completed": reason is None,
        "stopped_early_reason": reason,
        "collapse_time_ps": None if reason is None else
        (n_steps_run - protocol.n_ramp_steps) * protocol.timestep_fs / FS_PER_PS,
        "temperature_K": mean_temperature_K,
        "wall_s": wall_s,
        "ns_per_day": n_steps_run * protocol.timestep_fs / FS_PER_NS / (wall_s / S_PER_DAY) if wall_s > 0 else None,
        "seed": seed,
        "engine": engine,
        "resumed_from_step": resumed_from_step,
    }
