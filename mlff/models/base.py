"""What every force field shares: hyperparameters, per-element reference energies, forces by autograd."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from mlff.graph import MAX_ATOMIC_NUMBER, AtomGraph, Structure, build_graph

# Added to the mean square of an l > 0 feature block before dividing by its root (eSCN, SCN and
# Equiformer's norms): 0.1 (features are O(1)), not a tiny number, so a block that is ~0 (every l > 0
# feature at a site of cubic symmetry, where only float32 rounding remains) is left ~0 instead of
# being scaled up to O(1) values and huge forces.
DEGREE_NORM_EPSILON = 0.1
# The longest cutoff a model may have: the paper's is 6 Å and MLFFs use up to about 12 Å; at 1e6 Å a
# 50-atom cell would have some 1e18 neighbour pairs.
MAX_CUTOFF_A = 15.0


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device``, or CUDA when available and CPU otherwise when it is None or ``"auto"`` (a spec's default)."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def require_positive(name: str, value: float) -> None:
    """Raise ValueError naming the hyperparameter unless ``value`` is positive."""
    if not value > 0:
        raise ValueError(f"hyperparameter {name} must be positive, got {value!r}")


class ForceField(torch.nn.Module):
    """A force field: energy per structure from an AtomGraph; forces = -dE/dx when ``conservative``.

    Total energy = sum over atoms of (reference energy of the element + learned atomic energy).
    The reference energies live in the buffer ``atomic_energies_eV`` [MAX_ATOMIC_NUMBER + 1]
    (index = atomic number), fitted before training and saved in the state_dict.
    Subclasses set ``name`` and implement ``atom_energies_eV``; their constructors take keyword
    hyperparameters only, and begin with ``super().__init__(locals())``, which records them all
    as ``hparams`` (saved with checkpoints) and checks ``cutoff_A``, ``max_neighbours`` and the
    subclass's ``positive_hparams`` are positive.

    A model whose paper predicts forces directly sets ``conservative = False`` and implements
    ``atom_energies_and_forces`` instead; ``energy_and_forces`` then returns its direct forces.
    A model that is not rotation-invariant by design sets ``rotation_invariant = False``.
    """

    name: str = ""
    conservative = True
    rotation_invariant = True
    positive_hparams: tuple[str, ...] = ()

    def __init__(self, constructor_locals: dict):
        super().__init__()
        # The subclass constructor's locals at its start are its arguments, plus self and the
        # __class__ cell that super() uses.
        self.hparams = {name: value for name, value in constructor_locals.items() if name not in ("self", "__class__")}
        for name in ("cutoff_A", "max_neighbours", *self.positive_hparams):
            require_positive(name, self.hparams[name])
        if not self.hparams["cutoff_A"] <= MAX_CUTOFF_A:
            raise ValueError(f"hyperparameter cutoff_A must be at most {MAX_CUTOFF_A} Å, got {self.hparams['cutoff_A']!r}"
                             " (a neighbour list that long would not fit in memory)")
        self.register_buffer("atomic_energies_eV", torch.zeros(MAX_ATOMIC_NUMBER + 1))

    @property
    def cutoff_A(self) -> float:
        return float(self.hparams["cutoff_A"])

    @property
    def max_neighbours(self) -> int:
        return int(self.hparams["max_neighbours"])

    def atom_energies_eV(self, graph: AtomGraph) -> torch.Tensor:
        """Learned energy contribution of each atom [n_atoms]."""
        if not self.conservative:
            return self.atom_energies_and_forces(graph)[0]
        raise NotImplementedError

    def atom_energies_and_forces(self, graph: AtomGraph) -> tuple[torch.Tensor, torch.Tensor]:
        """Direct-force models only: learned atomic energies [n_atoms] and forces [n_atoms, 3] (eV/Å)."""
        raise NotImplementedError(f"{type(self).__name__} is conservative: its forces are -dE/dx")

    def structure_energies_eV(self, graph: AtomGraph, learned_eV: torch.Tensor) -> torch.Tensor:
        """Energy of each structure [n_structures]: learned atomic energies [n_atoms] plus references."""
        per_atom = learned_eV + self.atomic_energies_eV[graph.numbers]  # [n_atoms]
        energy = torch.zeros(graph.n_structures, dtype=per_atom.dtype, device=per_atom.device)
        return energy.index_add_(0, graph.batch, per_atom)

    def forward(self, graph: AtomGraph) -> torch.Tensor:
        """Energy of each structure [n_structures] in eV."""
        return self.structure_energies_eV(graph, self.atom_energies_eV(graph))

    def tabulate_filters(self) -> bool:
        """For MD: evaluate the parts of the model that depend on a pair distance alone from verified
        tables, when the model has such parts (SchNet's filters); whether it has. The model is put
        in eval mode; ``train()`` goes back to exact evaluation."""
        self.eval()
        return False

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
    """Energies [n_structures] (eV) and forces [n_atoms, 3] (eV/Å).

    Forces are -dE/dpositions by autograd, or the model's direct forces when it is not
    ``conservative``. With ``training`` the graph is kept (create_graph for the gradient) so a force
    loss can be backpropagated; otherwise both outputs are detached.
    """
    if not model.conservative:
        with torch.set_grad_enabled(training):
            learned_eV, forces_eV_A = model.atom_energies_and_forces(graph)
            return model.structure_energies_eV(graph, learned_eV), forces_eV_A
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
