"""Equiformer (Liao & Smidt, ICLR 2023, arXiv:2206.11990): equivariant graph attention, periodic.

Each atom carries irreps features (e3nn's flattened layout) with ``hidden_channels`` scalars and half
as many channels at each higher degree, up to ``lmax``: 128x0e + 64x1e at the defaults. Atoms start
from an element embedding plus an edge-degree embedding (a sum over neighbours of spherical
harmonics weighted by a radial MLP). Each of the ``num_layers`` Transformer blocks is

    x = x + attention(norm(x));  x = x + feed_forward(norm(x))

with the paper's equivariant layer norm. Attention is the paper's MLP attention with non-linear
messages: the sum of linear maps of the sender and the receiver goes through a depthwise tensor
product with the edge's spherical harmonics, weighted by a radial MLP of the distance. Its scalars
give, per head, a logit a . SmoothLeakyReLU(s) that is soft-maxed over the receiver's incoming edges; the
rest is gated, goes through a second depthwise tensor product, and becomes the values. The heads'
weighted sums are concatenated and mixed by a linear map. The feed-forward block is linear, gate,
linear with ``ffn_channels`` scalars (3x the embedding, as in the paper). The energy of an atom is
an MLP of its normalised scalars.

Departures from the paper, all for smooth, exactly equivariant conservative force fields:

- The paper's OC20 model has L_max = 1, its MD17 models L_max = 2; the default is 1: OC20 is the
  periodic-materials setting, and an energy-and-forces evaluation of 50-atom LGPS at 6 Å is about
  3x faster than with L_max = 2 at the same width (one CPU thread).
- Features are all of even parity (0e, 1e, 2e) and the harmonics are labelled so, as in the paper's
  OC20 model: the energy is invariant to rotations (SE(3)), not to reflections.
- Softmax weights and messages carry DimeNet's polynomial envelope of the distance, so the energy
  stays continuous when a neighbour crosses the cutoff: the weight of edge j at receiver i is
  u_ij exp(a_ij) / sum_k u_ik exp(a_ik) and its message u_ij alpha_ij v_ij.
- Forces are -dE/dx by autograd (the paper's MD17 models do the same; OC20 has no force task).
- Tensor products, linear maps and gates are written here on e3nn's ``Irreps``, Wigner 3j symbols
  and spherical harmonics rather than taken from e3nn: e3nn's modules generate and optimise code
  when built (3.4 s for the two-layer test model, against 0.1 s here), and keep their 3j symbols in
  the default dtype, float32, which leaves float64 equivariance errors near 1e-10 at L_max = 2.
  Here the 3j symbols stay float64 and are cast to the features' dtype when used.
- No dropout, drop-path or attention dropout (they are regularisers at training time only).
- The layer norm of each l > 0 block adds 0.1 to its mean square (``DEGREE_NORM_EPSILON``), not
  1e-5, so near-zero blocks at symmetric sites are not amplified into large forces.

Hyperparameters (defaults: the paper's OC20 model, with the force-field paper's 128 / 6 Å / 500):

- ``hidden_channels`` (128): scalar channels of the atom features; degree l has hidden_channels / 2^l.
- ``lmax`` (1): largest degree of the features and of the spherical harmonics.
- ``num_layers`` (6): Transformer blocks.
- ``num_heads`` (8), ``head_channels`` (32): attention heads and the scalar channels of each head's
  value (degree l: head_channels / 2^l) and logit features.
- ``ffn_channels`` (384): scalar channels inside the feed-forward block (degree l: ffn_channels / 2^l).
- ``num_gaussians`` (128), ``radial_channels`` (64): Gaussians on [0, cutoff_A] and the radial MLPs' width.
- ``avg_neighbours`` (40.0): divides the edge-degree embedding's sum (LGPS has about 45 neighbours
  within 6 Å; the paper uses the mean degree of its training set).
- ``envelope_p`` (5): exponent of DimeNet's polynomial envelope.
- ``cutoff_A`` (6.0), ``max_neighbours`` (500): neighbour graph.
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from torch import nn
from torch_geometric.utils import scatter

from mlff.graph import MAX_ATOMIC_NUMBER, AtomGraph, edge_vectors_A
from mlff.models.base import DEGREE_NORM_EPSILON, ForceField
from mlff.models.deeper_gatgnn import segment_softmax
from mlff.models.dimenet_pp import envelope
from mlff.models.schnet import GaussianBasis

LAYER_NORM_EPSILON = 1e-5
LEAKY_SLOPE = 0.2  # negative slope of the smooth leaky ReLU on the attention features


def halving_irreps(channels: int, lmax: int) -> o3.Irreps:
    """``channels`` x 0e + channels/2 x 1e + channels/4 x 2e + ... up to ``lmax``."""
    return o3.Irreps([(channels >> l, (l, 1)) for l in range(lmax + 1)])


def smooth_leaky_relu(x: torch.Tensor) -> torch.Tensor:
    """The paper's smooth leaky ReLU: (1+a)/2 x + (1-a)/2 x (2 sigmoid(x) - 1), a = LEAKY_SLOPE."""
    return 0.5 * (1 + LEAKY_SLOPE) * x + 0.5 * (1 - LEAKY_SLOPE) * x * (2 * torch.sigmoid(x) - 1)


