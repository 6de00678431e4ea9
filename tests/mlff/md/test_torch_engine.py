"""The batched-replica torch MD engine against the ASE engine, physics and its own restarts."""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import signal
import warnings

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk
from torch.overrides import TorchFunctionMode

from analysis.stability import min_distance_A
from md_runs import ase_md, torch_md
from mlff import preemption
from mlff.calculator import MLFFCalculator
from mlff.graph import AtomGraph, edge_vectors_A
from mlff.md.checkpoint import read_md_checkpoint
from mlff.md.driver import run_md
from mlff.md.protocol import MDProtocol
from mlff.md.torch_engine import TorchEngine
from mlff.models import build_model
from mlff.models.base import ForceField
from mlff.structures import load_structure
from mlff.trajectory import read_trajectory
from model_sizes import SMALL_HPARAMS

ARGON_EPSILON_eV = 0.0104  # Lennard-Jones argon
ARGON_SIGMA_A = 3.40


class PairForceField(ForceField):
    """A cheap analytic pair potential, smoothly switched off at the cutoff: Lennard-Jones, or with
    ``well_eV`` a purely attractive Gaussian well that pulls atoms together (atom fusion)."""

    name = "pair_test"

    def __init__(self, *, cutoff_A: float = 6.0, max_neighbours: int = 500, well_eV: float = 0.0):
        super().__init__(dict(cutoff_A=cutoff_A, max_neighbours=max_neighbours))
        self.well_eV = well_eV
        self.calls = 0
        self.on_call = None

    def atom_energies_eV(self, graph: AtomGraph) -> torch.Tensor:
        self.calls += 1
        if self.on_call is not None:
            self.on_call(self.calls)
        distance_A = edge_vectors_A(graph).norm(dim=-1)  # [n_edges]
        switch = (1 - (distance_A / self.cutoff_A) ** 2) ** 2  # [n_edges], smooth at the cutoff
        if self.well_eV:
            pair_eV = -self.well_eV * torch.exp(-0.5 * (distance_A / 2.0) ** 2)
        else:
            ratio6 = (ARGON_SIGMA_A / distance_A) ** 6
            pair_eV = 4 * ARGON_EPSILON_eV * (ratio6**2 - ratio6)
        per_atom = torch.zeros(graph.n_atoms, dtype=distance_A.dtype, device=distance_A.device)
        return per_atom.index_add_(0, graph.edge_index[1], 0.5 * pair_eV * switch)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def argon() -> object:
    return bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 2, 2))  # 32 atoms, 10.5 Å cell


def small_schnet(tabulated: bool = False) -> ForceField:
    torch.manual_seed(0)
    model = build_model("schnet", hidden_channels=16, num_interactions=1, cutoff_A=4.0).double().eval()
    if tabulated:
        model.tabulate_filters()
    return model


@pytest.mark.parametrize("sync_free", [False, True], ids=["host", "sync-free"])
def test_single_replica_reproduces_the_ase_engine(tmp_path, sync_free):
    """One replica through the batched engine follows mlff.md.run_md (ASE's Nosé–Hoover chain) to rounding."""
    model, atoms = small_schnet(), load_structure("Li2S")
    protocol = MDProtocol(temperature_K=800, ramp_ps=0.03, production_ps=0.04, save_every_steps=2)
    ase_summary = ase_md(atoms, MLFFCalculator(model), protocol, 11, tmp_path / "ase.frames", progress=False)
    (torch_summary,) = torch_md(model, atoms, [protocol], [11], [tmp_path / "torch.frames"], sync_free=sync_free,
                                progress=False)
    ase_traj, torch_traj = read_trajectory(tmp_path / "ase.frames"), read_trajectory(tmp_path / "torch.frames")

    assert torch_traj.n_frames == ase_traj.n_frames == 10
    np.testing.assert_array_equal(torch_traj.step, ase_traj.step)
    np.testing.assert_array_equal(torch_traj.time_fs, ase_traj.time_fs)
    np.testing.assert_allclose(torch_traj.positions_A, ase_traj.positions_A, rtol=0, atol=1e-10)
    np.testing.assert_allclose(torch_traj.energy_eV, ase_traj.energy_eV, rtol=0, atol=1e-10)
    np.testing.assert_allclose(torch_traj.temperature_K, ase_traj.temperature_K, rtol=1e-10)
    assert set(torch_summary) == set(ase_summary)
    for key in ("n_steps_run", "n_frames_written", "completed", "stopped_early_reason", "seed"):
        assert torch_summary[key] == ase_summary[key]
    assert torch_summary["temperature_K"] == pytest.approx(ase_summary["temperature_K"], rel=1e-10)
    assert torch_summary["engine"] == torch_traj.metadata["engine"] == "torch"
    differing = {key for key in ase_traj.metadata if ase_traj.metadata[key] != torch_traj.metadata[key]}
    assert differing == {"engine", "calculator"}


