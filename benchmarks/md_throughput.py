"""MD throughput of the ASE and batched torch engines on 50-atom LGPS, measured side by side.

    .venv/bin/python -m benchmarks.md_throughput [--steps 100] [--device cpu] [--threads N]

Prints one table (ns/day and replica-steps/s per engine, model size and replica count), then one
JSON line with the figures: ``overhead_fraction_schnet`` (time per step of the one-replica torch
engine outside its model calls, as a fraction of one call, both timed inside the same run;
quickstart-size SchNet),
``batched_speedup_30`` (replica-steps/s of 30 batched replicas against the same replicas one after
another in the torch engine) and ``speedup_vs_stock`` (our 30 batched replicas against
torch_geometric's stock SchNet of the same size as an ASE Calculator, driven by ASE's own
Nosé–Hoover chain one replica at a time; at paper size, our 6 against it). Every timing is the
median of ``--repeats`` interleaved repeats. Models have random weights: throughput does not
depend on them. Our engines run SchNet as a campaign does by default (``md.tabulate_filters``:
filters from verified tables); the "exact filters" rows evaluate the filter networks instead.
The engines keep freed host memory for reuse (``mlff.host_memory``); the benchmark sets that
before any timing, so every row, the stock one included, runs with it.
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
from ase import units
from ase.calculators.calculator import Calculator, all_changes
from ase.md.nose_hoover_chain import NoseHooverChainNVT
from ase.md.velocitydistribution import thermalize_momenta

import mlff.md.torch_engine
from mlff import host_memory
from mlff.calculator import MLFFCalculator
from mlff.md.ase_engine import AseEngine
from mlff.md.driver import run_md
from mlff.md.protocol import FS_PER_NS, FS_PER_PS, S_PER_DAY, MDProtocol
from mlff.md.torch_engine import TorchEngine
from mlff.models import build_model
from mlff.structures import load_structure

TIMESTEP_FS = 2.0
MODEL_SIZES = {
    "quickstart": dict(hidden_channels=32, num_interactions=2, cutoff_A=6.0),  # examples/quickstart.yaml
    "paper": dict(hidden_channels=128, num_interactions=6, cutoff_A=6.0),
}
REPLICA_COUNTS = {"quickstart": (1, 6, 30), "paper": (1, 6)}
STOCK_TEMPERATURE_K = 800.0  # as protocol_for
STOCK_TDAMP_FS = 100.0  # ASE's Nosé–Hoover relaxation time, as our engines' default
# Random-weight models let atoms approach closely: stop a run only when atoms (nearly) coincide, and
# not for temperature, so every replica runs every step and the batch keeps its size.
FUSION_DISTANCE_A = 0.05
MAX_TEMPERATURE_K = 1e6


def ns_per_day(replica_steps_per_s: float) -> float:
    return replica_steps_per_s * TIMESTEP_FS * S_PER_DAY / FS_PER_NS


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
def timed_model_calls():
    """Time the torch engine's model calls: yields [seconds, calls], accumulated while inside."""
    totals = [0.0, 0]
    call = mlff.md.torch_engine.energy_and_forces

    def timed(model, graph):
        start = time.perf_counter()
        result = call(model, graph)
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


