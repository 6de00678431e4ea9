"""Neighbour graphs and the force-field models: symmetries, periodicity, forces, bases."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from e3nn import o3
from scipy.spatial.transform import Rotation
from scipy.special import eval_legendre, spherical_jn

from mlff.graph import build_graph, edge_vectors_A
from mlff.models import MODELS, build_model, energy_and_forces, schnet
from mlff.models.deeper_gatgnn import NORM_EPSILON, DifferentiableGroupNorm, segment_normalise, segment_softmax
from mlff.models.dimenet_pp import legendre, spherical_bessel, spherical_bessel_roots, triplets
from mlff.models.scn import SphereGrid
from mlff.structures import load_structure
from model_sizes import SMALL_HPARAMS

TRICLINIC_CELL_A = np.array([[3.4, 0.0, 0.0], [0.9, 3.1, 0.0], [-0.6, 0.7, 3.3]])


def triclinic_structure(seed: int = 0, n_atoms: int = 5):
    """A small triclinic Li/S cell with atoms at least 1.2 Å apart (images included)."""
    rng = np.random.default_rng(seed)
    numbers = np.array([3, 16, 3, 16, 3][:n_atoms])
    while True:
        positions_A = rng.random((n_atoms, 3)) @ TRICLINIC_CELL_A
        graph = build_graph([(numbers, positions_A, TRICLINIC_CELL_A)], 1.2, 500, "cpu", torch.float64)
        if graph.edge_index.shape[1] == 0:
            return numbers, positions_A, TRICLINIC_CELL_A


def brute_force_neighbours(positions_A, cell_A, cutoff_A):
    """(receiver, sender, shift, distance) of every pair within the cutoff, by looping over images."""
    reach = 4
    pairs = []
    for shift in itertools.product(range(-reach, reach + 1), repeat=3):
        offset_A = np.array(shift) @ cell_A
        for i, j in itertools.product(range(len(positions_A)), repeat=2):
            distance_A = np.linalg.norm(positions_A[j] + offset_A - positions_A[i])
            if 0 < distance_A < cutoff_A:
                pairs.append((i, j, shift, distance_A))
    return pairs


def fresh_model(name: str, seed: int = 0):
    """A small float64 model. Weights are random, so forces are far from zero."""
    torch.manual_seed(seed)
    return build_model(name, **SMALL_HPARAMS[name]).to(torch.float64)


def evaluate(model, numbers, positions_A, cell_A):
    graph = model.make_graph([(numbers, positions_A, cell_A)])
    energy, forces = energy_and_forces(model, graph)
    return energy.item(), forces.numpy()


# ---------------------------------------------------------------- graph


def test_graph_matches_brute_force_for_triclinic_cell():
    numbers, positions_A, cell_A = triclinic_structure()
    cutoff_A = 4.5  # larger than half of every cell width, so several images of each neighbour count
    graph = build_graph([(numbers, positions_A, cell_A)], cutoff_A, 500, "cpu", torch.float64)
    expected = brute_force_neighbours(positions_A, cell_A, cutoff_A)
    sender, receiver = graph.edge_index.numpy()
    found = {(int(i), int(j), tuple(shift.tolist())) for i, j, shift in zip(receiver, sender, graph.shifts.numpy())}
    assert found == {(i, j, shift) for i, j, shift, _ in expected}
    assert len(found) == len(receiver)  # no duplicate edges
    assert np.bincount(receiver, minlength=len(numbers)).tolist() == [
        sum(1 for i, *_ in expected if i == atom) for atom in range(len(numbers))
    ]
    vectors_A = edge_vectors_A(graph).numpy()
    for e, (i, j, shift) in enumerate(zip(receiver, sender, graph.shifts.numpy())):
        np.testing.assert_allclose(vectors_A[e], positions_A[j] + shift @ cell_A - positions_A[i], atol=1e-12)


def test_graph_of_small_li2s_cell_with_cutoff_beyond_half_width():
    a_A = 5.71
    fractional = np.array(
        [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]  # S, fcc
        + [[x, y, z] for x in (0.25, 0.75) for y in (0.25, 0.75) for z in (0.25, 0.75)]  # Li, tetrahedral sites
    )
    numbers = np.array([16] * 4 + [3] * 8)
    cell_A = a_A * np.eye(3)
    positions_A = fractional * a_A
    graph = build_graph([(numbers, positions_A, cell_A)], 6.0, 500, "cpu", torch.float64)
    expected = brute_force_neighbours(positions_A, cell_A, 6.0)
    assert graph.edge_index.shape[1] == len(expected)
    distances_A = np.sort(edge_vectors_A(graph).norm(dim=-1).numpy())
    np.testing.assert_allclose(distances_A, np.sort([d for *_, d in expected]), atol=1e-10)


def test_max_neighbours_keeps_the_nearest():
    numbers, positions_A, cell_A = triclinic_structure()
    limit = 7
    graph = build_graph([(numbers, positions_A, cell_A)], 4.5, limit, "cpu", torch.float64)
    distances_A = edge_vectors_A(graph).norm(dim=-1).numpy()
    receiver = graph.edge_index[1].numpy()
    expected = brute_force_neighbours(positions_A, cell_A, 4.5)
    for atom in range(len(numbers)):
        nearest = np.sort([d for i, *_, d in expected if i == atom])[:limit]
        np.testing.assert_allclose(np.sort(distances_A[receiver == atom]), nearest, atol=1e-10)


def test_graph_batches_structures_and_accepts_ase_atoms():
    from ase import Atoms

    first = triclinic_structure(seed=1)
    second = Atoms(numbers=[3, 16], positions=[[0, 0, 0], [1.5, 1.5, 1.5]], cell=3.2 * np.eye(3), pbc=True)
    graph = build_graph([first, second], 3.5, 500, "cpu", torch.float32)
    alone = build_graph([second], 3.5, 500, "cpu", torch.float32)
    assert graph.n_structures == 2 and graph.n_atoms == len(first[0]) + 2
    assert graph.positions_A.dtype == torch.float32
    sender, receiver = graph.edge_index
    assert torch.equal(graph.batch[sender], graph.batch[receiver])  # no edge between structures
    second_edges = graph.batch[receiver] == 1
    assert torch.equal(graph.edge_index[:, second_edges] - len(first[0]), alone.edge_index)
    with pytest.raises(ValueError, match="periodic"):
        build_graph([Atoms("Li", cell=np.eye(3), pbc=False)], 3.0, 10, "cpu", torch.float32)


def test_unwrapped_positions_give_the_same_distances():
    numbers, positions_A, cell_A = triclinic_structure(seed=2)
    moved_A = positions_A + np.array([[2, -1, 0], [0, 3, 1], [-2, 0, 0], [1, 1, 1], [0, 0, -3]]) @ cell_A
    graphs = [build_graph([(numbers, r, cell_A)], 4.0, 500, "cpu", torch.float64) for r in (positions_A, moved_A)]
    distances = [np.sort(edge_vectors_A(graph).norm(dim=-1).numpy()) for graph in graphs]
    np.testing.assert_allclose(distances[0], distances[1], atol=1e-10)


def test_paired_graph_lists_each_pair_both_ways_and_schnet_uses_it_exactly():
    import dataclasses

    numbers, positions_A, cell_A = triclinic_structure(seed=3)
    graph = build_graph([(numbers, positions_A, cell_A)] * 2, 4.5, 500, "cpu", torch.float64)
    assert graph.paired and graph.n_pairs * 2 == graph.edge_index.shape[1]
    half = graph.n_pairs
    assert torch.equal(graph.edge_index[:, half:], graph.edge_index[:, :half].flip(0))
    assert torch.equal(graph.shifts[half:], -graph.shifts[:half])
    vectors_A = edge_vectors_A(graph)
    torch.testing.assert_close(vectors_A[half:], -vectors_A[:half], rtol=0, atol=1e-12)

    model = fresh_model("schnet")
    paired_energy, paired_forces = energy_and_forces(model, graph)
    energy, forces = energy_and_forces(model, dataclasses.replace(graph, paired=False))
    torch.testing.assert_close(paired_energy, energy, rtol=0, atol=1e-12)
    torch.testing.assert_close(paired_forces, forces, rtol=0, atol=1e-12)
    crowded = build_graph([(numbers, positions_A, cell_A)], 4.5, 7, "cpu", torch.float64)
    assert not crowded.paired  # truncated to the nearest neighbours: not every pair is kept both ways


# ---------------------------------------------------------------- SchNet's filter tables


QUICKSTART_SCHNET = dict(hidden_channels=32, num_interactions=2, cutoff_A=6.0)  # examples/quickstart.yaml


def test_tabulated_schnet_matches_the_exact_model_on_lgps():
    torch.manual_seed(0)
    model = build_model("schnet", **QUICKSTART_SCHNET).eval()
    atoms = load_structure("LGPS")
    rng = np.random.default_rng(0)
    structures = [(atoms.numbers, atoms.positions + rng.normal(0.0, 0.1, atoms.positions.shape), atoms.cell.array)
                  for _ in range(3)]
    graph = model.make_graph(structures)
    exact_energy, exact_forces = energy_and_forces(model, graph)
    assert model.tabulate_filters() and not model.training
    energy, forces = energy_and_forces(model, graph)
    # float32 throughout: the table's own error is 1e-6 of the largest filter value at most.
    largest_force = float(exact_forces.abs().max())
    assert largest_force > 1e-3
    torch.testing.assert_close(forces, exact_forces, rtol=0, atol=1e-4 * largest_force)
    torch.testing.assert_close(energy, exact_energy, rtol=1e-6, atol=0.0)


def test_sharper_filters_get_a_finer_table_and_untabulable_ones_a_clear_error():
    model = fresh_model("schnet")
    smooth = model.tabulate_filters() and model.filter_tables[0].spacing_A
    with torch.no_grad():
        for interaction in model.interactions:
            interaction.filter_network[0].weight.mul_(30.0)
    model.tabulate_filters()
    assert model.filter_tables[0].spacing_A < smooth
    numbers, positions_A, cell_A = triclinic_structure()
    tabulated = evaluate(model, numbers, positions_A, cell_A)
    model.train()
    assert model.filter_tables is None
    exact = evaluate(model.eval(), numbers, positions_A, cell_A)
    assert tabulated[0] == pytest.approx(exact[0], rel=1e-6)
    np.testing.assert_allclose(tabulated[1], exact[1], rtol=0, atol=1e-6 * np.abs(exact[1]).max())
    with torch.no_grad():
        model.interactions[0].filter_network[0].weight.mul_(1e5)
    with pytest.raises(ValueError, match="cannot be tabulated"):
        model.tabulate_filters()


def test_tabulated_forces_are_minus_the_energy_gradient_and_vanish_beyond_the_cutoff():
    model = fresh_model("schnet")
    model.tabulate_filters()
    assert_forces_are_minus_the_energy_gradient(model)
    # Pairs listed beyond the model's cutoff contribute nothing, as in the exact model.
    numbers, positions_A, cell_A = triclinic_structure()
    wide = build_graph([(numbers, positions_A, cell_A)], model.cutoff_A + 1.5, 500, "cpu", torch.float64)
    narrow = model.make_graph([(numbers, positions_A, cell_A)])
    assert wide.n_pairs > narrow.n_pairs
    # A non-finite distance gives non-finite filters (an instability the engines record), not an index error.
    filters = model.filter_tables[0](torch.tensor([1.0, math.nan], dtype=torch.float64), model.interactions[0])
    assert filters[0].isfinite().all() and filters[1].isnan().all()
    for graph_energy, graph_forces in [energy_and_forces(model, wide)]:
        narrow_energy, narrow_forces = energy_and_forces(model, narrow)
        torch.testing.assert_close(graph_energy, narrow_energy, rtol=0, atol=1e-12)
        torch.testing.assert_close(graph_forces, narrow_forces, rtol=0, atol=1e-12)


@pytest.mark.parametrize("both_ways", [True, False])
def test_chunked_convolution_equals_the_convolution_in_values_and_gradients(monkeypatch, both_ways):
    monkeypatch.setattr(schnet, "PAIR_CHUNK_ELEMENTS", 7 * 5)  # blocks of 7 pairs of 5 filters
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(9, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    filters = torch.randn(40, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    pair_index = torch.randint(0, 9, (2, 40), generator=generator)
    weights = torch.randn(9, 5, dtype=torch.float64, generator=generator)
    results = []
    for convolve in (schnet.convolution, schnet.ChunkedConvolution.apply):
        pooled = convolve(features, filters, pair_index, both_ways)
        results.append((pooled, *torch.autograd.grad((pooled * weights).sum(), (features, filters))))
    (pooled, grad_features, grad_filters), (chunked, chunked_grad_features, chunked_grad_filters) = results
    assert torch.equal(chunked, pooled)  # the same sums in the same order
    torch.testing.assert_close(chunked_grad_features, grad_features, rtol=0, atol=1e-12)
    torch.testing.assert_close(chunked_grad_filters, grad_filters, rtol=0, atol=1e-12)


def test_filter_tables_leave_checkpoints_alone_and_go_stale_with_the_weights():
    model = fresh_model("schnet")
    keys = set(model.state_dict())
    model.tabulate_filters()
    assert set(model.state_dict()) == keys
    single = model.to(torch.float32)
    assert single.filter_tables[0].coefficients.dtype == torch.float32
    with torch.no_grad():
        model.interactions[1].filter_network[2].bias.add_(0.1)
    numbers, positions_A, cell_A = triclinic_structure()
    with pytest.raises(RuntimeError, match="tabulate_filters"):
        evaluate(model, numbers, positions_A, cell_A)
    other = fresh_model("cgcnn")
    before = evaluate(other, numbers, positions_A, cell_A)
    assert other.tabulate_filters() is False and not other.training
    after = evaluate(other, numbers, positions_A, cell_A)
    assert after[0] == before[0] and np.array_equal(after[1], before[1])


# ---------------------------------------------------------------- bases and triplets


def test_spherical_bessel_and_legendre_match_scipy():
    x = torch.linspace(0.3, 25.0, 400, dtype=torch.float64)
    values = spherical_bessel(x, 7).numpy()
    for order in range(7):
        np.testing.assert_allclose(values[order], spherical_jn(order, x.numpy()), rtol=1e-7, atol=1e-9)
    cos_angle = torch.linspace(-1, 1, 101, dtype=torch.float64)
    polynomials = legendre(cos_angle, 7).numpy()
    for order in range(7):
        np.testing.assert_allclose(polynomials[:, order], eval_legendre(order, cos_angle.numpy()), atol=1e-12)


def test_spherical_bessel_roots_are_the_first_roots():
    roots = spherical_bessel_roots(7, 6)
    for order in range(7):
        assert np.all(np.abs(spherical_jn(order, roots[order])) < 1e-10)
        assert np.all(np.diff(roots[order]) > 0)
        # no root is skipped: j_l changes sign exactly once between consecutive roots
        grid = np.linspace(1e-3, roots[order, -1] + 1e-9, 20000)
        assert np.count_nonzero(np.diff(np.sign(spherical_jn(order, grid)))) == 6
    np.testing.assert_allclose(roots[0], np.pi * np.arange(1, 7))


def test_triplets_match_brute_force_with_periodic_images():
    numbers, positions_A, cell_A = triclinic_structure(seed=3, n_atoms=3)
    graph = build_graph([(numbers, positions_A, cell_A)], 3.6, 500, "cpu", torch.float64)
    idx_kj, idx_ji = triplets(graph.edge_index, graph.shifts, graph.n_atoms)
    sender, receiver = graph.edge_index.tolist()
    shifts = graph.shifts.tolist()
    expected = {
        (kj, ji)
        for ji in range(len(sender))
        for kj in range(len(sender))
        if receiver[kj] == sender[ji]
        and not (sender[kj] == receiver[ji] and shifts[kj] == [-s for s in shifts[ji]])
    }
    found = set(zip(idx_kj.tolist(), idx_ji.tolist()))
    assert found == expected and len(found) == len(idx_kj)
    assert any(sender[kj] == receiver[ji] for kj, ji in found)  # images of i itself stay as k


def test_scn_sphere_grid_projects_squares_exactly():
    lmax = 3
    grid = SphereGrid(lmax).to(torch.float64)
    x = torch.randn(4, (lmax + 1) ** 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(grid.from_grid(grid.to_grid(x)), x, atol=1e-12)
    squared = lambda coefficients: grid.from_grid(grid.to_grid(coefficients) ** 2)  # noqa: E731
    # Parseval: the l = 0 coefficient of f^2 is its integral times Y_00 = 1 / sqrt(4 pi)
    np.testing.assert_allclose(squared(x)[:, 0], (x**2).sum(1) / math.sqrt(4 * math.pi), atol=1e-12)
    # Wigner D from the harmonics themselves, Y(R r) = D Y(r), fitted on random directions
    harmonics = lambda r: o3.spherical_harmonics(list(range(lmax + 1)), r, True, normalization="integral")  # noqa: E731
    directions = torch.randn(200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    rotation = torch.from_numpy(Rotation.random(random_state=2).as_matrix())
    wigner = torch.linalg.lstsq(harmonics(directions), harmonics(directions @ rotation.T)).solution.T
    rotate = lambda coefficients: torch.einsum("kj,njc->nkc", wigner, coefficients)  # noqa: E731
    np.testing.assert_allclose(squared(rotate(x)), rotate(squared(x)), atol=1e-10)


# ---------------------------------------------------------------- segment operations


def test_weighted_segment_softmax_and_normalise_match_each_segment_alone():
    segment = torch.tensor([2, 0, 2, 2, 0, 3])  # segment 1 is empty, segment 3 has one row
    logits = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    weight = torch.tensor([0.5, 1.0, 0.0, 0.25, 0.75, 1.0], dtype=torch.float64)  # row 2 sits at the cutoff
    alpha = segment_softmax(logits, segment, 4, weight)
    normalised = segment_normalise(logits, segment, 4, weight)
    for rows in (segment == 0, segment == 2, segment == 3):
        values, row_weight = logits[rows], weight[rows, None]
        torch.testing.assert_close(alpha[rows], row_weight * values.exp() / (row_weight * values.exp()).sum(0))
        mean = (row_weight * values).sum(0) / row_weight.sum()
        variance = (row_weight * (values - mean) ** 2).sum(0) / row_weight.sum()
        torch.testing.assert_close(normalised[rows], (values - mean) / torch.sqrt(variance + NORM_EPSILON))
    (gradient,) = torch.autograd.grad((alpha**2).sum() + (normalised**2).sum(), logits)
    assert torch.isfinite(gradient).all()  # a softmax of logits + log(weight) would give NaN at the zero weight


def test_group_norm_takes_statistics_per_structure_and_keeps_its_checkpoint_keys():
    torch.manual_seed(0)
    norm = DifferentiableGroupNorm(channels=3, num_groups=2, group_norm_weight=0.5).to(torch.float64)
    assert set(norm.state_dict()) == {"assign.weight", "assign.bias", "scale", "shift"}
    x = torch.randn(7, 3, dtype=torch.float64)
    together = norm(x, torch.tensor([0, 0, 0, 1, 1, 1, 1]), 2)
    grouped = (torch.softmax(norm.assign(x), dim=-1)[:, :, None] * x[:, None, :]).flatten(1)  # [7, 6]
    for rows in (slice(0, 3), slice(3, 7)):  # torch's batch norm over one structure's atoms
        statistics = torch.nn.functional.batch_norm(grouped[rows], None, None, training=True, eps=NORM_EPSILON)
        expected = x[rows] + 0.5 * (statistics * norm.scale + norm.shift).view(-1, 2, 3).sum(1)
        torch.testing.assert_close(together[rows], expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- models


@pytest.fixture(params=sorted(MODELS))
def name(request):
    return request.param


def test_forces_are_not_trivial(name):
    _, forces = evaluate(fresh_model(name), *triclinic_structure())
    assert np.abs(forces).max() > 1e-3


def test_translation_invariance(name):
    model = fresh_model(name)
    numbers, positions_A, cell_A = triclinic_structure()
    energy, forces = evaluate(model, numbers, positions_A, cell_A)
    moved_energy, moved_forces = evaluate(model, numbers, positions_A + np.array([0.7, -1.3, 2.9]), cell_A)
    assert moved_energy == pytest.approx(energy, rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(moved_forces, forces, atol=1e-9)


INVARIANT_MODELS = [name for name, model in MODELS.items() if model.rotation_invariant]
DIRECT_FORCE_MODELS = [name for name, model in MODELS.items() if not model.conservative]


def rotated(model, rotation: np.ndarray) -> tuple[tuple, tuple]:
    """(energy, forces) of the triclinic structure, and of it rotated by ``rotation`` [3, 3]."""
    numbers, positions_A, cell_A = triclinic_structure()
    return evaluate(model, numbers, positions_A, cell_A), evaluate(model, numbers, positions_A @ rotation.T, cell_A @ rotation.T)


@pytest.mark.parametrize("invariant_name", INVARIANT_MODELS)
def test_rotation_invariance_and_force_equivariance(invariant_name):
    rotation = Rotation.random(random_state=5).as_matrix()
    (energy, forces), (rotated_energy, rotated_forces) = rotated(fresh_model(invariant_name), rotation)
    assert rotated_energy == pytest.approx(energy, rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(rotated_forces, forces @ rotation.T, atol=1e-9)


@pytest.mark.parametrize("variant_name", [name for name in MODELS if name not in INVARIANT_MODELS])
def test_a_model_declared_not_rotation_invariant_is_not(variant_name):
    """ForceNet reads raw edge vectors (its paper's choice): a rotated structure gets another energy and
    forces that are not the rotated ones, as its ``rotation_invariant = False`` says."""
    rotation = Rotation.random(random_state=5).as_matrix()
    (energy, forces), (rotated_energy, rotated_forces) = rotated(fresh_model(variant_name), rotation)
    assert abs(rotated_energy - energy) > 1e-6 * max(abs(energy), 1.0)
    assert np.abs(rotated_forces - forces @ rotation.T).max() > 1e-6 * np.abs(forces).max()


@pytest.mark.parametrize("symmetric_name", [n for n, model in MODELS.items() if model.rotation_invariant])
def test_forces_vanish_at_a_site_symmetric_structure_in_float32(symmetric_name):
    """Every atom of antifluorite Li2S sits at a centre of cubic symmetry, so an invariant model's forces
    are zero there. In float32 the l > 0 features of such sites are rounding residuals; a model must
    not amplify them (this caught eSCN/SCN norms turning them into forces of 10^4 eV/Å)."""
    torch.manual_seed(0)
    model = build_model(symmetric_name, **SMALL_HPARAMS[symmetric_name])
    atoms = load_structure("Li2S")
    energy, forces = energy_and_forces(model, model.make_graph([atoms]))
    assert torch.isfinite(energy).all()
    assert forces.abs().max().item() < 1e-4


def test_permutation_invariance(name):
    model = fresh_model(name)
    numbers, positions_A, cell_A = triclinic_structure()
    order = np.array([3, 0, 4, 2, 1])
    energy, forces = evaluate(model, numbers, positions_A, cell_A)
    permuted_energy, permuted_forces = evaluate(model, numbers[order], positions_A[order], cell_A)
    assert permuted_energy == pytest.approx(energy, rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(permuted_forces, forces[order], atol=1e-9)


def test_supercell_extensivity(name):
    model = fresh_model(name)
    numbers, positions_A, cell_A = triclinic_structure()
    energy, forces = evaluate(model, numbers, positions_A, cell_A)
    doubled_positions_A = np.concatenate([positions_A, positions_A + cell_A[0]])
    doubled_cell_A = cell_A * np.array([[2.0], [1.0], [1.0]])
    doubled_energy, doubled_forces = evaluate(model, np.tile(numbers, 2), doubled_positions_A, doubled_cell_A)
    assert doubled_energy == pytest.approx(2 * energy, rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(doubled_forces, np.tile(forces, (2, 1)), atol=1e-9)


@pytest.mark.parametrize("conservative_name", [name for name in MODELS if name not in DIRECT_FORCE_MODELS])
def test_forces_are_minus_the_energy_gradient(conservative_name):
    assert_forces_are_minus_the_energy_gradient(fresh_model(conservative_name))


@pytest.mark.parametrize("direct_name", DIRECT_FORCE_MODELS)
def test_a_model_declared_to_predict_forces_directly_does(direct_name):
    """ForceNet's forces come from their own head (``conservative = False``), not from -dE/dx: central
    differences of its energy disagree with them."""
    pairs = np.array(finite_difference_pairs(fresh_model(direct_name)))  # [n, 2]
    assert np.abs(pairs[:, 0] - pairs[:, 1]).max() > 1e-4 * np.abs(pairs[:, 1]).max()


def finite_difference_pairs(model) -> list[tuple[float, float]]:
    """(-dE/dx by central differences with a 1e-5 Å step, the model's force) for a few force components."""
    numbers, positions_A, cell_A = triclinic_structure()
    _, forces = evaluate(model, numbers, positions_A, cell_A)
    step_A, pairs = 1e-5, []
    for atom, axis in [(0, 0), (1, 2), (3, 1), (4, 0)]:
        plus, minus = positions_A.copy(), positions_A.copy()
        plus[atom, axis] += step_A
        minus[atom, axis] -= step_A
        energy_difference = evaluate(model, numbers, plus, cell_A)[0] - evaluate(model, numbers, minus, cell_A)[0]
        pairs.append((-energy_difference / (2 * step_A), forces[atom, axis]))
    return pairs


def assert_forces_are_minus_the_energy_gradient(model) -> None:
    for minus_gradient, force in finite_difference_pairs(model):
        assert minus_gradient == pytest.approx(force, rel=1e-6, abs=1e-8)


def test_batched_equals_single_and_float32_close_to_float64(name):
    model = fresh_model(name)
    first, second = triclinic_structure(seed=0), triclinic_structure(seed=4)
    energy, forces = energy_and_forces(model, model.make_graph([first, second]))
    for index, structure in enumerate((first, second)):
        alone_energy, alone_forces = evaluate(model, *structure)
        assert energy[index].item() == pytest.approx(alone_energy, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(forces[5 * index : 5 * index + 5].numpy(), alone_forces, atol=1e-12)
    single = model.to(torch.float32)
    energy32, forces32 = energy_and_forces(single, single.make_graph([first, second]))
    assert energy32.dtype == torch.float32
    np.testing.assert_allclose(energy32.numpy(), energy.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(forces32.numpy(), forces.numpy(), atol=1e-3 * np.abs(forces.numpy()).max())


def test_reference_energies_add_per_atom(name):
    model = fresh_model(name)
    numbers, positions_A, cell_A = triclinic_structure()
    energy, forces = evaluate(model, numbers, positions_A, cell_A)
    reference_eV = np.zeros(119)
    reference_eV[3], reference_eV[16] = -1.9, -4.1
    model.set_atomic_energies(reference_eV)
    shifted_energy, shifted_forces = evaluate(model, numbers, positions_A, cell_A)
    assert shifted_energy - energy == pytest.approx(3 * -1.9 + 2 * -4.1)
    np.testing.assert_allclose(shifted_forces, forces, atol=1e-12)
    assert "atomic_energies_eV" in model.state_dict()


def test_hparams_rebuild_the_same_architecture(name):
    model = fresh_model(name)
    rebuilt = build_model(name, **model.hparams)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert type(rebuilt) is type(model)


def test_registry_names_its_classes_and_loads_e3nn_and_torch_geometric_only_on_use():
    assert all(MODELS[name].name == name for name in MODELS)
    code = (
        "import sys, mlff.models; mlff.models.build_model('schnet'); "
        "print('e3nn' in sys.modules, 'torch_geometric' in sys.modules)"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == ["False", "False"]


def test_build_model_rejects_unknown_names_and_options():
    with pytest.raises(ValueError, match="schnet"):
        build_model("painn")
    with pytest.raises(ValueError, match="hiden_channels"):
        build_model("schnet", hiden_channels=8)
    with pytest.raises(ValueError, match="cutoff_A"):
        build_model("dimenet++", cutoff_A=-1.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(name):
    model = fresh_model(name)
    structure = triclinic_structure()
    energy, forces = evaluate(model, *structure)
    model.to("cuda")
    cuda_energy, cuda_forces = energy_and_forces(model, model.make_graph([structure]))
    assert cuda_forces.device.type == "cuda"
    assert cuda_energy.item() == pytest.approx(energy, rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(cuda_forces.cpu().numpy(), forces, atol=1e-9)
    if model.tabulate_filters():  # SchNet's MD path: tables and one-block convolution on the GPU
        tabulated_energy, tabulated_forces = energy_and_forces(model, model.make_graph([structure]))
        assert tabulated_energy.item() == pytest.approx(energy, rel=1e-6)
        np.testing.assert_allclose(tabulated_forces.cpu().numpy(), forces, atol=1e-6 * np.abs(forces).max())
