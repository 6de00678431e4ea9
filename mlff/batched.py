"""Batched-replica MD engine in torch: many replicas of one model x material advance together.

Each step evaluates the live replicas in groups, each group one batched model call (one AtomGraph
with a structure per replica) with its own neighbour list: by default one group per torch thread
on CPU, whose calls run concurrently, one thread each, and one group on a GPU. The protocol
is ``mlff.md``'s, replica by replica: Maxwell–Boltzmann velocities from
``np.random.default_rng(seed)``; velocity-Verlet with velocities rescaled after every step to a
target rising linearly from ``ramp_start_K`` to ``temperature_K`` over ``ramp_ps``; then
Nosé–Hoover-chain NVT with the same splitting as ``ase.md.nose_hoover_chain.NoseHooverChainNVT``
(chain length 3, fourth-order Suzuki–Yoshida, thermostat mass Q0 = 3 N kB T tdamp²). Replicas may
differ in protocol; each has its own thermostat variables, seed and trajectory file.

Units follow ASE (Å, eV, amu; time in ASE units via ``ASE_TIME_PER_FS``), so momenta and
thermostat variables mean the same as in ``mlff.md``. The integrator state is float64 whatever
the model's dtype; positions are cast to the model's dtype for the model call.

Neighbour lists use a Verlet skin: vesin (per structure) searches ``cutoff_A + neighbour_skin_A``
and the list is rebuilt only when an atom has moved more than half the skin since the last build.
Each step keeps the pairs shorter than the cutoff, in a canonical order, and hands the model a
paired graph (``mlff.graph``), so the model sees the same graph whenever the list was built; this is
what makes a resumed run bitwise equal to an uninterrupted one on CPU.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import vesin
from ase import Atoms
from tqdm import tqdm

from analysis.rdf import RDF, rdf, rdf_mae
from analysis.stability import RDF_MAE_STABLE
from mlff import host_memory, preemption
from mlff.atomic_file import atomic_write
from mlff.graph import AtomGraph
from mlff.md import (
    ASE_TIME_PER_FS,
    BOLTZMANN_eV_PER_K,
    CHECKPOINT_EVERY_STEPS,
    DEFAULT_MAX_TEMPERATURE_FACTOR,
    NOSE_HOOVER_CHAIN_LENGTH,
    MDProtocol,
    run_summary,
    set_maxwell_boltzmann_velocities,
    trajectory_metadata,
)
from mlff.models import ForceField, energy_and_forces
from mlff.trajectory import TrajectoryWriter

# Fourth-order Suzuki–Yoshida weights for the thermostat sub-steps (Yoshida, Phys. Lett. A 150, 262, 1990).
YOSHIDA_WEIGHTS = (1 / (2 - 2 ** (1 / 3)), -(2 ** (1 / 3)) / (2 - 2 ** (1 / 3)), 1 / (2 - 2 ** (1 / 3)))
CHECKPOINT_FORMAT = "mlff-batched-md-1"
RDF_R_MAX_A = 6.0  # defaults of the online RDF check: range, bins, frames per window
RDF_N_BINS = 120
RDF_WINDOW_FRAMES = 200


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

    def select(self, keep: list[int]) -> None:
        for name in ("kT", "q_mass", "eta", "p_eta"):
            setattr(self, name, [getattr(self, name)[slot] for slot in keep])

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


def _identity(protocols: list[MDProtocol], seeds: list[int], atoms: Atoms) -> str:
    return json.dumps(
        {"protocols": [dataclasses.asdict(p) for p in protocols], "seeds": list(seeds), "numbers": atoms.numbers.tolist()},
        sort_keys=True,
    )


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_write(path) as fh:
        torch.save(state, fh)


def _load_checkpoint(path: Path, identity: str) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a batched MD checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    if state["identity"] != identity:
        raise ValueError(f"{path}: MD checkpoint of another run (protocols, seeds or structure differ); remove it")
    return state


def run_batched_md(
    model: ForceField,
    atoms: Atoms,
    protocols: list[MDProtocol],
    seeds: list[int],
    out_paths: list[str | os.PathLike],
    *,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every_steps: int = CHECKPOINT_EVERY_STEPS,
    fusion_distance_A: float = 1.0,
    max_temperature_K: float | None = None,
    rdf_reference: RDF | None = None,
    rdf_mae_threshold: float = RDF_MAE_STABLE,
    rdf_window_frames: int = RDF_WINDOW_FRAMES,
    check_every_steps: int = 10,
    neighbour_skin_A: float = 1.5,
    replicas_per_call: int | None = None,
    record_forces: bool = False,
    metadata: dict | None = None,
    progress: bool = True,
) -> list[dict]:
    """Run replica ``r`` with ``protocols[r]`` and ``seeds[r]`` from ``atoms``, writing ``out_paths[r]``.

    Frames, metadata (engine "torch") and the returned per-replica summaries have the layout of
    ``mlff.md.run_md``. Non-finite energies, forces or positions (through the kinetic energy) are
    checked every step; atom fusion (a distance below ``fusion_distance_A``), temperature above ``max_temperature_K``
    (default 10 x each replica's target) at every saved frame and every ``check_every_steps``
    steps. With ``rdf_reference`` (total RDF up to ``RDF_R_MAX_A`` in ``RDF_N_BINS`` bins), the
    RDF of every ``rdf_window_frames`` consecutive saved frames is compared with it and an MAE
    above ``rdf_mae_threshold`` stops the replica ("rdf_mismatch"). A stopped replica leaves the
    batch; the others continue.

    With ``checkpoint_path``, the state of every replica is saved every ``checkpoint_every_steps``
    steps and when ``mlff.preemption`` asks to stop (which then raises ``Preempted``); a run whose
    checkpoint exists resumes from it, truncating the trajectories to the frames it had written.
    Live replicas share model calls, in groups as equal as possible: one group per torch thread on
    CPU by default (measured fastest for tabulated SchNet, ``benchmarks/md_throughput.py``; SchNet
    with exact filters gains about 4 % from ``replicas_per_call=4`` on two cores), or at most
    ``replicas_per_call`` per call.

    Returns one summary per replica with ``run_md``'s keys; ``stopped_early_reason`` may also be
    "rdf_mismatch", and ``wall_s`` is the whole batch's wall time.
    """
    host_memory.retain_freed_memory()
    n_replicas = len(protocols)
    if not (n_replicas and len(seeds) == n_replicas and len(out_paths) == n_replicas):
        raise ValueError(
            f"run_batched_md needs one seed and one out_path per protocol, got {n_replicas} protocols, "
            f"{len(seeds)} seeds, {len(out_paths)} out_paths"
        )
    if not 0 < fusion_distance_A < model.cutoff_A:
        raise ValueError(f"fusion_distance_A must lie in (0, cutoff_A={model.cutoff_A}), got {fusion_distance_A}")
    for name, value in (("check_every_steps", check_every_steps), ("checkpoint_every_steps", checkpoint_every_steps),
                        ("rdf_window_frames", rdf_window_frames), ("replicas_per_call", replicas_per_call or 1)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if neighbour_skin_A < 0:
        raise ValueError(f"neighbour_skin_A must be >= 0, got {neighbour_skin_A}")

    reference = model.atomic_energies_eV
    device, model_dtype, f64 = reference.device, reference.dtype, torch.float64
    as_f64 = lambda values: torch.as_tensor(np.asarray(values, dtype=np.float64), device=device)  # noqa: E731
    n_atoms = len(atoms)
    masses = as_f64(atoms.get_masses())[None, :, None]  # [1, n_atoms, 1]
    cell_A = as_f64(atoms.cell.array)  # [3, 3]
    dt = as_f64([p.timestep_fs * ASE_TIME_PER_FS for p in protocols])  # [n]
    n_total = [p.n_ramp_steps + p.n_production_steps for p in protocols]
    limit_K = [
        DEFAULT_MAX_TEMPERATURE_FACTOR * p.temperature_K if max_temperature_K is None else max_temperature_K
        for p in protocols
    ]
    fields = ["energy_eV", "temperature_K"] + (["forces_eV_A"] if record_forces else [])

    checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
    identity = _identity(protocols, seeds, atoms)
    resumed = checkpoint_path is not None and checkpoint_path.exists()
    rngs = [np.random.default_rng(seed) for seed in seeds]
    if resumed:
        saved = _load_checkpoint(checkpoint_path, identity)
        for rng, state in zip(rngs, saved["rng_states"]):
            rng.bit_generator.state = json.loads(state)
        steps_done, live = saved["step"], list(saved["live"])
        records = saved["records"]
        windows = [list(frames.numpy()) for frames in saved["rdf_windows"]]
        previous_wall_s = saved["wall_s"]
    else:
        starts = []
        for protocol, rng in zip(protocols, rngs):
            replica = atoms.copy()
            set_maxwell_boltzmann_velocities(replica, protocol.ramp_start_K, rng)
            starts.append(replica.get_momenta())
        steps_done, live = 0, list(range(n_replicas))
        records = [
            {"n_frames": 0, "reason": None, "stop_step": None, "temperature_sum_K": 0.0, "n_temperatures": 0}
            for _ in range(n_replicas)
        ]
        windows = [[] for _ in range(n_replicas)]
        previous_wall_s = 0.0

    thermostat = NoseHooverChains(
        [p.temperature_K for p in protocols], [p.thermostat_time_fs * ASE_TIME_PER_FS for p in protocols], n_atoms
    )
    thermostat.select(live)
    dt = dt[torch.as_tensor(live, device=device, dtype=torch.long)]
    if resumed:  # the live replicas' dynamic state, [n_live, ...]
        positions_A, momenta = saved["positions_A"].to(device), saved["momenta"].to(device)
        thermostat.eta, thermostat.p_eta = saved["eta"].tolist(), saved["p_eta"].tolist()
        temperature_sum_K, n_temperatures = saved["temperature_sum_K"].tolist(), saved["n_temperatures"].tolist()
    else:
        positions_A = as_f64(np.repeat(atoms.positions[None], n_replicas, axis=0))  # [n, n_atoms, 3]
        momenta = as_f64(np.stack(starts))  # [n, n_atoms, 3]
        temperature_sum_K, n_temperatures = [0.0] * n_replicas, [0] * n_replicas  # [n_live], on the host
    # One (start, stop, neighbour list) per group of live replicas; reset when one leaves.
    groups: list[tuple[int, int, NeighbourList]] = []
    # On CPU with several torch threads and replicas, groups' calls run side by side, one torch thread
    # each: a 50-atom call splits poorly across threads, independent calls do not.
    threads = torch.get_num_threads()
    concurrent = device.type == "cpu" and threads > 1 and len(live) > 1
    cores = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="batched-md") if concurrent else None
    numbers = torch.as_tensor(atoms.numbers, dtype=torch.long, device=device)
    kinetic_to_K = 1.0 / (3 * n_atoms * BOLTZMANN_eV_PER_K)  # 2 E_kin -> T
    graph_constants = {}  # group size -> numbers, batch, cell_A of its AtomGraph

    def evaluate_group(neighbours: NeighbourList, positions_A: torch.Tensor):
        if neighbours.needs_rebuild(positions_A):
            neighbours.build(positions_A)
        edge_index, shifts, paired, length_squared_A2 = neighbours.edges_within_cutoff(positions_A)
        n_group = positions_A.shape[0]
        if n_group not in graph_constants:
            graph_constants[n_group] = (
                numbers.repeat(n_group),
                torch.arange(n_group, device=device).repeat_interleave(n_atoms),
                cell_A.to(model_dtype).expand(n_group, 3, 3),
            )
        group_numbers, batch, group_cell_A = graph_constants[n_group]
        graph = AtomGraph(
            positions_A=positions_A.reshape(-1, 3).to(model_dtype),
            numbers=group_numbers,
            batch=batch,
            cell_A=group_cell_A,
            edge_index=edge_index,
            shifts=shifts,
            paired=paired,
        )
        energy_eV, forces_eV_A = energy_and_forces(model, graph)
        return energy_eV.to(f64), forces_eV_A.to(f64).reshape(n_group, n_atoms, 3), length_squared_A2

    def evaluate(positions_A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Energies [n_live], forces [n_live, n_atoms, 3] and per group its listed pairs' squared lengths [n_pairs] (Å²),
        one model call per group."""
        if not groups:
            bounds = _group_bounds(positions_A.shape[0], replicas_per_call, 1 if cores is None else threads)
            groups.extend(
                (start, stop, NeighbourList(model.cutoff_A, neighbour_skin_A, model.max_neighbours, cell_A))
                for start, stop in zip(bounds[:-1], bounds[1:])
            )
        if len(groups) == 1:
            energy_eV, forces_eV_A, length_squared_A2 = evaluate_group(groups[0][2], positions_A)
            return energy_eV, forces_eV_A, [length_squared_A2]
        jobs = [(neighbours, positions_A[start:stop]) for start, stop, neighbours in groups]
        if cores is None:
            results = [evaluate_group(*job) for job in jobs]
        else:
            results = _on_separate_cores(cores, evaluate_group, jobs)
        energy_eV, forces_eV_A, length_squared_A2 = zip(*results)
        return torch.cat(energy_eV), torch.cat(forces_eV_A), list(length_squared_A2)

    def checkpoint(step: int) -> None:
        for writer in writers:
            writer.flush()
        _save_checkpoint(checkpoint_path, {
            "format": CHECKPOINT_FORMAT,
            "identity": identity,
            "step": step,
            "live": list(live),
            "positions_A": positions_A.cpu(),
            "momenta": momenta.cpu(),
            "eta": torch.tensor(thermostat.eta, dtype=f64).view(-1, NOSE_HOOVER_CHAIN_LENGTH),
            "p_eta": torch.tensor(thermostat.p_eta, dtype=f64).view(-1, NOSE_HOOVER_CHAIN_LENGTH),
            "temperature_sum_K": torch.tensor(temperature_sum_K, dtype=f64),
            "n_temperatures": torch.tensor(n_temperatures, dtype=torch.long),
            "records": records,
            "rdf_windows": [torch.as_tensor(np.asarray(w, dtype=np.float64).reshape(-1, n_atoms, 3)) for w in windows],
            "rng_states": [json.dumps(rng.bit_generator.state) for rng in rngs],
            "wall_s": time.perf_counter() - start_s,
        })

    file_metadata = [
        trajectory_metadata(protocol, seed, "torch", type(model).__name__, fusion_distance_A, limit, metadata)
        for protocol, seed, limit in zip(protocols, seeds, limit_K)
    ]
    start_s = time.perf_counter() - previous_wall_s
    writers = [
        TrajectoryWriter(path, atoms.numbers, atoms.cell.array, fields, meta, append=resumed)
        for path, meta in zip(out_paths, file_metadata)
    ]
    bar = tqdm(total=max(n_total), initial=steps_done, disable=not progress, unit="step",
               desc=f"batched MD x{n_replicas}")
    try:
        for writer, record in zip(writers, records):
            if resumed:
                writer.truncate(record["n_frames"])
        if live:  # a checkpoint written after the last step has none
            energy_eV, forces_eV_A, _ = evaluate(positions_A)
        half_dt, dt_per_mass = (0.5 * dt)[:, None, None], dt[:, None, None] / masses  # [n_live, 1|n_atoms, 1]
        twice_kinetic = None  # [n_live] (momenta**2 / masses).sum(dim=(1, 2)) on the host, when known
        step = steps_done
        while live:
            step += 1
            ramping = [step <= protocols[r].n_ramp_steps for r in live]  # [n_live]
            nhc_delta = [
                0.0 if ramps else 0.5 * protocols[r].timestep_fs * ASE_TIME_PER_FS for r, ramps in zip(live, ramping)
            ]  # [n_live]
            if any(nhc_delta):
                if twice_kinetic is None:
                    twice_kinetic = _twice_kinetic(momenta, masses)
                momenta, _ = thermostat.half_step(momenta, nhc_delta, twice_kinetic)
            momenta = torch.addcmul(momenta, half_dt, forces_eV_A)
            positions_A = torch.addcmul(positions_A, dt_per_mass, momenta)
            energy_eV, forces_eV_A, lengths_squared_A2 = evaluate(positions_A)
            momenta = torch.addcmul(momenta, half_dt, forces_eV_A)
            # The last half step also gives the kinetic energy: the next step's first half step starts from it.
            momenta, twice_kinetic = thermostat.half_step(momenta, nhc_delta, _twice_kinetic(momenta, masses))
            host_energy = energy_eV.tolist()
            # Non-finite forces, or positions, make the momenta and so the kinetic energy non-finite.
            finite = [math.isfinite(kinetic) and math.isfinite(energy)
                      for kinetic, energy in zip(twice_kinetic, host_energy)]  # [n_live]
            host_temperature = [kinetic * kinetic_to_K for kinetic in twice_kinetic]
            if any(ramping):  # velocities rescaled to the ramp's temperature
                rescale = []
                for slot, replica in enumerate(live):
                    protocol = protocols[replica]
                    if ramping[slot]:
                        ramp_K = protocol.ramp_start_K + (protocol.temperature_K - protocol.ramp_start_K) * step / max(
                            protocol.n_ramp_steps, 1)
                        rescale.append(math.sqrt(ramp_K / host_temperature[slot]) if host_temperature[slot] > 0
                                       else math.inf)
                        host_temperature[slot] = ramp_K
                    else:
                        rescale.append(1.0)
                momenta = momenta * torch.tensor(rescale, dtype=f64).to(device)[:, None, None]
                twice_kinetic = None
            for slot in range(len(live)):
                if finite[slot] and not ramping[slot]:
                    temperature_sum_K[slot] += host_temperature[slot]
                    n_temperatures[slot] += 1
            bar.update()

            production_step = [step - protocols[replica].n_ramp_steps for replica in live]
            saving = [
                production_step[slot] > 0 and production_step[slot] % protocols[replica].save_every_steps == 0
                for slot, replica in enumerate(live)
            ]
            reasons = [None if ok else "non_finite" for ok in finite]
            if any(saving) or step % check_every_steps == 0:
                shortest_A = torch.cat([neighbours.shortest_A(length_squared_A2) for (_, _, neighbours), length_squared_A2
                                        in zip(groups, lengths_squared_A2, strict=True)])
                reasons = _instabilities(
                    reasons, shortest_A.tolist(), fusion_distance_A, host_temperature, [limit_K[r] for r in live]
                )
                bar.set_postfix(T_K=f"{sum(host_temperature) / len(host_temperature):.0f}", refresh=False)
            if any(saving):
                host_positions = positions_A.cpu().numpy()
                host_forces = forces_eV_A.cpu().numpy() if record_forces else None
                for slot, replica in enumerate(live):
                    if not saving[slot] or reasons[slot]:
                        continue
                    index = production_step[slot]
                    writers[replica].append(
                        step=index,
                        time_fs=index * protocols[replica].timestep_fs,
                        positions_A=host_positions[slot],
                        energy_eV=host_energy[slot],
                        forces_eV_A=None if host_forces is None else host_forces[slot],
                        temperature_K=host_temperature[slot],
                    )
                    records[replica]["n_frames"] += 1
                    if rdf_reference is not None:
                        windows[replica].append(host_positions[slot])
                        if len(windows[replica]) == rdf_window_frames:
                            g = rdf(np.stack(windows[replica]), atoms.cell.array, atoms.numbers, RDF_R_MAX_A, RDF_N_BINS)
                            windows[replica] = []
                            if rdf_mae(g, rdf_reference) > rdf_mae_threshold:
                                reasons[slot] = "rdf_mismatch"

            finished = [step >= n_total[replica] for replica in live]
            if any(reasons) or any(finished):
                keep = []
                for slot, replica in enumerate(live):
                    if reasons[slot] or finished[slot]:
                        records[replica].update(
                            reason=reasons[slot], stop_step=step,
                            temperature_sum_K=temperature_sum_K[slot], n_temperatures=n_temperatures[slot],
                        )
                    else:
                        keep.append(slot)
                live = [live[slot] for slot in keep]
                keep_index = torch.as_tensor(keep, device=device, dtype=torch.long)
                positions_A, momenta = positions_A[keep_index], momenta[keep_index]
                energy_eV, forces_eV_A = energy_eV[keep_index], forces_eV_A[keep_index]
                dt = dt[keep_index]
                half_dt, dt_per_mass, twice_kinetic = (0.5 * dt)[:, None, None], dt[:, None, None] / masses, None
                temperature_sum_K = [temperature_sum_K[slot] for slot in keep]
                n_temperatures = [n_temperatures[slot] for slot in keep]
                thermostat.select(keep)
                groups.clear()
            if checkpoint_path is not None and (preemption.requested() or step % checkpoint_every_steps == 0):
                checkpoint(step)
                if preemption.requested():
                    raise preemption.Preempted(str(checkpoint_path))
    finally:
        bar.close()
        if cores is not None:
            cores.shutdown()
        for writer in writers:
            writer.close()

    wall_s = time.perf_counter() - start_s
    return [
        run_summary(
            protocol, seed, "torch", n_steps_run=record["stop_step"], n_frames=record["n_frames"],
            reason=record["reason"], wall_s=wall_s, resumed_from_step=steps_done if resumed else None,
            mean_temperature_K=record["temperature_sum_K"] / record["n_temperatures"] if record["n_temperatures"] else None,
        )
        for protocol, seed, record in zip(protocols, seeds, records)
    ]


def _instabilities(
    reasons: list[str | None],
    shortest_A: list[float],
    fusion_distance_A: float,
    temperature_K: list[float],
    limit_K: list[float],
) -> list[str | None]:
    """Per live replica, ``reasons`` (already "non_finite" or None) completed with "atom_fusion"
    (its shortest pair ``shortest_A`` below ``fusion_distance_A``) and "temperature_blowup"
    (``temperature_K`` above ``limit_K``)."""
    return [
        reason or ("atom_fusion" if shortest < fusion_distance_A else "temperature_blowup" if kelvin > limit else None)
        for reason, shortest, kelvin, limit in zip(reasons, shortest_A, temperature_K, limit_K)
    ]
