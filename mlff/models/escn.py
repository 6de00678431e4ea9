"""eSCN (Passaro & Zitnick, ICML 2023, arXiv:2302.03655): equivariant SO(2) convolutions, periodic.

Each atom carries spherical-harmonic coefficients x_i [(lmax+1)^2, hidden_channels] (e3nn's real
basis, index l^2 + l + m). A message from j to i rotates x_j and x_i into the frame of the edge
(the edge direction becomes the y axis, e3nn's polar axis), keeps the orders |m| <= mmax, and applies
an SO(2) convolution: for each m, one linear map mixes all degrees l >= |m| and channels, complex
valued for m > 0 (weights W1, W2 acting on the (+m, -m) pair as W1 x+ - W2 x-, W2 x+ + W1 x-), so it
commutes with every rotation about the edge. A bottleneck of ``so2_channels`` per m is scaled by a
radial function of the distance and the two elements. The message is rotated back, multiplied by a
smooth envelope and summed at the receiver. The energy of an atom is an MLP of its l = 0 channels.

Where the paper applies pointwise nonlinearities on a sampled sphere grid (inside the message and in
the atom-wise feed-forward block), this implementation uses gates instead (SiLU on l = 0, and each
(l > 0, channel) block scaled by the sigmoid of a learned l = 0 channel). Grid nonlinearities are
equivariant only up to sampling error; gates are exactly equivariant, which the tests demand to
1e-9. Blocks are pre-normalised by an equivariant RMS norm per degree, with 0.1 added to the mean
square (``DEGREE_NORM_EPSILON``, shared with SCN) so near-zero degrees are not amplified. Forces are -dE/dx by autograd
(the paper's OC20 model has a direct force head).

Hyperparameters (defaults: the eSCN paper's OC20 model, with the force-field paper's 128 / 6 Å / 500):

- ``hidden_channels`` (128): channels per coefficient (the paper's ``sphere_channels``).
- ``so2_channels`` (256): bottleneck width of each SO(2) convolution (the paper's ``hidden_channels``).
- ``edge_channels`` (128): invariant edge features (distance and both elements).
- ``lmax`` (6), ``mmax`` (2): largest degree kept on atoms, largest order kept in messages.
- ``num_interactions`` (12): layers.
- ``num_gaussians`` (50): Gaussians on [0, cutoff_A] expanding the distance.
- ``envelope_p`` (5): exponent of DimeNet's polynomial envelope.
- ``cutoff_A`` (6.0), ``max_neighbours`` (500): neighbour graph.
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn
from torch_geometric.utils import scatter

from mlff.graph import MAX_ATOMIC_NUMBER, AtomGraph, edge_vectors_A
from mlff.models.base import DEGREE_NORM_EPSILON, ForceField
from mlff.models.dimenet_pp import envelope
from mlff.models.schnet import GaussianBasis

POLE_COS_ANGLE = 0.5  # |cos| of the angle to the y axis above which an edge counts as near a pole
# rotation taking the y axis to the x axis: rotations about x are this, then y, then its inverse
Y_TO_X = torch.tensor([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def rotation_about_y(degree: int, angle: torch.Tensor) -> torch.Tensor:
    """Wigner D of degree l for rotations by ``angle`` [n] about y, e3nn's basis: [n, 2l+1, 2l+1]."""
    l = degree
    orders = torch.arange(-l, l + 1, device=angle.device, dtype=angle.dtype)  # m
    phase = angle[:, None] * orders  # [n, 2l+1]
    # cos(m angle) on the diagonal; sin(-m angle) at row m, column -m (zero where they meet, m = 0)
    return torch.diag_embed(torch.cos(phase)) + torch.diag_embed(torch.sin(-phase)).flip(-1)


def rotation_generators(degree: int) -> torch.Tensor:
    """Generators [3, 2l+1, 2l+1] of rotations about x, y, z in e3nn's real basis, in float64.

    (e3nn's own are built in the default dtype, float32 unless changed.)
    """
    l = degree
    orders = torch.arange(-l, l + 1, dtype=torch.float64)  # m
    raising = torch.diag(-torch.sqrt(l * (l + 1) - orders[:-1] * (orders[:-1] + 1)), diagonal=-1)
    lowering = torch.diag(torch.sqrt(l * (l + 1) - orders[1:] * (orders[1:] - 1)), diagonal=1)
    complex_generators = torch.stack(
        [0.5 * (raising + lowering) + 0j, torch.diag(1j * orders), -0.5j * (raising - lowering)]
    )  # [3, 2l+1, 2l+1] in the complex basis
    basis = o3.change_basis_real_to_complex(l, dtype=torch.float64)
    return torch.real(basis.conj().T @ complex_generators @ basis)


