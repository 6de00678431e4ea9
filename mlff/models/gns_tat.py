"""GNS-TAT (Zaidi et al., "Pre-training via Denoising for Molecular Property Prediction", arXiv 2206.00133).

A Graph Network Simulator (encode, process, decode; Sanchez-Gonzalez et al. 2020) made trainable at
depth without normalisation layers by Tailored Activation Transformation (TAT; Zhang et al. 2022):

- Encoder: atoms embed by element; edges are an MLP of Gaussian-expanded distances times a cosine
  cutoff. Only distances enter, so the model is E(3)-invariant.
- Processor: ``num_interactions`` graph-network blocks with residuals: every edge latent is
  updated by an MLP of [edge, sender, receiver], every atom latent by an MLP of [atom, sum of
  incoming edges]. The residuals are TAT's weighted shortcuts sqrt(w) x + sqrt(1 - w) f(x).
- Decoder: an MLP per atom gives its energy, summed per structure.

Conservative forces (-dE/dx). Zaidi et al. use GNS-TAT for energies and properties; its only
vector output is the denoising head of pre-training, not a force. An invariant network's direct
vector head could not be rotation-equivariant, so forces come from the energy gradient.

TAT: every activation is the tailored leaky ReLU sqrt(2 / (1 + a^2)) (max(x, 0) + a min(x, 0)),
which keeps unit second moments; its slope ``a`` is solved at construction so that the
correlation map of the ``depth`` activations on the longest path maps 0 to ``tat_eta``
(C^depth(0) = eta). Weights start Gaussian with variance 1/fan_in and biases at zero.

Hyperparameters (defaults: the force-field paper's embedding 128, cutoff 6 Å, max neighbours 500):
``hidden_channels`` (128), ``num_interactions`` (12; chosen so the parameter count matches the
force-field paper's 1.97 M), ``mlp_layers`` (2 hidden layers per MLP),
``num_gaussians`` (50), ``tat_eta`` (0.9), ``avg_neighbours`` (50: typical neighbours within 6 Å in
Li-ion sulfides; it scales the sums), ``cutoff_A`` (6.0), ``max_neighbours`` (500).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mlff.graph import MAX_ATOMIC_NUMBER, AtomGraph, edge_vectors_A
from mlff.models.base import ForceField
from mlff.models.schnet import GaussianBasis, cosine_cutoff

BISECTION_STEPS = 60
SHORTCUT_WEIGHT = 0.9  # residual x -> sqrt(w) x + sqrt(1 - w) f(x), TAT's second-moment-preserving shortcut


def leaky_relu_correlation(c: float, slope: float) -> float:
    """Correlation map of the normalised leaky ReLU for unit-variance Gaussian inputs of correlation ``c``."""
    c = min(max(c, -1.0), 1.0)
    return c + (1 - slope) ** 2 / (math.pi * (1 + slope**2)) * (math.sqrt(1 - c * c) - c * math.acos(c))


def tailored_slope(depth: int, eta: float) -> float:
    """Negative slope in [0, 1] whose correlation map composed ``depth`` times maps 0 to ``eta``."""
    low, high = 0.0, 1.0  # C^depth(0) falls from near 1 (slope 0, ReLU) to 0 (slope 1, identity)
    for _ in range(BISECTION_STEPS):
        slope, c = 0.5 * (low + high), 0.0
        for _ in range(depth):
            c = leaky_relu_correlation(c, slope)
        low, high = (slope, high) if c > eta else (low, slope)
    return 0.5 * (low + high)


class TailoredReLU(nn.Module):
    """sqrt(2 / (1 + a^2)) (max(x, 0) + a min(x, 0)): a leaky ReLU with unit output second moment."""

    def __init__(self, slope: float):
        super().__init__()
        self.slope, self.scale = slope, math.sqrt(2.0 / (1.0 + slope**2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * nn.functional.leaky_relu(x, self.slope)


def tat_mlp(in_channels: int, hidden_channels: int, out_channels: int, hidden_layers: int, slope: float):
    """``hidden_layers`` TailoredReLU layers of ``hidden_channels``, then linear to ``out_channels``."""
    layers, width = [], in_channels
    for _ in range(hidden_layers):
        layers += [nn.Linear(width, hidden_channels), TailoredReLU(slope)]
        width = hidden_channels
    layers.append(nn.Linear(width, out_channels))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=layer.in_features**-0.5)
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class GraphNetworkBlock(nn.Module):
    """Edge update from [edge, sender, receiver], then atom update from [atom, summed edges]; residual.

    Edges are weighted by the cutoff envelope when summed, so the energy is smooth as atoms cross it,
    and the sum is divided by sqrt(avg_neighbours) so that it keeps unit scale, as TAT assumes.
    """

    def __init__(self, hidden_channels: int, mlp_layers: int, slope: float, avg_neighbours: float):
        super().__init__()
        self.sum_scale = avg_neighbours**-0.5
        self.edge_mlp = tat_mlp(3 * hidden_channels, hidden_channels, hidden_channels, mlp_layers, slope)
        self.node_mlp = tat_mlp(2 * hidden_channels, hidden_channels, hidden_channels, mlp_layers, slope)

    def forward(self, h, e, edge_index, envelope):
        sender, receiver = edge_index
        keep, add = SHORTCUT_WEIGHT**0.5, (1 - SHORTCUT_WEIGHT) ** 0.5
        e = keep * e + add * self.edge_mlp(torch.cat([e, h[sender], h[receiver]], dim=-1))  # [n_edges, hidden]
        weighted = e * (self.sum_scale * envelope)[:, None]  # [n_edges, hidden]
        pooled = torch.zeros_like(h).index_add_(0, receiver, weighted)  # [n_atoms, hidden]
        return keep * h + add * self.node_mlp(torch.cat([h, pooled], dim=-1)), e


class GNSTAT(ForceField):
    name = "gns-tat"
    positive_hparams = ("hidden_channels", "num_interactions", "mlp_layers", "avg_neighbours")

    def __init__(
        self,
        *,
        hidden_channels: int = 128,
        num_interactions: int = 12,
        mlp_layers: int = 2,
        num_gaussians: int = 50,
        tat_eta: float = 0.9,
        avg_neighbours: float = 50.0,
        cutoff_A: float = 6.0,
        max_neighbours: int = 500,
    ):
        super().__init__(locals())
        if not 0 < tat_eta < 1:
            raise ValueError(f"hyperparameter tat_eta must lie strictly between 0 and 1, got {tat_eta!r}")
        depth = (2 * num_interactions + 2) * mlp_layers  # activations on the longest path, encoder to decoder
        slope = tailored_slope(depth, tat_eta)
        self.embedding = nn.Embedding(MAX_ATOMIC_NUMBER + 1, hidden_channels)
        nn.init.normal_(self.embedding.weight)
        self.basis = GaussianBasis(cutoff_A, num_gaussians)
        self.edge_encoder = tat_mlp(num_gaussians, hidden_channels, hidden_channels, mlp_layers, slope)
        self.blocks = nn.ModuleList(
            GraphNetworkBlock(hidden_channels, mlp_layers, slope, avg_neighbours) for _ in range(num_interactions)
        )
        self.decoder = tat_mlp(hidden_channels, hidden_channels, 1, mlp_layers, slope)

    def atom_energies_eV(self, graph: AtomGraph) -> torch.Tensor:
        distance_A = edge_vectors_A(graph).norm(dim=-1)  # [n_edges]
        envelope = cosine_cutoff(distance_A, self.cutoff_A)  # [n_edges]
        e = self.edge_encoder(self.basis(distance_A))  # [n_edges, hidden]
        h = self.embedding(graph.numbers)  # [n_atoms, hidden]
        for block in self.blocks:
            h, e = block(h, e, graph.edge_index, envelope)
        return self.decoder(h).squeeze(-1)
