"""The GPU check: the gpu-marked tests, MD throughput and model speed on CUDA, against the paper's Table 1.

    make gpu-wheels            # where a registry is reachable: the wheels it needs, into gpu-wheels/
    make gpu-check OUT=dir     # on the GPU machine: installs them and the project, then runs this
    .venv/bin/python -m benchmarks.gpu_check --device cpu --out dir    # the dry run, tiny settings

Writes one JSON file, ``<out>/gpu_check.json``, rewritten after every part so that a check cut short
still leaves what it measured:

* ``environment``: Python, torch and its CUDA, the GPU's name and memory, package versions;
* ``parts``: each a subprocess with its own time limit, recorded with its ``status`` (``passed``,
  ``failed`` or ``timed_out``), ``wall_s``, and its figures, or else the tail of its output
  (``output_tail``: the error, or the rows a benchmark cut short had printed):

  - ``gpu_tests``: ``pytest -m gpu`` over the test modules that hold gpu-marked tests (``passed``,
    ``failed``, ``errors``, ``skipped`` and the names of the ``failures``); only those modules are
    imported, so the check needs no more packages than they do;
  - ``md_throughput_schnet``, ``md_throughput_dimenet++``: ``benchmarks.md_throughput``'s figures,
    quickstart and paper size, 1, 6, 30 and 90 replicas batched;
  - ``models``, ``models_equivariant``: ``benchmarks.models``' figures at paper size, of the eight
    invariant models and of the three equivariant ones (SCN, eSCN, Equiformer: the slow ones, in a
    part of their own so that they cannot cost the others their figures);

* ``peak_gpu_memory_GiB``: the largest peak allocation of any part;
* ``table_1``: per model of the paper's Table 1 (one replica at a time on an RTX 4090), our ns/day
  with one replica (``benchmarks.models``' MD run) and its ratio to Table 1; for SchNet and DimeNet++
  also md_throughput's one replica and its best aggregate of batched replicas, at paper size;
* ``goals``: the issue's bars, each with its ``value``, ``goal`` and whether it is ``met`` (null when
  not measured): one replica against Table 1 for SchNet, DimeNet++, CGCNN and DimeNet (>= 1x), 90
  batched replicas of quickstart SchNet against one (>= 20x), and the paper-size aggregate against
  Table 1 for SchNet and DimeNet++ (>= 10x).

On CUDA the parts' limits add up to four minutes, which with the install keeps the check under
five on an H200. ``--device cpu`` runs the same parts with tiny settings (quickstart size,
SchNet and DimeNet++, 1 and 2 replicas, a few steps): the gpu tests skip, and the figures show only
that every part works.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from importlib import metadata
from pathlib import Path

import torch

from benchmarks.md_throughput import MODELS as THROUGHPUT_MODELS
from benchmarks.md_throughput import BYTES_PER_GIB, figure_key, ns_per_day
from campaign.paper import TABLE_1
from mlff.models import MODELS
from records.atomic_file import atomic_write

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
GPU_MARK = re.compile(r"\bmark\.gpu\b")
RESULT_FILE = "gpu_check.json"
PACKAGES = ("mlff-campaign", "torch", "numpy", "scipy", "ase", "vesin", "pymatgen-core", "pydantic", "e3nn",
            "torch-geometric")
OUTPUT_TAIL_CHARS = 4000
ONE_REPLICA_GOAL = 1.0  # our one replica against Table 1's
BATCHED_GOAL, BATCHED_REPLICAS = 20.0, 90  # quickstart SchNet: replica-steps/s of 90 batched against one
AGGREGATE_GOAL = 10.0  # paper size: our aggregate ns/day on one GPU against Table 1's
ONE_REPLICA_GOAL_MODELS = ("schnet", "dimenet++", "cgcnn", "dimenet")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the parts measure on one kind of device, and their time limits in seconds."""

    sizes: tuple[str, ...]
    replicas: tuple[int, ...]
    steps: int
    repeats: int
    model_size: str
    model_parts: dict[str, tuple[str, ...]]  # part name -> the models it measures
    model_repeats: int
    model_budget_s: float
    limits_s: dict[str, float]  # part name (md_throughput for each model's) -> time limit


INVARIANT_MODELS = ("schnet", "dimenet++", "cgcnn", "dimenet", "deeper-gatgnn", "forcenet", "gns-tat", "leftnet")
EQUIVARIANT_MODELS = ("equiformer", "scn", "escn")
PLANS = {
    "cuda": Plan(
        sizes=("quickstart", "paper"), replicas=(1, 6, 30, 90), steps=40, repeats=3, model_size="paper",
        model_parts={"models": INVARIANT_MODELS, "models_equivariant": EQUIVARIANT_MODELS},
        model_repeats=3, model_budget_s=1.0,
        limits_s={"gpu_tests": 40, "md_throughput": 55, "models": 40, "models_equivariant": 50},
    ),
    "cpu": Plan(  # the dry run: every part works, in about a minute on two cores
        sizes=("quickstart",), replicas=(1, 2), steps=4, repeats=1, model_size="quickstart",
        model_parts={"models": ("schnet", "dimenet++")}, model_repeats=1, model_budget_s=1.0,
        limits_s={"gpu_tests": 120, "md_throughput": 120, "models": 120},
    ),
}