@pytest.mark.parametrize("sync_free", [False, True], ids=["host", "sync-free"])
def test_replica_in_a_batch_follows_its_single_run(tmp_path, sync_free):
    """Batching does not couple replicas: each member of a mixed-temperature batch matches its own run."""
    model, atoms = small_schnet(), load_structure("Li2S")
    protocols = [MDProtocol(temperature_K=t, ramp_ps=0.02, production_ps=0.02) for t in (500, 900, 1300)]
    seeds = [1, 2, 3]
    batched = [tmp_path / f"batch{i}.frames" for i in range(3)]
    torch_md(model, atoms, protocols, seeds, batched, sync_free=sync_free, progress=False)
    for i, (protocol, seed) in enumerate(zip(protocols, seeds)):
        torch_md(model, atoms, [protocol], [seed], [tmp_path / "alone.frames"], sync_free=sync_free, progress=False)
        alone, member = read_trajectory(tmp_path / "alone.frames"), read_trajectory(batched[i])
        np.testing.assert_allclose(member.positions_A, alone.positions_A, rtol=0, atol=1e-9)
        np.testing.assert_allclose(member.energy_eV, alone.energy_eV, rtol=0, atol=1e-9)


@pytest.mark.parametrize("tabulated", [False, True], ids=["exact", "tabulated"])
@pytest.mark.parametrize("torch_threads", [1, 2])
def test_grouping_replicas_into_model_calls_changes_nothing(tmp_path, torch_threads, tabulated):
    """Replicas evaluated in groups of two (2 + 1 calls; with 2 threads the calls run side by side,
    one thread each) follow the same paths as in one call."""
    threads = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        _compare_grouped_with_one_call(tmp_path, small_schnet(tabulated))
    finally:
        torch.set_num_threads(threads)
    assert torch.get_num_threads() == threads


def _compare_grouped_with_one_call(tmp_path, model) -> None:
    atoms = load_structure("Li2S")
    protocols = [MDProtocol(temperature_K=t, ramp_ps=0.01, production_ps=0.02) for t in (500, 900, 1300)]
    paths = {k: [tmp_path / f"group{k}-{i}.frames" for i in range(3)] for k in (2, 3)}
    for per_call, out_paths in paths.items():
        torch_md(model, atoms, protocols, [4, 5, 6], out_paths, replicas_per_call=per_call, progress=False)
    for grouped, together in zip(paths[2], paths[3]):
        grouped, together = read_trajectory(grouped), read_trajectory(together)
        np.testing.assert_allclose(grouped.positions_A, together.positions_A, rtol=0, atol=1e-9)
        np.testing.assert_allclose(grouped.energy_eV, together.energy_eV, rtol=0, atol=1e-9)


def _production_means(paths) -> tuple[np.ndarray, np.ndarray]:
    """Per-run mean temperature (K) and potential energy (eV) over the second half of production."""
    temperatures, energies = [], []
    for path in paths:
        traj = read_trajectory(path)
        half = traj.n_frames // 2
        temperatures.append(traj.temperature_K[half:].mean())
        energies.append(traj.energy_eV[half:].mean())
    return np.array(temperatures), np.array(energies)


def test_batched_statistics_match_one_at_a_time(tmp_path):
    """Six replicas batched and six others (other seeds) run one at a time sample the same ensemble:
    mean temperature and mean potential energy agree within 4 standard errors."""
    model, atoms = PairForceField().double(), argon()
    protocol = MDProtocol(temperature_K=40.0, ramp_start_K=20.0, ramp_ps=0.1, production_ps=0.4, save_every_steps=5)
    batched = [tmp_path / f"batch{i}.frames" for i in range(6)]
    torch_md(model, atoms, [protocol] * 6, list(range(6)), batched, progress=False)
    single = []
    for seed in range(100, 106):
        single.append(tmp_path / f"single{seed}.frames")
        torch_md(model, atoms, [protocol], [seed], [single[-1]], progress=False)
    for batched_means, single_means in zip(_production_means(batched), _production_means(single)):
        error = math.sqrt(batched_means.var(ddof=1) / 6 + single_means.var(ddof=1) / 6)
        assert abs(batched_means.mean() - single_means.mean()) < 4 * error
    temperatures, _ = _production_means(batched + single)
    assert abs(temperatures.mean() - protocol.temperature_K) < 0.15 * protocol.temperature_K


