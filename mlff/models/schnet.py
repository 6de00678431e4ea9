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

For MD, ``tabulate_filters`` replaces each interaction's filter network (times the cosine cutoff),
a function of the pair distance alone, by a cubic Hermite table of it, as DeePMD-kit's model
compression does for its embedding nets: the same function to float32 rounding, checked when the
table is built, at a fraction of the cost of evaluating a [pairs x num_filters] MLP twice per call.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from mlff.graph import MAX_ATOMIC_NUMBER, AtomGraph, edge_vectors_A
from mlff.models.base import ForceField

LN2 = math.log(2.0)
EXPONENT_FLOOR = 87.0  # exp(-87) = 1.6e-38
# Filter tables: the largest interpolation error of values and of slopes allowed, relative to the
# largest value and slope (float32's epsilon is 1.2e-7), and the grid spacings tried, halving from
# the first down to the last.
TABLE_RELATIVE_TOLERANCE = 1e-6
TABLE_FIRST_SPACING_A = 0.01
TABLE_FINEST_SPACING_A = 1e-4
# Pair features per block of ChunkedConvolution: 2048 pairs of 128 float32 filters, 1 MB.
PAIR_CHUNK_ELEMENTS = 2048 * 128


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
        if n < 2:  # the width is the spacing cutoff / (n - 1)
            raise ValueError(f"hyperparameter num_gaussians must be at least 2, got {n!r}")
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

    def forward(self, h, pair_index, filters, both_ways: bool, convolve):
        """Update ``h`` [n_atoms, hidden] with messages along ``pair_index`` [2, n_pairs] (sender,
        receiver) weighted by ``filters`` [n_pairs, num_filters], and also receiver -> sender with
        the same filter when ``both_ways``, pooled by ``convolve`` (``convolution`` or
        ``ChunkedConvolution.apply``)."""
        pooled = convolve(self.to_filters(h), filters, pair_index, both_ways)  # [n_atoms, num_filters]
        update = self.output(shifted_softplus(self.from_filters(pooled)))
        return h + update


def convolution(features: torch.Tensor, filters: torch.Tensor, pair_index: torch.Tensor, both_ways: bool) -> torch.Tensor:
    """Continuous-filter convolution: per atom, the sum over its pairs of the other atom's
    ``features`` [n_atoms, n] times the pair's ``filters`` [n_pairs, n], along ``pair_index``
    [2, n_pairs] (sender, receiver) and, when ``both_ways``, also receiver -> sender."""
    sender, receiver = pair_index
    pooled = torch.zeros_like(features)
    pooled.index_add_(0, receiver, features.index_select(0, sender) * filters)
    if both_ways:
        pooled.index_add_(0, sender, features.index_select(0, receiver) * filters)
    return pooled


class ChunkedConvolution(torch.autograd.Function):
    """``convolution`` for MD (no second derivative), on CPU a block of ``PAIR_CHUNK_ELEMENTS``
    pair features at a time, so the gathered features and messages stay in cache; its backward
    keeps only the inputs (no [n_pairs, n] intermediates). Each direction runs over all blocks in order,
    so every atom's sums are accumulated in the same order as by ``convolution``."""

    @staticmethod
    def forward(ctx, features, filters, pair_index, both_ways: bool):
        pooled = torch.zeros_like(features)
        directions = [(pair_index[0], pair_index[1])] + ([(pair_index[1], pair_index[0])] if both_ways else [])
        for source, target in directions:
            for block in _pair_blocks(filters):
                messages = features.index_select(0, source[block])
                pooled.index_add_(0, target[block], messages.mul_(filters[block]))
        ctx.save_for_backward(features, filters, pair_index)
        ctx.both_ways = both_ways
        return pooled

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_pooled):
        features, filters, pair_index = ctx.saved_tensors
        grad_features, grad_filters = torch.zeros_like(features), torch.empty_like(filters)
        directions = [(pair_index[0], pair_index[1])] + ([(pair_index[1], pair_index[0])] if ctx.both_ways else [])
        for direction, (source, target) in enumerate(directions):
            for block in _pair_blocks(filters):
                grad_messages = grad_pooled.index_select(0, target[block])
                source_features = features.index_select(0, source[block])
                if direction == 0:
                    torch.mul(grad_messages, source_features, out=grad_filters[block])
                else:
                    grad_filters[block].addcmul_(grad_messages, source_features)
                grad_features.index_add_(0, source[block], grad_messages.mul_(filters[block]))
        return grad_features, grad_filters, None, None


