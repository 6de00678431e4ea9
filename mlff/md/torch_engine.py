"""The torch engine: many replicas of one model x material advance together, in batched model calls.

Each step evaluates the live replicas in groups, each group one batched model call (one AtomGraph
with a structure per replica) with its own neighbour list: by default one group per torch thread
on CPU, whose calls run concurrently, one thread each, and one group on a GPU. The steps are the
ASE engine's, replica by replica: velocity Verlet with velocities rescaled to the ramp's target;
then Nosé–Hoover-chain NVT with the same splitting as ``ase.md.nose_hoover_chain.NoseHooverChainNVT``
(chain length 3, fourth-order Suzuki–Yoshida, thermostat mass Q0 = 3 N kB T tdamp²). Replicas may
differ in protocol; each has its own thermostat variables.

Units follow ASE (Å, eV, amu; time in ASE units via ``ASE_TIME_PER_FS``), so momenta and
thermostat variables mean the same as in the ASE engine. The integrator state is float64 whatever
the model's dtype; positions are cast to the model's dtype for the model call. Every per-replica
value lives in one ``Replicas`` structure, and ``Replicas.select`` is the one way replicas leave.

Neighbour lists use a Verlet skin: vesin (per structure) searches ``cutoff_A + neighbour_skin_A``
and the list is rebuilt only when an atom has moved more than half the skin since the last build.
Each step keeps the pairs shorter than the cutoff, in a canonical order, and hands the model a
paired graph (``mlff.graph``), so the model sees the same graph whenever the list was built; this is
what makes a resumed run bitwise equal to an uninterrupted one on CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import vesin
from ase import Atoms

from mlff.graph import AtomGraph
from mlff.md.engine import Engine, Observation
from mlff.md.protocol import ASE_TIME_PER_FS, NOSE_HOOVER_CHAIN_LENGTH, BOLTZMANN_eV_PER_K, MDProtocol
from mlff.models import ForceField, energy_and_forces

# Fourth-order Suzuki–Yoshida weights for the thermostat sub-steps (Yoshida, Phys. Lett. A 150, 262, 1990).
YOSHIDA_WEIGHTS = (1 / (2 - 2 ** (1 / 3)), -(2 ** (1 / 3)) / (2 - 2 ** (1 / 3)), 1 / (2 - 2 ** (1 / 3)))
DEFAULT_NEIGHBOUR_SKIN_A = 1.5


class NeighbourList:
    """Verlet-skin list of the atom pairs of a batch of equal-sized replicas of one cell.

    Each pair is kept once, oriented canonically (first atom index below the second, or for an
    atom and its own image a shift whose first non-zero component is positive) and sorted by
    (first, second, shift), so the list does not depend on where it was built.
    """

    def __init__(self, cutoff_A: float, skin_A: float, max_neighbours: int, cell_A: torch.Tensor):
        self.cutoff_A, self.skin_A, self.max_neighbours = cutoff_A, skin_A, max_neighbours
        self.cell_A = cell_A  # [3, 3] float64
        self._ones = torch.ones(3, dtype=cell_A.dtype, device=cell_A.device)
        self._search = vesin.NeighborList(cutoff=cutoff_A + skin_A, full_list=False)
        self.reference_A = None  # [n_live, n_atoms, 3] positions at the last build

    def needs_rebuild(self, positions_A: torch.Tensor) -> bool:
        """Has any atom moved more than half the skin since the last build?"""
        if self.reference_A is None or self.reference_A.shape != positions_A.shape:
            return True
        moved_squared_A2 = float((positions_A - self.reference_A).square().sum(dim=-1).max())
        return moved_squared_A2 > (0.5 * self.skin_A) ** 2

    def build(self, positions_A: torch.Tensor) -> None:
        """Search all pairs within cutoff + skin, one vesin call per replica, in canonical order."""
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
            self.__init__(self.cutoff_A, 0.0, self.max_neighbours, self.cell_A)
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
        nearest = _nearest_mask(edge_index[1], length_squared_A2[kept].repeat(2), self.max_neighbours)
        return edge_index[:, nearest], shifts[nearest], False, length_squared_A2

    def shortest_A(self, length_squared_A2: torch.Tensor) -> torch.Tensor:
        """Per replica [n_live], the shortest of the listed pairs, from their squared lengths
        ``length_squared_A2`` [n_pairs] (Å²); below the cutoff, the shortest edge (Å)."""
        shortest_A2 = torch.full((len(self.reference_A),), torch.inf, dtype=length_squared_A2.dtype,
                                 device=length_squared_A2.device)
        return shortest_A2.scatter_reduce(0, self.pair_replica, length_squared_A2, reduce="amin").sqrt()


def _nearest_mask(receiver: torch.Tensor, length_squared_A2: torch.Tensor, max_neighbours: int) -> torch.Tensor:
    """[n_edges] bool: the edge is among the ``max_neighbours`` nearest of its receiver."""
    order = torch.argsort(length_squared_A2, stable=True)
    order = order[torch.argsort(receiver[order], stable=True)]
    grouped = receiver[order]
    first = torch.searchsorted(grouped, grouped, right=False)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device) - first
    return rank < max_neighbours


class NoseHooverChains:
    """Independent Nosé–Hoover chains, one per replica (ASE's NoseHooverChainThermostat, batched).

    The chain variables ``eta`` and ``p_eta`` [n_replicas][NOSE_HOOVER_CHAIN_LENGTH] (ASE units)
    are a few numbers per replica, so they live on the host as Python floats: a few hundred float
    operations cost far less than as many numpy or tensor calls on tiny arrays. Only the kinetic
    energy goes to the host and one scale factor per replica comes back.
    """

    def __init__(self, temperature_K: list[float], tdamp: list[float], n_atoms: int):
        self.n_dof = 3 * n_atoms
        self.kT = [BOLTZMANN_eV_PER_K * kelvin for kelvin in temperature_K]  # [n_replicas]
        self.q_mass = [
            [kT * damping**2 * (self.n_dof if j == 0 else 1) for j in range(NOSE_HOOVER_CHAIN_LENGTH)]
            for kT, damping in zip(self.kT, tdamp)
        ]  # [n_replicas][chain]
        self.eta = [[0.0] * NOSE_HOOVER_CHAIN_LENGTH for _ in self.kT]
        self.p_eta = [[0.0] * NOSE_HOOVER_CHAIN_LENGTH for _ in self.kT]

    def select(self, keep: list[int]) -> NoseHooverChains:
        """The chains of the replicas in slots ``keep``, in that order."""
        chosen = copy.copy(self)
        for name in ("kT", "q_mass", "eta", "p_eta"):
            setattr(chosen, name, [getattr(self, name)[slot] for slot in keep])
        return chosen

    def half_step(
        self, momenta: torch.Tensor, delta: list[float], twice_kinetic: list[float]
    ) -> tuple[torch.Tensor, list[float]]:
        """exp(iL_NHC delta) on ``momenta`` [n, n_atoms, 3], whose ``(momenta**2 / masses).sum(dim=(1, 2))``
        is ``twice_kinetic`` [n]; ``delta`` [n] is 0 for unthermostatted replicas. Returns the new
        momenta and their twice-kinetic energies."""
        scale = [
            self._chain_half_step(self.eta[r], self.p_eta[r], self.q_mass[r], self.kT[r], twice_kinetic[r], delta[r])
            for r in range(len(delta))
        ]
        twice_kinetic = [kinetic * factor**2 for kinetic, factor in zip(twice_kinetic, scale)]
        if len(scale) == 1:
            return momenta * scale[0], twice_kinetic
        return momenta * torch.tensor(scale, dtype=momenta.dtype).to(momenta.device).view(-1, 1, 1), twice_kinetic

    def _chain_half_step(
        self, eta: list[float], p_eta: list[float], q_mass: list[float], kT: float, twice_kinetic: float, delta: float
    ) -> float:
        """Advance one replica's ``eta`` and ``p_eta`` [chain] in place; the factor scaling its momenta."""
        if delta == 0.0:
            return 1.0
        last = NOSE_HOOVER_CHAIN_LENGTH - 1

        def sweep(order: range, sub: float, kinetic_term: float) -> None:
            """Update p_eta[j] for j in ``order`` over ``sub / 2``, each between two damping quarter steps."""
            for j in order:
                if j < last:
                    damp = math.exp(-0.25 * sub * p_eta[j + 1] / q_mass[j + 1])  # p_eta[j + 1] is fixed meanwhile
                    p_eta[j] *= damp
                p_eta[j] += 0.5 * sub * (kinetic_term if j == 0 else p_eta[j - 1] ** 2 / q_mass[j - 1] - kT)
                if j < last:
                    p_eta[j] *= damp

        scale, n_dof_kT = 1.0, self.n_dof * kT
        for weight in YOSHIDA_WEIGHTS:
            sub = weight * delta
            sweep(range(last, -1, -1), sub, twice_kinetic * scale**2 - n_dof_kT)
            for j in range(last + 1):
                eta[j] += sub * p_eta[j] / q_mass[j]
            scale *= math.exp(-sub * p_eta[0] / q_mass[0])
            sweep(range(last + 1), sub, twice_kinetic * scale**2 - n_dof_kT)
        return scale


def _twice_kinetic(momenta: torch.Tensor, masses: torch.Tensor) -> list[float]:
    """(momenta**2 / masses).sum(dim=(1, 2)) [n] on the host: twice each replica's kinetic energy (eV)."""
    return (momenta.square() / masses).sum(dim=(1, 2)).tolist()


def _group_bounds(n_live: int, replicas_per_call: int | None, n_workers: int) -> list[int]:
    """Boundaries [n_groups + 1] of groups of at most ``replicas_per_call`` (default: an equal
    share per worker) consecutive replicas, as equal in size as possible, their number a multiple
    of ``n_workers`` when there are enough replicas (so concurrent workers get equal shares)."""
    n_groups = n_workers if replicas_per_call is None else -(-n_live // replicas_per_call)
    n_groups = min(n_live, -(-n_groups // n_workers) * n_workers)
    return [n_live * group // n_groups for group in range(n_groups + 1)]


def _on_separate_cores(cores: ThreadPoolExecutor, function, jobs: list[tuple]) -> list:
    """``function(*job)`` for every job, run concurrently by ``cores``' threads with one torch
    intra-op thread each; torch's thread count is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return list(cores.map(lambda job: function(*job), jobs))
    finally:
        torch.set_num_threads(threads)


@dataclass
class Replicas:
    """The live replicas' state; slot s is the s-th live replica. ``select`` is the one way to drop some."""

    positions_A: torch.Tensor  # [n, n_atoms, 3] float64
    momenta: torch.Tensor  # [n, n_atoms, 3] float64, ASE units
    energy_eV: torch.Tensor  # [n] at the current positions
    forces_eV_A: torch.Tensor  # [n, n_atoms, 3] float64, at the current positions
    half_dt: torch.Tensor  # [n, 1, 1] half the timestep, ASE time units
    dt_per_mass: torch.Tensor  # [n, n_atoms, 1] the timestep over each atom's mass
    thermostat_half_dt: list[float]  # [n] half the timestep on the host, for the thermostat
    thermostat: NoseHooverChains
    twice_kinetic: list[float] | None  # [n] twice the kinetic energy (eV) on the host, when known

    def select(self, keep: list[int]) -> Replicas:
        """The replicas in slots ``keep``, in that order."""
        index = torch.as_tensor(keep, dtype=torch.long, device=self.positions_A.device)

        def pick(value):
            if isinstance(value, torch.Tensor):
                return value.index_select(0, index)
            if isinstance(value, NoseHooverChains):
                return value.select(keep)
            return None if value is None else [value[slot] for slot in keep]

        return Replicas(**{field.name: pick(getattr(self, field.name)) for field in dataclasses.fields(self)})


class TorchEngine(Engine):
    """Replicas of ``atoms`` with ``model``'s forces, integrated in torch on the model's device.

    ``neighbour_skin_A`` is the Verlet skin. Live replicas share model calls, in groups as equal as
    possible: one group per torch thread on CPU by default (measured fastest for tabulated SchNet,
    ``benchmarks/md_throughput.py``; SchNet with exact filters gains about 4 % from
    ``replicas_per_call=4`` on two cores), or at most ``replicas_per_call`` per call.
    """

    name = "torch"
    batched = True

    def __init__(self, model: ForceField, atoms: Atoms, neighbour_skin_A: float = DEFAULT_NEIGHBOUR_SKIN_A,
                 replicas_per_call: int | None = None):
        if neighbour_skin_A < 0:
            raise ValueError(f"neighbour_skin_A must be >= 0, got {neighbour_skin_A}")
        if not (replicas_per_call is None or (isinstance(replicas_per_call, int) and replicas_per_call >= 1)):
            raise ValueError(f"replicas_per_call must be an integer >= 1, got {replicas_per_call!r}")
        super().__init__(atoms, type(model).__name__)
        self.model, self.skin_A, self.replicas_per_call = model, neighbour_skin_A, replicas_per_call
        self.max_fusion_distance_A = model.cutoff_A  # the neighbour list sees pairs up to the cutoff (and skin)
        reference = model.atomic_energies_eV
        self.device, self.model_dtype = reference.device, reference.dtype
        self.masses = self._f64(atoms.get_masses())[None, :, None]  # [1, n_atoms, 1]
        self.cell_A = self._f64(atoms.cell.array)  # [3, 3]
        self.numbers = torch.as_tensor(atoms.numbers, dtype=torch.long, device=self.device)
        self.kinetic_to_K = 1.0 / (3 * len(atoms) * BOLTZMANN_eV_PER_K)  # 2 E_kin -> T
        self.groups: list[tuple[int, int, NeighbourList]] = []  # (start, stop, list) per group; reset when one leaves
        self.graph_constants = {}  # group size -> numbers, batch, cell_A of its AtomGraph
        self.cores = None
        self.lengths_squared_A2: list[torch.Tensor] = []  # per group, its listed pairs' squared lengths at the last call

    @classmethod
    def from_model(cls, model: ForceField, atoms: Atoms) -> TorchEngine:
        return cls(model, atoms)

    def _f64(self, values) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.float64), device=self.device)

    def start(self, protocols, momenta) -> None:
        positions_A = self._f64(np.repeat(self.atoms.positions[None], len(protocols), axis=0))  # [n, n_atoms, 3]
        self._begin(protocols, positions_A, self._f64(np.stack(momenta)), {})

    def restore(self, protocols, state) -> None:
        self._begin(protocols, self._f64(state["positions_A"]), self._f64(state["momenta"]), state)

    def _begin(self, protocols: list[MDProtocol], positions_A, momenta, state: dict) -> None:
        thermostat = NoseHooverChains(
            [p.temperature_K for p in protocols], [p.thermostat_time_fs * ASE_TIME_PER_FS for p in protocols], len(self.atoms)
        )
        if "eta" in state:
            thermostat.eta, thermostat.p_eta = state["eta"].tolist(), state["p_eta"].tolist()
        dt = self._f64([p.timestep_fs * ASE_TIME_PER_FS for p in protocols])  # [n]
        threads = torch.get_num_threads()
        # On CPU with several torch threads and replicas, groups' calls run side by side, one torch thread
        # each: a 50-atom call splits poorly across threads, independent calls do not.
        if self.device.type == "cpu" and threads > 1 and len(protocols) > 1:
            self.cores = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="batched-md")
        energy_eV, forces_eV_A = self._evaluate(positions_A)
        self.replicas = Replicas(
            positions_A=positions_A, momenta=momenta, energy_eV=energy_eV, forces_eV_A=forces_eV_A,
            half_dt=(0.5 * dt)[:, None, None], dt_per_mass=dt[:, None, None] / self.masses,
            thermostat_half_dt=[0.5 * p.timestep_fs * ASE_TIME_PER_FS for p in protocols], thermostat=thermostat,
            twice_kinetic=state["twice_kinetic"].tolist() if "twice_kinetic" in state else None,
        )

    def state(self) -> dict[str, np.ndarray]:
        replicas = self.replicas
        saved = {
            "positions_A": replicas.positions_A.cpu().numpy(),
            "momenta": replicas.momenta.cpu().numpy(),
            "eta": np.asarray(replicas.thermostat.eta, dtype=np.float64).reshape(-1, NOSE_HOOVER_CHAIN_LENGTH),
            "p_eta": np.asarray(replicas.thermostat.p_eta, dtype=np.float64).reshape(-1, NOSE_HOOVER_CHAIN_LENGTH),
        }
        if replicas.twice_kinetic is not None:
            saved["twice_kinetic"] = np.asarray(replicas.twice_kinetic, dtype=np.float64)
        return saved

    def advance(self, ramp_targets_K: list[float | None]) -> Observation:
        replicas = self.replicas
        ramping = [target is not None for target in ramp_targets_K]  # [n_live]
        thermostat_delta = [0.0 if ramps else half for ramps, half in zip(ramping, replicas.thermostat_half_dt)]
        momenta = replicas.momenta
        if any(thermostat_delta):
            twice_kinetic = replicas.twice_kinetic
            if twice_kinetic is None:
                twice_kinetic = _twice_kinetic(momenta, self.masses)
            momenta, _ = replicas.thermostat.half_step(momenta, thermostat_delta, twice_kinetic)
        momenta = torch.addcmul(momenta, replicas.half_dt, replicas.forces_eV_A)
        positions_A = torch.addcmul(replicas.positions_A, replicas.dt_per_mass, momenta)
        energy_eV, forces_eV_A = self._evaluate(positions_A)
        momenta = torch.addcmul(momenta, replicas.half_dt, forces_eV_A)
        # The last half step also gives the kinetic energy: the next step's first half step starts from it.
        momenta, twice_kinetic = replicas.thermostat.half_step(momenta, thermostat_delta, _twice_kinetic(momenta, self.masses))
        host_energy = energy_eV.tolist()
        # Non-finite forces, or positions, make the momenta and so the kinetic energy non-finite.
        finite = [math.isfinite(kinetic) and math.isfinite(energy) for kinetic, energy in zip(twice_kinetic, host_energy)]
        temperature_K = [kinetic * self.kinetic_to_K for kinetic in twice_kinetic]
        if any(ramping):  # velocities rescaled to the ramp's temperature
            rescale = [1.0] * len(ramping)
            for slot, target_K in enumerate(ramp_targets_K):
                if target_K is not None:
                    rescale[slot] = math.sqrt(target_K / temperature_K[slot]) if temperature_K[slot] > 0 else math.inf
                    temperature_K[slot] = target_K
            momenta = momenta * torch.tensor(rescale, dtype=momenta.dtype).to(self.device)[:, None, None]
            twice_kinetic = None
        replicas.positions_A, replicas.momenta, replicas.twice_kinetic = positions_A, momenta, twice_kinetic
        replicas.energy_eV, replicas.forces_eV_A = energy_eV, forces_eV_A
        return Observation(host_energy, temperature_K, finite)

    def shortest_pair_A(self, cutoff_A: float) -> list[float]:
        return torch.cat([
            neighbours.shortest_A(length_squared_A2)
            for (_, _, neighbours), length_squared_A2 in zip(self.groups, self.lengths_squared_A2, strict=True)
        ]).tolist()

    def frames(self, with_forces: bool) -> tuple[np.ndarray, np.ndarray | None]:
        forces_eV_A = self.replicas.forces_eV_A.cpu().numpy() if with_forces else None
        return self.replicas.positions_A.cpu().numpy(), forces_eV_A

    def drop(self, keep: list[int]) -> None:
        self.replicas = self.replicas.select(keep)
        self.groups.clear()

    def close(self) -> None:
        if self.cores is not None:
            self.cores.shutdown()

    def _evaluate(self, positions_A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies [n_live] and forces [n_live, n_atoms, 3], one model call per group; keeps each group's
        listed pairs' squared lengths for ``shortest_pair_A``."""
        if not self.groups:
            n_workers = 1 if self.cores is None else torch.get_num_threads()
            bounds = _group_bounds(positions_A.shape[0], self.replicas_per_call, n_workers)
            self.groups.extend(
                (start, stop, NeighbourList(self.model.cutoff_A, self.skin_A, self.model.max_neighbours, self.cell_A))
                for start, stop in zip(bounds[:-1], bounds[1:])
            )
        jobs = [(neighbours, positions_A[start:stop]) for start, stop, neighbours in self.groups]
        if len(jobs) == 1:
            results = [self._evaluate_group(*jobs[0])]
        elif self.cores is None:
            results = [self._evaluate_group(*job) for job in jobs]
        else:
            results = _on_separate_cores(self.cores, self._evaluate_group, jobs)
        energy_eV, forces_eV_A, self.lengths_squared_A2 = (list(column) for column in zip(*results))
        if len(results) == 1:
            return energy_eV[0], forces_eV_A[0]
        return torch.cat(energy_eV), torch.cat(forces_eV_A)

    def _evaluate_group(self, neighbours: NeighbourList, positions_A: torch.Tensor):
        if neighbours.needs_rebuild(positions_A):
            neighbours.build(positions_A)
        edge_index, shifts, paired, length_squared_A2 = neighbours.edges_within_cutoff(positions_A)
        n_group, n_atoms, _ = positions_A.shape
        if n_group not in self.graph_constants:
            self.graph_constants[n_group] = (
                self.numbers.repeat(n_group),
                torch.arange(n_group, device=self.device).repeat_interleave(n_atoms),
                self.cell_A.to(self.model_dtype).expand(n_group, 3, 3),
            )
        numbers, batch, cell_A = self.graph_constants[n_group]
        graph = AtomGraph(
            positions_A=positions_A.reshape(-1, 3).to(self.model_dtype), numbers=numbers, batch=batch, cell_A=cell_A,
            edge_index=edge_index, shifts=shifts, paired=paired,
        )
        energy_eV, forces_eV_A = energy_and_forces(self.model, graph)
        return energy_eV.to(torch.float64), forces_eV_A.to(torch.float64).reshape(n_group, n_atoms, 3), length_squared_A2


ENGINE = TorchEngine
