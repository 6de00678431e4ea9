"""MD throughput of the ASE and batched torch engines on 50-atom LGPS, measured side by side.

    .venv/bin/python -m benchmarks.md_throughput [--steps 40] [--device cpu] [--threads N]

Prints one table (ns/day and replica-steps/s per engine, model size and replica count), then one
JSON line with the figures: ``overhead_fraction_schnet`` (time per step outside the model call,
as a fraction of the call, quickstart-size SchNet, one replica), ``batched_speedup_30``
(replica-steps/s of 30 batched replicas against the same replicas one after another in the torch
engine) and ``speedup_vs_stock`` (against torch_geometric's SchNet driven by ASE one replica at a
time; None when torch_geometric is not installed). Models have random weights: throughput does
not depend on them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from mlff.batched import run_batched_md
from mlff.calculator import MLFFCalculator
from mlff.md import FS_PER_PS, MDProtocol, run_md
from mlff.models import build_model, energy_and_forces
from mlff.structures import load_structure

SECONDS_PER_DAY = 86400.0
FS_PER_NS = 1e6
TIMESTEP_FS = 2.0
MODEL_SIZES = {
    "quickstart": dict(hidden_channels=32, num_interactions=2, cutoff_A=6.0),  # examples/quickstart.yaml
    "paper": dict(hidden_channels=128, num_interactions=6, cutoff_A=6.0),
}
REPLICA_COUNTS = {"quickstart": (1, 6, 30), "paper": (1, 6)}


def ns_per_day(replica_steps_per_s: float) -> float:
    return replica_steps_per_s * TIMESTEP_FS * SECONDS_PER_DAY / FS_PER_NS


def protocol_for(n_steps: int) -> MDProtocol:
    """Production only, at 800 K, one frame written every 10 steps (or at the end)."""
    return MDProtocol(
        temperature_K=800.0, ramp_start_K=800.0, ramp_ps=0.0, timestep_fs=TIMESTEP_FS,
        production_ps=n_steps * TIMESTEP_FS / FS_PER_PS, save_every_steps=min(10, n_steps),
    )


def time_ase(model, atoms, n_steps: int, directory: Path) -> float:
    """Replica-steps/s of mlff.md.run_md with our ASE calculator."""
    summary = run_md(atoms, MLFFCalculator(model), protocol_for(n_steps), 0, directory / "ase.frames", progress=False)
    return n_steps / summary["wall_s"]


def time_batched(model, atoms, n_steps: int, n_replicas: int, directory: Path) -> float:
    """Replica-steps/s of mlff.batched.run_batched_md with ``n_replicas`` replicas."""
    paths = [directory / f"torch{i}.frames" for i in range(n_replicas)]
    summaries = run_batched_md(
        model, atoms, [protocol_for(n_steps)] * n_replicas, list(range(n_replicas)), paths, progress=False
    )
    return n_replicas * n_steps / summaries[0]["wall_s"]


def time_model_call(model, atoms, n_calls: int) -> float:
    """Seconds per energy-and-forces call of one replica on a prebuilt graph."""
    graph = model.make_graph([atoms])
    energy_and_forces(model, graph)
    start = time.perf_counter()
    for _ in range(n_calls):
        energy_and_forces(model, graph)
    return (time.perf_counter() - start) / n_calls


def stock_schnet_rate() -> tuple[float | None, str]:
    """torch_geometric's stock SchNet through ASE, if torch_geometric is installed."""
    try:
        import torch_geometric  # noqa: F401
    except ImportError:
        return None, "torch_geometric is not installed in this environment (pip install is not allowed here)"
    return None, "torch_geometric is installed but its stock-SchNet driver is not part of this benchmark"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="MD steps per timed run (default 40)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    atoms = load_structure("LGPS")
    rows, figures = [], {"n_atoms": len(atoms), "steps": args.steps, "device": args.device,
                         "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        for size, hparams in MODEL_SIZES.items():
            torch.manual_seed(0)
            model = build_model("schnet", **hparams).to(args.device).eval()
            time_batched(model, atoms, 2, 1, directory)  # warm-up
            ase_rate = time_ase(model, atoms, args.steps, directory)
            rows.append((size, "ase (run_md)", 1, ase_rate))
            rates = {}
            for n_replicas in REPLICA_COUNTS[size]:
                rates[n_replicas] = time_batched(model, atoms, args.steps, n_replicas, directory)
                rows.append((size, "torch batched", n_replicas, rates[n_replicas]))
            call_s = time_model_call(model, atoms, args.steps)
            overhead = (1.0 / rates[1] - call_s) / call_s
            figures[f"ns_per_day_ase_{size}"] = ns_per_day(ase_rate)
            figures[f"ns_per_day_torch_{size}"] = ns_per_day(rates[1])
            figures[f"model_call_ms_{size}"] = 1e3 * call_s
            figures[f"overhead_fraction_{size}"] = overhead
            figures[f"torch_vs_ase_{size}"] = rates[1] / ase_rate
            for n_replicas, rate in rates.items():
                figures[f"replica_steps_per_s_{n_replicas}_{size}"] = rate
                figures[f"batched_speedup_{n_replicas}_{size}"] = rate / rates[1]
    stock_rate, stock_note = stock_schnet_rate()
    figures["overhead_fraction_schnet"] = figures["overhead_fraction_quickstart"]
    figures["batched_speedup_30"] = figures["batched_speedup_30_quickstart"]
    figures["speedup_vs_stock"] = None if stock_rate is None else figures["replica_steps_per_s_30_quickstart"] / stock_rate
    figures["speedup_vs_stock_note"] = stock_note

    print(f"MD throughput, {len(atoms)}-atom LGPS, SchNet, {args.steps} steps of {TIMESTEP_FS} fs, "
          f"device {args.device}, {torch.get_num_threads()} torch threads")
    print(f"{'size':<11} {'engine':<14} {'replicas':>8} {'replica-steps/s':>16} {'ns/day':>8} {'vs 1 replica':>13}")
    for size, engine, n_replicas, rate in rows:
        single = figures[f"replica_steps_per_s_1_{size}"]
        print(f"{size:<11} {engine:<14} {n_replicas:>8} {rate:>16.1f} {ns_per_day(rate):>8.3f} {rate / single:>12.2f}x")
    for size in MODEL_SIZES:
        print(f"{size}: model call {figures[f'model_call_ms_{size}']:.2f} ms/step, overhead outside the call "
              f"{100 * figures[f'overhead_fraction_{size}']:.1f} %, torch/ase {figures[f'torch_vs_ase_{size}']:.2f}x")
    print(f"speedup_vs_stock: unavailable — {stock_note}" if stock_rate is None else
          f"speedup_vs_stock: {figures['speedup_vs_stock']:.2f}x")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