def wigner_of_matrix(degree: int, rotation: torch.Tensor) -> torch.Tensor:
    """Wigner D [2l+1, 2l+1] of a float64 rotation matrix: exp(alpha X_y) exp(beta X_x) exp(gamma X_y)."""
    alpha, beta, gamma = o3.matrix_to_angles(rotation)
    about_x, about_y, _ = rotation_generators(degree)
    return torch.matrix_exp(alpha * about_y) @ torch.matrix_exp(beta * about_x) @ torch.matrix_exp(gamma * about_y)


def degree_of_coefficients(lmax: int) -> torch.Tensor:
    """Degree l of each of the (lmax+1)^2 coefficients: [(lmax+1)^2]."""
    return torch.cat([torch.full((2 * l + 1,), l) for l in range(lmax + 1)])


class EdgeFrame(nn.Module):
    """Rotations into and out of the frame where an edge points along y, keeping orders |m| <= mmax.

    The kept coefficients are ordered by degree, then order: l = 0..lmax, m = -min(l, mmax)..min(l, mmax).
    """

    def __init__(self, lmax: int, mmax: int):
        super().__init__()
        self.lmax, self.mmax = lmax, mmax
        for l in range(lmax + 1):
            self.register_buffer(f"y_to_x_{l}", wigner_of_matrix(l, Y_TO_X), persistent=False)  # [2l+1, 2l+1]

    def wigner(self, unit_vectors: torch.Tensor) -> list[torch.Tensor]:
        """For each degree l, D_l [n_edges, 2l+1, 2l+1] of a rotation taking y to each edge direction.

        The Euler angles of a direction have singular derivatives at the y poles, so edges within 60° of
        them are first turned by Y_TO_X^-1 (to near x) and the result composed with D(Y_TO_X). The two
        rotations differ only by a roll about the edge, which the SO(2) convolutions do not see.
        """
        near_pole = unit_vectors[:, 1].abs() > POLE_COS_ANGLE  # [n_edges]
        safe = unit_vectors.new_tensor([1.0, 0.0, 0.0])  # stands in for edges of the other branch
        direct = torch.where(near_pole[:, None], safe, unit_vectors)  # [n_edges, 3]
        x, y, z = unit_vectors.unbind(-1)
        turned = torch.where(near_pole[:, None], torch.stack([-y, x, z], dim=-1), safe)  # Y_TO_X^T r, i.e. r @ Y_TO_X
        alpha, beta = o3.xyz_to_angles(direct)  # [n_edges] each
        turned_alpha, turned_beta = o3.xyz_to_angles(turned)
        matrices = []
        for l in range(self.lmax + 1):
            y_to_x = getattr(self, f"y_to_x_{l}").to(unit_vectors.dtype)
            matrix = self.euler_wigner(l, alpha, beta, y_to_x)
            turned_matrix = y_to_x @ self.euler_wigner(l, turned_alpha, turned_beta, y_to_x)
            matrices.append(torch.where(near_pole[:, None, None], turned_matrix, matrix))
        return matrices

    @staticmethod
    def euler_wigner(l: int, alpha: torch.Tensor, beta: torch.Tensor, y_to_x: torch.Tensor) -> torch.Tensor:
        """D_l(alpha, beta, 0) = D_l(about y by alpha) D_l(about x by beta): [n_edges, 2l+1, 2l+1]."""
        about_x = y_to_x @ rotation_about_y(l, beta) @ y_to_x.T
        return rotation_about_y(l, alpha) @ about_x

    def kept_rows(self, l: int) -> slice:
        kept = min(l, self.mmax)
        return slice(l - kept, l + kept + 1)

    def to_edge(self, x: torch.Tensor, wigner: list[torch.Tensor]) -> torch.Tensor:
        """x [n_edges, (lmax+1)^2, c] -> kept coefficients in the edge frame [n_edges, n_kept, c]."""
        blocks = []
        for l, matrix in enumerate(wigner):
            block = x[:, l * l : (l + 1) * (l + 1)]  # [n_edges, 2l+1, c]
            blocks.append(torch.einsum("eba,ebc->eac", matrix[:, :, self.kept_rows(l)], block))
        return torch.cat(blocks, dim=1)

    def from_edge(self, x: torch.Tensor, wigner: list[torch.Tensor]) -> torch.Tensor:
        """Kept coefficients in the edge frame [n_edges, n_kept, c] -> [n_edges, (lmax+1)^2, c]."""
        blocks, start = [], 0
        for l, matrix in enumerate(wigner):
            kept = 2 * min(l, self.mmax) + 1
            blocks.append(torch.einsum("eab,ebc->eac", matrix[:, :, self.kept_rows(l)], x[:, start : start + kept]))
            start += kept
        return torch.cat(blocks, dim=1)

    def kept_coefficients(self) -> torch.Tensor:
        """Index l^2 + l + m of each kept coefficient, in the kept layout: [n_kept]."""
        kept = [l * l + l + m for l in range(self.lmax + 1) for m in range(-min(l, self.mmax), min(l, self.mmax) + 1)]
        return torch.tensor(kept)

    def order_positions(self, m: int) -> torch.Tensor:
        """Positions in the kept layout of the coefficients of order m, degrees l = |m|..lmax."""
        positions, start = [], 0
        for l in range(self.lmax + 1):
            kept = min(l, self.mmax)
            if l >= abs(m):
                positions.append(start + kept + m)
            start += 2 * kept + 1
        return torch.tensor(positions)


