"""Speed of every registered model and every pretrained MLIP on 50-atom LGPS: one energy-and-forces
call, MD, and training.

    .venv/bin/python -m benchmarks.models [--size paper|quickstart] [--models schnet,scn] [--repeats 5]
                                          [--pretrained chgnet,sevennet-0] [--batch-size 4] [--budget-s 20]
                                          [--device cpu|cuda]

For each model in ``mlff.models.MODELS`` (or ``--models``), with random weights (speed does not
depend on them), and each pretrained MLIP of ``mlff.pretrained.PRETRAINED`` (or ``--pretrained``;
``--pretrained ''`` for none), with its shipped weights, on ``--device`` (default CPU):

* ``forward_backward_ms``: one energy + autograd-forces call (``energy_and_forces``) on the prebuilt
  graph of the ordered 50-atom LGPS cell (``mlff.structures``).
* ``train_frames_per_s``: frames per second of optimizer steps of the training loss of
  ``mlff.training`` (energy and force MAE, Adam, gradient clipping) on ``--batch-size`` rattled LGPS
  frames with random labels (the labels do not change the work); one step per call, graphs included.
* ``md_replica_steps_per_s``: steps per second (see Timing) of one MD replica at 800 K
  (``benchmarks.md_throughput.protocol_for``) in the engine a campaign runs it with: the torch
  engine for the zoo, the ASE engine for a pretrained MLIP.
* ``parameters``: number of trainable parameters.
* ``peak_gpu_memory_GiB``, on CUDA only: torch's peak allocation while the model was measured.
* ``batch_speedup``, CHGNet only (the one whose package evaluates several structures in one call):
  the time of ``--batch-size`` structures one call each over that of one
  ``CHGNet.predict_structure`` call on all of them. Pretrained models are not trained here
  (``train_frames_per_s`` is null; fine-tuning uses the package's own trainer).

Sizes: ``paper`` is each model's defaults, the force-field paper's settings (embedding 128, cutoff
6 Å, max neighbours 500); ``quickstart`` is hidden_channels 32, two layers, cutoff 6 Å, as in
examples/quickstart.yaml.

Timing: on CPU, torch runs on one thread and times are CPU seconds of this process
(``time.process_time``), so a figure is the work of one core and does not grow when other jobs share
the machine. On CUDA, times are wall seconds between two ``torch.cuda.synchronize()``, with torch's
default CPU threads. Each figure is the median of up to ``--repeats`` calls after one warm-up call;
calls stop once a measurement has used ``--budget-s`` (at least one is timed). A call whose warm-up
alone exceeds the budget is timed by that call only. Training is skipped (reported as null) when ``--batch-size``
forward-backward calls already exceed the budget, since a training step costs more than that.

Prints a table; the last line is one JSON object {model: {forward_backward_ms, md_replica_steps_per_s,
train_frames_per_s, parameters[, batch_speedup][, peak_gpu_memory_GiB]}}.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import all_changes

from benchmarks.md_throughput import BYTES_PER_GIB, FUSION_DISTANCE_A, MAX_TEMPERATURE_K, protocol_for, synchronizer
from mlff.md.ase_engine import AseEngine
from mlff.md.driver import run_md
from mlff.md.torch_engine import TorchEngine
from mlff.models import MODELS, build_model, energy_and_forces
from mlff.pretrained import PRETRAINED, Pretrained
from mlff.structures import load_structure
from mlff.training import ENERGY_WEIGHT, FORCE_WEIGHT, GRAD_CLIP_NORM, train_epoch
from mlff.trajectory import Trajectory

QUICKSTART_HIDDEN_CHANNELS, QUICKSTART_LAYERS, QUICKSTART_CUTOFF_A = 32, 2, 6.0
LAYER_HPARAMS = ("num_interactions", "num_layers")  # the name of the depth hyperparameter, per model
RATTLE_A = 0.05  # standard deviation of the displacements of the training frames
LEARNING_RATE = 1e-4
MS_PER_S = 1e3
MD_STEPS = 10  # steps of one timed MD run, after a warm-up run


def size_hparams(name: str, size: str) -> dict:
    """Hyperparameter overrides of model ``name`` at ``size`` ("paper": none, its defaults are the paper's)."""
    if size == "paper":
        return {}
    accepted = inspect.signature(MODELS[name].__init__).parameters
    (depth,) = [hparam for hparam in LAYER_HPARAMS if hparam in accepted]
    return {"hidden_channels": QUICKSTART_HIDDEN_CHANNELS, depth: QUICKSTART_LAYERS, "cutoff_A": QUICKSTART_CUTOFF_A}


def clock_for(device: str) -> Callable[[], float]:
    """The clock of the timings on ``device``, in seconds (see module docstring)."""
    if torch.device(device).type == "cpu":
        return time.process_time
    synchronize = synchronizer(device)

    def clock() -> float:
        synchronize()
        return time.perf_counter()

    return clock


def median_s(call: Callable[[], None], repeats: int, budget_s: float, clock: Callable[[], float]) -> tuple[float, int]:
    """(median seconds of ``call`` by ``clock``, number of timed calls), after one warm-up (see module docstring)."""
    start = clock()
    call()
    warm_up_s = clock() - start
    if warm_up_s > budget_s:
        return warm_up_s, 1
    samples: list[float] = []
    while len(samples) < repeats and (not samples or warm_up_s + sum(samples) < budget_s):
        start = clock()
        call()
        samples.append(clock() - start)
    return statistics.median(samples), len(samples)


def training_frames(atoms, n_frames: int, seed: int) -> Trajectory:
    """``n_frames`` rattled copies of ``atoms`` with random energies and forces."""
    rng = np.random.default_rng(seed)
    positions_A = atoms.positions + rng.normal(0.0, RATTLE_A, (n_frames, len(atoms), 3))
    return Trajectory(
        numbers=atoms.numbers, cell_A=atoms.cell.array, positions_A=positions_A, step=np.arange(n_frames),
        time_fs=np.zeros(n_frames), energy_eV=rng.normal(0.0, 1.0, n_frames),
        forces_eV_A=rng.normal(0.0, 1.0, (n_frames, len(atoms), 3)),
    )


def md_replica_steps_per_s(engine, repeats: int, budget_s: float, clock: Callable[[], float]) -> float:
    """Steps per second of ``MD_STEPS``-step runs of one replica (see module docstring)."""
    with tempfile.TemporaryDirectory() as directory:
        def run() -> None:
            run_md(engine, [protocol_for(MD_STEPS)], [0], [Path(directory) / "md.frames"], progress=False,
                   fusion_distance_A=FUSION_DISTANCE_A, max_temperature_K=MAX_TEMPERATURE_K)

        run_s, _ = median_s(run, repeats, budget_s, clock)
    return MD_STEPS / run_s


def benchmark_model(name: str, size: str, atoms, repeats: int, batch_size: int, budget_s: float, device: str):
    """(figures of model ``name``, timed forward-backward calls, timed training steps)."""
    torch.manual_seed(0)
    clock = clock_for(device)
    model = build_model(name, **size_hparams(name, size)).to(device)
    graph = model.make_graph([atoms])
    call_s, call_samples = median_s(lambda: energy_and_forces(model, graph), repeats, budget_s, clock)
    figures = {
        "forward_backward_ms": MS_PER_S * call_s,
        "md_replica_steps_per_s": md_replica_steps_per_s(TorchEngine(model, atoms), repeats, budget_s, clock),
        "train_frames_per_s": None,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    step_samples = 0
    if batch_size * call_s <= budget_s:
        frames = [training_frames(atoms, batch_size, seed=0)]
        picked = [(0, frame) for frame in range(batch_size)]
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        shuffler = np.random.default_rng(0)

        def step() -> None:
            train_epoch(
                model, frames, picked, shuffler, optimizer, batch_size, ENERGY_WEIGHT, FORCE_WEIGHT, GRAD_CLIP_NORM,
                epoch=0, checkpoint_path=None,
            )

        step_s, step_samples = median_s(step, repeats, budget_s, clock)
        figures["train_frames_per_s"] = batch_size / step_s
    return figures, call_samples, step_samples


def benchmark_pretrained(name: str, atoms, repeats: int, batch_size: int, budget_s: float, device: str):
    """(figures of pretrained MLIP ``name``, timed forward-backward calls, timed batched calls)."""
    clock = clock_for(device)
    calculator = Pretrained(name).calculator(device)

    def call() -> None:
        calculator.calculate(atoms.copy(), ["energy", "forces"], all_changes)

    call_s, call_samples = median_s(call, repeats, budget_s, clock)
    model = getattr(calculator, "model", None)
    figures = {
        "forward_backward_ms": MS_PER_S * call_s,
        "md_replica_steps_per_s": md_replica_steps_per_s(AseEngine(atoms, calculator), repeats, budget_s, clock),
        "train_frames_per_s": None,
        "parameters": sum(p.numel() for p in model.parameters()) if isinstance(model, torch.nn.Module) else None,
    }
    batch_samples = 0
    if name == "chgnet":
        from pymatgen.io.ase import AseAtomsAdaptor

        structures = [AseAtomsAdaptor.get_structure(atoms)] * batch_size

        def one_by_one() -> None:
            for structure in structures:
                model.predict_structure(structure, task="ef")

        def batched() -> None:
            model.predict_structure(structures, task="ef", batch_size=batch_size)

        sequential_s, _ = median_s(one_by_one, repeats, budget_s, clock)
        batched_s, batch_samples = median_s(batched, repeats, budget_s, clock)
        figures["batch_speedup"] = sequential_s / batched_s
    return figures, call_samples, batch_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("paper", "quickstart"), default="paper", help="model size (default paper)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model names (default: all)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls after the warm-up, at most (default 5)")
    parser.add_argument("--pretrained", default=",".join(PRETRAINED),
                        help="comma-separated pretrained MLIPs (default: all built-ins; '' for none)")
    parser.add_argument("--batch-size", type=int, default=4,
                        help="frames per training step and per batched CHGNet call (default 4)")
    parser.add_argument("--budget-s", type=float, default=20.0, help="seconds per measurement (default 20)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    args = parser.parse_args()
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; known models: {sorted(MODELS)}")
    pretrained = [name.strip() for name in args.pretrained.split(",") if name.strip()]
    unknown = sorted(set(pretrained) - set(PRETRAINED))
    if unknown:
        parser.error(f"--pretrained: unknown {unknown}; known pretrained MLIPs: {sorted(PRETRAINED)}")
    positive = (("--repeats", args.repeats), ("--batch-size", args.batch_size), ("--budget-s", args.budget_s))
    for option, value in positive:
        if not value > 0:
            parser.error(f"{option} must be positive, got {value}")
    on_cuda = torch.device(args.device).type == "cuda"
    if not on_cuda:
        torch.set_num_threads(1)

    atoms = load_structure("LGPS")
    results = {}
    timing = "CUDA, wall-time medians" if on_cuda else "CPU, 1 torch thread, CPU-time medians"
    print(f"Model speed, {len(atoms)}-atom LGPS, size {args.size}, {timing} (samples in brackets), "
          f"training batch {args.batch_size}")
    print(f"{'model':<14} {'parameters':>11} {'forward+backward ms':>22} {'MD steps/s':>11} {'train frames/s':>19}")
    for name in names + pretrained:
        if on_cuda:
            torch.cuda.reset_peak_memory_stats()
        if name in MODELS:
            figures, call_samples, step_samples = benchmark_model(
                name, args.size, atoms, args.repeats, args.batch_size, args.budget_s, args.device
            )
            train = (f"{figures['train_frames_per_s']:.3f} [{step_samples}]" if step_samples
                     else "skipped (budget)")
        else:
            figures, call_samples, batch_samples = benchmark_pretrained(
                name, atoms, args.repeats, args.batch_size, args.budget_s, args.device
            )
            train = "pretrained" + (f"; batch of {args.batch_size} {figures['batch_speedup']:.2f}x [{batch_samples}]"
                                    if "batch_speedup" in figures else "")
        if on_cuda:
            figures["peak_gpu_memory_GiB"] = torch.cuda.max_memory_allocated() / BYTES_PER_GIB
        results[name] = figures
        parameters = "n/a" if figures["parameters"] is None else f"{figures['parameters']:,}"
        print(f"{name:<14} {parameters:>11} {figures['forward_backward_ms']:>16.1f} [{call_samples}] "
              f"{figures['md_replica_steps_per_s']:>11.2f} {train:>19}", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
