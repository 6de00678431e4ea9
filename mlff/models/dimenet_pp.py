"""DimeNet++ (Gasteiger et al., arXiv:2011.14115, 2020; DimeNet: arXiv:2003.03123), periodic.

Messages live on directed edges. The message ``m_ji`` of edge j -> i is updated from the messages
``m_kj`` of all edges k -> j (k ≠ i) through the angle at j between the directions j -> i and j -> k
and the distance d_kj. Periodic images are distinct neighbours: a triplet is dropped only when
k -> j is the exact reverse of j -> i (same atom *and* opposite image shift), so an atom can
interact with another image of its own receiver. Energy = sum over atoms of the outputs of
``num_interactions + 1`` output blocks (one after the embedding and one after each interaction).

Bases (distances scaled as x = d / cutoff_A, all computed in float64 and cast back):

- radial: sqrt(2) sin(n pi x) / x * u(x), n = 1..num_radial, frequencies trainable (as in DimeNet);
- spherical: sqrt(2) / |j_{l+1}(z_ln)| j_l(z_ln x_kj) u(x_kj) * Y_l^0(angle), l < num_spherical,
  n <= num_radial, with z_ln the n-th root of the spherical Bessel function j_l;
- envelope u(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2), smooth to 2nd order at x = 1.

j_l comes from the upward recurrence in float64, accurate for distances above ~0.3 Å.

Hyperparameters (defaults: the DimeNet++ paper's, with the force-field paper's 128 / 6 Å / 500):

- ``hidden_channels`` (128): edge message size.
- ``out_emb_channels`` (256): width of the output-block MLPs.
- ``int_emb_size`` (64): triplet interaction size (down-projection of messages).
- ``basis_emb_size`` (8): bottleneck of the basis projections.
- ``num_interactions`` (4): interaction blocks (DimeNet++'s ``num_blocks``).
- ``num_spherical`` (7), ``num_radial`` (6): basis sizes.
- ``envelope_p`` (6): envelope exponent p.
- ``num_before_skip`` (1), ``num_after_skip`` (2): residual layers around the skip connection.
- ``num_output_layers`` (3): dense layers in each output block.
- ``cutoff_A`` (6.0), ``max_neighbours`` (500): neighbour graph.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.special import spherical_jn
from torch import nn

from mlff.graph import MAX_ATOMIC_NUMBER, AtomGraph, edge_vectors_A
from mlff.models.base import ForceField


def spherical_bessel_roots(num_spherical: int, num_radial: int) -> np.ndarray:
    """First ``num_radial`` positive roots of j_l for l < num_spherical: [num_spherical, num_radial].

    Roots of j_l interlace those of j_(l-1), so each is bracketed by two consecutive lower-order roots.
    """
    brackets = math.pi * np.arange(1, num_radial + num_spherical)  # roots of j_0
    roots = [brackets[:num_radial]]
    for order in range(1, num_spherical):
        brackets = np.array(
            [brentq(lambda x: spherical_jn(order, x), a, b) for a, b in zip(brackets[:-1], brackets[1:])]
        )
        roots.append(brackets[:num_radial])
    return np.stack(roots)


def spherical_bessel(x: torch.Tensor, num_orders: int) -> torch.Tensor:
    """j_l(x) for l < num_orders by upward recurrence: [num_orders, *x.shape]."""
    sin, cos = torch.sin(x), torch.cos(x)
    values = [sin / x, sin / x**2 - cos / x]
    for order in range(1, num_orders - 1):
        values.append((2 * order + 1) / x * values[order] - values[order - 1])
    return torch.stack(values[:num_orders])


def legendre(cos_angle: torch.Tensor, num_orders: int) -> torch.Tensor:
    """Legendre polynomials P_l(cos_angle) for l < num_orders: [*cos_angle.shape, num_orders]."""
    values = [torch.ones_like(cos_angle), cos_angle]
    for order in range(1, num_orders - 1):
        values.append(((2 * order + 1) * cos_angle * values[order] - order * values[order - 1]) / (order + 1))
    return torch.stack(values[:num_orders], dim=-1)


def envelope(x: torch.Tensor, p: int) -> torch.Tensor:
    """DimeNet's polynomial envelope u(x) of the scaled distance x in [0, 1]."""
    return 1.0 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)