def complex_linear(layer: nn.Linear, plus: torch.Tensor, minus: torch.Tensor):
    """(W1 x+ - W2 x-, W2 x+ + W1 x-) with [W1; W2] the rows of ``layer``: commutes with rotations of (x+, x-)."""
    plus_1, plus_2 = layer(plus).chunk(2, dim=-1)
    minus_1, minus_2 = layer(minus).chunk(2, dim=-1)
    return plus_1 - minus_2, plus_2 + minus_1


class SO2Convolution(nn.Module):
    """Per order m, in_channels -> so2_channels (scaled by a radial function) -> out_channels.

    The m = 0 path mixes invariants (bias and SiLU allowed) and also emits ``n_gates`` scalars;
    m > 0 paths are complex-linear on the (+m, -m) pair, without bias or nonlinearity.
    """

    def __init__(self, frame: EdgeFrame, in_channels, so2_channels, out_channels, edge_channels, n_gates):
        super().__init__()
        self.frame, self.out_channels, self.so2_channels = frame, out_channels, so2_channels
        lmax, mmax = frame.lmax, frame.mmax
        self.radial = nn.Linear(edge_channels, (mmax + 1) * so2_channels)
        self.down = nn.ModuleList()
        self.up = nn.ModuleList()
        for m in range(mmax + 1):
            n_degrees = lmax + 1 - m
            complex_factor = 1 if m == 0 else 2
            self.down.append(nn.Linear(n_degrees * in_channels, complex_factor * so2_channels, bias=m == 0))
            extra = n_gates if m == 0 else 0
            self.up.append(nn.Linear(so2_channels, complex_factor * n_degrees * out_channels + extra, bias=m == 0))
        for m in range(-mmax, mmax + 1):
            self.register_buffer(f"positions_{m + mmax}", frame.order_positions(m), persistent=False)

    def positions(self, m: int) -> torch.Tensor:
        return getattr(self, f"positions_{m + self.frame.mmax}")

    def forward(self, x: torch.Tensor, edge_features: torch.Tensor):
        """x [n_edges, n_kept, in] -> ([n_edges, n_kept, out], gates [n_edges, n_gates])."""
        n_edges = x.shape[0]
        radial = self.radial(edge_features).view(n_edges, -1, self.so2_channels)  # [n_edges, mmax+1, so2]
        out = x.new_zeros(n_edges, x.shape[1], self.out_channels)
        zero = self.positions(0)
        hidden = nn.functional.silu(self.down[0](x[:, zero].flatten(1)) * radial[:, 0])  # [n_edges, so2]
        result = self.up[0](hidden)
        n_zero = len(zero) * self.out_channels
        out[:, zero] = result[:, :n_zero].view(n_edges, len(zero), self.out_channels)
        gates = result[:, n_zero:]
        for m in range(1, self.frame.mmax + 1):
            plus, minus = self.positions(m), self.positions(-m)
            hidden_plus, hidden_minus = complex_linear(self.down[m], x[:, plus].flatten(1), x[:, minus].flatten(1))
            hidden_plus, hidden_minus = hidden_plus * radial[:, m], hidden_minus * radial[:, m]
            up_plus, up_minus = complex_linear(self.up[m], hidden_plus, hidden_minus)
            out[:, plus] = up_plus.view(n_edges, len(plus), self.out_channels)
            out[:, minus] = up_minus.view(n_edges, len(minus), self.out_channels)
        return out, gates


