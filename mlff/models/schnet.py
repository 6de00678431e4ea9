"""SchNet (Schütt et al., NeurIPS 2017; J. Chem. Phys. 148, 241722, 2018).

Atoms are embedded by element; ``num_interactions`` interaction blocks update them with
continuous-filter convolutions whose filters are an MLP of Gaussian-expanded distances times a
cosine cutoff; an atom-wise MLP maps each atom to an energy, summed over the structure.

Hyperparameters (defaults: the force-field paper's settings where it gives them, the SchNet
paper's otherwise):

- ``hidden_channels`` (128): atom feature size.
- ``num_filters`` (128): continuous-filter size.
- ``num_interactions`` (6): interaction blocks.
- ``num_gaussians`` (50): Gaussians on [0, cutoff_A], width equal to their spacing.
- ``cutoff_A`` (6.0), ``max_neighbours`` (500): neighbour graph.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mlff.graph import MAX_ATOMIC_NUMBER, AtomGraph, edge_vectors_A
from mlff.models.base import ForceField

LN2 = math.log(2.0)
EXPONENT_FLOOR = 87.0  # exp(-87) = 1.6e-38


def shifted_softplus(x: torch.Tensor) -> torch.Tensor:
    """ln(0.5 e^x + 0.5): softplus shifted to pass through zero, SchNet's activation."""
    return nn.functional.softplus(x) - LN2


class ShiftedSoftplus(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shifted_softplus(x)


class GaussianBasis(nn.Module):
    """exp(-(d - mu_k)^2 / (2 width^2)) for ``n`` centres mu_k evenly spaced on [0, cutoff]."""

    def __init__(self, cutoff_A: float, n: int):
        super().__init__()
        centres_A = torch.linspace(0.0, cutoff_A, n)
        self.register_buffer("centres_A", centres_A, persistent=False)
        self.inverse_two_width_squared = 0.5 / (cutoff_A / (n - 1)) ** 2

    def forward(self, distance_A: torch.Tensor) -> torch.Tensor:
        exponent = -self.inverse_two_width_squared * (distance_A[:, None] - self.centres_A).square()  # [n_edges, n]
        # Below -EXPONENT_FLOOR the Gaussian is under 1.6e-38 (float32's smallest normal number is
        # 1.2e-38): flooring the exponent there moves basis values by less than that, and spares
        # exp its slow path for underflowing arguments (ten times the cost of the whole basis on x86).
        return torch.exp(exponent.clamp(min=-EXPONENT_FLOOR))


def cosine_cutoff(distance_A: torch.Tensor, cutoff_A: float) -> torch.Tensor:
    """0.5 (cos(pi d / cutoff) + 1) inside the cutoff, 0 outside."""
    return 0.5 * (torch.cos(distance_A * (math.pi / cutoff_A)) + 1.0) * (distance_A < cutoff_A)


class Interaction(nn.Module):
    """One SchNet interaction block: atom-wise, cfconv, atom-wise + ssp, atom-wise; residual update."""

    def __init__(self, hidden_channels: int, num_filters: int, num_gaussians: int):
        super().__init__()
        self.filter_network = nn.Sequential(
            nn.Linear(num_gaussians, num_filters), ShiftedSoftplus(), nn.Linear(num_filters, num_filters)
        )
        self.to_filters = nn.Linear(hidden_channels, num_filters, bias=False)
        self.from_filters = nn.Linear(num_filters, hidden_channels)
        self.output = nn.Linear(hidden_channels, hidden_channels)

    def filters(self, basis: torch.Tensor) -> torch.Tensor:
        """``filter_network(basis)`` [n_pairs, num_filters], with the shift of its softplus folded
        into the last bias: one pass less over the largest array of the model. (``filter_network``
        keeps its layers, and so the checkpoints' keys.)"""
        first, _, last = self.filter_network
        bias = last.bias - LN2 * last.weight.sum(dim=1)
        return nn.functional.linear(nn.functional.softplus(first(basis)), last.weight, bias)

    def forward(self, h, pair_index, basis, envelope, both_ways: bool):
        """Update ``h`` [n_atoms, hidden] with messages along ``pair_index`` [2, n_pairs] (sender,
        receiver), and also receiver -> sender with the same filter when ``both_ways``."""
        sender, receiver = pair_index
        filters = self.filters(basis) * envelope[:, None]  # [n_pairs, num_filters]
        features = self.to_filters(h)  # [n_atoms, num_filters]
        pooled = torch.zeros(h.shape[0], filters.shape[1], dtype=h.dtype, device=h.device)
        pooled.index_add_(0, receiver, features.index_select(0, sender) * filters)  # [n_atoms, num_filters]
        if both_ways:
            pooled.index_add_(0, sender, features.index_select(0, receiver) * filters)
        update = self.output(shifted_softplus(self.from_filters(pooled)))
        return h + update


class SchNet(ForceField):
    name = "schnet"
    positive_hparams = ("num_filters", "num_interactions")

    def __init__(
        self,
        *,
        hidden_channels: int = 128,
        num_filters: int = 128,
        num_interactions: int = 6,
        num_gaussians: int = 50,
        cutoff_A: float = 6.0,
        max_neighbours: int = 500,
    ):
        super().__init__(locals())
        for name in ("hidden_channels", "num_gaussians"):
            if self.hparams[name] < 2:
                raise ValueError(f"hyperparameter {name} must be at least 2, got {self.hparams[name]}")
        self.embedding = nn.Embedding(MAX_ATOMIC_NUMBER + 1, hidden_channels)
        self.basis = GaussianBasis(cutoff_A, num_gaussians)
        self.interactions = nn.ModuleList(
            Interaction(hidden_channels, num_filters, num_gaussians) for _ in range(num_interactions)
        )
        self.readout = nn.Sequential(
            nn.Linear(hidden_channels, hidden_channels // 2), ShiftedSoftplus(), nn.Linear(hidden_channels // 2, 1)
        )

    def atom_energies_eV(self, graph: AtomGraph) -> torch.Tensor:
        # Filters depend on the distance only: on a paired graph they are computed once per pair.
        n_pairs = graph.n_pairs
        distance_A = edge_vectors_A(graph, n_pairs).norm(dim=-1)  # [n_pairs]
        basis = self.basis(distance_A)  # [n_pairs, num_gaussians]
        envelope = cosine_cutoff(distance_A, self.cutoff_A)  # [n_pairs]
        h = self.embedding(graph.numbers)  # [n_atoms, hidden_channels]
        for interaction in self.interactions:
            h = interaction(h, graph.edge_index[:, :n_pairs], basis, envelope, graph.paired)
        return self.readout(h).squeeze(-1)