def test_nve_conserves_energy(tmp_path):
    """With an effectively infinite thermostat time (Q ~ 1e18 larger) the integrator is velocity Verlet:
    total energy stays constant to far below the kinetic-energy fluctuations."""
    kinetic_eV, total_eV = _nve_energies_eV(PairForceField().double(), argon(), 60.0, tmp_path)
    assert kinetic_eV.std() > 0.01  # the system does move
    assert np.ptp(total_eV) < 0.02 * np.ptp(kinetic_eV)


def _nve_energies_eV(model, atoms, temperature_K: float, tmp_path) -> tuple[np.ndarray, np.ndarray]:
    """Kinetic and total energy [n_frames] of 0.3 ps at 1 fs with an effectively infinite thermostat time."""
    protocol = MDProtocol(
        temperature_K=temperature_K, ramp_start_K=temperature_K, ramp_ps=0.0, production_ps=0.3,
        thermostat_time_fs=1e9, timestep_fs=1.0,
    )
    torch_md(model, atoms, [protocol], [5], [tmp_path / "nve.frames"], progress=False)
    traj = read_trajectory(tmp_path / "nve.frames")
    kinetic_eV = 1.5 * len(atoms) * units.kB * traj.temperature_K
    return kinetic_eV, traj.energy_eV + kinetic_eV


def test_nve_conserves_energy_with_tabulated_schnet_filters(tmp_path):
    """SchNet evaluated from its filter tables is a conservative force field: velocity Verlet keeps
    the total energy to 1e-3 of the kinetic energy's swings (filters scaled up so atoms feel them)."""
    torch.manual_seed(0)
    model = build_model("schnet", **SMALL_HPARAMS["schnet"]).double()
    with torch.no_grad():
        for interaction in model.interactions:
            interaction.filter_network[2].weight.mul_(10.0)
    assert model.tabulate_filters()
    kinetic_eV, total_eV = _nve_energies_eV(model, load_structure("Li2S"), 600.0, tmp_path)
    assert kinetic_eV.std() > 0.05
    assert np.ptp(total_eV) < 1e-3 * np.ptp(kinetic_eV)


@pytest.mark.parametrize("sync_free", [False, True], ids=["host", "sync-free"])
def test_hot_replica_stops_and_the_others_finish(tmp_path, sync_free):
    model, atoms = PairForceField().double(), argon()
    cool = MDProtocol(temperature_K=30.0, ramp_start_K=20.0, ramp_ps=0.1, production_ps=0.2)
    hot = dataclasses.replace(cool, temperature_K=400.0)
    paths = [tmp_path / f"{i}.frames" for i in range(3)]
    summaries = torch_md(
        model, atoms, [cool, hot, cool], [1, 2, 3], paths, max_temperature_K=150.0, check_every_steps=5, sync_free=sync_free,
        progress=False
    )
    stopped = summaries[1]
    assert stopped["stopped_early_reason"] == "temperature_blowup" and not stopped["completed"]
    assert -cool.ramp_ps < stopped["collapse_time_ps"] < 0  # during the ramp
    assert stopped["n_frames_written"] == 0 and read_trajectory(paths[1]).n_frames == 0
    for summary, path in zip(summaries[::2], paths[::2]):
        assert summary["completed"] and summary["collapse_time_ps"] is None
        assert summary["n_steps_run"] == cool.n_ramp_steps + cool.n_production_steps
        assert read_trajectory(path).n_frames == cool.n_production_steps


