"""Dispatch overhead of `campaign submit` and `campaign sync` with the Slurm launcher.

The campaign is the issue's 11 models x 3 materials x 5 temperatures x 6 repetitions. Model names
are registry entries and cannot repeat, so with fewer registered models the repetitions grow until
the number of MD tasks is the same (990). Slurm is replaced by fake ``sbatch``, ``squeue`` and
``scontrol`` commands on PATH that record every call, so only our own overhead is measured; every
`campaign` call is a fresh process, imports included, as a user would run it.

1. ``campaign submit``: adds every task and submits the ready ones (the reference runs).
2. ``--sync-rounds`` rounds (default 1) of "the rockets finished" (each reserved launch's
   FW_offline.json says COMPLETED, as an offline rocket writes it) and ``campaign sync``: each
   round folds the finished work back and submits what became ready (round 1: the training runs
   and the reference analyses). A round's folds share one workflow refresh, and so do its
   reservations (``launchers.offline.one_workflow_refresh``); with ``--sync-rounds 3``, round 2
   reserves the ~1000 MD runs and round 3 folds them (about a minute each here).
3. ``campaign submit`` again: nothing new is added or submitted.

Prints a line per step; the last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from ase.build import bulk
from fireworks import FWAction

from launchers.offline import OFFLINE_FILE, outcome

ISSUE_MODELS, MATERIALS, TEMPERATURES_K, ISSUE_REPETITIONS = 11, ("LGPS", "Li2S", "Li2S-expanded"), (800, 900, 1000, 1100, 1200), 6
N_MD_TASKS = ISSUE_MODELS * len(MATERIALS) * len(TEMPERATURES_K) * ISSUE_REPETITIONS
LI2S_EXPANSION = 1.03  # the third material: Li2S with its lattice stretched by 3 %

FAKE_SBATCH = """#!/bin/bash
n=$(( $(cat "{log}" 2>/dev/null | wc -l) + 1 ))
echo "$(grep -m1 '^#SBATCH --array=' "${{@: -1}}" | cut -d= -f2) $*" >> "{log}"
echo "$n"
"""
FAKE_SCONTROL = """#!/bin/bash
echo "MaxArraySize            = {max_array_size}"
"""
FAKE_SQUEUE = """#!/bin/bash
# every array task submitted so far is still pending: ``%F|%K|%T`` lines as squeue --array prints them
job=0
while read -r array rest; do
    job=$((job + 1))
    last=${{array%%\%*}}; last=${{last#*-}}
    for ((index = 0; index <= last; index++)); do echo "$job|$index|PENDING"; done
done < <(cat "{log}" 2>/dev/null)
"""


def _write_fakes(bin_dir: Path, log: Path, max_array_size: int) -> None:
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH.format(log=log)), ("scontrol", FAKE_SCONTROL.format(max_array_size=max_array_size)),
                       ("squeue", FAKE_SQUEUE.format(log=log))):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)


def _spec(directory: Path, models: list[str], repetitions: int) -> Path:
    expanded = bulk("Li2S", "fluorite", a=5.71 * LI2S_EXPANSION)
    expanded.write(directory / "li2s_expanded.extxyz")
    generate = {"calculator": "chgnet", "runs": 1, "ramp_ps": 5.0, "production_ps": 50.0}
    spec = {
        "campaign": {"name": "dispatch-benchmark", "store": {"embedded": "store.json"}, "launcher": "slurm",
                     "workdir": "runs"},
        "materials": {
            "LGPS": {"structure": "LGPS", "generate": generate},
            "Li2S": {"structure": "Li2S", "generate": generate},
            "Li2S-expanded": {"structure": "li2s_expanded.extxyz", "generate": generate},
        },
        "training": {"material": "LGPS", "temperatures_K": list(TEMPERATURES_K)},
        "models": {name: {} for name in models},
        "md": {"temperatures_K": list(TEMPERATURES_K), "repetitions": repetitions},
        "resources": {"gpu": {"partition": "gpu", "account": "benchmark", "max_concurrent": 64},
                      "cpu": {"partition": "cpu", "account": "benchmark"}},
    }
    path = directory / "campaign.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _campaign(env: dict, *args: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "campaign"), *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"campaign {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def _sbatch_calls(log: Path) -> list[int]:
    """Array sizes of the sbatch calls recorded so far."""
    if not log.exists():
        return []
    sizes = []
    for line in log.read_text().splitlines():
        first, last = line.split()[0].split("%")[0].split("-")
        sizes.append(int(last) - int(first) + 1)
    return sizes


def _finish_reserved(runs: Path) -> int:
    """Write COMPLETED outcomes into every reserved launch that has none, as offline rockets do."""
    finished = 0
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    for path in runs.glob(f"launches/*/task*/{OFFLINE_FILE}"):
        if outcome(path.parent) is not None:
            continue
        data = json.loads(path.read_text())
        data.update(started_on=now, completed_on=now, state="COMPLETED",
                    fwaction=FWAction(stored_data={"summary": {}, "results": []}).to_dict())
        path.write_text(json.dumps(data))
        finished += 1
    return finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-array-size", type=int, default=1001, help="MaxArraySize the fake scontrol reports.")
    parser.add_argument("--sync-rounds", type=int, default=1, help="Rounds of simulated finishing + sync.")
    args = parser.parse_args()
    from mlff.models import MODELS

    models = sorted(MODELS)
    repetitions = math.ceil(N_MD_TASKS / (len(models) * len(MATERIALS) * len(TEMPERATURES_K)))
    if len(models) < ISSUE_MODELS:
        print(f"only {len(models)} models are registered ({', '.join(models)}); using {repetitions} repetitions "
              f"instead of {ISSUE_REPETITIONS} for the same number of MD tasks")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        log = scratch / "sbatch.log"
        _write_fakes(scratch / "bin", log, args.max_array_size)
        env = {**os.environ, "PATH": f"{scratch / 'bin'}:{os.environ['PATH']}"}
        spec = _spec(scratch, models, repetitions)

        submit_s, output = _campaign(env, "submit", str(spec))
        submit_arrays = _sbatch_calls(log)
        print(f"submit: {submit_s:.2f} s, {output.splitlines()[0]}; {len(submit_arrays)} sbatch call(s), arrays of {submit_arrays}")
        rounds = []
        while len(rounds) < args.sync_rounds and _finish_reserved(scratch / "runs"):
            before = len(_sbatch_calls(log))
            sync_s, _ = _campaign(env, "sync", str(spec))
            arrays = _sbatch_calls(log)[before:]
            rounds.append({"sync_seconds": round(sync_s, 3), "sbatch_calls": len(arrays), "array_sizes": arrays})
            print(f"sync round {len(rounds)}: {sync_s:.2f} s, {len(arrays)} sbatch call(s), arrays of {arrays}")
        before = len(_sbatch_calls(log))
        resubmit_s, output = _campaign(env, "submit", str(spec))
        resubmit_calls = len(_sbatch_calls(log)) - before
        print(f"submit again: {resubmit_s:.2f} s, {output.splitlines()[0]}; {resubmit_calls} sbatch call(s)")
        n_tasks = int(output.split("new task(s), ")[1].split()[0])
    all_arrays = submit_arrays + [size for r in rounds for size in r["array_sizes"]]
    print(json.dumps({
        "models": models,
        "materials": len(MATERIALS),
        "temperatures": len(TEMPERATURES_K),
        "repetitions": repetitions,
        "n_md_tasks": len(models) * len(MATERIALS) * len(TEMPERATURES_K) * repetitions,
        "n_tasks": n_tasks,
        "max_array_size": args.max_array_size,
        "submit_seconds": round(submit_s, 3),
        "sbatch_calls": len(submit_arrays),
        "submit_array_sizes": submit_arrays,
        "sync_rounds": rounds,
        "total_sbatch_calls": len(all_arrays),
        "total_array_tasks": sum(all_arrays),
        "resubmit_seconds": round(resubmit_s, 3),
        "resubmit_sbatch_calls": resubmit_calls,
    }))


if __name__ == "__main__":
    main()