def time_one_replica(model, atoms, n_steps: int, directory: Path) -> tuple[float, float, float]:
    """Replica-steps/s of the torch engine with one replica, the seconds per model call inside that
    run, and the time per step outside the model calls as a fraction of one call."""
    with timed_model_calls() as totals:
        rate = time_batched(model, atoms, n_steps, 1, directory)
    call_s, n_calls = totals
    outside_s = 1.0 / rate - call_s / n_steps  # the run's n_steps + 1 calls are all inside its wall time
    return rate, call_s / n_calls, outside_s / (call_s / n_calls)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="MD steps per timed run (default 100)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every timing (default 3)")
    parser.add_argument("--sizes", nargs="+", choices=list(MODEL_SIZES), default=list(MODEL_SIZES),
                        help="model sizes to measure (default all; the headline figures need quickstart)")
    args = parser.parse_args()
    if args.steps < 2 or args.repeats < 1:
        parser.error("--steps must be at least 2 and --repeats at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    host_memory.retain_freed_memory()

    atoms = load_structure("LGPS")
    rows, figures = [], {"n_atoms": len(atoms), "steps": args.steps, "device": args.device,
                         "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        for size in args.sizes:
            torch.manual_seed(0)
            hparams = MODEL_SIZES[size]
            exact = build_model("schnet", **hparams).to(args.device).eval()
            model = copy.deepcopy(exact)
            model.tabulate_filters()
            time_batched(model, atoms, 2, 1, directory)  # warm-up
            time_ase(model, atoms, 2, directory)
            counts = REPLICA_COUNTS[size]
            exact_counts = (1, max(counts))
            # Every engine and replica count interleaved, repeat by repeat, so that drifts of the
            # machine's speed touch them all alike.
            timers = [lambda: time_ase(model, atoms, args.steps, directory)]
            timers += [lambda: time_one_replica(model, atoms, args.steps, directory)]
            timers += [lambda n=n: time_batched(model, atoms, args.steps, n, directory) for n in counts[1:]]
            timers += [lambda n=n: time_batched(exact, atoms, args.steps, n, directory) for n in exact_counts]
            timers.append(stock_ase_timer(model, atoms, args.steps))
            ase_rate, (one_rate, call_s, overhead_fraction), *measured = median_of(args.repeats, *timers)
            rows.append((size, "ase engine", 1, ase_rate))
            rates = dict(zip(counts, [one_rate, *measured]))
            exact_rates = dict(zip(exact_counts, measured[len(counts) - 1:]))
            for n_replicas, rate in rates.items():
                rows.append((size, "torch batched", n_replicas, rate))
            for n_replicas, rate in exact_rates.items():
                rows.append((size, "exact filters", n_replicas, rate))
                figures[f"exact_filters_replica_steps_per_s_{n_replicas}_{size}"] = rate
            figures[f"ns_per_day_ase_{size}"] = ns_per_day(ase_rate)
            figures[f"ns_per_day_torch_{size}"] = ns_per_day(rates[1])
            figures[f"model_call_ms_{size}"] = 1e3 * call_s
            figures[f"overhead_fraction_{size}"] = overhead_fraction
            figures[f"torch_vs_ase_{size}"] = rates[1] / ase_rate
            for n_replicas, rate in rates.items():
                figures[f"replica_steps_per_s_{n_replicas}_{size}"] = rate
                figures[f"batched_speedup_{n_replicas}_{size}"] = rate / rates[1]
            stock_ase_rate = measured[-1]
            rows.append((size, "stock + ASE NHC", 1, stock_ase_rate))
            figures[f"stock_ase_replica_steps_per_s_{size}"] = stock_ase_rate
            figures[f"speedup_vs_stock_{size}"] = rates[max(counts)] / stock_ase_rate
    figures["overhead_fraction_schnet"] = figures.get("overhead_fraction_quickstart")
    figures["batched_speedup_30"] = figures.get("batched_speedup_30_quickstart")
    figures["speedup_vs_stock"] = figures.get("speedup_vs_stock_quickstart")

    print(f"MD throughput, {len(atoms)}-atom LGPS, SchNet, {args.steps} steps of {TIMESTEP_FS} fs, "
          f"device {args.device}, {torch.get_num_threads()} torch threads")
    print(f"{'size':<11} {'engine':<14} {'replicas':>8} {'replica-steps/s':>16} {'ns/day':>8} {'vs 1 replica':>13}")
    for size, engine, n_replicas, rate in rows:
        single = figures[f"replica_steps_per_s_1_{size}"]
        print(f"{size:<11} {engine:<14} {n_replicas:>8} {rate:>16.1f} {ns_per_day(rate):>8.3f} {rate / single:>12.2f}x")
    for size in args.sizes:
        print(f"{size}: model call {figures[f'model_call_ms_{size}']:.2f} ms/step, overhead outside the call "
              f"{100 * figures[f'overhead_fraction_{size}']:.1f} %, torch/ase {figures[f'torch_vs_ase_{size}']:.2f}x")
    for size in args.sizes:
        print(f"{size}: speedup_vs_stock {figures[f'speedup_vs_stock_{size}']:.2f}x "
              f"(our {max(REPLICA_COUNTS[size])} batched replicas / stock SchNet + ASE, one replica)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
