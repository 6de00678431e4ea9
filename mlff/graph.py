"""Periodic neighbour graphs for a batch of structures.

Edges are directed. For edge ``e``, ``edge_index[0, e]`` is the *sender* (neighbour) ``j`` and
``edge_index[1, e]`` the *receiver* (centre) ``i``; messages flow from row 0 to row 1. The edge
vector points from the receiver to the sender's periodic image::

    edge_vectors_A[e] = positions_A[j] - positions_A[i] + shifts[e] @ cell_A[batch[i]]

The neighbour search (vesin) sees only detached float64 numpy arrays; the integer image shifts
it returns let ``edge_vectors_A`` rebuild the vectors differentiably from ``positions_A``.

A *paired* graph lists every pair once in its first half and the same pairs reversed (sender and
receiver swapped, shift negated), in the same order, in its second half: models whose edge
features depend on the distance only may compute them on the first half and use them both ways.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import vesin
from ase import Atoms

from mlff.trajectory import MAX_ATOMIC_NUMBER


@dataclass(frozen=True)
class AtomGraph:
    """A batch of periodic structures and their directed neighbour edges."""

    positions_A: torch.Tensor  # [n_atoms, 3]
    numbers: torch.Tensor  # [n_atoms] long, atomic numbers
    batch: torch.Tensor  # [n_atoms] long, index of the structure each atom belongs to
    cell_A: torch.Tensor  # [n_structures, 3, 3], rows are lattice vectors
    edge_index: torch.Tensor  # [2, n_edges] long; row 0 sender j, row 1 receiver i
    shifts: torch.Tensor  # [n_edges, 3] long, lattice-vector image shift applied to the sender
    paired: bool = False  # edges [n_edges // 2:] are edges [:n_edges // 2] reversed

    @property
    def n_pairs(self) -> int:
        """Edges of the first half of a paired graph (each pair once); all edges otherwise."""
        n_edges = self.edge_index.shape[1]
        return n_edges // 2 if self.paired else n_edges

    @property
    def n_structures(self) -> int:
        return self.cell_A.shape[0]

    @property
    def n_atoms(self) -> int:
        return self.numbers.shape[0]


def edge_vectors_A(graph: AtomGraph, n_first: int | None = None) -> torch.Tensor:
    """Vectors [n_edges, 3] from each receiver to its sender's image, differentiable in positions;
    with ``n_first``, of the first ``n_first`` edges only."""
    sender, receiver = graph.edge_index[:, :n_first]
    if graph.n_structures == 1:
        offsets_A = graph.shifts[:n_first].to(graph.cell_A.dtype) @ graph.cell_A[0]  # [n_edges, 3]
    else:
        edge_cell_A = graph.cell_A[graph.batch[receiver]]  # [n_edges, 3, 3]
        offsets_A = torch.einsum("ea,eab->eb", graph.shifts[:n_first].to(edge_cell_A.dtype), edge_cell_A)
    return graph.positions_A[sender] - graph.positions_A[receiver] + offsets_A


Structure = tuple[np.ndarray, np.ndarray, np.ndarray]  # numbers [n_atoms], positions_A [n_atoms, 3], cell_A [3, 3]


def _structure_arrays(structure: Structure | Atoms) -> Structure:
    if isinstance(structure, Atoms):
        if not structure.pbc.all():
            raise ValueError(f"build_graph needs a structure periodic in all three directions, got pbc={structure.pbc}")
        structure = (structure.numbers, structure.positions, structure.cell.array)
    numbers, positions_A, cell_A = structure
    numbers = np.asarray(numbers, dtype=np.int64)
    positions_A = np.asarray(positions_A, dtype=np.float64)
    cell_A = np.asarray(cell_A, dtype=np.float64)
    if numbers.ndim != 1 or positions_A.shape != (len(numbers), 3) or cell_A.shape != (3, 3):
        raise ValueError(
            "a structure must be (numbers [n_atoms], positions_A [n_atoms, 3], cell_A [3, 3]); got shapes "
            f"{numbers.shape}, {positions_A.shape}, {cell_A.shape}"
        )
    if numbers.min(initial=1) < 1 or numbers.max(initial=1) > MAX_ATOMIC_NUMBER:
        raise ValueError(f"atomic numbers must lie in 1..{MAX_ATOMIC_NUMBER}, got {sorted(set(numbers.tolist()))}")
    if abs(np.linalg.det(cell_A)) < 1e-6:
        raise ValueError(f"the cell must have a non-zero volume, got cell_A={cell_A.tolist()}")
    return numbers, positions_A, cell_A


def nearest_neighbour_mask(receiver: torch.Tensor, length_squared_A2: torch.Tensor, max_neighbours: int) -> torch.Tensor:
    """[n_edges] bool: the edge is among the ``max_neighbours`` nearest of its receiver, from each edge's
    receiver [n_edges] and squared length [n_edges] (Å²). Of edges equally long, the earlier ones are kept.

    The one nearest-neighbour cut: ``build_graph`` and the torch MD engine's neighbour lists
    (``mlff.md.neighbours``) both truncate with it, so that training and MD see the same graphs.
    """
    receiver = receiver.long()  # searchsorted takes no unsigned integers
    order = torch.argsort(length_squared_A2, stable=True)  # [n_edges] nearest first
    order = order[torch.argsort(receiver[order], stable=True)]  # grouped by receiver, nearest first
    grouped = receiver[order]  # [n_edges]
    group_start = torch.searchsorted(grouped, grouped, right=False)  # [n_edges] first position of each group
    rank = torch.empty_like(order)  # [n_edges] each edge's place among its receiver's, 0 for the nearest
    rank[order] = torch.arange(len(order), device=order.device) - group_start
    return rank < max_neighbours


def build_graph(
    structures: list[Structure | Atoms],
    cutoff_A: float,
    max_neighbours: int,
    device: str | torch.device,
    dtype: torch.dtype,
) -> AtomGraph:
    """Batch ``structures`` into one AtomGraph with all periodic neighbours within ``cutoff_A``.

    Each structure is ``(numbers, positions_A, cell_A)`` or a fully periodic ``ase.Atoms``. Every
    atom keeps its ``max_neighbours`` nearest neighbours (images included). The cutoff may exceed
    half the cell width: an atom then sees several images of the same neighbour, and of itself.
    The graph is paired unless some atom has more than ``max_neighbours`` neighbours; then each atom
    keeps its nearest (``nearest_neighbour_mask``), in the order of the paired list.
    """
    if cutoff_A <= 0:
        raise ValueError(f"cutoff_A must be positive, got {cutoff_A}")
    if max_neighbours < 1:
        raise ValueError(f"max_neighbours must be at least 1, got {max_neighbours}")
    if not structures:
        raise ValueError("build_graph needs at least one structure")
    search = vesin.NeighborList(cutoff=float(cutoff_A), full_list=False)
    numbers, positions, cells, batch, firsts, seconds, shifts, distances = [], [], [], [], [], [], [], []
    atom_offset, max_degree = 0, 0
    for index, structure in enumerate(structures):
        z, r_A, cell_A = _structure_arrays(structure)
        first, second, shift, distance_A = search.compute(r_A, cell_A, True, "ijSd")  # each pair once
        degree = np.bincount(first, minlength=len(z)) + np.bincount(second, minlength=len(z))
        max_degree = max(max_degree, degree.max(initial=0))
        firsts.append(first + atom_offset)
        seconds.append(second + atom_offset)
        shifts.append(shift)
        distances.append(distance_A)
        numbers.append(z)
        positions.append(r_A)
        cells.append(cell_A)
        batch.append(np.full(len(z), index))
        atom_offset += len(z)
    first, second, shift = np.concatenate(firsts), np.concatenate(seconds), np.concatenate(shifts)
    # vesin's pair (i, j, S) is the edge j -> i with shift S; its reverse is i -> j with -S.
    edge_index = np.stack([np.concatenate([second, first]), np.concatenate([first, second])])  # [2, n_edges]
    edge_shifts = np.concatenate([shift, -shift])  # [n_edges, 3]
    paired = max_degree <= max_neighbours
    if not paired:
        distance_A = np.concatenate(distances)  # [n_pairs]
        length_squared_A2 = torch.as_tensor(np.concatenate([distance_A, distance_A]) ** 2)  # [n_edges]
        keep = nearest_neighbour_mask(torch.as_tensor(edge_index[1]), length_squared_A2, max_neighbours).numpy()
        edge_index, edge_shifts = edge_index[:, keep], edge_shifts[keep]
    as_long = lambda array: torch.as_tensor(array, dtype=torch.long, device=device)  # noqa: E731
    return AtomGraph(
        positions_A=torch.as_tensor(np.concatenate(positions), dtype=dtype, device=device),
        numbers=as_long(np.concatenate(numbers)),
        batch=as_long(np.concatenate(batch)),
        cell_A=torch.as_tensor(np.stack(cells), dtype=dtype, device=device),
        edge_index=as_long(edge_index),
        shifts=as_long(edge_shifts),
        paired=bool(paired),
    )