def gate(x: torch.Tensor, gates: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """SiLU on the l = 0 coefficient; each (l > 0, channel) scaled by sigmoid of its gate.

    x [n, n_coefficients, c] with its first coefficient l = 0; gates [n, lmax * c]; degrees [n_coefficients].
    """
    per_degree = torch.sigmoid(gates).view(x.shape[0], -1, x.shape[2])  # [n, lmax, c]
    scale = per_degree[:, (degrees[1:] - 1)]  # [n, n_coefficients - 1, c]
    return torch.cat([nn.functional.silu(x[:, :1]), x[:, 1:] * scale], dim=1)


class DegreeRMSNorm(nn.Module):
    """Each degree's block divided by its root-mean-square over orders and channels, times a weight."""

    def __init__(self, lmax: int, channels: int):
        super().__init__()
        self.lmax = lmax
        self.weight = nn.Parameter(torch.ones(lmax + 1, channels))
        self.register_buffer("degrees", degree_of_coefficients(lmax), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squares = x.pow(2).mean(-1)  # [n, n_coefficients]
        mean_squares = scatter(squares, self.degrees, dim=1, dim_size=self.lmax + 1, reduce="mean")  # [n, lmax+1]
        rms = torch.sqrt(mean_squares + DEGREE_NORM_EPSILON)  # [n, lmax+1]
        return x / rms[:, self.degrees, None] * self.weight[self.degrees]


class DegreeLinear(nn.Module):
    """Channel mixing with one weight matrix per degree, shared by its orders; bias on l = 0 only."""

    def __init__(self, lmax: int, in_channels: int, out_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(lmax + 1, in_channels, out_channels) * in_channels**-0.5)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("degrees", degree_of_coefficients(lmax), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("nkc,kcd->nkd", x, self.weight[self.degrees])  # [n, n_coefficients, out]
        return torch.cat([out[:, :1] + self.bias, out[:, 1:]], dim=1)


class Layer(nn.Module):
    """Pre-normed SO(2)-convolution message block, then a pre-normed gated atom-wise block; residual."""

    def __init__(self, frame: EdgeFrame, hidden_channels, so2_channels, edge_channels):
        super().__init__()
        lmax = frame.lmax
        self.frame = frame
        self.message_norm = DegreeRMSNorm(lmax, hidden_channels)
        self.convolution = SO2Convolution(
            frame, 2 * hidden_channels, so2_channels, hidden_channels, edge_channels, lmax * hidden_channels
        )
        self.atom_norm = DegreeRMSNorm(lmax, hidden_channels)
        self.atom_in = DegreeLinear(lmax, hidden_channels, so2_channels)
        self.atom_gates = nn.Linear(hidden_channels, lmax * so2_channels)
        self.atom_out = DegreeLinear(lmax, so2_channels, hidden_channels)
        self.register_buffer("degrees", degree_of_coefficients(lmax), persistent=False)
        self.register_buffer("kept_degrees", degree_of_coefficients(lmax)[frame.kept_coefficients()], persistent=False)

    def forward(self, x, edge_index, wigner, edge_features, edge_envelope):
        sender, receiver = edge_index
        y = self.message_norm(x)  # [n_atoms, n_coefficients, hidden]
        pair = torch.cat([y[sender], y[receiver]], dim=-1)  # [n_edges, n_coefficients, 2 hidden]
        rotated = self.frame.to_edge(pair, wigner)  # [n_edges, n_kept, 2 hidden]
        message, gates = self.convolution(rotated, edge_features)  # [n_edges, n_kept, hidden]
        message = self.frame.from_edge(gate(message, gates, self.kept_degrees), wigner) * edge_envelope[:, None, None]
        x = x + scatter(message, receiver, dim_size=x.shape[0], reduce="sum")
        y = self.atom_norm(x)
        hidden = gate(self.atom_in(y), self.atom_gates(y[:, 0]), self.degrees)
        return x + self.atom_out(hidden)


class SphericalChannelNetwork(ForceField):
    """What eSCN and SCN share: each atom's spherical-harmonic coefficients start as its element
    embedding at l = 0; edge features are SiLU(distance Gaussians + sender and receiver elements);
    the subclass's ``layers`` update the coefficients; the energy is read out from l = 0."""

    def _build_shared(self, hidden_channels, edge_channels, lmax, mmax, num_gaussians, cutoff_A) -> None:
        if not 0 <= mmax <= lmax:
            raise ValueError(f"hyperparameter mmax must lie in 0..lmax={lmax}, got {mmax}")
        self.frame = EdgeFrame(lmax, mmax)
        self.element = nn.Embedding(MAX_ATOMIC_NUMBER + 1, hidden_channels)
        self.distance_basis = GaussianBasis(cutoff_A, num_gaussians)
        self.edge_distance = nn.Linear(num_gaussians, edge_channels)
        self.edge_sender = nn.Embedding(MAX_ATOMIC_NUMBER + 1, edge_channels)
        self.edge_receiver = nn.Embedding(MAX_ATOMIC_NUMBER + 1, edge_channels)
        self.output_norm = DegreeRMSNorm(lmax, hidden_channels)
        self.readout = nn.Sequential(
            nn.Linear(hidden_channels, hidden_channels), nn.SiLU(), nn.Linear(hidden_channels, 1)
        )

    def atom_energies_eV(self, graph: AtomGraph) -> torch.Tensor:
        sender, receiver = graph.edge_index
        vectors_A = edge_vectors_A(graph)  # [n_edges, 3]
        distance_A = vectors_A.norm(dim=-1)  # [n_edges]
        wigner = self.frame.wigner(vectors_A / distance_A[:, None])  # per l: [n_edges, 2l+1, 2l+1]
        edge_features = nn.functional.silu(
            self.edge_distance(self.distance_basis(distance_A))
            + self.edge_sender(graph.numbers[sender])
            + self.edge_receiver(graph.numbers[receiver])
        )  # [n_edges, edge_channels]
        edge_envelope = envelope(distance_A / self.cutoff_A, self.hparams["envelope_p"])  # [n_edges]
        n_coefficients = (self.hparams["lmax"] + 1) ** 2
        x = self.element.weight.new_zeros(graph.n_atoms, n_coefficients, self.hparams["hidden_channels"])
        x = torch.cat([self.element(graph.numbers)[:, None], x[:, 1:]], dim=1)  # [n_atoms, n_coefficients, hidden]
        for layer in self.layers:
            x = layer(x, graph.edge_index, wigner, edge_features, edge_envelope)
        return self.readout(self.output_norm(x)[:, 0]).squeeze(-1)  # [n_atoms]


class ESCN(SphericalChannelNetwork):
    name = "escn"
    positive_hparams = ("hidden_channels", "so2_channels", "edge_channels", "lmax", "num_interactions", "envelope_p")

    def __init__(
        self,
        *,
        hidden_channels: int = 128,
        so2_channels: int = 256,
        edge_channels: int = 128,
        lmax: int = 6,
        mmax: int = 2,
        num_interactions: int = 12,
        num_gaussians: int = 50,
        envelope_p: int = 5,
        cutoff_A: float = 6.0,
        max_neighbours: int = 500,
    ):
        super().__init__(locals())
        self._build_shared(hidden_channels, edge_channels, lmax, mmax, num_gaussians, cutoff_A)
        self.layers = nn.ModuleList(
            Layer(self.frame, hidden_channels, so2_channels, edge_channels) for _ in range(num_interactions)
        )
