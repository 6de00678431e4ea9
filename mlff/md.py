"""ASE molecular-dynamics engine with the paper's protocol: velocity-scaling ramp, then Nosé–Hoover NVT.

Protocol (Duangdangchote et al., Digital Discovery 2024): Maxwell–Boltzmann velocities at
``ramp_start_K``; velocity-Verlet steps whose velocities are rescaled after every step to a target
that rises linearly from ``ramp_start_K`` to ``temperature_K`` over ``ramp_ps``; then ``production_ps``
of Nosé–Hoover-chain NVT (``ase.md.nose_hoover_chain.NoseHooverChainNVT``, chain length 3). Only
production frames are written.

A physically unstable run (non-finite numbers, fused atoms, runaway temperature) is a result, not
an error: the run stops and the returned summary says why and when.

A run given a ``checkpoint_path`` saves its whole state there on a cadence and when
``mlff.preemption`` asks it to stop, and a rerun resumes from it with the same trajectory file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.md.nose_hoover_chain import NoseHooverChainNVT
from tqdm import tqdm
from vesin import NeighborList

from mlff import host_memory, preemption
from mlff.atomic_file import atomic_write
from mlff.trajectory import TrajectoryWriter

ASE_TIME_PER_FS = units.fs  # ASE internal time unit per femtosecond
FS_PER_PS = 1000.0
BOLTZMANN_eV_PER_K = units.kB
NOSE_HOOVER_CHAIN_LENGTH = 3
CHECK_EVERY_MAX_STEPS = 10  # stability checks at least this often
DEFAULT_MAX_TEMPERATURE_FACTOR = 10.0  # default blow-up threshold, times the target temperature
STEP_COUNT_TOLERANCE = 1e-6  # durations must be this close to a whole number of timesteps
CHECKPOINT_EVERY_STEPS = 100  # default cadence of MD checkpoints


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


def set_maxwell_boltzmann_velocities(atoms: Atoms, temperature_K: float, rng: np.random.Generator) -> None:
    """Random Maxwell–Boltzmann momenta with zero total momentum, scaled to exactly ``temperature_K``."""
    masses = atoms.get_masses()[:, None]  # [n_atoms, 1]
    momenta = rng.standard_normal((len(atoms), 3)) * np.sqrt(masses * BOLTZMANN_eV_PER_K * temperature_K)
    momenta -= masses * momenta.sum(axis=0) / masses.sum()  # [n_atoms, 3]
    atoms.set_momenta(momenta)
    rescale_to_temperature(atoms, temperature_K)


def rescale_to_temperature(atoms: Atoms, temperature_K: float) -> None:
    """Scale all velocities so the kinetic temperature equals ``temperature_K``."""
    current_K = atoms.get_temperature()
    atoms.set_momenta(atoms.get_momenta() * np.sqrt(temperature_K / current_K))


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


def min_pair_distance_A(atoms: Atoms, cutoff_A: float) -> float:
    """Smallest periodic interatomic distance below ``cutoff_A``, or ``inf`` when there is none."""
    (distances,) = NeighborList(cutoff=cutoff_A, full_list=False).compute(
        atoms.get_positions(), atoms.cell.array, periodic=True, quantities="d"
    )
    return float(distances.min()) if len(distances) else float("inf")


def instability(
    atoms: Atoms, energy_eV: float, forces_eV_A: np.ndarray, fusion_distance_A: float, max_temperature_K: float
) -> str | None:
    """Why the current state is physically unstable, or None."""
    if not (np.isfinite(energy_eV) and np.isfinite(forces_eV_A).all() and np.isfinite(atoms.positions).all()):
        return "non_finite"
    if min_pair_distance_A(atoms, fusion_distance_A) < fusion_distance_A:
        return "atom_fusion"
    if atoms.get_temperature() > max_temperature_K:
        return "temperature_blowup"
    return None


def run_identity(protocol: MDProtocol, seed: int, n_atoms: int) -> str:
    """What a single-run checkpoint must match to be resumed: protocol, seed and system size."""
    return json.dumps({"protocol": dataclasses.asdict(protocol), "seed": seed, "n_atoms": n_atoms}, sort_keys=True)


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
    """The summary every engine returns for a run (see ``run_md``)."""
    return {
        "n_steps_run": n_steps_run,
        "n_frames_written": n_frames,
        "completed": reason is None,
        "stopped_early_reason": reason,
        "collapse_time_ps": None if reason is None else
        (n_steps_run - protocol.n_ramp_steps) * protocol.timestep_fs / FS_PER_PS,
        "temperature_K": mean_temperature_K,
        "wall_s": wall_s,
        "seed": seed,
        "engine": engine,
        "resumed_from_step": resumed_from_step,
    }


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_write(path) as fh:
        np.savez(fh, **state)


def _read_checkpoint(path: Path, identity: str) -> dict:
    with np.load(path) as data:
        state = {key: data[key] for key in data.files}
    if str(state["identity"]) != identity:
        raise ValueError(f"{path}: MD checkpoint of another run (protocol or seed differ); remove it to start over")
    return state


def run_md(
    atoms: Atoms,
    calculator: Calculator,
    protocol: MDProtocol,
    seed: int,
    out_path: str | os.PathLike,
    *,
    record_forces: bool = False,
    fusion_distance_A: float = 1.0,
    max_temperature_K: float | None = None,
    progress: bool = True,
    metadata: dict | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every_steps: int = CHECKPOINT_EVERY_STEPS,
) -> dict:
    """Run the ramp + NVT protocol from ``atoms`` (not modified) and write production frames to ``out_path``.

    Frames are written every ``protocol.save_every_steps`` production steps (the first after
    ``save_every_steps`` steps), with ``step`` and ``time_fs`` counted from the start of production.
    Stability is checked at every saved frame and at least every 10 steps (non-finite forces at
    every step); an unstable frame is never written. ``max_temperature_K`` defaults to 10 x
    ``protocol.temperature_K``. ``metadata`` is added to the file's metadata.

    With ``checkpoint_path``, the state (step, and so the ramp position; positions, momenta, the
    Nosé–Hoover chain's variables, frames written, random-number state, wall time) is saved there
    every ``checkpoint_every_steps`` steps and when ``mlff.preemption`` asks to stop, which then
    raises ``Preempted``. A run started with an existing checkpoint resumes from it: frames
    written after the checkpoint are dropped and the trajectory continues as if never stopped.

    Returns a summary: n_steps_run, n_frames_written, completed, stopped_early_reason (None,
    "non_finite", "atom_fusion" or "temperature_blowup"), collapse_time_ps (time since the start of
    production when the run stopped, negative during the ramp; None if completed), temperature_K
    (mean over production steps; None if production never started), wall_s (over all attempts),
    seed, engine, resumed_from_step (the checkpoint's step, or None for a run from the start).
    """
    host_memory.retain_freed_memory()
    if max_temperature_K is None:
        max_temperature_K = DEFAULT_MAX_TEMPERATURE_FACTOR * protocol.temperature_K
    atoms = atoms.copy()
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    identity = run_identity(protocol, seed, len(atoms))
    checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
    resumed = checkpoint_path is not None and checkpoint_path.exists()
    if resumed:
        saved = _read_checkpoint(checkpoint_path, identity)
        atoms.set_positions(saved["positions_A"])
        atoms.set_momenta(saved["momenta"])
        rng.bit_generator.state = json.loads(str(saved["rng_state"]))
        steps_done, n_frames = int(saved["step"]), int(saved["n_frames"])
        production_temperatures = saved["production_temperatures_K"].tolist()
        previous_wall_s = float(saved["wall_s"])
    else:
        set_maxwell_boltzmann_velocities(atoms, protocol.ramp_start_K, rng)
        steps_done, n_frames, production_temperatures, previous_wall_s = 0, 0, [], 0.0

    n_ramp, n_production = protocol.n_ramp_steps, protocol.n_production_steps
    fields = ["energy_eV", "temperature_K"] + (["forces_eV_A"] if record_forces else [])
    file_metadata = trajectory_metadata(
        protocol, seed, "ase", type(calculator).__name__, fusion_distance_A, max_temperature_K, metadata
    )

    start_s = time.perf_counter() - previous_wall_s
    dynamics = None

    def checkpoint_or_stop(step: int) -> None:
        """Save the state every ``checkpoint_every_steps`` steps, and raise Preempted when asked to stop."""
        stop = preemption.requested()
        if checkpoint_path is None or not (stop or step % checkpoint_every_steps == 0):
            return
        writer.flush()
        chain = dynamics._thermostat if dynamics is not None else None  # ASE keeps the chain state private
        _save_checkpoint(checkpoint_path, {
            "identity": identity,
            "step": step,
            "positions_A": atoms.positions,
            "momenta": atoms.get_momenta(),
            "n_frames": n_frames,
            "production_temperatures_K": np.asarray(production_temperatures, dtype=np.float64),
            "rng_state": json.dumps(rng.bit_generator.state),
            "wall_s": time.perf_counter() - start_s,
            **({"chain_eta": chain._eta, "chain_p_eta": chain._p_eta} if chain is not None else {}),
        })
        if stop:
            raise preemption.Preempted(str(checkpoint_path))

    reason, step = None, steps_done
    with (
        tqdm(total=n_ramp + n_production, initial=steps_done, disable=not progress, unit="step",
             desc=f"MD {protocol.temperature_K:g} K") as bar,
        TrajectoryWriter(out_path, atoms.numbers, atoms.cell.array, fields, file_metadata, append=resumed) as writer,
    ):
        if resumed:
            writer.truncate(n_frames)
        forces = atoms.get_forces()
        for step in range(steps_done + 1, n_ramp + 1):
            forces = velocity_verlet_step(atoms, protocol.timestep_fs, forces)
            finite = np.isfinite(forces).all()
            if finite:
                progress_K = (protocol.temperature_K - protocol.ramp_start_K) * step / n_ramp
                rescale_to_temperature(atoms, protocol.ramp_start_K + progress_K)
            if not finite or step % CHECK_EVERY_MAX_STEPS == 0:
                reason = instability(atoms, atoms.get_potential_energy(), forces, fusion_distance_A, max_temperature_K)
                bar.set_postfix(T_K=f"{atoms.get_temperature():.0f}", refresh=False)
            bar.update()
            if reason:
                break
            checkpoint_or_stop(step)
        else:  # the ramp ran to its end: production
            dynamics = NoseHooverChainNVT(
                atoms,
                timestep=protocol.timestep_fs * ASE_TIME_PER_FS,
                temperature_K=protocol.temperature_K,
                tdamp=protocol.thermostat_time_fs * ASE_TIME_PER_FS,
                tchain=NOSE_HOOVER_CHAIN_LENGTH,
            )
            if resumed and "chain_eta" in saved:
                dynamics._thermostat._eta = saved["chain_eta"].copy()
                dynamics._thermostat._p_eta = saved["chain_p_eta"].copy()
            for production_step in range(max(steps_done - n_ramp, 0) + 1, n_production + 1):
                step = n_ramp + production_step
                dynamics.step()
                forces = atoms.get_forces()
                saving = production_step % protocol.save_every_steps == 0
                if saving or not np.isfinite(forces).all() or step % CHECK_EVERY_MAX_STEPS == 0:
                    energy_eV = atoms.get_potential_energy()
                    reason = instability(atoms, energy_eV, forces, fusion_distance_A, max_temperature_K)
                    bar.set_postfix(T_K=f"{atoms.get_temperature():.0f}", refresh=False)
                bar.update()
                if reason:
                    break
                temperature_K = atoms.get_temperature()
                production_temperatures.append(temperature_K)
                if saving:
                    writer.append(
                        step=production_step,
                        time_fs=production_step * protocol.timestep_fs,
                        positions_A=atoms.positions,
                        energy_eV=energy_eV,
                        forces_eV_A=forces if record_forces else None,
                        temperature_K=temperature_K,
                    )
                    n_frames += 1
                checkpoint_or_stop(step)
    return run_summary(
        protocol, seed, "ase", n_steps_run=step, n_frames=n_frames, reason=reason,
        mean_temperature_K=float(np.mean(production_temperatures)) if production_temperatures else None,
        wall_s=time.perf_counter() - start_s, resumed_from_step=steps_done if resumed else None,
    )
