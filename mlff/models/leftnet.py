"""LEFTNet (Du et al., "A new perspective on building efficient and expressive 3D equivariant graph
neural networks", arXiv 2304.04757): local-frame based SE(3)-equivariant message passing.

Atoms carry scalars s [n_atoms, hidden] and vectors v [n_atoms, 3, hidden]:

- Radial basis: exponential-normal functions of the distance times a cosine cutoff; neighbour
  embedding s_i = W [emb(z_i), sum_j emb'(z_j) * f(d_ij)].
- Local substructure encoding (LSE): each atom's learned vector summary
  S_i = sum_j r^_ij (s_j * g(d_ij)) [n_atoms, 3, hidden] is scalarised in the frame of each edge
  ij: e1 = r^_ij, e2 = e1 x m_ij / |.|, e3 = e1 x e2, where m_ij = m_i + m_j and
  m_i = sum_k cut(d_ik) r_ik (translation-invariant, so the frame works in periodic cells,
  unlike the paper's cross product of absolute positions for molecules). The six projections
  of S_i and S_j on (e1, e2, e3) give an edge weight A_ij [n_edges, hidden].
- ``num_interactions`` equivariant message blocks: phi_ij = MLP(s_j) * W(rbf_ij) * A_ij split into
  (a, b, c); s_i += sum_j a, v_i += sum_j (b v_j + c e1_ij); then a node update mixing s with the
  norms and inner products of linear maps of v (the frame-transition step of the paper, which
  scalarises v before mixing, is done here with these rotation invariants).
- Readout: an MLP of s gives each atom's energy; forces are -dE/dx.

The projection on e2 is a pseudo-scalar: the model is SE(3)-invariant and chirality-aware, as the
paper's is. Hyperparameters (defaults: the force-field paper's embedding 128, cutoff 6 Å, max
neighbours 500; LEFTNet's otherwise): ``hidden_channels`` (128), ``num_interactions`` (4),
``num_radial`` (32), ``cutoff_A`` (6.0), ``max_neighbours`` (500).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mlff.graph import MAX_ATOMIC_NUMBER, AtomGraph, edge_vectors_A
from mlff.models.base import ForceField
from mlff.models.schnet import cosine_cutoff

NORM_EPSILON = 1e-8  # keeps norms of possibly vanishing vectors differentiable


def smooth_norm(vectors: torch.Tensor, dim: int, keepdim: bool = False) -> torch.Tensor:
    """sqrt(|v|^2 + eps), differentiable at v = 0."""
    return torch.sqrt((vectors * vectors).sum(dim=dim, keepdim=keepdim) + NORM_EPSILON)


class ExpNormalBasis(nn.Module):
    """exp(-beta (exp(-d) - mu_k)^2) with mu_k evenly spaced on [exp(-cutoff), 1], times a cosine cutoff."""

    def __init__(self, cutoff_A: float, n: int):
        super().__init__()
        start = math.exp(-cutoff_A)
        self.register_buffer("means", torch.linspace(start, 1.0, n), persistent=False)
        self.beta = (2.0 / n * (1.0 - start)) ** -2

    def forward(self, distance_A: torch.Tensor, envelope: torch.Tensor) -> torch.Tensor:
        """The basis [n_edges, n] of ``distance_A`` [n_edges], times ``envelope`` [n_edges] (the cosine cutoff)."""
        gaussians = torch.exp(-self.beta * (torch.exp(-distance_A)[:, None] - self.means) ** 2)  # [n_edges, n]
        return gaussians * envelope[:, None]


class NeighbourEmbedding(nn.Module):
    """s_i = W [emb(z_i), sum_j emb'(z_j) * radial_ij]."""

    def __init__(self, hidden_channels: int):
        super().__init__()
        self.own = nn.Embedding(MAX_ATOMIC_NUMBER + 1, hidden_channels)
        self.neighbour = nn.Embedding(MAX_ATOMIC_NUMBER + 1, hidden_channels)
        self.combine = nn.Linear(2 * hidden_channels, hidden_channels)

    def forward(self, numbers, edge_index, radial):
        sender, receiver = edge_index
        own = self.own(numbers)  # [n_atoms, hidden]
        pooled = torch.zeros_like(own).index_add_(0, receiver, self.neighbour(numbers)[sender] * radial)
        return self.combine(torch.cat([own, pooled], dim=-1))


class MessageBlock(nn.Module):
    """Equivariant messages: scalars from scalars, vectors from neighbour vectors and edge directions."""

    def __init__(self, hidden_channels: int, num_radial: int):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.scalar_mlp = nn.Sequential(
            nn.Linear(hidden_channels, hidden_channels), nn.SiLU(), nn.Linear(hidden_channels, 3 * hidden_channels)
        )
        self.radial = nn.Linear(num_radial, 3 * hidden_channels)

    def forward(self, s, v, edge_index, rbf, edge_weight, unit):
        sender, receiver = edge_index
        phi = self.scalar_mlp(s)[sender] * self.radial(rbf) * edge_weight.repeat(1, 3)  # [n_edges, 3 hidden]
        a, b, c = phi.split(self.hidden_channels, dim=-1)  # [n_edges, hidden] each
        ds = torch.zeros_like(s).index_add_(0, receiver, a)  # [n_atoms, hidden]
        vector_messages = b[:, None, :] * v[sender] + c[:, None, :] * unit[:, :, None]  # [n_edges, 3, hidden]
        dv = torch.zeros_like(v).index_add_(0, receiver, vector_messages)  # [n_atoms, 3, hidden]
        return s + ds, v + dv


class UpdateBlock(nn.Module):
    """Node update from s, |U v| and <U v, V v>: s += a_ss + a_sv <Uv, Vv>, v += a_vv U v."""

    def __init__(self, hidden_channels: int):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.mix = nn.Linear(hidden_channels, 2 * hidden_channels, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * hidden_channels, hidden_channels), nn.SiLU(), nn.Linear(hidden_channels, 3 * hidden_channels)
        )

    def forward(self, s, v):
        u, w = self.mix(v).split(self.hidden_channels, dim=-1)  # [n_atoms, 3, hidden] each
        a_vv, a_sv, a_ss = self.mlp(torch.cat([s, smooth_norm(w, dim=1)], dim=-1)).split(self.hidden_channels, -1)
        return s + a_ss + a_sv * (u * w).sum(dim=1), v + a_vv[:, None, :] * u


