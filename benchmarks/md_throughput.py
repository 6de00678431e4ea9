"""MD throughput of the ASE and batched torch engines on 50-atom LGPS, measured side by side.

    .venv/bin/python -m benchmarks.md_throughput [--steps 100] [--device cpu] [--threads N]
                                                 [--models schnet dimenet++] [--replicas 1 6 30 90]

Prints one table per model (ns/day and replica-steps/s per engine, model size and replica count; a
batched row's ns/day is the aggregate of its replicas), the paper's Table 1 speed of the model
beside it, then one JSON line with the figures: ``overhead_fraction_schnet`` (time per step of the
one-replica torch engine outside its model calls, as a fraction of one call, both timed inside the
same run, with the calls synchronised on CUDA; quickstart-size SchNet),
``batched_speedup_30`` (replica-steps/s of 30 batched replicas against the same replicas one after
another in the torch engine) and ``speedup_vs_stock`` (our 30 batched replicas against
torch_geometric's stock SchNet of the same size as an ASE Calculator, driven by ASE's own
Nosé–Hoover chain one replica at a time; at paper size, our 6 against it). Every timing is the
median of ``--repeats`` interleaved repeats. Models have random weights: throughput does not
depend on them. Our engines run SchNet as a campaign does by default (``md.tabulate_filters``:
filters from verified tables); the "exact filters" rows evaluate the filter networks instead.
The engines keep freed host memory for reuse (``mlff.host_memory``); the benchmark sets that
before any timing, so every row, the stock one included, runs with it.

Models (``--models``, default SchNet alone): SchNet and DimeNet++, the quickstart's two, at
quickstart size (their hyperparameters in examples/quickstart.yaml) and paper size (the models'
defaults, the paper's). Figure names are SchNet's; another model's end in ``_<model>``
(``replica_steps_per_s_90_paper_dimenet++``). The exact-filter and stock rows are SchNet's alone.
Replica counts: ``--replicas`` for every size, else 1, 6 and 30 at quickstart size and 1 and 6 at
paper size. On CUDA, ``peak_gpu_memory_GiB`` is torch's peak allocation over the whole benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from ase import units
from ase.calculators.calculator import Calculator, all_changes
from ase.md.nose_hoover_chain import NoseHooverChainNVT
from ase.md.velocitydistribution import thermalize_momenta

import mlff.md.torch_engine
from campaign.paper import TABLE_1
from mlff import host_memory
from mlff.calculator import MLFFCalculator
from mlff.md.ase_engine import AseEngine
from mlff.md.driver import run_md
from mlff.md.protocol import MDProtocol
from mlff.md.torch_engine import TorchEngine
from mlff.models import build_model
from mlff.structures import load_structure
from records.units import FS_PER_NS, FS_PER_PS, S_PER_DAY

TIMESTEP_FS = 2.0
MODELS = {"schnet": "SchNet", "dimenet++": "DimeNet++"}  # registry name -> the paper's name
SIZES = ("quickstart", "paper")
QUICKSTART_SPEC = Path(__file__).resolve().parent.parent / "examples" / "quickstart.yaml"
REPLICA_COUNTS = {"quickstart": (1, 6, 30), "paper": (1, 6)}
BYTES_PER_GIB = 2**30
STOCK_TEMPERATURE_K = 800.0  # as protocol_for
STOCK_TDAMP_FS = 100.0  # ASE's Nosé–Hoover relaxation time, as our engines' default
# Random-weight models let atoms approach closely: stop a run only when atoms (nearly) coincide, and
# not for temperature, so every replica runs every step and the batch keeps its size.
FUSION_DISTANCE_A = 0.05
MAX_TEMPERATURE_K = 1e6


def ns_per_day(replica_steps_per_s: float) -> float:
    return replica_steps_per_s * TIMESTEP_FS * S_PER_DAY / FS_PER_NS


def model_hparams(model: str, size: str) -> dict:
    """Hyperparameters of ``model`` at ``size``: the quickstart spec's, or none (the defaults are the paper's)."""
    if size == "paper":
        return {}
    with open(QUICKSTART_SPEC) as fh:
        return yaml.safe_load(fh)["models"][model]


def figure_key(figure: str, size: str, model: str) -> str:
    """The JSON name of ``figure`` at ``size``: SchNet's as ever, another model's ending in ``_<model>``."""
    return f"{figure}_{size}" if model == "schnet" else f"{figure}_{size}_{model}"


def synchronizer(device: str):
    """A call that waits until ``device`` has done the work queued on it (nothing to wait for on CPU)."""
    return torch.cuda.synchronize if torch.device(device).type == "cuda" else lambda: None


def protocol_for(n_steps: int) -> MDProtocol:
    """Production only, at 800 K, one frame written every 10 steps (or at the end)."""
    return MDProtocol(
        temperature_K=800.0, ramp_start_K=800.0, ramp_ps=0.0, timestep_fs=TIMESTEP_FS,
        production_ps=n_steps * TIMESTEP_FS / FS_PER_PS, save_every_steps=min(10, n_steps),
    )


def median_of(repeats: int, *timers):
    """Run the zero-argument ``timers`` one after another ``repeats`` times; the median result of
    each (of each component, for a timer returning a tuple)."""
    results = [[timer() for timer in timers] for _ in range(repeats)]
    return [
        tuple(map(statistics.median, zip(*column))) if isinstance(column[0], tuple) else statistics.median(column)
        for column in zip(*results)
    ]


@contextlib.contextmanager
def timed_model_calls(synchronize):
    """Time the torch engine's model calls, each between two ``synchronize()``: yields [seconds, calls],
    accumulated while inside."""
    totals = [0.0, 0]
    call = mlff.md.torch_engine.energy_and_forces

    def timed(model, graph):
        synchronize()
        start = time.perf_counter()
        result = call(model, graph)
        synchronize()
        totals[0] += time.perf_counter() - start
        totals[1] += 1
        return result

    mlff.md.torch_engine.energy_and_forces = timed
    try:
        yield totals
    finally:
        mlff.md.torch_engine.energy_and_forces = call


def time_ase(model, atoms, n_steps: int, directory: Path) -> float:
    """Replica-steps/s of the ASE engine with our ASE calculator (steps actually run)."""
    (summary,) = run_md(
        AseEngine(atoms, MLFFCalculator(model)), [protocol_for(n_steps)], [0], [directory / "ase.frames"],
        progress=False, fusion_distance_A=FUSION_DISTANCE_A, max_temperature_K=MAX_TEMPERATURE_K,
    )
    return summary["n_steps_run"] / summary["wall_s"]


def time_batched(model, atoms, n_steps: int, n_replicas: int, directory: Path) -> float:
    """Replica-steps/s of the torch engine with ``n_replicas`` replicas (steps actually run)."""
    paths = [directory / f"torch{i}.frames" for i in range(n_replicas)]
    summaries = run_md(
        TorchEngine(model, atoms), [protocol_for(n_steps)] * n_replicas, list(range(n_replicas)), paths, progress=False,
        fusion_distance_A=FUSION_DISTANCE_A, max_temperature_K=MAX_TEMPERATURE_K,
    )
    return sum(summary["n_steps_run"] for summary in summaries) / summaries[0]["wall_s"]


def time_model_calls(model, atoms, n_steps: int, directory: Path, synchronize) -> tuple[float, float]:
    """The seconds per model call of a one-replica run of the torch engine, and that run's time per
    step outside the model calls as a fraction of one call. Synchronising around the calls slows a
    CUDA run, so its rate is not the engine's: ``time_batched`` gives that."""
    with timed_model_calls(synchronize) as totals:
        rate = time_batched(model, atoms, n_steps, 1, directory)
    call_s, n_calls = totals
    outside_s = 1.0 / rate - call_s / n_steps  # the run's n_steps + 1 calls are all inside its wall time
    return call_s / n_calls, outside_s / (call_s / n_calls)