@pytest.mark.parametrize("sync_free", [False, True], ids=["host", "sync-free"])
def test_atom_fusion_stops_before_a_fused_frame_is_written(tmp_path, sync_free):
    model, atoms = PairForceField(well_eV=5.0).double(), argon()
    protocol = MDProtocol(temperature_K=30.0, ramp_start_K=30.0, ramp_ps=0.0, production_ps=1.0)
    (summary,) = torch_md(
        model, atoms, [protocol], [0], [tmp_path / "f.frames"], max_temperature_K=1e9, check_every_steps=1,
        sync_free=sync_free, progress=False
    )
    assert summary["stopped_early_reason"] == "atom_fusion"
    assert 0 < summary["collapse_time_ps"] < protocol.production_ps
    traj = read_trajectory(tmp_path / "f.frames")
    assert traj.n_frames == summary["n_frames_written"] > 0
    assert min_distance_A(traj.positions_A, traj.cell_A).min() >= 1.0


class NaNForceField(PairForceField):
    """The pair potential with finite energies but NaN forces from call ``n_good + 1`` on: on every
    structure of the graph, or only on structure ``replica`` of a batch."""

    def __init__(self, n_good: int, replica: int | None = None):
        super().__init__()
        self.n_good, self.replica = n_good, replica

    def atom_energies_eV(self, graph: AtomGraph) -> torch.Tensor:
        energies_eV = super().atom_energies_eV(graph)
        if self.calls > self.n_good:  # sqrt(0 * r) adds 0 eV, and its gradient inf * 0 is NaN
            length_A = edge_vectors_A(graph).norm(dim=-1)  # [n_edges]
            if self.replica is None:
                return energies_eV + torch.sqrt(0.0 * length_A).sum()
            receiver = graph.edge_index[1]
            chosen = graph.batch[receiver] == self.replica  # [n_edges]
            return energies_eV.index_add(0, receiver[chosen], torch.sqrt(0.0 * length_A[chosen]))
        return energies_eV


@pytest.mark.parametrize("sync_free", [False, True], ids=["host", "sync-free"])
def test_non_finite_forces_stop_before_being_written(tmp_path, sync_free):
    protocol = MDProtocol(temperature_K=30.0, ramp_start_K=30.0, ramp_ps=0.0, production_ps=0.1)
    failing_step = 23  # call 1 is the initial force evaluation, call k + 1 is step k
    (summary,) = torch_md(
        NaNForceField(n_good=failing_step).double(), argon(), [protocol], [0], [tmp_path / "n.frames"],
        sync_free=sync_free, progress=False
    )
    assert summary["stopped_early_reason"] == "non_finite" and summary["n_steps_run"] == failing_step
    traj = read_trajectory(tmp_path / "n.frames")
    assert traj.n_frames == summary["n_frames_written"] == failing_step - 1
    assert np.isfinite(traj.positions_A).all() and np.isfinite(traj.energy_eV).all()


def test_sync_free_replica_turning_non_finite_between_reads_stops_at_its_step_and_spares_the_others(tmp_path):
    """Sync-free steps are read at the driver's events, here every 10 steps: a replica whose forces turn NaN
    at step 23 stops at step 23 (read at step 30), with its frames of steps 10 and 20, and the replicas
    beside it in the batch run exactly as in a batch where it never fails."""
    protocol = MDProtocol(temperature_K=30.0, ramp_start_K=30.0, ramp_ps=0.0, production_ps=0.1, save_every_steps=10)
    failing_step = 23  # call 1 is the initial force evaluation, call k + 1 is step k

    def batch(n_good: int, name: str) -> tuple[list[dict], list]:
        paths = [tmp_path / f"{name}{i}.frames" for i in range(3)]
        model = NaNForceField(n_good, replica=2).double()  # the batch's last structure, while it is there
        summaries = torch_md(model, argon(), [protocol] * 3, [0, 1, 2], paths, sync_free=True, progress=False)
        return summaries, [read_trajectory(path) for path in paths]

    failing, failing_frames = batch(failing_step, "failing")
    healthy, healthy_frames = batch(10**9, "healthy")
    assert failing[2]["stopped_early_reason"] == "non_finite" and failing[2]["n_steps_run"] == failing_step
    np.testing.assert_array_equal(failing_frames[2].step, [10, 20])
    np.testing.assert_array_equal(failing_frames[2].positions_A, healthy_frames[2].positions_A[:2])
    for replica in (0, 1):
        assert failing[replica]["completed"] and failing[replica]["n_frames_written"] == 5
        np.testing.assert_array_equal(failing_frames[replica].positions_A, healthy_frames[replica].positions_A)
        assert failing[replica]["temperature_K"] == healthy[replica]["temperature_K"]


