"""Speed of every registered model on 50-atom LGPS: one energy-and-forces call, and training.

    .venv/bin/python -m benchmarks.models [--size paper|quickstart] [--models schnet,scn] [--repeats 5]
                                          [--batch-size 4] [--budget-s 20]

For each model in ``mlff.models.MODELS`` (or ``--models``), with random weights (speed does not
depend on them), on CPU:

* ``forward_backward_ms``: one energy + autograd-forces call (``energy_and_forces``) on the prebuilt
  graph of the ordered 50-atom LGPS cell (``mlff.structures``).
* ``train_frames_per_s``: frames per second of optimizer steps of the training loss of
  ``mlff.training`` (energy and force MAE, Adam, gradient clipping) on ``--batch-size`` rattled LGPS
  frames with random labels (the labels do not change the work); one step per call, graphs included.
* ``parameters``: number of trainable parameters.

Sizes: ``paper`` is each model's defaults, the force-field paper's settings (embedding 128, cutoff
6 Å, max neighbours 500); ``quickstart`` is hidden_channels 32, two layers, cutoff 6 Å, as in
examples/quickstart.yaml.

Timing: torch runs on one thread and times are CPU seconds of this process (``time.process_time``),
so a figure is the work of one core and does not grow when other jobs share the machine. Each
figure is the median of up to ``--repeats`` calls after one warm-up call; calls stop once a
measurement has used ``--budget-s`` (at least one is timed). A call whose warm-up alone exceeds the
budget is timed by that call only. Training is skipped (reported as null) when ``--batch-size``
forward-backward calls already exceed the budget, since a training step costs more than that.

Prints a table; the last line is one JSON object {model: {forward_backward_ms, train_frames_per_s,
parameters}}.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from mlff.models import MODELS, build_model, energy_and_forces
from mlff.structures import load_structure
from mlff.training import ENERGY_WEIGHT, FORCE_WEIGHT, GRAD_CLIP_NORM, train_epoch
from mlff.trajectory import Trajectory

QUICKSTART_HIDDEN_CHANNELS, QUICKSTART_LAYERS, QUICKSTART_CUTOFF_A = 32, 2, 6.0
LAYER_HPARAMS = ("num_interactions", "num_layers")  # the name of the depth hyperparameter, per model
RATTLE_A = 0.05  # standard deviation of the displacements of the training frames
LEARNING_RATE = 1e-4
MS_PER_S = 1e3


def size_hparams(name: str, size: str) -> dict:
    """Hyperparameter overrides of model ``name`` at ``size`` ("paper": none, its defaults are the paper's)."""
    if size == "paper":
        return {}
    accepted = inspect.signature(MODELS[name].__init__).parameters
    (depth,) = [hparam for hparam in LAYER_HPARAMS if hparam in accepted]
    return {"hidden_channels": QUICKSTART_HIDDEN_CHANNELS, depth: QUICKSTART_LAYERS, "cutoff_A": QUICKSTART_CUTOFF_A}


def median_cpu_s(call: Callable[[], None], repeats: int, budget_s: float) -> tuple[float, int]:
    """(median CPU seconds of ``call``, number of timed calls), after one warm-up (see module docstring)."""
    start = time.process_time()
    call()
    warm_up_s = time.process_time() - start
    if warm_up_s > budget_s:
        return warm_up_s, 1
    samples: list[float] = []
    while len(samples) < repeats and (not samples or warm_up_s + sum(samples) < budget_s):
        start = time.process_time()
        call()
        samples.append(time.process_time() - start)
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


def benchmark_model(name: str, size: str, atoms, repeats: int, batch_size: int, budget_s: float):
    """(figures of model ``name``, timed forward-backward calls, timed training steps)."""
    torch.manual_seed(0)
    model = build_model(name, **size_hparams(name, size))
    graph = model.make_graph([atoms])
    call_s, call_samples = median_cpu_s(lambda: energy_and_forces(model, graph), repeats, budget_s)
    figures = {
        "forward_backward_ms": MS_PER_S * call_s,
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

        step_s, step_samples = median_cpu_s(step, repeats, budget_s)
        figures["train_frames_per_s"] = batch_size / step_s
    return figures, call_samples, step_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("paper", "quickstart"), default="paper", help="model size (default paper)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model names (default: all)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls after the warm-up, at most (default 5)")
    parser.add_argument("--batch-size", type=int, default=4, help="frames per training step (default 4)")
    parser.add_argument("--budget-s", type=float, default=20.0, help="CPU seconds per measurement (default 20)")
    args = parser.parse_args()
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; known models: {sorted(MODELS)}")
    positive = (("--repeats", args.repeats), ("--batch-size", args.batch_size), ("--budget-s", args.budget_s))
    for option, value in positive:
        if not value > 0:
            parser.error(f"{option} must be positive, got {value}")
    torch.set_num_threads(1)

    atoms = load_structure("LGPS")
    results = {}
    print(f"Model speed, {len(atoms)}-atom LGPS, size {args.size}, CPU, 1 torch thread, CPU-time medians "
          f"(samples in brackets), training batch {args.batch_size}")
    print(f"{'model':<14} {'parameters':>11} {'forward+backward ms':>22} {'train frames/s':>19}")
    for name in names:
        figures, call_samples, step_samples = benchmark_model(
            name, args.size, atoms, args.repeats, args.batch_size, args.budget_s
        )
        results[name] = figures
        train = (f"{figures['train_frames_per_s']:.3f} [{step_samples}]" if step_samples
                 else "skipped (budget)")
        print(f"{name:<14} {figures['parameters']:>11,} {figures['forward_backward_ms']:>16.1f} [{call_samples}] "
              f"{train:>19}", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
