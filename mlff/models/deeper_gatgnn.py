"""DeeperGATGNN (Omee et al., Patterns 3, 100491, 2022), periodic, with a per-atom energy head.

GATGNN's augmented graph-attention layers (Louis et al. 2020), made deep by a differentiable group
normalisation (DGN, Zhou et al., NeurIPS 2020) and a residual skip connection around every layer::

    x <- x + DGN(AGAT(x, e))

AGAT, with ``num_heads`` heads and softplus activations: for edge j -> i,
o_i = softplus(W [x_i, e_ij]) and o_j = softplus(W [x_j, e_ij]) per head; the attention score
a_ij = softplus(norm(softplus(att . [o_i, o_j]))) is normalised by a softmax over the neighbours j
of i, and x_i' = mean over heads of sum_j alpha_ij o_j, plus a bias. DGN softly assigns each atom
to ``num_groups`` groups (softmax of a linear map), normalises each group's features and adds
``group_norm_weight`` times their sum to the input. Edge features are Gaussian-expanded distances
through a linear layer; atoms start from an element embedding.

The global attention of GATGNN weighs each atom by a softmax over the atoms of its structure of an
MLP of [x_i, composition of the structure]; the weighted features then give the energy. Here the
energy head is per atom: E_i = w . (x_i * g_i) + b, with g_i the global attention weight times the
structure's atom count, so that the weights average one and the energy is extensive.

Departures from the paper, for a force field:

- normalisation statistics (DGN's batch norm, the attention-score norm) are taken per structure,
  not per batch, with no running statistics, so a structure's energy does not depend on the
  other structures in its batch (and a supercell repeats the statistics of its cell);
- the neighbour softmax is weighted by the cosine cutoff c(d) = 0.5 (cos(pi d / cutoff) + 1), and
  the attention-score statistics over edges too, so the energy stays smooth when a neighbour
  crosses the cutoff;
- the node-degree one-hot features of the reference code are left out (they jump when a
  neighbour crosses the cutoff).

Hyperparameters (defaults: the force-field paper's 128 / 6 Å / 500, DeeperGATGNN's otherwise):

- ``hidden_channels`` (128): atom and edge feature size.
- ``num_interactions`` (5): AGAT layers.
- ``num_heads`` (4): attention heads.
- ``num_groups`` (10), ``group_norm_weight`` (0.01): DGN groups and the weight of their sum.
- ``num_gaussians`` (50): Gaussians on [0, cutoff_A] for the edge features.
- ``cutoff_A`` (6.0), ``max_neighbours`` (500): neighbour graph.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import InstanceNorm
from torch_geometric.utils import scatter, softmax

from mlff.graph import MAX_ATOMIC_NUMBER, AtomGraph, edge_vectors_A
from mlff.models.base import ForceField
from mlff.models.schnet import GaussianBasis, cosine_cutoff

NORM_EPSILON = 1e-5  # added to variances before normalising, as in torch's batch norm
LEAKY_SLOPE = 0.2  # negative slope of the leaky ReLU on the input features


def _per_row(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values`` [n] reshaped to broadcast over the trailing dimensions of ``like`` [n, ...]."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def segment_softmax(logits: torch.Tensor, segment: torch.Tensor, n_segments: int, weight: torch.Tensor) -> torch.Tensor:
    """weight * exp(logits), normalised to sum to one over the rows of each segment: [n, ...].

    torch_geometric's ``softmax`` with a weight [n] on each row; folding the weight into the logits
    as log(weight) instead would make the gradient NaN where the weight is zero (at the cutoff).
    """
    peak = scatter(logits.detach(), segment, dim_size=n_segments, reduce="max")  # [n_segments, ...], cancels out
    exponentials = torch.exp(logits - peak[segment]) * _per_row(weight, logits)
    total = scatter(exponentials, segment, dim_size=n_segments, reduce="sum")  # [n_segments, ...]
    return exponentials / total.clamp_min(torch.finfo(logits.dtype).tiny)[segment]


def segment_normalise(
    values: torch.Tensor, segment: torch.Tensor, n_segments: int, weight: torch.Tensor
) -> torch.Tensor:
    """(values - mean) / sqrt(variance + eps) per column, with statistics over each segment weighted
    by ``weight`` [n]: [n, c]. torch_geometric's ``InstanceNorm`` is the unweighted case."""
    tiny = torch.finfo(values.dtype).tiny
    total = scatter(weight, segment, dim_size=n_segments, reduce="sum").clamp_min(tiny)[:, None]  # [n_segments, 1]
    mean = scatter(weight[:, None] * values, segment, dim_size=n_segments, reduce="sum") / total  # [n_segments, c]
    centred = values - mean[segment]
    squares = weight[:, None] * centred**2  # [n, c]
    variance = scatter(squares, segment, dim_size=n_segments, reduce="sum") / total  # [n_segments, c]
    return centred / torch.sqrt(variance[segment] + NORM_EPSILON)


class DifferentiableGroupNorm(nn.Module):
    """x + lambda * sum_g norm(s_g * x), with s = softmax(x W + b) the soft group assignment."""

    def __init__(self, channels: int, num_groups: int, group_norm_weight: float):
        super().__init__()
        self.num_groups = num_groups
        self.group_norm_weight = group_norm_weight
        self.assign = nn.Linear(channels, num_groups)
        # per-structure statistics, no running ones; no parameters (scale and shift follow)
        self.normalise = InstanceNorm(num_groups * channels, eps=NORM_EPSILON, affine=False)
        self.scale = nn.Parameter(torch.ones(num_groups * channels))
        self.shift = nn.Parameter(torch.zeros(num_groups * channels))

    def forward(self, x, batch, n_structures):
        groups = torch.softmax(self.assign(x), dim=-1)  # [n_atoms, num_groups]
        grouped = (groups[:, :, None] * x[:, None, :]).flatten(1)  # [n_atoms, num_groups * channels]
        normalised = self.normalise(grouped, batch, n_structures) * self.scale + self.shift
        return x + self.group_norm_weight * normalised.view(x.shape[0], self.num_groups, -1).sum(1)