def stock_ase_timer(model, atoms, n_steps: int):
    """Replica-steps/s timer of torch_geometric's stock SchNet at ``model``'s size as an ASE Calculator,
    driven by ASE's own Nosé–Hoover chain one replica at a time (what a user would otherwise write).

    The stock model takes its edges from an ``interaction_graph`` callable; every step it gets the
    periodic edges our models see (its own radius_graph needs torch-cluster and ignores the cell).
    """
    from torch_geometric.nn.models import SchNet as StockSchNet

    hparams = model.hparams
    stock = StockSchNet(
        hidden_channels=hparams["hidden_channels"], num_filters=hparams["num_filters"],
        num_interactions=hparams["num_interactions"], num_gaussians=hparams["num_gaussians"],
        cutoff=hparams["cutoff_A"], interaction_graph=lambda positions_A, batch: None,
    ).to(model.atomic_energies_eV.device).eval()

    class StockCalculator(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            graph = model.make_graph([self.atoms])
            sender, receiver = graph.edge_index
            offsets_A = graph.shifts.to(graph.cell_A.dtype) @ graph.cell_A[0]  # [n_edges, 3]
            stock.interaction_graph = lambda positions_A, batch: (
                graph.edge_index, (positions_A[sender] - positions_A[receiver] + offsets_A).norm(dim=-1)
            )
            positions_A = graph.positions_A.detach().requires_grad_(True)
            energy_eV = stock(graph.numbers, positions_A, graph.batch).sum()
            (gradient,) = torch.autograd.grad(energy_eV, positions_A)
            self.results = {"energy": energy_eV.item(), "forces": -gradient.cpu().double().numpy()}

    def timer() -> float:
        replica = atoms.copy()
        replica.calc = StockCalculator()
        thermalize_momenta(replica, temperature_K=STOCK_TEMPERATURE_K, rng=np.random.default_rng(0))
        dynamics = NoseHooverChainNVT(replica, timestep=TIMESTEP_FS * units.fs, temperature_K=STOCK_TEMPERATURE_K,
                                      tdamp=STOCK_TDAMP_FS * units.fs)
        dynamics.run(1)  # warm-up
        start = time.perf_counter()
        dynamics.run(n_steps)
        return n_steps / (time.perf_counter() - start)

    return timer


def measure(model_name: str, size: str, atoms, args, directory: Path, figures: dict) -> list[tuple]:
    """Time every engine and replica count of ``model_name`` at ``size``; add the figures, return the
    table's rows (engine, replicas, replica-steps/s)."""
    torch.manual_seed(0)
    exact = build_model(model_name, **model_hparams(model_name, size)).to(args.device).eval()
    model = copy.deepcopy(exact)
    tabulated = model.tabulate_filters()
    time_batched(model, atoms, 2, 1, directory)  # warm-up
    time_ase(model, atoms, 2, directory)
    counts = args.replicas or REPLICA_COUNTS[size]
    exact_counts = (1, max(counts)) if tabulated else ()
    # Every engine and replica count interleaved, repeat by repeat, so that drifts of the machine's
    # speed touch them all alike.
    timers = [lambda: time_ase(model, atoms, args.steps, directory)]
    timers += [lambda: time_model_calls(model, atoms, args.steps, directory, synchronizer(args.device))]
    timers += [lambda n=n: time_batched(model, atoms, args.steps, n, directory) for n in counts]
    timers += [lambda n=n: time_batched(exact, atoms, args.steps, n, directory) for n in exact_counts]
    if model_name == "schnet":
        timers.append(stock_ase_timer(model, atoms, args.steps))
    ase_rate, (call_s, overhead_fraction), *measured = median_of(args.repeats, *timers)
    rates = dict(zip(counts, measured))
    exact_rates = dict(zip(exact_counts, measured[len(counts):]))
    rows = [("ase engine", 1, ase_rate)]
    rows += [("torch batched", n_replicas, rate) for n_replicas, rate in rates.items()]
    rows += [("exact filters", n_replicas, rate) for n_replicas, rate in exact_rates.items()]

    def put(figure: str, value: float) -> None:
        figures[figure_key(figure, size, model_name)] = value

    for n_replicas, rate in exact_rates.items():
        put(f"exact_filters_replica_steps_per_s_{n_replicas}", rate)
    put("ns_per_day_ase", ns_per_day(ase_rate))
    put("ns_per_day_torch", ns_per_day(rates[1]))
    put("model_call_ms", 1e3 * call_s)
    put("overhead_fraction", overhead_fraction)
    put("torch_vs_ase", rates[1] / ase_rate)
    for n_replicas, rate in rates.items():
        put(f"replica_steps_per_s_{n_replicas}", rate)
        put(f"batched_speedup_{n_replicas}", rate / rates[1])
    if model_name == "schnet":
        stock_ase_rate = measured[-1]
        rows.append(("stock + ASE NHC", 1, stock_ase_rate))
        put("stock_ase_replica_steps_per_s", stock_ase_rate)
        put("speedup_vs_stock", rates[max(counts)] / stock_ase_rate)
    return rows


def print_table(model_name: str, rows: list[tuple], figures: dict, args, n_atoms: int) -> None:
    """The table of ``model_name``'s rows (size, engine, replicas, replica-steps/s) and its summary lines."""
    def figure(name: str, size: str) -> float:
        return figures[figure_key(name, size, model_name)]

    print(f"MD throughput, {n_atoms}-atom LGPS, {MODELS[model_name]}, {args.steps} steps of {TIMESTEP_FS} fs, "
          f"device {args.device}, {torch.get_num_threads()} torch threads")
    print(f"{'size':<11} {'engine':<14} {'replicas':>8} {'replica-steps/s':>16} {'ns/day':>8} {'vs 1 replica':>13}")
    for size, engine, n_replicas, rate in rows:
        single = figure("replica_steps_per_s_1", size)
        print(f"{size:<11} {engine:<14} {n_replicas:>8} {rate:>16.1f} {ns_per_day(rate):>8.3f} {rate / single:>12.2f}x")
    for size in args.sizes:
        print(f"{size}: model call {figure('model_call_ms', size):.2f} ms/step, overhead outside the call "
              f"{100 * figure('overhead_fraction', size):.1f} %, torch/ase {figure('torch_vs_ase', size):.2f}x")
    if model_name == "schnet":
        for size in args.sizes:
            print(f"{size}: speedup_vs_stock {figure('speedup_vs_stock', size):.2f}x "
                  f"(our {max(args.replicas or REPLICA_COUNTS[size])} batched replicas / stock SchNet + ASE, "
                  "one replica)")
    print(f"paper's Table 1: {MODELS[model_name]} {TABLE_1[model_name][1]} ns/day (paper size, one replica at a time "
          "on an RTX 4090)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="MD steps per timed run (default 100)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every timing (default 3)")
    parser.add_argument("--sizes", nargs="+", choices=SIZES, default=list(SIZES),
                        help="model sizes to measure (default all; the headline figures need quickstart)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=["schnet"],
                        help="models to measure (default schnet; the headline figures need it)")
    parser.add_argument("--replicas", nargs="+", type=int, default=None,
                        help="replica counts at every size, 1 among them (default: 1 6 30 at quickstart size, "
                             "1 6 at paper size)")
    args = parser.parse_args()
    if args.steps < 2 or args.repeats < 1:
        parser.error("--steps must be at least 2 and --repeats at least 1")
    if args.replicas is not None:
        if 1 not in args.replicas or min(args.replicas) < 1:
            parser.error(f"--replicas must be positive and include 1 (the baseline), got {args.replicas}")
        args.replicas = tuple(sorted(set(args.replicas)))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    host_memory.retain_freed_memory()

    atoms = load_structure("LGPS")
    tables, figures = {}, {"n_atoms": len(atoms), "steps": args.steps, "device": args.device,
                           "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as scratch:
        for model_name in args.models:
            for size in args.sizes:
                rows = measure(model_name, size, atoms, args, Path(scratch), figures)
                tables.setdefault(model_name, []).extend((size, *row) for row in rows)
    figures["overhead_fraction_schnet"] = figures.get("overhead_fraction_quickstart")
    figures["batched_speedup_30"] = figures.get("batched_speedup_30_quickstart")
    figures["speedup_vs_stock"] = figures.get("speedup_vs_stock_quickstart")
    if torch.device(args.device).type == "cuda":
        figures["peak_gpu_memory_GiB"] = torch.cuda.max_memory_allocated() / BYTES_PER_GIB

    for model_name, rows in tables.items():
        print_table(model_name, rows, figures, args, len(atoms))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
