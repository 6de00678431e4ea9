"""The interface every MD engine implements, and the registry of engines.

An engine advances ``n`` replicas of one structure by one step per call; the driver
(``mlff.md.driver``) owns everything else: the schedule, the checks, frames, checkpoints,
preemption and the summaries. The ASE and LAMMPS engines take one replica, the torch engine many.

Engines are discovered, not listed: the module ``mlff/md/<name>_engine.py`` defines the engine
``<name>`` as its ``ENGINE`` class, so adding an engine means adding one file.
"""

from __future__ import annotations

import abc
import importlib
import math
import pkgutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from ase import Atoms

import mlff.md
from mlff.md.protocol import MDProtocol

if TYPE_CHECKING:
    from mlff.models import ForceField

ENGINE_MODULE_SUFFIX = "_engine"


@dataclass(frozen=True)
class Observation:
    """What one step gives the driver for each live replica: lists on the host, or, from an engine that
    ``defers_observations``, tensors on its device (``on_host`` reads them)."""

    energy_eV: list[float] | torch.Tensor  # [n_live] potential energy
    temperature_K: list[float] | torch.Tensor  # [n_live] kinetic temperature, after the ramp's rescaling
    finite: list[bool] | torch.Tensor  # [n_live] energy, forces and positions are finite

    @staticmethod
    def on_host(observations: list[Observation]) -> list[Observation]:
        """``observations`` as lists on the host, read from a device all at once."""
        if not observations or not isinstance(observations[0].energy_eV, torch.Tensor):
            return observations
        stacked = torch.stack([
            torch.stack([seen.energy_eV, seen.temperature_K, seen.finite.to(seen.energy_eV.dtype)])
            for seen in observations
        ]).cpu()  # [n_steps, 3, n_live]
        return [Observation(energy.tolist(), kelvin.tolist(), (finite == 1).tolist()) for energy, kelvin, finite in stacked]


class Engine(abc.ABC):
    """Replicas of ``atoms`` (positions, cell, masses) integrated with the protocol's steps.

    The engine's slots are the live replicas in the driver's order. ``start`` or ``restore`` begins
    (and evaluates the first forces); then every ``advance`` makes one step of every live replica:
    velocity Verlet rescaled to the replica's ramp target, or, where the target is None, a
    Nosé–Hoover-chain NVT step with the replica's protocol.
    """

    name: str  # the engine's name in specs, trajectories and summaries
    batched = False  # can integrate several replicas together, and drop some of them
    max_fusion_distance_A = math.inf  # ``shortest_pair_A`` sees pairs up to this distance
    # The driver may read a step's Observation late, at its next event: a replica whose numbers stopped
    # being finite then keeps a finite state, and harms no other, until the driver drops it.
    defers_observations = False

    def __init__(self, atoms: Atoms, calculator: str):
        self.atoms = atoms.copy()
        self.calculator = calculator  # what computes the forces, recorded in trajectories

    @classmethod
    @abc.abstractmethod
    def from_model(cls, model: ForceField, atoms: Atoms) -> Engine:
        """This engine with ``model``'s forces."""

    @abc.abstractmethod
    def start(self, protocols: list[MDProtocol], momenta: list[np.ndarray]) -> None:
        """Begin from ``atoms``' positions with one protocol and momenta [n_atoms, 3] per replica."""

    @abc.abstractmethod
    def restore(self, protocols: list[MDProtocol], state: dict[str, np.ndarray]) -> None:
        """Begin from a ``state()`` saved earlier; ``protocols`` are the live replicas'."""

    @abc.abstractmethod
    def state(self) -> dict[str, np.ndarray]:
        """Everything ``restore`` needs to continue exactly, as arrays."""

    @abc.abstractmethod
    def advance(self, ramp_targets_K: list[float | None]) -> Observation:
        """One step of every live replica (a ramp target per replica, None in production)."""

    @abc.abstractmethod
    def shortest_pair_A(self, cutoff_A: float) -> list[float]:
        """Per live replica, its shortest interatomic distance, or any value >= ``cutoff_A`` when none is shorter."""

    @abc.abstractmethod
    def frames(self, with_forces: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Positions [n_live, n_atoms, 3] (Å) and, ``with_forces``, forces [n_live, n_atoms, 3] (eV/Å)."""

    def drop(self, keep: list[int]) -> None:
        """Keep only the live replicas in slots ``keep``, in that order."""
        raise NotImplementedError(f"the {self.name} engine runs one replica at a time")

    def close(self) -> None:
        """Release what the engine holds (threads, a LAMMPS instance)."""


def engine_names() -> list[str]:
    """Every engine's name, from the ``*_engine`` modules of ``mlff.md``, without importing them."""
    return sorted(
        module.name.removesuffix(ENGINE_MODULE_SUFFIX)
        for module in pkgutil.iter_modules(mlff.md.__path__)
        if module.name.endswith(ENGINE_MODULE_SUFFIX)
    )


def engine_class(name: str) -> type[Engine]:
    """The engine called ``name``."""
    if name not in engine_names():
        raise ValueError(f"unknown MD engine {name!r}; expected one of {', '.join(map(repr, engine_names()))}")
    return importlib.import_module(f"mlff.md.{name}{ENGINE_MODULE_SUFFIX}").ENGINE