class RadialBasis(nn.Module):
    def __init__(self, num_radial: int, cutoff_A: float, envelope_p: int):
        super().__init__()
        self.cutoff_A = cutoff_A
        self.envelope_p = envelope_p
        self.frequencies = nn.Parameter(math.pi * torch.arange(1, num_radial + 1, dtype=torch.get_default_dtype()))

    def forward(self, distance_A: torch.Tensor) -> torch.Tensor:
        x = (distance_A / self.cutoff_A).to(torch.float64)[:, None]  # [n_edges, 1]
        basis = math.sqrt(2.0) * torch.sin(self.frequencies.to(torch.float64) * x) / x * envelope(x, self.envelope_p)
        return basis.to(distance_A.dtype)  # [n_edges, num_radial]


class SphericalBasis(nn.Module):
    def __init__(self, num_spherical: int, num_radial: int, cutoff_A: float, envelope_p: int):
        super().__init__()
        self.cutoff_A = cutoff_A
        self.envelope_p = envelope_p
        self.num_spherical = num_spherical
        roots = spherical_bessel_roots(num_spherical, num_radial)  # [num_spherical, num_radial]
        orders = np.arange(num_spherical)[:, None]
        norms = math.sqrt(2.0) / np.abs(spherical_jn(orders + 1, roots))
        harmonic_norms = np.sqrt((2 * np.arange(num_spherical) + 1) / (4 * math.pi))  # Y_l^0 = this * P_l
        self.register_buffer("roots", torch.as_tensor(roots), persistent=False)
        self.register_buffer("norms", torch.as_tensor(norms), persistent=False)
        self.register_buffer("harmonic_norms", torch.as_tensor(harmonic_norms), persistent=False)

    def forward(self, distance_A: torch.Tensor, cos_angle: torch.Tensor, idx_kj: torch.Tensor) -> torch.Tensor:
        x = (distance_A / self.cutoff_A).to(torch.float64)  # [n_edges]
        arguments = x[:, None, None] * self.roots.to(torch.float64)  # [n_edges, num_spherical, num_radial]
        bessel = spherical_bessel(arguments, self.num_spherical)  # [num_spherical(order), n_edges, L, N]
        orders = torch.arange(self.num_spherical, device=x.device)
        bessel = bessel[orders, :, orders].transpose(0, 1)  # [n_edges, L, N]: order l evaluated at z_ln x
        radial = self.norms.to(torch.float64) * bessel * envelope(x, self.envelope_p)[:, None, None]
        angular = legendre(cos_angle.to(torch.float64), self.num_spherical) * self.harmonic_norms.to(torch.float64)
        dtype = distance_A.dtype
        basis = radial.to(dtype)[idx_kj] * angular.to(dtype)[:, :, None]  # [n_triplets, L, N]
        return basis.flatten(1)  # [n_triplets, L * N]