class AugmentedGraphAttention(nn.Module):
    """GATGNN's AGAT layer: multi-head attention over neighbours with edge features."""

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.node = nn.Linear(channels, num_heads * channels, bias=False)  # the x half of W
        self.edge = nn.Linear(channels, num_heads * channels, bias=False)  # the e half of W
        self.attention = nn.Parameter(torch.randn(num_heads, 2 * channels) / channels**0.5)
        self.score_scale = nn.Parameter(torch.ones(num_heads))
        self.score_shift = nn.Parameter(torch.zeros(num_heads))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x, e, edge_index, envelope, edge_structure, n_structures):
        softplus = nn.functional.softplus
        sender, receiver = edge_index
        n_edges, channels = e.shape
        node, edge = self.node(x), self.edge(e)  # [n_atoms, heads * channels], [n_edges, heads * channels]
        o_i = softplus(node[receiver] + edge).view(n_edges, self.num_heads, channels)
        o_j = softplus(node[sender] + edge).view(n_edges, self.num_heads, channels)
        scores = softplus((torch.cat([o_i, o_j], dim=-1) * self.attention).sum(-1))  # [n_edges, heads]
        scores = segment_normalise(scores, edge_structure, n_structures, envelope)
        scores = softplus(scores * self.score_scale + self.score_shift)
        alpha = segment_softmax(scores, receiver, x.shape[0], envelope)  # [n_edges, heads]
        messages = o_j * alpha[:, :, None]  # [n_edges, heads, channels]
        pooled = scatter(messages, receiver, dim_size=x.shape[0], reduce="sum")  # [n_atoms, heads, channels]
        return pooled.mean(1) + self.bias


class GlobalAttention(nn.Module):
    """Per-atom weights: softmax over a structure's atoms of an MLP of [x_i, composition], times n_atoms."""

    def __init__(self, channels: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(channels + MAX_ATOMIC_NUMBER + 1, channels), nn.Softplus(),
            nn.Linear(channels, channels), nn.Softplus(),
            nn.Linear(channels, 1),
        )

    def forward(self, x, numbers, batch, n_structures):
        counts = torch.zeros(n_structures, MAX_ATOMIC_NUMBER + 1, dtype=x.dtype, device=x.device)
        counts.index_put_((batch, numbers), torch.ones_like(x[:, 0]), accumulate=True)  # [n_structures, 119]
        n_atoms = counts.sum(1)  # [n_structures]
        composition = counts / n_atoms[:, None]  # [n_structures, 119] element fractions
        logits = self.mlp(torch.cat([x, composition[batch]], dim=-1)).squeeze(-1)  # [n_atoms]
        return softmax(logits, batch, num_nodes=n_structures) * n_atoms[batch]  # [n_atoms], mean 1 per structure


class DeeperGATGNN(ForceField):
    name = "deeper-gatgnn"
    positive_hparams = ("hidden_channels", "num_interactions", "num_heads", "num_groups")

    def __init__(
        self,
        *,
        hidden_channels: int = 128,
        num_interactions: int = 5,
        num_heads: int = 4,
        num_groups: int = 10,
        group_norm_weight: float = 0.01,
        num_gaussians: int = 50,
        cutoff_A: float = 6.0,
        max_neighbours: int = 500,
    ):
        super().__init__(locals())
        if group_norm_weight < 0:
            raise ValueError(f"hyperparameter group_norm_weight must be non-negative, got {group_norm_weight}")
        self.embedding = nn.Embedding(MAX_ATOMIC_NUMBER + 1, hidden_channels)
        self.basis = GaussianBasis(cutoff_A, num_gaussians)
        self.edge_input = nn.Linear(num_gaussians, hidden_channels)
        self.layers = nn.ModuleList(
            AugmentedGraphAttention(hidden_channels, num_heads) for _ in range(num_interactions)
        )
        self.norms = nn.ModuleList(
            DifferentiableGroupNorm(hidden_channels, num_groups, group_norm_weight) for _ in range(num_interactions)
        )
        self.global_attention = GlobalAttention(hidden_channels)
        self.energy = nn.Linear(hidden_channels, 1)

    def atom_energies_eV(self, graph: AtomGraph) -> torch.Tensor:
        distance_A = edge_vectors_A(graph).norm(dim=-1)  # [n_edges]
        envelope = cosine_cutoff(distance_A, self.cutoff_A)  # [n_edges]
        leaky = nn.functional.leaky_relu
        e = leaky(self.edge_input(self.basis(distance_A)), LEAKY_SLOPE)  # [n_edges, hidden]
        x = leaky(self.embedding(graph.numbers), LEAKY_SLOPE)  # [n_atoms, hidden]
        edge_structure = graph.batch[graph.edge_index[1]]  # [n_edges]
        for layer, norm in zip(self.layers, self.norms):
            update = layer(x, e, graph.edge_index, envelope, edge_structure, graph.n_structures)
            x = x + norm(update, graph.batch, graph.n_structures)
        weights = self.global_attention(x, graph.numbers, graph.batch, graph.n_structures)  # [n_atoms]
        return self.energy(x * weights[:, None]).squeeze(-1)  # [n_atoms]
