"""ForceNet (Hu et al., "ForceNet: A Graph Neural Network for Large-Scale Quantum Calculations", arXiv 2103.01436).

A direct-force model: it predicts forces from each atom's embedding with a decoder MLP instead of
differentiating an energy, and is translation-invariant but, by design, not rotation-invariant
(edge features are expansions of the Cartesian components of the relative position vector;
rotation equivariance is left to data augmentation in the paper).

- Edge basis "SphAllMul": the three components of the edge vector and its length, each divided by
  the cutoff and expanded in ``num_freqs`` sines sin(k pi u), multiplied (outer product) with the
  real spherical harmonics of the edge direction up to degree ``max_n``; one linear layer maps it
  to ``hidden_channels``. A cosine cutoff on this edge embedding makes edges fade out smoothly.
- ``num_interactions`` FMConv blocks: an edge MLP of [edge embedding, h_receiver, h_sender] gives
  a filter; messages h_sender * filter are summed per receiver, passed through a node MLP and added
  to h (residual).
- Decoders: an MLP per atom gives its force [3]; another gives its energy, summed per structure.

Hyperparameters (defaults: the force-field paper's embedding 128, cutoff 6 Å, max neighbours 500;
ForceNet's otherwise): ``hidden_channels`` (128), ``num_interactions`` (5), ``num_freqs`` (50),
``max_n`` (3, at most 3), ``depth_mlp_edge`` (2), ``depth_mlp_node`` (1), ``decoder_hidden_channels``
(128), ``avg_neighbours`` (50), ``cutoff_A`` (6.0), ``max_neighbours`` (500). Activation: swish (SiLU).
Messages are summed and divided by sqrt(avg_neighbours) (50: typical neighbours within 6 Å in
Li-ion sulfides): with a plain sum the product h_sender * filter, whose filter depends on h, grows
geometrically over the blocks and a fresh model gives energies of 1e11 eV on a 50-atom cell.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mlff.graph import MAX_ATOMIC_NUMBER, AtomGraph, edge_vectors_A
from mlff.models.base import ForceField
from mlff.models.schnet import cosine_cutoff

MAX_SPHERICAL_DEGREE = 3


def real_spherical_harmonics(unit: torch.Tensor, max_n: int) -> torch.Tensor:
    """Real spherical harmonics [n, (max_n + 1)^2] of unit vectors [n, 3], degrees 0..max_n (max_n <= 3).

    Each harmonic is the standard real solid harmonic polynomial without its normalisation constant
    (a learned linear layer follows, so constant factors carry no information).
    """
    x, y, z = unit.unbind(-1)
    degrees = [[torch.ones_like(x)]]
    degrees.append([y, z, x])
    degrees.append([x * y, y * z, 3 * z * z - 1, x * z, x * x - y * y])
    degrees.append([
        y * (3 * x * x - y * y), x * y * z, y * (5 * z * z - 1), z * (5 * z * z - 3), x * (5 * z * z - 1),
        z * (x * x - y * y), x * (x * x - 3 * y * y),
    ])
    return torch.stack([h for degree in degrees[: max_n + 1] for h in degree], dim=-1)


def mlp(in_channels: int, hidden_channels: int, out_channels: int, depth: int) -> nn.Sequential:
    """``depth`` SiLU-activated hidden layers of ``hidden_channels``, then a linear map to ``out_channels``."""
    layers, width = [], in_channels
    for _ in range(depth):
        layers += [nn.Linear(width, hidden_channels), nn.SiLU()]
        width = hidden_channels
    return nn.Sequential(*layers, nn.Linear(width, out_channels))


class SphAllMulBasis(nn.Module):
    """Sine expansion of (x, y, z, |r|) / cutoff times the spherical harmonics of r / |r|."""

    def __init__(self, cutoff_A: float, num_freqs: int, max_n: int):
        super().__init__()
        self.cutoff_A, self.max_n = cutoff_A, max_n
        self.register_buffer("frequencies", math.pi * torch.arange(1, num_freqs + 1.0), persistent=False)
        self.out_channels = 4 * num_freqs * (max_n + 1) ** 2

    def forward(self, vectors_A: torch.Tensor, distance_A: torch.Tensor) -> torch.Tensor:
        """The basis [n_edges, out_channels] of edge vectors [n_edges, 3] of lengths ``distance_A`` [n_edges, 1]."""
        scaled = torch.cat([vectors_A, distance_A], dim=-1) / self.cutoff_A  # [n_edges, 4]
        sines = torch.sin(scaled[:, :, None] * self.frequencies).flatten(1)  # [n_edges, 4 num_freqs]
        harmonics = real_spherical_harmonics(vectors_A / distance_A, self.max_n)  # [n_edges, (max_n + 1)^2]
        return (harmonics[:, :, None] * sines[:, None, :]).flatten(1)  # [n_edges, out_channels]


class FMConv(nn.Module):
    """Filter-conditioned message passing: filter = MLP([edge, h_i, h_j]); h_i += MLP(sum_j h_j * filter)."""

    def __init__(self, hidden_channels: int, depth_mlp_edge: int, depth_mlp_node: int, avg_neighbours: float):
        super().__init__()
        self.sum_scale = avg_neighbours**-0.5
        self.edge_mlp = mlp(3 * hidden_channels, hidden_channels, hidden_channels, depth_mlp_edge - 1)
        self.node_mlp = mlp(hidden_channels, hidden_channels, hidden_channels, depth_mlp_node - 1)
        self.activation = nn.SiLU()

    def forward(self, h, edge_index, edge_embedding):
        sender, receiver = edge_index
        filters = self.edge_mlp(torch.cat([edge_embedding, h[receiver], h[sender]], dim=-1))  # [n_edges, hidden]
        messages = h[sender] * filters  # [n_edges, hidden]
        pooled = torch.zeros_like(h).index_add_(0, receiver, messages) * self.sum_scale  # [n_atoms, hidden]
        return h + self.node_mlp(self.activation(pooled))


class ForceNet(ForceField):
    name = "forcenet"
    positive_hparams = (
        "hidden_channels", "num_interactions", "num_freqs", "depth_mlp_edge", "depth_mlp_node",
        "decoder_hidden_channels", "avg_neighbours",
    )
    conservative = False
    rotation_invariant = False

    def __init__(
        self,
        *,
        hidden_channels: int = 128,
        num_interactions: int = 5,
        num_freqs: int = 50,
        max_n: int = 3,
        depth_mlp_edge: int = 2,
        depth_mlp_node: int = 1,
        decoder_hidden_channels: int = 128,
        avg_neighbours: float = 50.0,
        cutoff_A: float = 6.0,
        max_neighbours: int = 500,
    ):
        super().__init__(locals())
        if max_n not in range(MAX_SPHERICAL_DEGREE + 1):
            raise ValueError(f"hyperparameter max_n must be in 0..{MAX_SPHERICAL_DEGREE}, got {max_n!r}")
        self.embedding = nn.Embedding(MAX_ATOMIC_NUMBER + 1, hidden_channels)
        self.basis = SphAllMulBasis(cutoff_A, num_freqs, max_n)
        self.edge_embedding = nn.Linear(self.basis.out_channels, hidden_channels)
        self.interactions = nn.ModuleList(
            FMConv(hidden_channels, depth_mlp_edge, depth_mlp_node, avg_neighbours) for _ in range(num_interactions)
        )
        self.force_decoder = mlp(hidden_channels, decoder_hidden_channels, 3, 1)
        self.energy_decoder = mlp(hidden_channels, decoder_hidden_channels, 1, 1)

    def atom_energies_and_forces(self, graph: AtomGraph) -> tuple[torch.Tensor, torch.Tensor]:
        vectors_A = edge_vectors_A(graph)  # [n_edges, 3]
        distance_A = vectors_A.norm(dim=-1, keepdim=True)  # [n_edges, 1]
        envelope = cosine_cutoff(distance_A, self.cutoff_A)  # [n_edges, 1]
        edge_embedding = self.edge_embedding(self.basis(vectors_A, distance_A)) * envelope  # [n_edges, hidden]
        h = self.embedding(graph.numbers)  # [n_atoms, hidden]
        for interaction in self.interactions:
            h = interaction(h, graph.edge_index, edge_embedding)
        return self.energy_decoder(h).squeeze(-1), self.force_decoder(h)  # [n_atoms], [n_atoms, 3]