def environment(device: str) -> dict:
    """Python, torch, CUDA, the GPU (when the device is CUDA) and the versions of ``PACKAGES``."""
    found = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
             "cuda_available": torch.cuda.is_available(), "packages": {}}
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(torch.device(device))
        found.update(gpu=properties.name, gpu_memory_GiB=properties.total_memory / BYTES_PER_GIB,
                     gpu_count=torch.cuda.device_count())
    for name in PACKAGES:
        try:
            found["packages"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found["packages"][name] = None
    return found


def gpu_test_modules() -> list[Path]:
    """The test modules that hold gpu-marked tests."""
    return sorted(path for path in TESTS.rglob("test_*.py") if GPU_MARK.search(path.read_text()))


def run_part(command: list[str], limit_s: float) -> tuple[dict, str]:
    """Run ``command`` in the repository for at most ``limit_s``: (its record, its stdout).

    The record has ``status`` (``passed`` for exit code 0, else ``failed``; ``timed_out`` when the
    limit killed it), ``wall_s``, and for any but a pass the tail of its stderr and stdout."""
    start = time.perf_counter()
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=limit_s)
            status = "passed" if process.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: the part and anything it started
            stdout, stderr = process.communicate()
            status = "timed_out"
    record = {"status": status, "wall_s": time.perf_counter() - start, "command": " ".join(command[1:])}
    if status != "passed":
        record["exit_code"] = process.returncode
        record["output_tail"] = (stderr + stdout)[-OUTPUT_TAIL_CHARS:]
    return record, stdout


def gpu_tests_part(limit_s: float) -> dict:
    """``pytest -m gpu`` over ``gpu_test_modules()``, its outcome counted from its JUnit report."""
    modules = [str(path.relative_to(REPO)) for path in gpu_test_modules()]
    if not modules:  # pytest without modules would run every test
        return {"status": "failed", "wall_s": 0.0, "output_tail": f"no gpu-marked tests under {TESTS}"}
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "junit.xml"
        command = [sys.executable, "-m", "pytest", "-m", "gpu", "-p", "no:cacheprovider", "-q",
                   f"--junitxml={report}", *modules]
        record, _ = run_part(command, limit_s)
        if report.exists():
            suite = ElementTree.parse(report).getroot().find("testsuite")
            counts = {key: int(suite.get(key)) for key in ("tests", "failures", "errors", "skipped")}
            record.update(
                passed=counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
                failed=counts["failures"], errors=counts["errors"], skipped=counts["skipped"],
                failures=[f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
                          if case.find("failure") is not None or case.find("error") is not None],
            )
    return record


def benchmark_part(command: list[str], limit_s: float) -> dict:
    """A benchmark's record, with the figures of the JSON object it printed last when it passed (a pass
    without them is a failure)."""
    record, stdout = run_part(command, limit_s)
    if record["status"] == "passed":
        last = (stdout.strip().splitlines() or [""])[-1]
        try:
            figures = json.loads(last)
        except json.JSONDecodeError:
            figures = None
        if isinstance(figures, dict):
            record["figures"] = figures
        else:
            record.update(status="failed", output_tail=f"no JSON object last: {stdout[-OUTPUT_TAIL_CHARS:]}")
    return record


def parts_of(plan: Plan, device: str) -> dict:
    """Part name -> (its function, its arguments), in the order they run."""
    python = [sys.executable, "-m"]
    parts = {"gpu_tests": (gpu_tests_part, (plan.limits_s["gpu_tests"],))}
    for model in THROUGHPUT_MODELS:
        command = python + [
            "benchmarks.md_throughput", "--device", device, "--models", model, "--sizes", *plan.sizes,
            "--replicas", *map(str, plan.replicas), "--steps", str(plan.steps), "--repeats", str(plan.repeats),
        ]
        parts[f"md_throughput_{model}"] = (benchmark_part, (command, plan.limits_s["md_throughput"]))
    for name, models in plan.model_parts.items():
        command = python + [
            "benchmarks.models", "--device", device, "--size", plan.model_size, "--models", ",".join(models),
            "--pretrained", "", "--repeats", str(plan.model_repeats), "--budget-s", str(plan.model_budget_s),
        ]
        parts[name] = (benchmark_part, (command, plan.limits_s[name]))
    return parts


def ratio(value: float | None, reference: float) -> float | None:
    return None if value is None else value / reference