class DepthwiseTensorProduct(nn.Module):
    """Each channel of x times the edge's harmonics, every path l_in x l_sh -> l_out <= lmax_out.

    Weighted per edge, path and channel (the weights come from a radial MLP). Output irreps: one
    segment (mul, l_out) per path, in path order. Each path is scaled by sqrt(2 l_out + 1), e3nn's
    component normalisation: unit-variance components in give unit-variance components out.
    """

    def __init__(self, irreps_in: o3.Irreps, lmax_sh: int, lmax_out: int):
        super().__init__()
        self.paths = []  # (input slice, mul, l_in, l_sh, l_out)
        self.w3j = []  # float64 [2l_in+1, 2l_sh+1, 2l_out+1] per path, times sqrt(2l_out+1)
        for (mul, ir), in_slice in zip(irreps_in, irreps_in.slices()):
            for l_sh in range(lmax_sh + 1):
                for l_out in range(abs(ir.l - l_sh), min(ir.l + l_sh, lmax_out) + 1):
                    self.paths.append((in_slice, mul, ir.l, l_sh, l_out))
                    symbol = o3.wigner_3j(ir.l, l_sh, l_out, dtype=torch.float64)
                    self.w3j.append(symbol * math.sqrt(2 * l_out + 1))
        self.irreps_out = o3.Irreps([(mul, (l_out, 1)) for _, mul, _, _, l_out in self.paths])
        self.weight_numel = sum(mul for _, mul, *_ in self.paths)

    def forward(self, x: torch.Tensor, harmonics: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x [n_edges, irreps_in.dim], harmonics [n_edges, (lmax_sh+1)^2], weight [n_edges, weight_numel]."""
        n_edges, outputs, start = x.shape[0], [], 0
        for (in_slice, mul, l_in, l_sh, l_out), symbol in zip(self.paths, self.w3j):
            x_path = x[:, in_slice].view(n_edges, mul, 2 * l_in + 1)
            y_path = harmonics[:, l_sh * l_sh : (l_sh + 1) * (l_sh + 1)]  # [n_edges, 2l_sh+1]
            coupling = torch.einsum("ej,ijk->eik", y_path, symbol.to(x))  # [n_edges, 2l_in+1, 2l_out+1]
            product = (x_path[..., None] * coupling[:, None]).sum(2)  # [n_edges, mul, 2l_out+1]
            outputs.append((product * weight[:, start : start + mul, None]).flatten(1))
            start += mul
        return torch.cat(outputs, dim=1)  # [n_edges, irreps_out.dim]


class RadialMLP(nn.Module):
    """Per-edge tensor-product weights from the distance basis: linear, layer norm, SiLU, linear."""

    def __init__(self, num_gaussians: int, radial_channels: int, out_features: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(num_gaussians, radial_channels),
            nn.LayerNorm(radial_channels),
            nn.SiLU(),
            nn.Linear(radial_channels, out_features),
        )

    def forward(self, basis: torch.Tensor) -> torch.Tensor:
        return self.net(basis)  # [n_edges, out_features]


class EquivariantLayerNorm(nn.Module):
    """The paper's layer norm: scalars standardised over channels; each degree l > 0 divided by the
    root mean square over its channels of the component-normalised norms; per-channel weights."""

    def __init__(self, irreps: o3.Irreps):
        super().__init__()
        self.irreps = irreps
        self.weights = nn.ParameterList(nn.Parameter(torch.ones(mul)) for mul, _ in irreps)
        self.bias = nn.Parameter(torch.zeros(irreps[0].mul))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = []
        for (mul, ir), block_slice, weight in zip(self.irreps, self.irreps.slices(), self.weights):
            block = x[:, block_slice].view(-1, mul, ir.dim)  # [n, mul, 2l+1]
            if ir.l == 0:
                block = block - block.mean(dim=1, keepdim=True)
                scale = block.pow(2).mean(dim=(1, 2), keepdim=True)
                block = block / torch.sqrt(scale + LAYER_NORM_EPSILON) * weight[:, None] + self.bias[:, None]
            else:
                scale = block.pow(2).mean(dim=2).mean(dim=1)[:, None, None]  # [n, 1, 1]
                block = block / torch.sqrt(scale + DEGREE_NORM_EPSILON) * weight[:, None]
            blocks.append(block.flatten(1))
        return torch.cat(blocks, dim=1)


class IrrepsLinear(nn.Module):
    """Channel mixing per degree: all input segments of degree l to the output's one segment of degree l.

    Weights ~ N(0, 1) scaled by 1/sqrt(fan-in), as e3nn's ``o3.Linear``; optional bias on the scalars.
    Degrees missing from the input give zeros; degrees missing from the output are dropped.
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps, bias: bool = False):
        super().__init__()
        if len({ir.l for _, ir in irreps_out}) != len(irreps_out):
            raise ValueError(f"IrrepsLinear needs one output segment per degree, got {irreps_out}")
        self.irreps_out = irreps_out
        self.inputs = []  # per output segment: the input slices of its degree
        self.weights = nn.ParameterList()
        for mul_out, ir_out in irreps_out:
            slices = [(s, mul) for (mul, ir), s in zip(irreps_in, irreps_in.slices()) if ir.l == ir_out.l]
            self.inputs.append(slices)
            self.weights.append(nn.Parameter(torch.randn(sum(mul for _, mul in slices), mul_out)))
        self.bias = nn.Parameter(torch.zeros(irreps_out[0].mul)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for (mul_out, ir_out), slices, weight in zip(self.irreps_out, self.inputs, self.weights):
            if not slices:
                outputs.append(x.new_zeros(x.shape[0], mul_out * ir_out.dim))
                continue
            blocks = [x[:, s].view(x.shape[0], mul, ir_out.dim) for s, mul in slices]
            block = torch.cat(blocks, dim=1)  # [n, fan_in, 2l+1]
            out = (block.transpose(1, 2) @ weight).transpose(1, 2) * weight.shape[0] ** -0.5  # [n, mul_out, 2l+1]
            if ir_out.l == 0 and self.bias is not None:
                out = out + self.bias[:, None]
            outputs.append(out.flatten(1))
        return torch.cat(outputs, dim=1)


class Gate(nn.Module):
    """SiLU on ``channels`` scalars; each degree-l > 0 channel times the sigmoid of its own gate scalar.

    Input: (channels + n_gates) x 0e + channels/2 x 1e + ...; output: halving_irreps(channels, lmax).
    """

    def __init__(self, channels: int, lmax: int):
        super().__init__()
        self.channels, self.lmax = channels, lmax
        self.irreps_out = halving_irreps(channels, lmax)
        n_gates = self.irreps_out.num_irreps - channels
        self.irreps_in = o3.Irreps([(channels + n_gates, (0, 1))]) + self.irreps_out[1:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_scalars = self.irreps_in[0].mul
        gates = torch.sigmoid(x[:, self.channels : n_scalars])  # [n, n_gates]
        outputs, gate_start = [nn.functional.silu(x[:, : self.channels])], 0
        for (mul, ir), block_slice in zip(self.irreps_in[1:], self.irreps_in.slices()[1:]):
            block = x[:, block_slice].view(x.shape[0], mul, ir.dim)  # [n, mul, 2l+1]
            outputs.append((block * gates[:, gate_start : gate_start + mul, None]).flatten(1))
            gate_start += mul
        return torch.cat(outputs, dim=1)


class GraphAttention(nn.Module):
    """The paper's equivariant graph attention: MLP attention over incoming edges, non-linear values."""

    def __init__(self, irreps: o3.Irreps, lmax, num_heads, head_channels, num_gaussians, radial_channels):
        super().__init__()
        self.num_heads, self.head_channels = num_heads, head_channels
        self.source = IrrepsLinear(irreps, irreps)
        self.destination = IrrepsLinear(irreps, irreps, bias=True)
        self.first_product = DepthwiseTensorProduct(irreps, lmax, lmax)
        self.first_radial = RadialMLP(num_gaussians, radial_channels, self.first_product.weight_numel)
        logit_irreps = o3.Irreps(f"{num_heads * head_channels}x0e")
        self.attention_features = IrrepsLinear(self.first_product.irreps_out, logit_irreps)
        self.alpha_dot = nn.Parameter(torch.randn(num_heads, head_channels) * head_channels**-0.5)
        self.gate = Gate(num_heads * head_channels, lmax)
        self.value_in = IrrepsLinear(self.first_product.irreps_out, self.gate.irreps_in, bias=True)
        self.second_product = DepthwiseTensorProduct(self.gate.irreps_out, lmax, lmax)
        self.second_radial = RadialMLP(num_gaussians, radial_channels, self.second_product.weight_numel)
        value_irreps = halving_irreps(num_heads * head_channels, lmax)
        self.value = IrrepsLinear(self.second_product.irreps_out, value_irreps)
        self.output = IrrepsLinear(value_irreps, irreps, bias=True)
        # head of each value component: degree l holds num_heads blocks of head_channels / 2^l channels
        heads = [torch.arange(num_heads).repeat_interleave((head_channels >> ir.l) * ir.dim) for _, ir in value_irreps]
        self.register_buffer("head_of_component", torch.cat(heads), persistent=False)  # [value_irreps.dim]

    def forward(self, x, edge_index, harmonics, basis, edge_envelope):
        """x [n_atoms, dim] -> update [n_atoms, dim]; per edge: harmonics, basis [n_edges, n_gaussians],
        edge_envelope [n_edges]."""
        sender, receiver = edge_index
        message = self.source(x)[sender] + self.destination(x)[receiver]  # [n_edges, dim]
        hidden = self.first_product(message, harmonics, self.first_radial(basis))  # [n_edges, first out dim]
        features = smooth_leaky_relu(self.attention_features(hidden)).view(-1, self.num_heads, self.head_channels)
        logits = torch.einsum("ehc,hc->eh", features, self.alpha_dot)  # [n_edges, n_heads]
        # u_ij exp(a_ij) / sum_k u_ik exp(a_ik) over the edges k into each receiver i: [n_edges, n_heads]
        weights = segment_softmax(logits, receiver, x.shape[0], edge_envelope)
        values = self.second_product(self.gate(self.value_in(hidden)), harmonics, self.second_radial(basis))
        values = self.value(values) * (weights * edge_envelope[:, None])[:, self.head_of_component]
        return self.output(scatter(values, receiver, dim_size=x.shape[0], reduce="sum"))


class FeedForward(nn.Module):
    """Linear, gate, linear, with ``ffn_channels`` scalars in between."""

    def __init__(self, irreps: o3.Irreps, lmax: int, ffn_channels: int):
        super().__init__()
        self.gate = Gate(ffn_channels, lmax)
        self.inner = IrrepsLinear(irreps, self.gate.irreps_in, bias=True)
        self.outer = IrrepsLinear(self.gate.irreps_out, irreps, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(self.gate(self.inner(x)))


class Block(nn.Module):
    """Pre-normed graph attention, then a pre-normed feed-forward block, each with a residual."""

    def __init__(self, irreps, lmax, num_heads, head_channels, ffn_channels, num_gaussians, radial_channels):
        super().__init__()
        self.attention_norm = EquivariantLayerNorm(irreps)
        self.attention = GraphAttention(irreps, lmax, num_heads, head_channels, num_gaussians, radial_channels)
        self.feed_forward_norm = EquivariantLayerNorm(irreps)
        self.feed_forward = FeedForward(irreps, lmax, ffn_channels)

    def forward(self, x, edge_index, harmonics, basis, edge_envelope):
        x = x + self.attention(self.attention_norm(x), edge_index, harmonics, basis, edge_envelope)
        return x + self.feed_forward(self.feed_forward_norm(x))


class Equiformer(ForceField):
    name = "equiformer"
    positive_hparams = ("num_layers", "num_heads", "radial_channels", "avg_neighbours", "envelope_p")

    def __init__(
        self,
        *,
        hidden_channels: int = 128,
        lmax: int = 1,
        num_layers: int = 6,
        num_heads: int = 8,
        head_channels: int = 32,
        ffn_channels: int = 384,
        num_gaussians: int = 128,
        radial_channels: int = 64,
        avg_neighbours: float = 40.0,
        envelope_p: int = 5,
        cutoff_A: float = 6.0,
        max_neighbours: int = 500,
    ):
        super().__init__(locals())
        if lmax not in (0, 1, 2, 3):
            raise ValueError(f"hyperparameter lmax must be 0, 1, 2 or 3, got {lmax!r}")
        for name in ("hidden_channels", "head_channels", "ffn_channels"):
            if self.hparams[name] < 2**lmax or self.hparams[name] % 2**lmax:
                raise ValueError(f"hyperparameter {name} must be a positive multiple of 2^lmax = {2**lmax}, "
                                 f"got {self.hparams[name]!r}")
        self.irreps = halving_irreps(hidden_channels, lmax)
        self.element = nn.Embedding(MAX_ATOMIC_NUMBER + 1, hidden_channels)
        self.distance_basis = GaussianBasis(cutoff_A, num_gaussians)
        self.degree_scalars = nn.Parameter(torch.randn(hidden_channels))
        self.degree_product = DepthwiseTensorProduct(o3.Irreps(f"{hidden_channels}x0e"), lmax, lmax)
        self.degree_radial = RadialMLP(num_gaussians, radial_channels, self.degree_product.weight_numel)
        self.degree_linear = IrrepsLinear(self.degree_product.irreps_out, self.irreps)
        self.blocks = nn.ModuleList(
            Block(self.irreps, lmax, num_heads, head_channels, ffn_channels, num_gaussians, radial_channels)
            for _ in range(num_layers)
        )
        self.output_norm = EquivariantLayerNorm(self.irreps)
        self.readout = nn.Sequential(
            nn.Linear(hidden_channels, hidden_channels), nn.SiLU(), nn.Linear(hidden_channels, 1)
        )

    def atom_energies_eV(self, graph: AtomGraph) -> torch.Tensor:
        receiver = graph.edge_index[1]
        vectors_A = edge_vectors_A(graph)  # [n_edges, 3]
        distance_A = vectors_A.norm(dim=-1)  # [n_edges]
        lmax = self.hparams["lmax"]
        harmonics = o3.spherical_harmonics(list(range(lmax + 1)), vectors_A, True, "component")  # [n_edges, (lmax+1)^2]
        basis = self.distance_basis(distance_A)  # [n_edges, num_gaussians]
        edge_envelope = envelope(distance_A / self.cutoff_A, self.hparams["envelope_p"])  # [n_edges]
        scalars = self.degree_scalars.expand(len(distance_A), -1)  # [n_edges, hidden]
        degree = self.degree_linear(self.degree_product(scalars, harmonics, self.degree_radial(basis)))
        degree = degree * (edge_envelope / self.hparams["avg_neighbours"])[:, None]  # [n_edges, dim]
        x = scatter(degree, receiver, dim_size=graph.n_atoms, reduce="sum")  # [n_atoms, dim]
        x = x + nn.functional.pad(self.element(graph.numbers), (0, self.irreps.dim - self.irreps[0].mul))
        for block in self.blocks:
            x = block(x, graph.edge_index, harmonics, basis, edge_envelope)
        scalars_out = self.output_norm(x)[:, : self.irreps[0].mul]  # [n_atoms, hidden]
        return self.readout(scalars_out).squeeze(-1)  # [n_atoms]