@pytest.mark.parametrize("sync_free", [False, True], ids=["host", "sync-free"])
def test_an_engine_run_twice_runs_the_same_both_times(tmp_path, sync_free):
    """A second ``run_md`` with the same engine (as the benchmarks do) starts afresh: no neighbour list or
    skin-check countdown of the first run carries over."""
    # A thin skin: by the end of a run its atoms have left the list built at its start.
    engine = TorchEngine(small_schnet(), load_structure("Li2S"), neighbour_skin_A=0.1, sync_free=sync_free)
    protocol = MDProtocol(temperature_K=800.0, ramp_ps=0.01, production_ps=0.06, save_every_steps=5)
    for run in (0, 1):
        run_md(engine, [protocol] * 2, [1, 2], [tmp_path / f"{run}-{i}.frames" for i in range(2)], progress=False)
    for i in range(2):
        first, second = read_trajectory(tmp_path / f"0-{i}.frames"), read_trajectory(tmp_path / f"1-{i}.frames")
        np.testing.assert_array_equal(second.positions_A, first.positions_A)


HOST_READS = {  # torch calls that wait for a device and copy from it, or copy host data to it
    "item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__", "nonzero", "masked_select",
    "unique", "repeat_interleave", "tensor", "as_tensor",
}


class HostReads(TorchFunctionMode):
    """Counts, per MD step, the torch calls in ``HOST_READS`` (and indexing by a bool mask) made from the
    step's ``engine.advance`` until the next: on a GPU each is a host-device synchronisation."""

    def __init__(self):
        super().__init__()
        self.per_step: list[collections.Counter] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name == "__getitem__":
            index = args[1] if isinstance(args[1], tuple) else (args[1],)
            name = "mask index" if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index) else ""
        if self.per_step and (name in HOST_READS or name == "mask index"):
            self.per_step[-1][name] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("model_name", ["schnet", "pair"])
def test_a_steady_sync_free_step_reads_one_number_from_the_device(tmp_path, model_name):
    """Between the driver's events (checks and frames every 10 steps here), a sync-free step reads only the
    number of listed pairs within the cutoff (one ``nonzero``, the size of the model's graph); a step on
    the host reads its energies, kinetic energies, thermostat factors and skin every step."""
    torch.manual_seed(0)
    model = small_schnet() if model_name == "schnet" else PairForceField(cutoff_A=4.0).double()
    protocol = MDProtocol(temperature_K=800.0, ramp_ps=0.01, production_ps=0.1, save_every_steps=10)  # 5 ramp steps
    reads = {}
    for sync_free in (True, False):
        engine = TorchEngine(model, load_structure("Li2S"), sync_free=sync_free)
        counter = HostReads()
        engine_advance = engine.advance

        def advance(ramp_targets_K, counter=counter, engine_advance=engine_advance):
            counter.per_step.append(collections.Counter())
            return engine_advance(ramp_targets_K)

        engine.advance = advance
        with counter:
            run_md(engine, [protocol] * 2, [1, 2], [tmp_path / f"{sync_free}{i}.frames" for i in range(2)],
                   fusion_distance_A=0.05, max_temperature_K=1e6, progress=False)  # random weights: no replica stops
        reads[sync_free] = counter.per_step
    events = {step for step in range(1, protocol.n_steps + 1) if step % 10 == 0 or (step > 5 and (step - 5) % 10 == 0)}
    steady = [step for step in range(6, protocol.n_steps) if step not in events]  # production, between events
    assert len(steady) == 40
    for step in steady:
        assert reads[True][step - 1] == {"nonzero": 1}, step
        assert sum(reads[False][step - 1].values()) >= 5
    assert all(reads[True][step - 1]["tolist"] > 0 for step in events)  # the events read what was deferred