def triplets(edge_index: torch.Tensor, shifts: torch.Tensor, n_atoms: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge pairs (k -> j, j -> i): indices idx_kj, idx_ji [n_triplets], without the exact reverse edge."""
    sender, receiver = edge_index
    n_edges = sender.shape[0]
    by_receiver = torch.argsort(receiver, stable=True)  # [n_edges] edges grouped by receiver
    incoming = torch.bincount(receiver, minlength=n_atoms)  # [n_atoms]
    group_start = torch.cumsum(incoming, 0) - incoming  # [n_atoms] first slot of each group in by_receiver
    n_per_edge = incoming[sender]  # [n_edges] edges arriving at j, for each edge j -> i
    idx_ji = torch.repeat_interleave(torch.arange(n_edges, device=sender.device), n_per_edge)  # [n_triplets]
    first_triplet = torch.cumsum(n_per_edge, 0) - n_per_edge  # [n_edges]
    slot = torch.arange(idx_ji.shape[0], device=sender.device) - first_triplet[idx_ji]  # [n_triplets]
    idx_kj = by_receiver[group_start[sender[idx_ji]] + slot]  # [n_triplets]
    reverse = (sender[idx_kj] == receiver[idx_ji]) & (shifts[idx_kj] == -shifts[idx_ji]).all(dim=-1)
    return idx_kj[~reverse], idx_ji[~reverse]


class Residual(nn.Module):
    """h + act(W2 act(W1 h))."""

    def __init__(self, channels: int):
        super().__init__()
        self.first = nn.Linear(channels, channels)
        self.second = nn.Linear(channels, channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + nn.functional.silu(self.second(nn.functional.silu(self.first(h))))


class Embedding(nn.Module):
    """m_ji = act(W [h_j, h_i, act(W_rbf e_rbf(d_ji))])."""

    def __init__(self, hidden_channels: int, num_radial: int):
        super().__init__()
        self.element = nn.Embedding(MAX_ATOMIC_NUMBER + 1, hidden_channels)
        self.radial = nn.Linear(num_radial, hidden_channels)
        self.combine = nn.Linear(3 * hidden_channels, hidden_channels)

    def forward(self, numbers, rbf, edge_index):
        sender, receiver = edge_index
        h = self.element(numbers)  # [n_atoms, hidden]
        radial = nn.functional.silu(self.radial(rbf))  # [n_edges, hidden]
        return nn.functional.silu(self.combine(torch.cat([h[sender], h[receiver], radial], dim=-1)))


class Interaction(nn.Module):
    """DimeNet++ interaction block: directional message passing with down/up projections."""

    def __init__(
        self, hidden_channels, int_emb_size, basis_emb_size, num_spherical, num_radial, num_before_skip, num_after_skip
    ):
        super().__init__()
        self.rbf_down = nn.Linear(num_radial, basis_emb_size, bias=False)
        self.rbf_up = nn.Linear(basis_emb_size, hidden_channels, bias=False)
        self.sbf_down = nn.Linear(num_spherical * num_radial, basis_emb_size, bias=False)
        self.sbf_up = nn.Linear(basis_emb_size, int_emb_size, bias=False)
        self.message_ji = nn.Linear(hidden_channels, hidden_channels)
        self.message_kj = nn.Linear(hidden_channels, hidden_channels)
        self.down = nn.Linear(hidden_channels, int_emb_size, bias=False)
        self.up = nn.Linear(int_emb_size, hidden_channels, bias=False)
        self.before_skip = nn.Sequential(*(Residual(hidden_channels) for _ in range(num_before_skip)))
        self.skip = nn.Linear(hidden_channels, hidden_channels)
        self.after_skip = nn.Sequential(*(Residual(hidden_channels) for _ in range(num_after_skip)))

    def forward(self, m, rbf, sbf, idx_kj, idx_ji):
        silu = nn.functional.silu
        x_ji = silu(self.message_ji(m))  # [n_edges, hidden]
        x_kj = silu(self.message_kj(m)) * self.rbf_up(self.rbf_down(rbf))  # [n_edges, hidden]
        x_kj = silu(self.down(x_kj))  # [n_edges, int_emb]
        per_triplet = x_kj[idx_kj] * self.sbf_up(self.sbf_down(sbf))  # [n_triplets, int_emb]
        gathered = torch.zeros_like(x_kj).index_add_(0, idx_ji, per_triplet)  # [n_edges, int_emb]
        h = x_ji + silu(self.up(gathered))
        h = self.before_skip(h)
        h = silu(self.skip(h)) + m
        return self.after_skip(h)


class Output(nn.Module):
    """Atom energies from messages: sum_j (W_rbf e_rbf(d_ji)) * m_ji, then an MLP to one number.

    DimeNet++ widens the atom features to ``out_emb_channels`` first; DimeNet (None) does not.
    """

    def __init__(self, hidden_channels, out_emb_channels, num_radial, num_output_layers):
        super().__init__()
        self.radial = nn.Linear(num_radial, hidden_channels, bias=False)
        if out_emb_channels is None:
            self.up, out_emb_channels = nn.Identity(), hidden_channels
        else:
            self.up = nn.Linear(hidden_channels, out_emb_channels, bias=False)
        self.layers = nn.ModuleList(nn.Linear(out_emb_channels, out_emb_channels) for _ in range(num_output_layers))
        self.energy = nn.Linear(out_emb_channels, 1, bias=False)

    def forward(self, m, rbf, receiver, n_atoms):
        per_edge = self.radial(rbf) * m  # [n_edges, hidden]
        per_atom = torch.zeros(n_atoms, m.shape[1], dtype=m.dtype, device=m.device).index_add_(0, receiver, per_edge)
        h = self.up(per_atom)  # [n_atoms, out_emb]
        for layer in self.layers:
            h = nn.functional.silu(layer(h))
        return self.energy(h).squeeze(-1)  # [n_atoms]


class DimeNetPlusPlus(ForceField):
    name = "dimenet++"
    positive_hparams = (
        "hidden_channels", "out_emb_channels", "int_emb_size", "basis_emb_size", "num_interactions", "num_radial",
        "envelope_p",
    )

    def __init__(
        self,
        *,
        hidden_channels: int = 128,
        out_emb_channels: int = 256,
        int_emb_size: int = 64,
        basis_emb_size: int = 8,
        num_interactions: int = 4,
        num_spherical: int = 7,
        num_radial: int = 6,
        envelope_p: int = 6,
        num_before_skip: int = 1,
        num_after_skip: int = 2,
        num_output_layers: int = 3,
        cutoff_A: float = 6.0,
        max_neighbours: int = 500,
    ):
        super().__init__(locals())
        if num_spherical < 2:
            raise ValueError(f"hyperparameter num_spherical must be at least 2, got {num_spherical}")
        for name in ("num_before_skip", "num_after_skip", "num_output_layers"):
            if self.hparams[name] < 0:
                raise ValueError(f"hyperparameter {name} must be non-negative, got {self.hparams[name]}")
        self.radial_basis = RadialBasis(num_radial, cutoff_A, envelope_p)
        self.spherical_basis = SphericalBasis(num_spherical, num_radial, cutoff_A, envelope_p)
        self.embedding = Embedding(hidden_channels, num_radial)
        self.interactions = nn.ModuleList(
            Interaction(hidden_channels, int_emb_size, basis_emb_size, num_spherical, num_radial,
                        num_before_skip, num_after_skip)
            for _ in range(num_interactions)
        )
        self.outputs = nn.ModuleList(
            Output(hidden_channels, out_emb_channels, num_radial, num_output_layers)
            for _ in range(num_interactions + 1)
        )

    def atom_energies_eV(self, graph: AtomGraph) -> torch.Tensor:
        return directional_atom_energies(self, graph)


def directional_atom_energies(model: ForceField, graph: AtomGraph) -> torch.Tensor:
    """DimeNet's and DimeNet++'s shared forward pass: embedding, then interaction and output blocks
    over edge messages, summed into atom energies [n_atoms]. ``model`` holds the blocks."""
    vectors_A = edge_vectors_A(graph)  # [n_edges, 3], receiver i -> sender j
    distance_A = vectors_A.norm(dim=-1)  # [n_edges]
    idx_kj, idx_ji = triplets(graph.edge_index, graph.shifts, graph.n_atoms)
    # angle at j between j -> i (= -vector of edge j->i) and j -> k (= vector of edge k->j)
    cos_angle = -(vectors_A[idx_ji] * vectors_A[idx_kj]).sum(-1) / (distance_A[idx_ji] * distance_A[idx_kj])
    rbf = model.radial_basis(distance_A)  # [n_edges, num_radial]
    sbf = model.spherical_basis(distance_A, cos_angle, idx_kj)  # [n_triplets, num_spherical * num_radial]
    receiver = graph.edge_index[1]
    m = model.embedding(graph.numbers, rbf, graph.edge_index)  # [n_edges, hidden]
    energies = model.outputs[0](m, rbf, receiver, graph.n_atoms)
    for interaction, output in zip(model.interactions, model.outputs[1:]):
        m = interaction(m, rbf, sbf, idx_kj, idx_ji)
        energies = energies + output(m, rbf, receiver, graph.n_atoms)
    return energies  # [n_atoms]