class LEFTNet(ForceField):
    name = "leftnet"
    positive_hparams = ("num_interactions", "num_radial")

    def __init__(
        self,
        *,
        hidden_channels: int = 128,
        num_interactions: int = 4,
        num_radial: int = 32,
        cutoff_A: float = 6.0,
        max_neighbours: int = 500,
    ):
        super().__init__(locals())
        if hidden_channels < 2:
            raise ValueError(f"hyperparameter hidden_channels must be at least 2, got {hidden_channels!r}")
        self.basis = ExpNormalBasis(cutoff_A, num_radial)
        self.radial = nn.Linear(num_radial, hidden_channels)
        self.embedding = NeighbourEmbedding(hidden_channels)
        self.substructure_radial = nn.Linear(num_radial, hidden_channels)
        self.frame_weight = nn.Sequential(
            nn.Linear(6 * hidden_channels, hidden_channels), nn.SiLU(), nn.Linear(hidden_channels, hidden_channels)
        )
        self.messages = nn.ModuleList(MessageBlock(hidden_channels, num_radial) for _ in range(num_interactions))
        self.updates = nn.ModuleList(UpdateBlock(hidden_channels) for _ in range(num_interactions))
        self.readout = nn.Sequential(
            nn.Linear(hidden_channels, hidden_channels // 2), nn.SiLU(), nn.Linear(hidden_channels // 2, 1)
        )

    def edge_frames(self, graph: AtomGraph, vectors_A, distance_A, envelope) -> torch.Tensor:
        """Orthonormal frames [n_edges, 3, 3] (rows e1, e2, e3) of each edge; ``envelope`` [n_edges] is
        the cosine cutoff of ``distance_A``."""
        sender, receiver = graph.edge_index
        centre_A = torch.zeros_like(graph.positions_A).index_add_(0, receiver, vectors_A * envelope[:, None])
        e1 = vectors_A / distance_A[:, None]  # [n_edges, 3]
        normal = torch.linalg.cross(e1, centre_A[receiver] + centre_A[sender])  # [n_edges, 3]
        e2 = normal / smooth_norm(normal, dim=-1, keepdim=True)
        return torch.stack([e1, e2, torch.linalg.cross(e1, e2)], dim=1)

    def atom_energies_eV(self, graph: AtomGraph) -> torch.Tensor:
        sender, receiver = graph.edge_index
        vectors_A = edge_vectors_A(graph)  # [n_edges, 3]
        distance_A = vectors_A.norm(dim=-1)  # [n_edges]
        envelope = cosine_cutoff(distance_A, self.cutoff_A)  # [n_edges]
        rbf = self.basis(distance_A, envelope)  # [n_edges, num_radial], zero at the cutoff
        s = self.embedding(graph.numbers, graph.edge_index, self.radial(rbf))  # [n_atoms, hidden]
        frames = self.edge_frames(graph, vectors_A, distance_A, envelope)  # [n_edges, 3, 3]
        unit = frames[:, 0]  # [n_edges, 3]
        # local substructure encoding: a vector summary of each atom's neighbourhood, scalarised per edge
        weighted = (s[sender] * self.substructure_radial(rbf))[:, None, :] * unit[:, :, None]  # [n_edges, 3, hidden]
        summary = torch.zeros(s.shape[0], 3, s.shape[1], dtype=s.dtype, device=s.device)
        summary.index_add_(0, receiver, weighted)  # [n_atoms, 3, hidden]
        pair = torch.stack([summary[receiver], summary[sender]], dim=1)  # [n_edges, 2, 3, hidden]
        projections = torch.einsum("eab,epbh->epah", frames, pair).flatten(1, 2)  # [n_edges, 6, hidden]
        edge_weight = self.frame_weight(projections.flatten(1)) * envelope[:, None]
        v = torch.zeros_like(summary)  # [n_atoms, 3, hidden]
        for message, update in zip(self.messages, self.updates):
            s, v = message(s, v, graph.edge_index, rbf, edge_weight, unit)
            s, v = update(s, v)
        return self.readout(s).squeeze(-1)