@pytest.mark.parametrize("sync_free", [False, True], ids=["host", "sync-free"])
def test_sigterm_checkpoint_and_bitwise_resume(tmp_path, sync_free, stop_signals):
    """SIGTERM mid-run writes a checkpoint and raises Preempted; resuming gives the uninterrupted run's
    trajectory files byte for byte (neighbour lists rebuilt at different times, one replica stopped)."""
    atoms = argon()
    protocols = [
        MDProtocol(temperature_K=t, ramp_start_K=20.0, ramp_ps=0.05, production_ps=0.15, save_every_steps=2)
        for t in (40.0, 400.0, 50.0)
    ]
    options = dict(max_temperature_K=150.0, neighbour_skin_A=0.1, check_every_steps=3, sync_free=sync_free, progress=False)
    straight = [tmp_path / f"straight{i}.frames" for i in range(3)]
    expected = torch_md(PairForceField().double(), atoms, protocols, [1, 2, 3], straight, **options)
    assert expected[1]["stopped_early_reason"] == "temperature_blowup"

    model = PairForceField().double()
    model.on_call = lambda calls: os.kill(os.getpid(), signal.SIGTERM) if calls == 77 else None
    resumed = [tmp_path / f"resumed{i}.frames" for i in range(3)]
    checkpoint = tmp_path / "md-checkpoint.npz"
    with pytest.raises(preemption.Preempted):
        torch_md(model, atoms, protocols, [1, 2, 3], resumed, checkpoint_path=checkpoint,
                       checkpoint_every_steps=20, **options)
    assert checkpoint.exists()
    step = read_md_checkpoint(checkpoint).step
    assert 20 < step < 100
    preemption.clear()
    summaries = torch_md(model, atoms, protocols, [1, 2, 3], resumed, checkpoint_path=checkpoint,
                               checkpoint_every_steps=20, **options)
    for a, b in zip(straight, resumed):
        assert a.read_bytes() == b.read_bytes()
    for got, want in zip(summaries, expected):
        assert got["resumed_from_step"] == step
        for key in ("n_steps_run", "n_frames_written", "stopped_early_reason", "collapse_time_ps", "temperature_K"):
            assert got[key] == want[key]


def test_checkpoint_of_another_run_is_refused(tmp_path):
    model, atoms = PairForceField().double(), argon()
    protocol = MDProtocol(temperature_K=40.0, ramp_ps=0.0, production_ps=0.02)
    checkpoint = tmp_path / "md-checkpoint.npz"
    torch_md(model, atoms, [protocol], [0], [tmp_path / "a.frames"], checkpoint_path=checkpoint,
                   checkpoint_every_steps=5, progress=False)
    with pytest.raises(ValueError, match="another run"):
        torch_md(model, atoms, [protocol], [1], [tmp_path / "a.frames"], checkpoint_path=checkpoint,
                       progress=False)
    with pytest.raises(ValueError, match="one seed and one out_path"):
        torch_md(model, atoms, [protocol], [0, 1], [tmp_path / "a.frames"], progress=False)



@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_steps_are_sync_free_follow_the_cpu_run_and_synchronise_once_when_steady(tmp_path):
    """On CUDA the engine takes sync-free steps by default. Three replicas follow the same run on the CPU
    (host steps), and between the driver's events a step synchronises with the host once, to size the
    model's graph: torch.cuda's sync debug mode warns at every synchronising call."""
    atoms = load_structure("Li2S")
    protocol = MDProtocol(temperature_K=800.0, ramp_ps=0.01, production_ps=0.1, save_every_steps=10)  # 5 ramp steps
    options = dict(fusion_distance_A=0.05, max_temperature_K=1e6, progress=False)  # random weights: no replica stops
    paths = {device: [tmp_path / f"{device}{i}.frames" for i in range(3)] for device in ("cpu", "cuda")}
    run_md(TorchEngine(small_schnet(), atoms), [protocol] * 3, [1, 2, 3], paths["cpu"], **options)

    engine = TorchEngine(small_schnet().to("cuda"), atoms)
    assert engine.sync_free and engine.defers_observations
    warnings_before_step = []
    engine_advance = engine.advance

    def advance(ramp_targets_K):
        warnings_before_step.append(len(caught))
        return engine_advance(ramp_targets_K)

    engine.advance = advance
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run_md(engine, [protocol] * 3, [1, 2, 3], paths["cuda"], **options)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = np.diff(warnings_before_step + [len(caught)])  # [n_steps]
    events = {step for step in range(1, protocol.n_steps + 1) if step % 10 == 0 or (step > 5 and (step - 5) % 10 == 0)}
    steady = [step for step in range(6, protocol.n_steps) if step not in events]
    assert [syncs[step - 1] for step in steady] == [1] * len(steady)
    for cpu_path, cuda_path in zip(paths["cpu"], paths["cuda"]):
        cpu, cuda = read_trajectory(cpu_path), read_trajectory(cuda_path)
        assert cuda.n_frames == cpu.n_frames == 5
        np.testing.assert_allclose(cuda.positions_A, cpu.positions_A, rtol=0, atol=1e-7)
