"""Verlet-skin neighbour lists for the torch engine (``mlff.md.torch_engine``): one list per group of
equal-sized replicas of one cell, rebuilt only when an atom may have left the skin.

vesin (per structure) searches ``cutoff_A + skin_A``, and the list is rebuilt only when an atom has
moved more than half the skin since the last build (checked every step, or in sync-free steps every
few steps, looking ahead). Each step keeps the pairs shorter than the cutoff, in a canonical order,
and hands the model a paired graph (``mlff.graph``), so the model sees the same graph whenever the
list was built; this is what makes a resumed run bitwise equal to an uninterrupted one on CPU.

When an atom has more listed pairs than the model's ``max_neighbours``, the list drops its skin for
good (``NeighbourList.reset``) and is rebuilt every step; while an atom has more than that within the
cutoff, each step keeps every atom's nearest ``max_neighbours`` (``mlff.graph.nearest_neighbour_mask``,
the cut ``mlff.graph.build_graph`` makes).
"""

from __future__ import annotations

import numpy as np
import torch
import vesin

from mlff.graph import nearest_neighbour_mask


class NeighbourList:
    """Verlet-skin list of the atom pairs of a batch of equal-sized replicas of one cell.

    Each pair is kept once, oriented canonically (first atom index below the second, or for an
    atom and its own image a shift whose first non-zero component is positive) and sorted by
    (first, second, shift), so the list does not depend on where it was built.
    """

    def __init__(self, cutoff_A: float, skin_A: float, max_neighbours: int, cell_A: torch.Tensor):
        self.cutoff_A, self.max_neighbours = cutoff_A, max_neighbours
        self.cell_A = cell_A  # [3, 3] float64
        self._ones = torch.ones(3, dtype=cell_A.dtype, device=cell_A.device)
        self.reset(skin_A)

    def reset(self, skin_A: float) -> None:
        """Forget the list, and search within ``cutoff_A + skin_A`` (Å) from the next build on."""
        self.skin_A = skin_A
        self._search = vesin.NeighborList(cutoff=self.cutoff_A + skin_A, full_list=False)
        self.reference_A = None  # [n_live, n_atoms, 3] positions at the last build

    def needs_rebuild(self, positions_A: torch.Tensor, lookahead_A: torch.Tensor | float | None) -> bool:
        """Is there no list for these replicas, or, when ``lookahead_A`` (Å) is given, could an atom have moved
        more than half the skin since the last build once it has moved ``lookahead_A`` further?"""
        if self.reference_A is None or self.reference_A.shape != positions_A.shape:
            return True
        if lookahead_A is None:
            return False
        moved_A = (positions_A - self.reference_A).square().sum(dim=-1).max().sqrt()
        return float(moved_A + lookahead_A) > 0.5 * self.skin_A

    def build(self, positions_A: torch.Tensor) -> None:
        """Search all pairs within cutoff + skin of ``positions_A`` [n_live, n_atoms, 3], one vesin call per
        replica, in canonical order."""
        n_live, n_atoms, _ = positions_A.shape
        cell = self.cell_A.cpu().numpy()
        pairs, shifts, overfull = [], [], False
        for index, replica_A in enumerate(positions_A.cpu().numpy()):
            first, second, shift = self._search.compute(replica_A, cell, True, "ijS")  # edge second -> first
            degree = np.bincount(first, minlength=n_atoms) + np.bincount(second, minlength=n_atoms)
            overfull |= degree.max(initial=0) > self.max_neighbours
            leading = shift[np.arange(len(shift)), np.argmax(shift != 0, axis=1)]  # [n_pairs] first non-zero
            flip = (first > second) | ((first == second) & (leading < 0))
            first, second = np.where(flip, second, first), np.where(flip, first, second)
            shift = np.where(flip[:, None], -shift, shift)
            # Sort by (first, second, shift) through one integer key: several times faster than np.lexsort.
            base = 2 * int(np.abs(shift).max(initial=0)) + 1
            key = ((first * n_atoms + second) * base + shift[:, 0]) * base + shift[:, 1]
            order = np.argsort(key * base + shift[:, 2])
            pairs.append(np.stack([first[order], second[order]]) + index * n_atoms)
            shifts.append(shift[order])
        if overfull and self.skin_A > 0:
            # Truncating to the nearest max_neighbours must see exact distances: no skin, rebuild every step.
            self.reset(0.0)
            return self.build(positions_A)
        first, second = np.concatenate(pairs, axis=1)
        shifts = np.concatenate(shifts)  # [n_pairs, 3]
        as_long = lambda array: torch.as_tensor(array, dtype=torch.long, device=positions_A.device)  # noqa: E731
        self.flat_pairs = as_long(np.concatenate([first, second]))  # [2 n_pairs]
        self.offsets_A = as_long(shifts).to(self.cell_A.dtype) @ self.cell_A  # [n_pairs, 3]
        # Per pair, its edge (sender, receiver, shift) both ways, so that one gather yields a paired graph.
        self.edges = as_long(np.stack([
            np.column_stack([second, first, shifts]), np.column_stack([first, second, -shifts]),
        ]))  # [2, n_pairs, 5]
        self.pair_replica = as_long(first // n_atoms)  # [n_pairs]
        self.reference_A = positions_A.clone()
        self.truncate = overfull

    def edges_within_cutoff(self, positions_A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool, torch.Tensor]:
        """Edges closer than the cutoff: index [2, n_edges], image shifts [n_edges, 3] and whether
        they are paired (see mlff.graph), then the squared length [n_pairs] (Å²) of every listed pair."""
        first_A, second_A = positions_A.reshape(-1, 3).index_select(0, self.flat_pairs).view(2, -1, 3)
        vectors_A = second_A - first_A + self.offsets_A  # [n_pairs, 3]
        # A matrix-vector product sums the three squares several times faster than sum(dim=-1).
        length_squared_A2 = (vectors_A * vectors_A) @ self._ones  # [n_pairs]
        kept = torch.nonzero(length_squared_A2 < self.cutoff_A**2).squeeze(1)  # [n_kept]
        # The kept pairs, then the same pairs reversed: [2, n_edges] and [n_edges, 3].
        edges = self.edges.index_select(1, kept).view(-1, 5)  # [n_edges, 5]
        edge_index, shifts = edges[:, :2].t().contiguous(), edges[:, 2:]
        if not self.truncate:
            return edge_index, shifts, True, length_squared_A2
        nearest = nearest_neighbour_mask(edge_index[1], length_squared_A2[kept].repeat(2), self.max_neighbours)
        return edge_index[:, nearest], shifts[nearest], False, length_squared_A2

    def shortest_A(self, length_squared_A2: torch.Tensor) -> torch.Tensor:
        """Per replica [n_live], the shortest of the listed pairs, from their squared lengths
        ``length_squared_A2`` [n_pairs] (Å²); below the cutoff, the shortest edge (Å)."""
        shortest_A2 = torch.full((len(self.reference_A),), torch.inf, dtype=length_squared_A2.dtype,
                                 device=length_squared_A2.device)
        return shortest_A2.scatter_reduce(0, self.pair_replica, length_squared_A2, reduce="amin").sqrt()