def goal(value: float | None, bar: float, source: str) -> dict:
    return {"value": value, "goal": bar, "met": None if value is None else value >= bar, "source": source}


def compare(parts: dict, plan: Plan) -> tuple[dict, dict]:
    """(The Table 1 comparison, the goals) from the parts' figures (see module docstring)."""
    model_figures = {}  # Table 1 is of the paper's sizes: the models' figures at another size are not set beside it
    for name in plan.model_parts if plan.model_size == "paper" else ():
        model_figures.update(parts.get(name, {}).get("figures", {}))
    table_1 = {}
    for model, (_, paper_ns_per_day) in TABLE_1.items():
        if model in MODELS:
            rate = model_figures.get(model, {}).get("md_replica_steps_per_s")
            one = None if rate is None else ns_per_day(rate)
            table_1[model] = {"table_1_ns_per_day": paper_ns_per_day, "one_replica_ns_per_day": one,
                              "one_replica_vs_table_1": ratio(one, paper_ns_per_day)}
    for model in THROUGHPUT_MODELS:
        figures = parts.get(f"md_throughput_{model}", {}).get("figures", {})
        paper_ns_per_day = table_1[model]["table_1_ns_per_day"]
        rates = {n: figures.get(figure_key(f"replica_steps_per_s_{n}", "paper", model)) for n in plan.replicas}
        measured = {n: rate for n, rate in rates.items() if rate is not None}
        one = None if rates[1] is None else ns_per_day(rates[1])
        best_replicas = max(measured, key=measured.get, default=None)
        best = None if best_replicas is None else ns_per_day(measured[best_replicas])
        table_1[model].update(
            md_throughput_one_replica_ns_per_day=one,
            md_throughput_one_replica_vs_table_1=ratio(one, paper_ns_per_day),
            aggregate_ns_per_day=best, aggregate_replicas=best_replicas,
            aggregate_vs_table_1=ratio(best, paper_ns_per_day),
        )
    goals = {}
    for model in ONE_REPLICA_GOAL_MODELS:
        if model in THROUGHPUT_MODELS:
            value, source = table_1[model]["md_throughput_one_replica_vs_table_1"], f"md_throughput_{model}"
        else:
            value, source = table_1[model]["one_replica_vs_table_1"], "models"
        goals[f"one_replica_vs_table_1_{model}"] = goal(value, ONE_REPLICA_GOAL, source)
    schnet = parts.get("md_throughput_schnet", {}).get("figures", {})
    goals[f"batched_{BATCHED_REPLICAS}_vs_1_quickstart_schnet"] = goal(
        schnet.get(figure_key(f"batched_speedup_{BATCHED_REPLICAS}", "quickstart", "schnet")), BATCHED_GOAL,
        "md_throughput_schnet",
    )
    for model in THROUGHPUT_MODELS:
        goals[f"aggregate_vs_table_1_paper_{model}"] = goal(
            table_1[model]["aggregate_vs_table_1"], AGGREGATE_GOAL, f"md_throughput_{model}"
        )
    return table_1, goals


def peak_gpu_memory_GiB(parts: dict) -> float | None:
    """The largest ``peak_gpu_memory_GiB`` among the parts' figures (None on CPU)."""
    figures = [part.get("figures", {}) for part in parts.values()]
    peaks = [f["peak_gpu_memory_GiB"] for f in figures if "peak_gpu_memory_GiB" in f]
    peaks += [m["peak_gpu_memory_GiB"] for f in figures for m in f.values()
              if isinstance(m, dict) and "peak_gpu_memory_GiB" in m]
    return max(peaks, default=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help=f"folder of the result, {RESULT_FILE}")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cuda (default), or cpu for the dry run's tiny settings")
    args = parser.parse_args()
    path = args.out / RESULT_FILE
    start = time.perf_counter()
    plan = PLANS[args.device]
    result = {"device": args.device, "dry_run": args.device == "cpu", "plan": dataclasses.asdict(plan),
              "environment": environment(args.device), "parts": {}}

    def save() -> None:
        result["peak_gpu_memory_GiB"] = peak_gpu_memory_GiB(result["parts"])
        result["table_1"], result["goals"] = compare(result["parts"], plan)
        result["wall_s"] = time.perf_counter() - start
        with atomic_write(path, "w") as fh:
            json.dump(result, fh, indent=1)

    save()
    for name, (part, arguments) in parts_of(plan, args.device).items():
        print(f"{name} ...", flush=True)
        result["parts"][name] = part(*arguments)
        print(f"{name}: {result['parts'][name]['status']} in {result['parts'][name]['wall_s']:.1f} s", flush=True)
        save()
    for name, outcome in result["goals"].items():
        print(f"{name}: {outcome['value']} (goal {outcome['goal']}, met: {outcome['met']})")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
