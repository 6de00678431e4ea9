"""The torch engine: many replicas of one model x material advance together, in batched model calls.

Each step evaluates the live replicas in groups, each group one batched model call (one AtomGraph
with a structure per replica) with its own neighbour list (``mlff.md.neighbours``): by default one
group per torch thread on CPU, whose calls run concurrently, one thread each, and on a GPU groups as
large as its memory allows (``mlff.md.autobatch``). The steps are the ASE engine's, replica by
replica: velocity Verlet with velocities rescaled to the ramp's target; then Nosé–Hoover-chain NVT
with the same splitting as ``ase.md.nose_hoover_chain.NoseHooverChainNVT`` (``mlff.md.thermostat``).
Replicas may differ in protocol; each has its own thermostat variables. On a GPU a steady step reads
nothing back but the size of the model's graph (``TorchEngine``'s ``sync_free``).

Units follow ASE (Å, eV, amu; time in ASE units via ``ASE_TIME_PER_FS``), so momenta and
thermostat variables mean the same as in the ASE engine. The integrator state is float64 whatever
the model's dtype; positions are cast to the model's dtype for the model call. Every per-replica
value lives in one ``Replicas`` structure, and ``Replicas.select`` is the one way replicas leave.
Because the neighbour lists hand the model the same graph whenever they were built, a resumed run
is bitwise equal to an uninterrupted one on CPU.
"""

from __future__ import annotations

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms

from mlff.graph import AtomGraph
from mlff.md.autobatch import SAFE_MEMORY_FRACTION, CallMemory, free_memory_bytes
from mlff.md.engine import Engine, Observation
from mlff.md.neighbours import NeighbourList
from mlff.md.protocol import CHECK_EVERY_STEPS, MDProtocol
from mlff.md.thermostat import NoseHooverChains
from mlff.models import ForceField, energy_and_forces
from records.units import ASE_TIME_PER_FS, BOLTZMANN_EV_K