def _pair_blocks(filters: torch.Tensor) -> list[slice]:
    """Consecutive slices of the pairs of ``filters`` [n_pairs, n], ``PAIR_CHUNK_ELEMENTS`` values
    each on CPU; one slice on a GPU, which has no cache to fit and pays for every kernel launch."""
    if filters.device.type != "cpu":
        return [slice(None)]
    size = max(1, PAIR_CHUNK_ELEMENTS // filters.shape[1])
    return [slice(start, start + size) for start in range(0, filters.shape[0], size)]


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
        if hidden_channels < 2:  # the read-out halves it
            raise ValueError(f"hyperparameter hidden_channels must be at least 2, got {hidden_channels}")
        self.embedding = nn.Embedding(MAX_ATOMIC_NUMBER + 1, hidden_channels)
        self.basis = GaussianBasis(cutoff_A, num_gaussians)
        self.interactions = nn.ModuleList(
            Interaction(hidden_channels, num_filters, num_gaussians) for _ in range(num_interactions)
        )
        self.readout = nn.Sequential(
            nn.Linear(hidden_channels, hidden_channels // 2), ShiftedSoftplus(), nn.Linear(hidden_channels // 2, 1)
        )
        self.filter_tables = None  # nn.ModuleList of FilterTable, one per interaction, after tabulate_filters

    def exact_filters(self, distance_A: torch.Tensor) -> list[torch.Tensor]:
        """Every interaction's filters [n_pairs, num_filters] at ``distance_A`` [n_pairs]: its
        filter network of the Gaussian basis, times the cosine cutoff."""
        basis = self.basis(distance_A)  # [n_pairs, num_gaussians]
        envelope = cosine_cutoff(distance_A, self.cutoff_A)[:, None]  # [n_pairs, 1]
        return [interaction.filters(basis) * envelope for interaction in self.interactions]

    def tabulate_filters(self) -> bool:
        """Evaluate the filters from cubic Hermite tables (``FilterTable``) from now on, until the
        model is put in training mode. Changing the filter networks' weights otherwise makes the
        next call raise."""
        super().tabulate_filters()
        self.filter_tables = None
        self.filter_tables = nn.ModuleList(FilterTable.build(self))
        return True

    def train(self, mode: bool = True) -> SchNet:
        if mode:
            self.filter_tables = None
        return super().train(mode)

    def atom_energies_eV(self, graph: AtomGraph) -> torch.Tensor:
        # Filters depend on the distance only: on a paired graph they are computed once per pair.
        n_pairs = graph.n_pairs
        distance_A = edge_vectors_A(graph, n_pairs).norm(dim=-1)  # [n_pairs]
        if self.filter_tables is None:
            filters, convolve = self.exact_filters(distance_A), convolution
        else:  # MD: tables and a convolution in cache-sized blocks, both differentiable once
            filters = [table(distance_A, interaction) for table, interaction in zip(self.filter_tables, self.interactions)]
            convolve = ChunkedConvolution.apply
        h = self.embedding(graph.numbers)  # [n_atoms, hidden_channels]
        for interaction, interaction_filters in zip(self.interactions, filters):
            h = interaction(h, graph.edge_index[:, :n_pairs], interaction_filters, graph.paired, convolve)
        return self.readout(h).squeeze(-1)


class FilterTable(nn.Module):
    """One interaction's filters, times the cosine cutoff, as a function of distance: cubic Hermite
    interpolation of values and slopes on a uniform grid over [0, cutoff], zero beyond.

    ``build`` tabulates every interaction of a model on one grid, in float64 from the exact
    filters, halving the spacing from ``TABLE_FIRST_SPACING_A`` until, at eighths of every
    interval, both the values and the slopes (which make the forces) are within
    ``TABLE_RELATIVE_TOLERANCE`` of their largest magnitude. A table holds polynomial coefficients
    [n_intervals + 1, 4 * num_filters] in the model's dtype (the last interval is the zero beyond
    the cutoff) as a non-persistent buffer, so checkpoints do not change.
    """

    def __init__(self, coefficients: torch.Tensor, spacing_A: float, weight_versions: tuple[int, ...]):
        super().__init__()
        self.register_buffer("coefficients", coefficients, persistent=False)
        self.spacing_A = spacing_A
        self.weight_versions = weight_versions

    @staticmethod
    def build(model: SchNet) -> list[FilterTable]:
        reference = model.atomic_energies_eV
        exact = copy.deepcopy(model).double()

        def values_and_slopes(distance_A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """Filters and their derivatives in distance [n_interactions, n, num_filters]: each row
            depends on its own distance only, so one forward-mode pass gives every slope."""
            with torch.no_grad():
                return torch.func.jvp(lambda d: torch.stack(exact.exact_filters(d)), (distance_A,),
                                      (torch.ones_like(distance_A),))

        eighths = torch.arange(1, 8, dtype=torch.float64, device=reference.device) / 8
        powers = torch.stack([torch.ones_like(eighths), eighths, eighths**2, eighths**3], dim=1)  # [7, 4]: t^k
        slope_powers = torch.stack([torch.zeros_like(eighths), torch.ones_like(eighths), 2 * eighths, 3 * eighths**2], dim=1)
        spacing_A = TABLE_FIRST_SPACING_A
        while True:
            n_intervals = math.ceil(model.cutoff_A / spacing_A)
            spacing_A = model.cutoff_A / n_intervals
            grid_A = torch.linspace(0.0, model.cutoff_A, n_intervals + 1, dtype=torch.float64, device=reference.device)
            values, slopes = values_and_slopes(grid_A)
            # Per interval, the Hermite cubic in t = (d - d_i) / spacing: c0 + c1 t + c2 t^2 + c3 t^3.
            start, end = values[:, :-1], values[:, 1:]
            start_slope, end_slope = spacing_A * slopes[:, :-1], spacing_A * slopes[:, 1:]
            coefficients = torch.stack([
                start, start_slope, 3 * (end - start) - 2 * start_slope - end_slope, 2 * (start - end) + start_slope + end_slope,
            ], dim=2)  # [n_interactions, n_intervals, 4, num_filters]
            probe_values, probe_slopes = values_and_slopes((grid_A[:-1, None] + spacing_A * eighths).reshape(-1))
            value_error = (torch.einsum("qk,nikf->niqf", powers, coefficients).flatten(1, 2) - probe_values).abs().max()
            slope_error = (torch.einsum("qk,nikf->niqf", slope_powers, coefficients).flatten(1, 2) / spacing_A
                           - probe_slopes).abs().max()
            relative_error = max(float(value_error / values.abs().max()), float(slope_error / slopes.abs().max()))
            if relative_error <= TABLE_RELATIVE_TOLERANCE:
                break
            if spacing_A / 2 < TABLE_FINEST_SPACING_A:
                raise ValueError(
                    f"SchNet's filters cannot be tabulated to a relative error of {TABLE_RELATIVE_TOLERANCE} with a "
                    f"spacing of {TABLE_FINEST_SPACING_A} Å or more (relative error {relative_error:.3g} at {spacing_A:.3g} Å)"
                )
            spacing_A /= 2
        beyond_cutoff = torch.zeros_like(coefficients[0, :1])
        return [
            FilterTable(torch.cat([table, beyond_cutoff]).flatten(1).to(reference.dtype), spacing_A, _versions(interaction))
            for table, interaction in zip(coefficients, model.interactions)
        ]

    def forward(self, distance_A: torch.Tensor, interaction: Interaction) -> torch.Tensor:
        """Filters [n_pairs, num_filters] at ``distance_A`` [n_pairs] (distances >= 0)."""
        if _versions(interaction) != self.weight_versions:
            raise RuntimeError("SchNet's filter networks changed after tabulate_filters(): call it again")
        return _HermiteLookup.apply(distance_A, self.coefficients, 1.0 / self.spacing_A)


def _versions(interaction: Interaction) -> tuple[int, ...]:
    """In-place update counters of ``interaction``'s filter-network parameters."""
    return tuple(parameter._version for parameter in interaction.filter_network.parameters())


class _HermiteLookup(torch.autograd.Function):
    """Piecewise cubic of ``distance_A`` [n] from ``coefficients`` [n_intervals + 1, 4 * n_out],
    in interval ``floor(distance / spacing)`` (the last for all beyond); differentiable in distance.

    ``embedding_bag`` sums the four coefficient rows weighted by the powers of t in one pass,
    without gathering them first; the backward does the same with the derivatives of the powers.
    """

    @staticmethod
    def forward(ctx, distance_A: torch.Tensor, coefficients: torch.Tensor, inverse_spacing: float) -> torch.Tensor:
        rows = coefficients.view(-1, coefficients.shape[1] // 4)  # [4 (n_intervals + 1), n_out]: c0..c3 of each interval
        position = (distance_A * inverse_spacing).clamp_(max=coefficients.shape[0] - 1)  # [n]
        interval = position.nan_to_num(0.0).long()  # a NaN distance gives NaN filters, through t
        t = position - interval  # [n]
        indices = torch.arange(4, device=t.device) + 4 * interval[:, None]  # [n, 4]
        ctx.save_for_backward(rows, indices, t)
        ctx.inverse_spacing = inverse_spacing
        powers = torch.linalg.vander(t, N=4)  # [n, 4]: 1, t, t^2, t^3
        return nn.functional.embedding_bag(indices, rows, per_sample_weights=powers, mode="sum")  # [n, n_out]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        rows, indices, t = ctx.saved_tensors
        # d/d(distance) of t, t^2, t^3 (the rows of c1..c3): (1, 2t, 3t^2) / spacing.
        factors = torch.arange(1, 4, dtype=t.dtype, device=t.device) * ctx.inverse_spacing
        slope = nn.functional.embedding_bag(
            indices[:, 1:], rows, per_sample_weights=torch.linalg.vander(t, N=3) * factors, mode="sum"
        )  # [n, n_out]
        return (grad * slope).sum(dim=1), None, None
