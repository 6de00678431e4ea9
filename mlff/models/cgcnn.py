"""CGCNN (Xie & Grossman, Phys. Rev. Lett. 120, 145301, 2018), periodic, with a per-atom energy head.

Atoms are embedded by element; each of ``num_interactions`` gated convolutions (the paper's eq. 5)
updates them from the concatenation z_ij = [v_i, v_j, u_ij] of the receiver, the sender and the
Gaussian-expanded distance::

    v_i <- v_i + sum_j sigmoid(z_ij W_f + b_f) * softplus(z_ij W_s + b_s) * c(d_ij)

An atom-wise MLP (one hidden softplus layer, as the paper's single hidden layer after pooling) maps
each atom to an energy; the structure energy is their sum, so it is extensive.

Departures from the paper, both for a force field: each message is multiplied by the cosine cutoff
c(d) = 0.5 (cos(pi d / cutoff) + 1) so the energy stays smooth when a neighbour crosses the cutoff,
and the batch normalisation of the reference code is left out, since its batch statistics would
make a structure's energy depend on the other structures in its batch.

Hyperparameters (defaults: the force-field paper's 128 / 6 Å / 500, the CGCNN paper's otherwise):

- ``hidden_channels`` (128): atom feature size.
- ``num_interactions`` (3): convolution layers.
- ``num_gaussians`` (31): Gaussians on [0, cutoff_A], spacing and width 0.2 Å at 6 Å as in CGCNN.
- ``head_channels`` (128): hidden layer of the energy head.
- ``cutoff_A`` (6.0), ``max_neighbours`` (500): neighbour graph.
"""

from __future__ import annotations

import torch
from torch import nn

from mlff.graph import MAX_ATOMIC_NUMBER, AtomGraph, edge_vectors_A
from mlff.models.base import ForceField
from mlff.models.schnet import GaussianBasis, cosine_cutoff


class GatedConvolution(nn.Module):
    """The paper's eq. 5: a sigmoid gate times a softplus core, summed over neighbours, residual."""

    def __init__(self, hidden_channels: int, num_gaussians: int):
        super().__init__()
        self.gate_and_core = nn.Linear(2 * hidden_channels + num_gaussians, 2 * hidden_channels)

    def forward(self, v, edge_index, basis, envelope):
        sender, receiver = edge_index
        z = torch.cat([v[receiver], v[sender], basis], dim=-1)  # [n_edges, 2 hidden + num_gaussians]
        gate, core = self.gate_and_core(z).chunk(2, dim=-1)  # [n_edges, hidden] each
        messages = torch.sigmoid(gate) * nn.functional.softplus(core) * envelope[:, None]  # [n_edges, hidden]
        return v + torch.zeros_like(v).index_add_(0, receiver, messages)


class CGCNN(ForceField):
    name = "cgcnn"
    positive_hparams = ("hidden_channels", "num_interactions", "head_channels")

    def __init__(
        self,
        *,
        hidden_channels: int = 128,
        num_interactions: int = 3,
        num_gaussians: int = 31,
        head_channels: int = 128,
        cutoff_A: float = 6.0,
        max_neighbours: int = 500,
    ):
        super().__init__(locals())
        self.embedding = nn.Embedding(MAX_ATOMIC_NUMBER + 1, hidden_channels)
        self.basis = GaussianBasis(cutoff_A, num_gaussians)
        self.convolutions = nn.ModuleList(
            GatedConvolution(hidden_channels, num_gaussians) for _ in range(num_interactions)
        )
        self.head = nn.Sequential(
            nn.Linear(hidden_channels, head_channels), nn.Softplus(), nn.Linear(head_channels, 1)
        )

    def atom_energies_eV(self, graph: AtomGraph) -> torch.Tensor:
        distance_A = edge_vectors_A(graph).norm(dim=-1)  # [n_edges]
        basis = self.basis(distance_A)  # [n_edges, num_gaussians]
        envelope = cosine_cutoff(distance_A, self.cutoff_A)  # [n_edges]
        v = self.embedding(graph.numbers)  # [n_atoms, hidden_channels]
        for convolution in self.convolutions:
            v = convolution(v, graph.edge_index, basis, envelope)
        return self.head(v).squeeze(-1)  # [n_atoms]