DEFAULT_NEIGHBOUR_SKIN_A = 1.5
SYNC_FREE_SKIN_CHECK_STEPS = CHECK_EVERY_STEPS  # the skin checks of sync-free steps share the driver's read-outs


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
    finite: torch.Tensor | None  # [n] bool, sync-free steps only: every step so far was finite

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
    possible: at most ``replicas_per_call`` per call; by default, on CPU one group per torch thread
    (measured fastest for tabulated SchNet, ``benchmarks/md_throughput.py``; SchNet with exact
    filters gains about 4 % from ``replicas_per_call=4`` on two cores), and on a GPU as many replicas
    per call as fit in ``SAFE_MEMORY_FRACTION`` of its free memory (``mlff.md.autobatch``).
    ``memory_budget_bytes`` sets that budget on any device.

    ``sync_free`` (default: on a GPU) keeps a steady step on the device: the thermostat chains are
    tensors, observations stay tensors for the driver to read at its next event
    (``Engine.defers_observations``), a replica whose numbers stop being finite keeps its last finite
    state until the driver drops it, and the skin is checked every ``SYNC_FREE_SKIN_CHECK_STEPS`` steps,
    looking ahead (``NeighbourList.needs_rebuild``). What remains is the one read each step of how many
    listed pairs lie within the cutoff, the size of the model's graph. Without it (default on CPU,
    where reading a number costs nothing) every step reads its numbers on the host.
    """

    name = "torch"
    batched = True

    def __init__(self, model: ForceField, atoms: Atoms, neighbour_skin_A: float = DEFAULT_NEIGHBOUR_SKIN_A,
                 replicas_per_call: int | None = None, memory_budget_bytes: float | None = None,
                 sync_free: bool | None = None):
        if neighbour_skin_A < 0:
            raise ValueError(f"neighbour_skin_A must be >= 0, got {neighbour_skin_A}")
        if not (replicas_per_call is None or (isinstance(replicas_per_call, int) and replicas_per_call >= 1)):
            raise ValueError(f"replicas_per_call must be an integer >= 1, got {replicas_per_call!r}")
        if replicas_per_call is not None and memory_budget_bytes is not None:
            raise ValueError("give replicas_per_call or memory_budget_bytes, not both")
        super().__init__(atoms, type(model).__name__)
        self.model, self.skin_A, self.replicas_per_call = model, neighbour_skin_A, replicas_per_call
        self.max_fusion_distance_A = model.cutoff_A  # the neighbour list sees pairs up to the cutoff (and skin)
        reference = model.atomic_energies_eV
        self.device, self.model_dtype = reference.device, reference.dtype
        if memory_budget_bytes is None and replicas_per_call is None and self.device.type == "cuda":
            memory_budget_bytes = SAFE_MEMORY_FRACTION * free_memory_bytes(self.device)
        self.memory_budget_bytes = memory_budget_bytes
        self.sync_free = self.device.type == "cuda" if sync_free is None else sync_free
        self.defers_observations = self.sync_free
        self.skin_check_steps = SYNC_FREE_SKIN_CHECK_STEPS if self.sync_free else 1
        self.steps_to_skin_check = 0
        self.masses = self._f64(atoms.get_masses())[None, :, None]  # [1, n_atoms, 1]
        self.cell_A = self._f64(atoms.cell.array)  # [3, 3]
        self.numbers = torch.as_tensor(atoms.numbers, dtype=torch.long, device=self.device)
        self.kinetic_to_K = 1.0 / (3 * len(atoms) * BOLTZMANN_EV_K)  # 2 E_kin -> T
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
        self.groups.clear()  # an engine may run again: no neighbour list or skin check carries over
        self.steps_to_skin_check = 0
        thermostat = NoseHooverChains(
            [p.temperature_K for p in protocols], [p.thermostat_time_fs * ASE_TIME_PER_FS for p in protocols],
            len(self.atoms), self.device if self.sync_free else None,
        )
        if "eta" in state:
            thermostat.set_state(state["eta"], state["p_eta"])
        dt = self._f64([p.timestep_fs * ASE_TIME_PER_FS for p in protocols])  # [n]
        self.longest_dt = max(p.timestep_fs for p in protocols) * ASE_TIME_PER_FS
        threads = torch.get_num_threads()
        # On CPU with several torch threads and replicas, groups' calls run side by side, one torch thread
        # each: a 50-atom call splits poorly across threads, independent calls do not.
        if self.device.type == "cpu" and threads > 1 and len(protocols) > 1:
            self.cores = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="batched-md")
        if self.memory_budget_bytes is not None:
            self.replicas_per_call = self._replicas_within(self.memory_budget_bytes, positions_A)
        energy_eV, forces_eV_A = self._evaluate(positions_A, momenta)
        twice_kinetic = None if self.sync_free or "twice_kinetic" not in state else state["twice_kinetic"].tolist()
        self.replicas = Replicas(
            positions_A=positions_A, momenta=momenta, energy_eV=energy_eV, forces_eV_A=forces_eV_A,
            half_dt=(0.5 * dt)[:, None, None], dt_per_mass=dt[:, None, None] / self.masses,
            thermostat_half_dt=[0.5 * p.timestep_fs * ASE_TIME_PER_FS for p in protocols], thermostat=thermostat,
            twice_kinetic=twice_kinetic,
            finite=torch.ones(len(protocols), dtype=torch.bool, device=self.device) if self.sync_free else None,
        )

    def _replicas_within(self, budget_bytes: float, positions_A: torch.Tensor) -> int:
        """How many replicas one model call may take within ``budget_bytes``, measured on calls of a few of
        these replicas (``mlff.md.autobatch``)."""
        def call(n_replicas: int):
            replica_A = positions_A[:1].expand(n_replicas, -1, -1)
            neighbours = NeighbourList(self.model.cutoff_A, self.skin_A, self.model.max_neighbours, self.cell_A)
            return self._evaluate_group(neighbours, replica_A, None)

        return CallMemory.measure(call, self.device).replicas_within(budget_bytes)

    def state(self) -> dict[str, np.ndarray]:
        replicas = self.replicas
        eta, p_eta = replicas.thermostat.state()
        saved = {"positions_A": replicas.positions_A.cpu().numpy(), "momenta": replicas.momenta.cpu().numpy(),
                 "eta": eta, "p_eta": p_eta}
        if replicas.twice_kinetic is not None:
            saved["twice_kinetic"] = np.asarray(replicas.twice_kinetic, dtype=np.float64)
        return saved

    def advance(self, ramp_targets_K: list[float | None]) -> Observation:
        replicas = self.replicas
        ramping = [target is not None for target in ramp_targets_K]  # [n_live]
        delta = None if all(ramping) else self._thermostat_delta(ramping)  # [n_live], 0 where ramping
        momenta, chain = replicas.momenta, (replicas.thermostat.eta, replicas.thermostat.p_eta)
        if delta is not None:
            twice_kinetic = replicas.twice_kinetic
            if twice_kinetic is None:
                twice_kinetic = self._twice_kinetic(momenta)
            momenta, _ = replicas.thermostat.half_step(momenta, delta, twice_kinetic)
        momenta = torch.addcmul(momenta, replicas.half_dt, replicas.forces_eV_A)
        positions_A = torch.addcmul(replicas.positions_A, replicas.dt_per_mass, momenta)
        energy_eV, forces_eV_A = self._evaluate(positions_A, momenta)
        momenta = torch.addcmul(momenta, replicas.half_dt, forces_eV_A)
        # The last half step also gives the kinetic energy: the next step's first half step starts from it.
        twice_kinetic = self._twice_kinetic(momenta)
        if delta is not None:
            momenta, twice_kinetic = replicas.thermostat.half_step(momenta, delta, twice_kinetic)
        if self.sync_free:
            return self._end_step_on_device(ramp_targets_K, positions_A, momenta, energy_eV, forces_eV_A, twice_kinetic,
                                            chain)
        return self._end_step_on_host(ramp_targets_K, positions_A, momenta, energy_eV, forces_eV_A, twice_kinetic)

    def _thermostat_delta(self, ramping: list[bool]):
        """Each live replica's thermostat time step, 0 where it ramps: on the host, or on the device."""
        replicas = self.replicas
        if not self.sync_free:
            return [0.0 if ramps else half for ramps, half in zip(ramping, replicas.thermostat_half_dt)]
        half_dt = replicas.half_dt.view(-1)  # [n]
        if not any(ramping):
            return half_dt
        return half_dt * torch.tensor([not ramps for ramps in ramping], dtype=half_dt.dtype, device=self.device)

    def _twice_kinetic(self, momenta: torch.Tensor):
        """(momenta**2 / masses).sum(dim=(1, 2)) [n]: twice each replica's kinetic energy (eV); a list on the
        host unless sync-free."""
        twice_kinetic = (momenta.square() / self.masses).sum(dim=(1, 2))
        return twice_kinetic if self.sync_free else twice_kinetic.tolist()

    def _end_step_on_host(self, ramp_targets_K, positions_A, momenta, energy_eV, forces_eV_A, twice_kinetic):
        """Rescale the ramp's velocities, keep the step and observe it on the host."""
        host_energy = energy_eV.tolist()
        # Non-finite forces, or positions, make the momenta and so the kinetic energy non-finite.
        finite = [math.isfinite(kinetic) and math.isfinite(energy) for kinetic, energy in zip(twice_kinetic, host_energy)]
        temperature_K = [kinetic * self.kinetic_to_K for kinetic in twice_kinetic]
        if any(target is not None for target in ramp_targets_K):  # velocities rescaled to the ramp's temperature
            rescale = [1.0] * len(ramp_targets_K)
            for slot, target_K in enumerate(ramp_targets_K):
                if target_K is not None:
                    rescale[slot] = math.sqrt(target_K / temperature_K[slot]) if temperature_K[slot] > 0 else math.inf
                    temperature_K[slot] = target_K
            momenta = momenta * torch.tensor(rescale, dtype=momenta.dtype).to(self.device)[:, None, None]
            twice_kinetic = None
        replicas = self.replicas
        replicas.positions_A, replicas.momenta, replicas.twice_kinetic = positions_A, momenta, twice_kinetic
        replicas.energy_eV, replicas.forces_eV_A = energy_eV, forces_eV_A
        return Observation(host_energy, temperature_K, finite)

    def _end_step_on_device(self, ramp_targets_K, positions_A, momenta, energy_eV, forces_eV_A, twice_kinetic, chain):
        """Rescale the ramp's velocities, keep the step and observe it, reading nothing on the host. A replica
        that stops being finite keeps its state from before the step, ``chain`` its thermostat's, so that no
        non-finite number reaches the neighbour lists or the skin check."""
        replicas = self.replicas
        temperature_K = twice_kinetic * self.kinetic_to_K  # [n]
        if any(target is not None for target in ramp_targets_K):  # the ramp copies its targets to the device
            target_K = torch.tensor([math.nan if t is None else t for t in ramp_targets_K], dtype=momenta.dtype,
                                    device=self.device)  # [n]
            ramps = ~torch.isnan(target_K)
            rescale = torch.where(temperature_K > 0, (target_K / temperature_K).sqrt(), math.inf)
            momenta = momenta * torch.where(ramps, rescale, 1.0).view(-1, 1, 1)
            temperature_K = torch.where(ramps, target_K, temperature_K)
        finite = replicas.finite & torch.isfinite(energy_eV) & torch.isfinite(temperature_K)  # [n]
        kept = finite.view(-1, 1, 1)
        replicas.positions_A = torch.where(kept, positions_A, replicas.positions_A)
        replicas.momenta = torch.where(kept, momenta, replicas.momenta)
        replicas.forces_eV_A = torch.where(kept, forces_eV_A, replicas.forces_eV_A)
        replicas.energy_eV = torch.where(finite, energy_eV, replicas.energy_eV)
        thermostat = replicas.thermostat
        thermostat.eta = torch.where(finite[:, None], thermostat.eta, chain[0])
        thermostat.p_eta = torch.where(finite[:, None], thermostat.p_eta, chain[1])
        replicas.finite = finite
        return Observation(replicas.energy_eV, temperature_K, finite)

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

    def _skin_lookahead_A(self, momenta: torch.Tensor) -> torch.Tensor | float | None:
        """None when the skin is not checked at this step; else how far an atom may still move before the next
        check (Å): 0 when that is the next step, otherwise twice what the fastest atom covers at its present
        speed in the steps until then."""
        self.steps_to_skin_check -= 1
        if self.steps_to_skin_check > 0:
            return None
        self.steps_to_skin_check = self.skin_check_steps
        if self.skin_check_steps == 1:
            return 0.0
        fastest = (momenta / self.masses).square().sum(dim=-1).max().sqrt()  # Å per ASE time unit
        return 2 * (self.skin_check_steps - 1) * self.longest_dt * fastest

    def _evaluate(self, positions_A: torch.Tensor, momenta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies [n_live] and forces [n_live, n_atoms, 3], one model call per group; keeps each group's
        listed pairs' squared lengths for ``shortest_pair_A``."""
        if not self.groups:
            n_workers = 1 if self.cores is None else torch.get_num_threads()
            bounds = _group_bounds(positions_A.shape[0], self.replicas_per_call, n_workers)
            self.groups.extend(
                (start, stop, NeighbourList(self.model.cutoff_A, self.skin_A, self.model.max_neighbours, self.cell_A))
                for start, stop in zip(bounds[:-1], bounds[1:])
            )
        lookahead_A = self._skin_lookahead_A(momenta)
        jobs = [(neighbours, positions_A[start:stop], lookahead_A) for start, stop, neighbours in self.groups]
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

    def _evaluate_group(self, neighbours: NeighbourList, positions_A: torch.Tensor, lookahead_A):
        if neighbours.needs_rebuild(positions_A, lookahead_A):
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
