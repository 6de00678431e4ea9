"""Slurm job arrays: one ``sbatch --array`` per category of ready work, lost-run detection, array tasks.

Offline rockets (the default, and the only choice with the embedded store):

1. ``dispatch`` (login node, store locked): the READY fireworks of a category (``spec._category``,
   gpu or cpu) are reserved into launch directories (launchers/offline.py); a job directory gets a
   ``manifest.json`` listing the launch directory of every array index and the batch script filled
   in from slurm_templates/; one ``sbatch --array=0-N%M`` submits them (more arrays only when there
   are more tasks than MaxArraySize allows in one).
2. Array task i (``python -m launchers.slurm MANIFEST``) runs exactly the launch reserved at index
   i, offline, with ``mlff.preemption`` handlers installed: Slurm's SIGUSR1 warning or SIGTERM
   makes training and MD checkpoint and stop.
3. ``sync`` (login node: ``campaign sync`` and every ``campaign status``) folds finished launches
   back; a launch without an outcome whose array task Slurm no longer lists (kill -9, node lost,
   killed at the time limit) is requeued and reruns from its checkpoints.

Online rockets: array tasks pull READY fireworks of their category from the MongoDB store; ``dispatch``
submits one array task per READY firework not already covered by a pending array task, and ``sync``
stores the result documents of completed launches, settles failed ones (launchers/handlers.py) and
reruns fireworks whose launch belongs to an array task Slurm no longer lists.

Every array job submitted is recorded in the store's ``campaign_slurm_jobs`` collection.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.resources
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fireworks import LaunchPad

from launchers.offline import (
    OFFLINE_FILE,
    campaign_worker,
    fold_all,
    one_workflow_refresh,
    outcome,
    patch_fireworks,
    requeue,
    reserve,
    run_rocket,
    settle_failure,
    timestamped_dir,
    unfinished_launches,
)
from mlff import host_memory, preemption
from records.errors import CampaignError
from records.results import store_results
from records.settings import CPUResources, ResourcesSpec, StoreSpec
from records.store import campaign_fireworks, open_store

# The batch-script templates, installed with the code as the package slurm_templates.
TEMPLATES = {category: importlib.resources.files("slurm_templates") / f"{category}_array.sh" for category in ("gpu", "cpu")}
OPTIONAL_DIRECTIVES = ("partition", "account", "qos", "gres")  # an #SBATCH line of these is left out when null
PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
JOBS_COLLECTION = "campaign_slurm_jobs"
MANIFEST = "manifest.json"
RESULTS_STORED = "campaign_results_stored"  # set on an online launch once sync has stored its result documents
MB_PER_GB = 1024  # Slurm's --mem units: M = MiB, G = 1024 M
SLURM_COMMAND_TIMEOUT_S = 60


class TemplateError(CampaignError, ValueError):
    """A batch-script template and its values do not match."""


class SlurmError(CampaignError, RuntimeError):
    """A Slurm command failed or answered something unexpected."""


class DispatchError(SlurmError):
    """Submitting an array failed; its reservations were undone, ``submitted`` holds the arrays that went in."""

    def __init__(self, message: str, submitted: list[dict]):
        super().__init__(message)
        self.submitted = submitted


def render_template(template: Path, values: dict) -> str:
    """``template`` with every ``{{key}}`` replaced by ``values[key]``.

    A value for a key the template lacks, or a key without a value, is an error. A null value
    removes its line only for an ``#SBATCH`` line of an optional setting (``OPTIONAL_DIRECTIVES``);
    a null anywhere else is an error.
    """
    text = template.read_text()
    keys = set(PLACEHOLDER.findall(text))
    unknown, missing = sorted(set(values) - keys), sorted(keys - set(values))
    if unknown:
        raise TemplateError(f"{template}: unknown keys {unknown}; the template's keys are {sorted(keys)}")
    if missing:
        raise TemplateError(f"{template}: no value given for {missing}")
    lines = []
    for line in text.splitlines():
        null = [key for key in PLACEHOLDER.findall(line) if values[key] is None]
        if null:
            if line.startswith("#SBATCH") and len(PLACEHOLDER.findall(line)) == 1 and null[0] in OPTIONAL_DIRECTIVES:
                continue
            raise TemplateError(f"{template}: {null} must not be null (line {line!r})")
        lines.append(PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), line))
    return "\n".join(lines) + "\n"


def _slurm(*command: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=SLURM_COMMAND_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SlurmError(f"`{' '.join(command)}` could not run: {err}") from err
    if done.returncode != 0:
        raise SlurmError(f"`{' '.join(command)}` failed (exit {done.returncode}): {done.stderr.strip()}")
    return done.stdout


def max_array_size() -> int:
    """The cluster's MaxArraySize (array indices run from 0 to MaxArraySize - 1)."""
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", _slurm("scontrol", "show", "config"), re.MULTILINE)
    if match is None:
        raise SlurmError("`scontrol show config` reports no MaxArraySize")
    return int(match.group(1))


