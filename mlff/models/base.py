"""What every force field shares: hyperparameters, per-element reference energies, forces by autograd."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from mlff.graph import MAX_ATOMIC_NUMBER, AtomGraph, Structure, build_graph


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device``, or CUDA when available and CPU otherwise when it is None."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def require_positive(name: str, value: float) -> None:
    """Raise ValueError naming the hyperparameter unless ``value`` is positive."""
    if not value > 0:
        raise ValueError(f"hyperparameter {name} must be positive, got {value!r}")


class ForceField(torch.nn.Module):
    """A conservative force field: energy per structure from an AtomGraph, forces = -dE/dx.

    Total energy = sum over atoms of (reference energy of the element + learned atomic energy).
    The reference energies live in the buffer ``atomic_energies_eV`` [MAX_ATOMIC_NUMBER + 1]
    (index = atomic number), fitted before training and saved in the state_dict.
    Subclasses set ``name`` and implement ``atom_energies_eV``; their constructors take keyword
    hyperparameters only and pass all of them to ``__init__`` here as ``hparams``.
    """

    name: str = ""
    conservative = True

    def __init__(self, hparams: dict):
        super().__init__()
        require_positive("cutoff_A", hparams["cutoff_A"])
        require_positive("max_neighbours", hparams["max_neighbours"])
        self.hparams = dict(hparams)
        self.register_buffer("atomic_energies_eV", torch.zeros(MAX_ATOMIC_NUMBER + 1))

    @property
    def cutoff_A(self) -> float:
        return float(self.hparams["cutoff_A"])

    @property
    def max_neighbours(self) -> int:
        return int(self.hparams["max_neighbours"])

    def atom_energies_eV(self, graph: AtomGraph) -> torch.Tensor:
        """Learned energy contribution of each atom [n_atoms]."""
        raise NotImplementedError

    def forward(self, graph: AtomGraph) -> torch.Tensor:
        """Energy of each structure [n_structures] in eV."""
        per_atom = self.atom_energies_eV(graph) + self.atomic_energies_eV[graph.numbers]  # [n_atoms]
        energy = torch.zeros(graph.n_structures, dtype=per_atom.dtype, device=per_atom.device)
        return energy.index_add_(0, graph.batch, per_atom)

    def make_graph(self, structures: list[Structure]) -> AtomGraph:
        """The AtomGraph of ``structures`` with this model's cutoff, neighbour limit, device and dtype."""
        reference = self.atomic_energies_eV
        return build_graph(structures, self.cutoff_A, self.max_neighbours, reference.device, reference.dtype)

    def set_atomic_energies(self, atomic_energies_eV: np.ndarray) -> None:
        """Set the per-element reference energies [MAX_ATOMIC_NUMBER + 1] (index = atomic number)."""
        values = torch.as_tensor(np.asarray(atomic_energies_eV), dtype=self.atomic_energies_eV.dtype)
        if values.shape != self.atomic_energies_eV.shape:
            expected = tuple(self.atomic_energies_eV.shape)
            raise ValueError(f"atomic_energies_eV must have shape {expected}, got {tuple(values.shape)}")
        self.atomic_energies_eV.copy_(values)


def energy_and_forces(
    model: ForceField, graph: AtomGraph, training: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies [n_structures] (eV) and forces [n_atoms, 3] (eV/Å) = -dE/dpositions by autograd.

    With ``training`` the force graph is kept (create_graph) so a force loss can be backpropagated;
    otherwise both outputs are detached.
    """
    with torch.enable_grad():
        positions_A = graph.positions_A.detach().requires_grad_(True)
        energy_eV = model(dataclasses.replace(graph, positions_A=positions_A))
        (gradient,) = torch.autograd.grad(
            energy_eV.sum(), positions_A, create_graph=training, allow_unused=True, materialize_grads=True
        )
    forces_eV_A = -gradient
    if not training:
        return energy_eV.detach(), forces_eV_A.detach()
    return energy_eV, forces_eV_A