def queued_array_tasks() -> dict[str, str]:
    """``"<array job id>_<index>" -> state`` of this user's array tasks that Slurm still lists."""
    tasks = {}
    for line in _slurm("squeue", "--me", "--noheader", "--array", "--format=%F|%K|%T").splitlines():
        job_id, index, state = line.strip().split("|")
        tasks[f"{job_id}_{index}"] = state
    return tasks


def submit_array(script: Path) -> str:
    """``sbatch`` a job-array script (its ``#SBATCH --array`` line sets the indices); returns the job id."""
    answer = _slurm("sbatch", "--parsable", str(script)).strip()
    job_id = answer.split(";")[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch answered {answer!r}, expected a job id")
    return job_id


def script_values(resources: CPUResources, job_name: str, job_dir: Path, n_tasks: int) -> dict:
    values = resources.model_dump()
    values.pop("max_concurrent")
    values["memory_MB"] = round(values.pop("memory_GB") * MB_PER_GB)
    return {
        **values,
        "job_name": job_name,
        "array": f"0-{n_tasks - 1}%{resources.max_concurrent}",
        "job_dir": str(job_dir),
        "python": sys.executable,
    }


def _new_job_dir(job_root: Path, category: str) -> Path:
    job_dir = timestamped_dir(job_root, category)
    job_dir.mkdir(parents=True)
    return job_dir


def _submit(launchpad, campaign, category, resources, job_dir, n_tasks, manifest) -> dict:
    (job_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))
    script = job_dir / "array.sh"
    script.write_text(render_template(TEMPLATES[category], script_values(resources, f"{campaign}-{category}", job_dir, n_tasks)))
    job_id = submit_array(script)
    record = {
        "campaign": campaign,
        "job_id": job_id,
        "category": category,
        "mode": manifest["mode"],
        "job_dir": str(job_dir),
        "n_tasks": n_tasks,
        "launch_ids": manifest.get("launch_ids", []),
        "submitted_on": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    launchpad.db[JOBS_COLLECTION].insert_one(dict(record))
    return record


def dispatch(
    launchpad: LaunchPad, campaign: str, resources: ResourcesSpec, job_root: Path, store: StoreSpec | None = None,
    root: Path | None = None,
) -> list[dict]:
    """Submit the campaign's READY work as job arrays, one per category (see the module docstring).

    ``store`` (needed for online rockets) is what array tasks connect to; ``root`` is the campaign's
    folder, which stored paths are relative to (the manifest passes it to the array tasks). Returns
    the job records.
    """
    limit = max_array_size()
    submitted = []
    for category in TEMPLATES:
        settings = getattr(resources, category)
        if resources.rockets == "online":
            submitted.extend(_dispatch_online(launchpad, campaign, category, settings, job_root, store, limit, root))
            continue
        worker = campaign_worker(campaign, category)
        while True:
            job_dir = _new_job_dir(job_root, category)
            launch_dirs, fw_ids, launch_ids = [], [], []
            with one_workflow_refresh(launchpad):
                while len(launch_dirs) < limit:
                    launch_dir = job_dir / f"task{len(launch_dirs)}"
                    reserved = reserve(launchpad, worker, launch_dir)
                    if reserved is None:
                        break
                    launch_dirs.append(str(launch_dir))
                    fw_ids.append(reserved[0])
                    launch_ids.append(reserved[1])
            if not launch_dirs:
                job_dir.rmdir()
                break
            manifest = {"mode": "offline", "campaign": campaign, "category": category, "root": str(root) if root else None,
                        "launch_dirs": launch_dirs, "launch_ids": launch_ids}
            try:
                submitted.append(_submit(launchpad, campaign, category, settings, job_dir, len(launch_dirs), manifest))
            except SlurmError as err:
                for fw_id, launch_id in zip(fw_ids, launch_ids, strict=True):
                    requeue(launchpad, {"fw_id": fw_id, "launch_id": launch_id})
                raise DispatchError(f"{err}; its {len(fw_ids)} fireworks are READY again", submitted) from err
            if len(launch_dirs) < limit:
                break
    return submitted


def _dispatch_online(launchpad, campaign, category, settings, job_root, store, limit, root) -> list[dict]:
    if store is None or store.embedded:
        raise ValueError("online rockets need a MongoDB store (campaign.store.uri or launchpad)")
    ready = launchpad.fireworks.count_documents(
        campaign_fireworks(campaign, **{"spec._category": category, "state": "READY"})
    )
    pending = 0
    jobs = list(launchpad.db[JOBS_COLLECTION].find({"campaign": campaign, "category": category, "mode": "online"}))
    if jobs:
        job_ids = {job["job_id"] for job in jobs}
        pending = sum(state == "PENDING" for task, state in queued_array_tasks().items() if task.split("_")[0] in job_ids)
    submitted = []
    needed = ready - pending
    while needed > 0:
        n_tasks = min(needed, limit)
        job_dir = _new_job_dir(job_root, category)
        manifest = {"mode": "online", "campaign": campaign, "category": category, "root": str(root) if root else None,
                    "job_dir": str(job_dir), "store": store.model_dump()}
        submitted.append(_submit(launchpad, campaign, category, settings, job_dir, n_tasks, manifest))
        needed -= n_tasks
    return submitted


@dataclass
class SyncReport:
    folded: dict[str, str] = field(default_factory=dict)  # firework name -> state after folding
    lost: list[str] = field(default_factory=list)  # fireworks whose array task ended without an outcome


def sync(launchpad: LaunchPad, campaign: str) -> SyncReport:
    """Fold finished array tasks back and requeue lost ones (see the module docstring)."""
    report = SyncReport()
    jobs = launchpad.db[JOBS_COLLECTION]
    runs = unfinished_launches(launchpad, campaign)
    # One query for the runs' array tasks, not one per run.
    array_task = {
        launch_id: f"{job['job_id']}_{index}"
        for job in jobs.find({"campaign": campaign, "mode": "offline"}, {"job_id": 1, "launch_ids": 1})
        for index, launch_id in enumerate(job["launch_ids"])
    }
    finished, queued = [], None
    for run in runs:
        launch_dir = run["launch_dir"]
        if outcome(launch_dir) is not None:
            finished.append(run)
            continue
        if run["launch_id"] not in array_task:
            continue  # not reserved for Slurm (a local launcher's run)
        if queued is None:
            queued = queued_array_tasks()
        if array_task[run["launch_id"]] in queued:
            continue
        if outcome(launch_dir) is not None:  # finished after Slurm was asked
            finished.append(run)
        else:
            requeue(launchpad, run)
            report.lost.append(run["name"])
    states = fold_all(launchpad, [run["launch_id"] for run in finished])
    report.folded.update({run["name"]: states[run["launch_id"]] for run in finished})
    online_jobs = {job["job_dir"]: job for job in jobs.find({"campaign": campaign, "mode": "online"})}
    if online_jobs:
        _sync_online(launchpad, campaign, online_jobs, report)
    return report


def _sync_online(launchpad: LaunchPad, campaign: str, online_jobs: dict, report: SyncReport) -> None:
    """Store the results of online launches that completed, settle failed ones, rerun lost ones."""
    queued = queued_array_tasks()
    for doc in launchpad.fireworks.find(
        campaign_fireworks(campaign, state={"$in": ["RESERVED", "RUNNING", "FIZZLED", "COMPLETED"]}),
        {"fw_id": 1, "name": 1, "state": 1},
    ):
        launch = launchpad.launches.find_one({"fw_id": doc["fw_id"]}, sort=[("launch_id", -1)])
        if launch is None:
            continue
        launch_dir = Path(launch["launch_dir"])
        if str(launch_dir.parent) not in online_jobs:
            continue
        if doc["state"] == "COMPLETED":
            if not launch.get(RESULTS_STORED):
                store_results(launchpad, launchpad.get_fw_by_id(doc["fw_id"]), launchpad.get_launch_by_id(launch["launch_id"]))
                launchpad.launches.update_one({"launch_id": launch["launch_id"]}, {"$set": {RESULTS_STORED: True}})
                report.folded[doc["name"]] = "COMPLETED"
        elif doc["state"] == "FIZZLED":
            report.folded[doc["name"]] = settle_failure(launchpad, launch["launch_id"])
        elif launch_dir.name not in queued:
            launchpad.rerun_fw(doc["fw_id"])
            report.lost.append(doc["name"])


def array_tasks(launchpad: LaunchPad, campaign: str) -> list[dict]:
    """Submitted array jobs with how many of their tasks Slurm lists as pending and as running."""
    jobs = list(launchpad.db[JOBS_COLLECTION].find({"campaign": campaign}, {"_id": 0}))
    queued = queued_array_tasks() if jobs else {}
    for job in jobs:
        states = [state for task, state in queued.items() if task.split("_")[0] == job["job_id"]]
        job["pending"] = states.count("PENDING")
        job["running"] = len(states) - job["pending"]
    return jobs


def run_array_task(manifest_path: Path, index: int) -> None:
    """Run the rocket of array task ``index`` of the job described by ``manifest_path``."""
    preemption.install_handlers()
    manifest = json.loads(Path(manifest_path).read_text())
    worker = campaign_worker(manifest["campaign"], manifest["category"], manifest.get("root"))
    if manifest["mode"] == "offline":
        launch_dir = Path(manifest["launch_dirs"][index])
        started = json.loads((launch_dir / OFFLINE_FILE).read_text()).get("started_on")
        if started is not None:
            raise SystemExit(f"{launch_dir}: this launch already started at {started}; not running it twice")
        run_rocket(launch_dir, worker)
        return
    from fireworks.core.rocket_launcher import launch_rocket

    patch_fireworks()
    launch_dir = Path(manifest["job_dir"]) / f"{os.environ['SLURM_ARRAY_JOB_ID']}_{index}"
    launch_dir.mkdir()
    # The manifest's launchpad file, if any, is an absolute path (see _sync).
    store = open_store(StoreSpec(**manifest["store"]), Path(manifest["job_dir"]))
    with store.write() as launchpad, contextlib.chdir(launch_dir):
        launch_rocket(launchpad, worker)


def main(argv: list[str] | None = None) -> None:
    """Entry point of an array task: ``python -m launchers.slurm MANIFEST`` (index from SLURM_ARRAY_TASK_ID)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m launchers.slurm MANIFEST   (in a Slurm array task)")
    host_memory.retain_freed_memory()
    run_array_task(Path(argv[0]), int(os.environ["SLURM_ARRAY_TASK_ID"]))


if __name__ == "__main__":
    main()
