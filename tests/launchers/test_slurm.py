"""Slurm job arrays: templates, error handlers, and whole campaigns on a real one-node Slurm.

The tests marked ``slurm`` start munged, slurmctld and slurmd on localhost (tests/conftest.py,
.ci/slurm-setup.sh). Their campaign is Cu with EMT as the reference and a tiny SchNet, small
enough for 2 CPU cores; the MD of the fault tests is long enough to be stopped mid-run.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from fireworks import FiretaskBase, Firework, Workflow

from campaign.cli import main
from campaign.spec import parse_spec
from cu_campaign import cu_spec, write_cu_campaign
from launchers.handlers import HANDLER_DEFAULTS, find_correction, write_error
from launchers.offline import campaign_worker, fold, reserve, run_rocket
from launchers.slurm import (
    JOBS_COLLECTION,
    TEMPLATES,
    TemplateError,
    render_template,
    script_values,
)
from mlff.md.checkpoint import read_md_checkpoint
from mlff.trajectory import read_trajectory
from records.store import EmbeddedStore
from repo_paths import EXAMPLES, ROOT
from workflows.stages.md import MD_CHECKPOINT

# ---------------------------------------------------------------- templates (no Slurm needed)

TEMPLATE_VALUES = {
    "job_name": "c-gpu", "array": "0-9%4", "partition": "gpu", "account": None, "qos": None,
    "walltime_minutes": 60, "memory_MB": 4096, "cpus_per_task": 4, "gres": "gpu:1", "warning_s": 120,
    "job_dir": "/scratch/c/job", "pre_command": "module load cuda", "python": "/opt/venv/bin/python",
}


def test_gpu_template_fills_every_directive_and_leaves_out_null_optional_ones():
    script = render_template(TEMPLATES["gpu"], TEMPLATE_VALUES)
    directives = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert "#SBATCH --array=0-9%4" in directives and "#SBATCH --gres=gpu:1" in directives
    assert "#SBATCH --partition=gpu" in directives and "#SBATCH --signal=B:USR1@120" in directives
    assert "#SBATCH --time=60" in directives and "#SBATCH --mem=4096M" in directives
    assert not any("--account" in line or "--qos" in line for line in directives)
    assert "{{" not in script and "module load cuda" in script
    assert script.splitlines()[-1] == "exec /opt/venv/bin/python -m launchers.slurm /scratch/c/job/manifest.json"


@pytest.mark.parametrize("category", ["gpu", "cpu"])
def test_an_early_warning_signal_cannot_kill_a_task_before_its_rocket_listens(tmp_path, category):
    """sbatch may send --signal's SIGUSR1 up to a minute early, even as a short task starts: the batch
    script ignores it until the rocket installs its handler (here a stand-in that takes a second to
    start), so the task runs to its end instead of dying silently."""
    stand_in = tmp_path / "python"
    stand_in.write_text("#!/bin/bash\nsleep 1\n")
    stand_in.chmod(0o755)
    values = {**TEMPLATE_VALUES, "pre_command": "", "python": str(stand_in), "job_dir": str(tmp_path)}
    if category == "cpu":
        del values["gres"]
    script = tmp_path / "array.sh"
    script.write_text(render_template(TEMPLATES[category], values))
    task = subprocess.Popen(["bash", str(script)], stdout=subprocess.DEVNULL)
    time.sleep(0.5)  # the shell has exec'd the stand-in, which is still starting
    task.send_signal(signal.SIGUSR1)
    assert task.wait(timeout=10) == 0


def test_template_rejects_unknown_missing_and_misplaced_null_values():
    with pytest.raises(TemplateError, match=r"unknown keys \['acount'\]"):
        render_template(TEMPLATES["gpu"], {**TEMPLATE_VALUES, "acount": "x"})
    values = dict(TEMPLATE_VALUES)
    del values["warning_s"]
    with pytest.raises(TemplateError, match=r"no value given for \['warning_s'\]"):
        render_template(TEMPLATES["gpu"], values)
    with pytest.raises(TemplateError, match=r"\['walltime_minutes'\] must not be null"):
        render_template(TEMPLATES["gpu"], {**TEMPLATE_VALUES, "walltime_minutes": None})
    cpu_values = {k: v for k, v in TEMPLATE_VALUES.items() if k != "gres"}
    assert "--gres" not in render_template(TEMPLATES["cpu"], cpu_values)
    with pytest.raises(TemplateError, match=r"unknown keys \['gres'\]"):
        render_template(TEMPLATES["cpu"], TEMPLATE_VALUES)


WHEEL_CHECK = """
import json, sys
sys.path[:0] = json.loads(sys.argv[1])
import launchers.slurm as slurm
print(json.dumps({"module": slurm.__file__, "templates": {k: str(v) for k, v in slurm.TEMPLATES.items()},
                  "script": slurm.render_template(slurm.TEMPLATES["gpu"], json.loads(sys.argv[2]))}))
"""


@pytest.mark.slow
def test_a_built_wheel_carries_the_templates_it_dispatches_with(tmp_path):
    """A non-editable install: the wheel's own launchers find the templates installed beside them."""
    import sysconfig
    import zipfile

    source = tmp_path / "source"  # built from a copy: setuptools writes build/ into the tree it builds
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "tests",
                                                                  "__pycache__", "*-runs"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("mlff_campaign-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "installed")
    # -S: no site processing, so neither the editable install nor the repository is on the path; the
    # dependencies come from site-packages, the project from the wheel alone.
    path = [str(tmp_path / "installed"), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    checked = subprocess.run([sys.executable, "-S", "-c", WHEEL_CHECK, json.dumps(path), json.dumps(TEMPLATE_VALUES)],
                             check=True, capture_output=True, text=True, cwd=tmp_path)
    found = json.loads(checked.stdout)
    assert found["module"].startswith(str(tmp_path / "installed"))
    assert all(Path(p).is_file() and p.startswith(str(tmp_path / "installed")) for p in found["templates"].values())
    assert found["script"] == render_template(TEMPLATES["gpu"], TEMPLATE_VALUES)


def test_the_readme_cluster_example_is_a_valid_spec():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Running on a Slurm cluster", 1)[1]
    example = yaml.safe_load(section.split("```yaml", 1)[1].split("```", 1)[0])
    quickstart = yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())
    quickstart["campaign"].update(example["campaign"])
    spec = parse_spec({**quickstart, "resources": example["resources"]})
    assert spec.campaign.launcher == "slurm" and spec.resources.gpu.gres == "gpu:1"
    script = render_template(TEMPLATES["gpu"], script_values(spec.resources.gpu, "q-gpu", Path("/jobs/x"), 3))
    assert "#SBATCH --account=my_project" in script and "#SBATCH --array=0-2%32" in script
    assert "module load cuda/12.4" in script and "#SBATCH --mem=32768M" in script


# ---------------------------------------------------------------- handlers (no Slurm needed)


def test_handlers_return_corrections_as_data_and_respect_their_limits(tmp_path):
    nan = "Traceback ...\nmlff.training.NonFiniteLossError: non-finite training loss in epoch 3"
    write_error(tmp_path, "train", {"learning_rate": 1e-3, "batch_size": 8}, nan, [])
    assert find_correction(tmp_path) == {
        "handler": "non_finite_loss", "errors": ["non-finite training loss"],
        "actions": [{"input": "learning_rate", "from": 1e-3, "to": 1e-3 * HANDLER_DEFAULTS["learning_rate_factor"]}],
    }
    used_up = [{"handler": "non_finite_loss"}] * HANDLER_DEFAULTS["max_learning_rate_corrections"]
    write_error(tmp_path, "train", {"learning_rate": 1e-3, "batch_size": 8}, nan, used_up)
    assert find_correction(tmp_path) is None

    oom = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    write_error(tmp_path, "train", {"learning_rate": 1e-3, "batch_size": 8}, oom, [])
    assert find_correction(tmp_path)["actions"] == [{"input": "batch_size", "from": 8, "to": 4}]
    write_error(tmp_path, "train", {"learning_rate": 1e-3, "batch_size": 1}, oom, [])
    assert find_correction(tmp_path) is None

    gpu_fault = "RuntimeError: CUDA error: an illegal memory access was encountered"
    write_error(tmp_path, "md", {}, gpu_fault, [{"handler": "md_crash"}])
    assert find_correction(tmp_path)["actions"] == [{"retry": 2}]
    write_error(tmp_path, "md", {}, gpu_fault, [{"handler": "md_crash"}] * 2)
    assert find_correction(tmp_path) is None
    write_error(tmp_path, "md", {}, "ValueError: unknown MD engine 'gromacs'", [])  # a retry cannot fix it
    assert find_correction(tmp_path) is None
    write_error(tmp_path, "analyze", {}, "ValueError: bad", [])
    assert find_correction(tmp_path) is None


class RaisingTask(FiretaskBase):
    """Calls ``func`` (a dotted path); carries ``inputs`` like the campaign's firetasks."""

    _fw_name = f"{{{{{__name__}.RaisingTask}}}}"
    required_params = ["func", "inputs"]

    def run_task(self, fw_spec):
        module, name = self["func"].rsplit(".", 1)
        getattr(importlib.import_module(module), name)()


def _one_firework(stage: str, func: str) -> Workflow:
    identity = {"name": "c", "key": stage, "digest": "d", "stage": stage, "spec_hash": "h", "labels": {}}
    task = RaisingTask(func=func, inputs={"learning_rate": 1e-3, "batch_size": 8})
    return Workflow([Firework(task, name=stage, spec={"_campaign": identity})], metadata={"campaign": "c"})


def raise_preempted():
    from mlff.preemption import Preempted

    raise Preempted("last.pt")


def raise_non_finite_loss():
    from mlff.training import NonFiniteLossError

    raise NonFiniteLossError("non-finite training loss in epoch 2, batch 0")


def raise_value_error():
    raise ValueError("a plain failure")


@pytest.mark.parametrize(
    ("func", "expected_state", "corrections"),
    [
        (f"{__name__}.raise_preempted", "READY", 0),
        (f"{__name__}.raise_non_finite_loss", "READY", 1),
        (f"{__name__}.raise_value_error", "FIZZLED", 0),
    ],
    ids=["preempted", "nan_loss", "plain_failure"],
)
def test_fold_requeues_preempted_corrects_known_errors_and_keeps_real_failures(
    tmp_path, func, expected_state, corrections
):
    store = EmbeddedStore(tmp_path / "store.json")
    with store.write() as launchpad:
        launchpad.add_wf(_one_firework("train", func))
        fw_id, launch_id = reserve(launchpad, campaign_worker("c"), tmp_path / "launch")
    run_rocket(tmp_path / "launch", campaign_worker("c"))
    with store.write() as launchpad:
        assert fold(launchpad, launch_id) == expected_state
        firework = launchpad.get_fw_by_id(fw_id)
    assert firework.state == expected_state
    assert len(firework.spec.get("_corrections", [])) == corrections
    if corrections:
        assert firework.tasks[0]["inputs"]["learning_rate"] == pytest.approx(5e-4)


# ---------------------------------------------------------------- whole campaigns on a real Slurm

RESOURCES = {"walltime_minutes": 10, "memory_GB": 0.5, "cpus_per_task": 1, "warning_s": 30, "max_concurrent": 2,
             "pre_command": "export OMP_NUM_THREADS=1"}


def _write_spec(directory: Path, name: str, *, md_production_ps: float = 0.1, repetitions: int = 2,
                gpu_walltime_minutes: int = 10, mongodb_uri: str | None = None) -> Path:
    """The Cu campaign (tests/cu_campaign.py) on Slurm."""
    spec = cu_spec(name, launcher="slurm", md_production_ps=md_production_ps, repetitions=repetitions)
    spec["resources"] = {"gpu": {**RESOURCES, "walltime_minutes": gpu_walltime_minutes}, "cpu": RESOURCES}
    if mongodb_uri is not None:  # online rockets: array tasks pull their work from this MongoDB
        spec["campaign"]["store"] = {"uri": mongodb_uri, "database": f"mlff_campaign_test_{name}_{os.getpid()}"}
        spec["resources"]["rockets"] = "online"
    return write_cu_campaign(directory, spec)


def _campaign(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _states(spec_path: Path) -> dict[str, str]:
    with EmbeddedStore(spec_path.parent / "store.json").read() as launchpad:
        return {doc["name"]: doc["state"] for doc in launchpad.fireworks.find({}, {"name": 1, "state": 1})}


def _sync_until(spec_path: Path, done, timeout_s: float, every_s: float = 2.0) -> dict[str, str]:
    """Run `campaign sync` until ``done(states)`` holds; returns the states."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _campaign("sync", str(spec_path))
        states = _states(spec_path)
        if done(states):
            return states
        time.sleep(every_s)
    raise AssertionError(f"not done after {timeout_s} s: {states}")


def _md_task(spec_path: Path) -> tuple[str, Path]:
    """The Slurm task id (``<job>_<index>``) and launch directory of the running MD firework."""
    with EmbeddedStore(spec_path.parent / "store.json").read() as launchpad:
        fw_id = launchpad.fireworks.find_one({"name": {"$regex": "^md/"}})["fw_id"]
        run = launchpad.offline_runs.find_one({"fw_id": fw_id, "completed": False, "deprecated": {"$ne": True}})
        job = launchpad.db[JOBS_COLLECTION].find_one({"launch_ids": run["launch_id"]})
        index = job["launch_ids"].index(run["launch_id"])
        return f"{job['job_id']}_{index}", Path(job["job_dir"]) / f"task{index}"


def _md_files(spec_path: Path) -> tuple[Path, Path]:
    (trajectory,) = (spec_path.parent / "runs" / "md").rglob("trajectory.frames")
    return trajectory, trajectory.with_name(MD_CHECKPOINT)


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _run_to_md(tmp_path: Path, name: str, **spec_options) -> tuple[Path, str, Path]:
    """Submit a one-MD campaign and sync until its MD task has written a checkpoint; the spec path, task, checkpoint."""
    spec_path = _write_spec(tmp_path, name, repetitions=1, **spec_options)
    _campaign("submit", str(spec_path))
    _sync_until(spec_path, lambda s: s[next(k for k in s if k.startswith("md/"))] == "RESERVED", 240)
    task, _ = _md_task(spec_path)
    _wait_for(lambda: any((spec_path.parent / "runs" / "md").rglob(MD_CHECKPOINT)), 120, "an MD checkpoint")
    return spec_path, task, _md_files(spec_path)[1]


def _assert_continuous(trajectory_path: Path, production_ps: float, save_every_steps: int = 2) -> None:
    trajectory = read_trajectory(trajectory_path)
    n_expected = round(production_ps * 1000 / 2.0) // save_every_steps
    np.testing.assert_array_equal(trajectory.step, save_every_steps * np.arange(1, n_expected + 1))
    assert np.isfinite(trajectory.positions_A).all()


def _finish(spec_path: Path, timeout_s: float = 240) -> dict[str, str]:
    return _sync_until(spec_path, lambda s: all(v == "COMPLETED" for v in s.values()), timeout_s)


@pytest.mark.slurm
def test_campaign_runs_through_gpu_and_cpu_arrays_and_resubmitting_adds_nothing(slurm_cluster, tmp_path):
    spec_path = _write_spec(tmp_path, "arrays")
    first = _campaign("submit", str(spec_path))
    assert "7 new task(s)" in first and "submitted Slurm array job" in first
    again = _campaign("submit", str(spec_path))
    assert "0 new task(s), 7 already stored" in again and "no ready work to submit" in again

    states = _finish(spec_path)
    assert set(states.values()) == {"COMPLETED"}
    with EmbeddedStore(tmp_path / "store.json").read() as launchpad:
        jobs = list(launchpad.db[JOBS_COLLECTION].find({"campaign": "arrays"}))
        n_results = launchpad.db["campaign_results"].count_documents({})
    # one array per category and round: reference | train | predict + 2 md | 2 analyze
    assert sorted((job["category"], job["n_tasks"]) for job in jobs) == [("cpu", 1), ("cpu", 1), ("gpu", 1), ("gpu", 1), ("gpu", 3)]
    assert n_results > 0
    gpu_logs = [p.read_text() for job in jobs if job["category"] == "gpu" for p in Path(job["job_dir"]).glob("slurm-*.out")]
    visible = {line.rsplit("CUDA_VISIBLE_DEVICES=", 1)[1].strip() for log in gpu_logs for line in log.splitlines()
               if "CUDA_VISIBLE_DEVICES=" in line}
    assert len(gpu_logs) == 5 and visible <= {"0", "1"}  # each GPU task sees exactly one GPU

    status = _campaign("status", str(spec_path))
    assert f"Slurm array job {jobs[0]['job_id']}" in status and "0 pending, 0 running" in status
    results = _campaign("results", str(spec_path), "--format", "json")
    assert "schnet" in results
    assert "0 new task(s)" in _campaign("submit", str(spec_path)) and len(_states(spec_path)) == 7


@pytest.mark.slurm
def test_scancel_of_a_running_md_task_resumes_from_its_checkpoint(slurm_cluster, tmp_path):
    spec_path, task, checkpoint = _run_to_md(tmp_path, "cancel", md_production_ps=8.0)
    subprocess.run(["scancel", task], check=True)
    _wait_for(lambda: task not in subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True,
                                                   text=True).stdout.split(), 60, "the cancelled task to end")
    stopped_at = read_md_checkpoint(checkpoint).step
    status = _campaign("status", str(spec_path))  # folds: the preempted MD goes back to READY
    assert "READY" in status
    _finish(spec_path)
    trajectory, _ = _md_files(spec_path)
    summary = json.loads(trajectory.with_suffix(".summary.json").read_text())
    assert summary["resumed_from_step"] == stopped_at > 0
    _assert_continuous(trajectory, 8.0)


@pytest.mark.slurm
def test_kill_9_of_a_rocket_is_detected_as_lost_and_rerun_from_its_checkpoint(slurm_cluster, tmp_path):
    spec_path, task, checkpoint = _run_to_md(tmp_path, "killed", md_production_ps=8.0)
    _wait_for(lambda: read_md_checkpoint(checkpoint).step >= 200, 120, "a second checkpoint")
    job_id = subprocess.run(["squeue", "-h", "-j", task, "-o", "%A"], capture_output=True, text=True, check=True).stdout
    listed = subprocess.run(["scontrol", "listpids", job_id.strip()], capture_output=True, text=True, check=True).stdout
    rocket = next(int(line.split()[0]) for line in listed.splitlines()[1:] if "batch" in line)
    os.kill(rocket, signal.SIGKILL)
    _wait_for(lambda: task not in subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True,
                                                   text=True).stdout.split(), 60, "the killed task to end")
    killed_at = read_md_checkpoint(checkpoint).step
    assert "LOST" in _campaign("sync", str(spec_path))
    _finish(spec_path)
    trajectory, _ = _md_files(spec_path)
    assert json.loads(trajectory.with_suffix(".summary.json").read_text())["resumed_from_step"] == killed_at
    _assert_continuous(trajectory, 8.0)


@pytest.mark.slurm
def test_a_task_overrunning_its_time_limit_is_checkpointed_and_requeued(slurm_cluster, tmp_path):
    spec_path, task, checkpoint = _run_to_md(tmp_path, "walltime", md_production_ps=40.0, gpu_walltime_minutes=1)
    _wait_for(lambda: task not in subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True,
                                                   text=True).stdout.split(), 150, "the time limit")
    with EmbeddedStore(tmp_path / "store.json").write() as launchpad:
        from launchers.slurm import sync

        report = sync(launchpad, "walltime")
        md = launchpad.fireworks.find_one({"name": {"$regex": "^md/"}})
        archived = launchpad.launches.find_one({"fw_id": md["fw_id"]}, sort=[("launch_id", -1)])
    md_name = md["name"]
    assert report.folded[md_name] == "READY" and md["state"] == "READY"
    assert archived["action"]["stored_data"]["_exception"]["_details"]["preempted"] is True
    assert read_md_checkpoint(checkpoint).step > 0


# ---------------------------------------------------------------- online rockets


def test_online_array_tasks_pull_their_category_and_sync_stores_results_and_reruns_lost_work(tmp_path, monkeypatch):
    """Online mode without a MongoDB server: the login node and the array task share one in-memory LaunchPad.

    Slurm is replaced by recorded ``sbatch`` calls; the array task runs in this process, as
    ``python -m launchers.slurm MANIFEST`` would, with its store connection pointed at that LaunchPad.
    """
    from campaign.submission import add_tasks
    from campaign.tasks import expand
    from launchers import slurm
    from records.store import MongoStore

    spec_path = _write_spec(tmp_path, "online", repetitions=1, mongodb_uri="mongodb://db.cluster.invalid:27017/")
    spec = parse_spec(yaml.safe_load(spec_path.read_text()))
    scripts, queued = [], {}
    monkeypatch.setattr(slurm, "max_array_size", lambda: 1000)
    monkeypatch.setattr(slurm, "queued_array_tasks", lambda: dict(queued))
    monkeypatch.setattr(slurm, "submit_array", lambda script: scripts.append(script.read_text()) or str(len(scripts)))

    with EmbeddedStore(tmp_path / "memory.json").write() as launchpad:
        monkeypatch.setattr(MongoStore, "_connect", lambda self: launchpad)
        add_tasks(launchpad, expand(spec, tmp_path), "online", spec.spec_hash())
        ready = {category: launchpad.fireworks.count_documents({"state": "READY", "spec._category": category})
                 for category in ("gpu", "cpu")}
        jobs = slurm.dispatch(launchpad, "online", spec.resources, tmp_path / "jobs", spec.campaign.store, tmp_path)
        assert [(job["category"], job["n_tasks"]) for job in jobs] == [(c, n) for c, n in ready.items() if n]
        assert len(scripts) == len(jobs) and f"--array=0-{ready['gpu'] - 1}%2" in scripts[0]
        for index in range(ready["gpu"]):
            queued[f"{jobs[0]['job_id']}_{index}"] = "PENDING"
        assert slurm.dispatch(launchpad, "online", spec.resources, tmp_path / "jobs", spec.campaign.store, tmp_path) == []

        gpu_job = jobs[0]
        monkeypatch.setenv("SLURM_ARRAY_JOB_ID", gpu_job["job_id"])
        for index in range(2):  # the reference run, then the training it made READY
            slurm.run_array_task(Path(gpu_job["job_dir"]) / "manifest.json", index)
        done = {doc["name"]: doc["fw_id"] for doc in launchpad.fireworks.find({"state": "COMPLETED"})}
        assert sorted(name.split("/")[0] for name in done) == ["reference", "train"]
        for index, fw_id in enumerate(sorted(done.values(), reverse=True)):
            launch = launchpad.launches.find_one({"fw_id": fw_id})
            assert launch["launch_dir"] == str(Path(gpu_job["job_dir"]) / f"{gpu_job['job_id']}_{index}")
        assert launchpad.db["campaign_results"].count_documents({}) == 0  # only the login node writes results

        # array task 2 takes the next GPU firework, then its node dies: Slurm stops listing it
        queued.clear()
        worker = campaign_worker("online", "gpu")
        lost, _ = launchpad.checkout_fw(worker, str(Path(gpu_job["job_dir"]) / f"{gpu_job['job_id']}_2"))
        report = slurm.sync(launchpad, "online")
        assert report.folded == {name: "COMPLETED" for name in done} and report.lost == [lost.name]
        assert launchpad.get_fw_by_id(lost.fw_id).state == "READY"
        training_docs = launchpad.db["campaign_results"].count_documents({"fw_id": done[next(n for n in done if n.startswith("train/"))]})
        assert training_docs == 1
        assert slurm.sync(launchpad, "online").folded == {}  # results are stored once


@pytest.mark.slurm
@pytest.mark.mongodb
@pytest.mark.skipif(not os.environ.get("CAMPAIGN_TEST_MONGODB_URI"), reason="CAMPAIGN_TEST_MONGODB_URI is not set")
def test_campaign_runs_through_online_rockets_on_a_real_mongodb(slurm_cluster, tmp_path):
    from records.store import open_store

    spec_path = _write_spec(tmp_path, "online_real", mongodb_uri=os.environ["CAMPAIGN_TEST_MONGODB_URI"])
    spec = parse_spec(yaml.safe_load(spec_path.read_text()))
    assert "7 new task(s)" in _campaign("submit", str(spec_path))
    deadline = time.monotonic() + 300
    try:
        while True:
            _campaign("submit", str(spec_path))  # syncs, then submits what became ready
            with open_store(spec.campaign.store, tmp_path).read() as launchpad:
                states = {doc["name"]: doc["state"] for doc in launchpad.fireworks.find({}, {"name": 1, "state": 1})}
            if set(states.values()) == {"COMPLETED"}:
                break
            assert time.monotonic() < deadline, states
            time.sleep(2)
        assert "schnet" in _campaign("results", str(spec_path), "--format", "json")
    finally:
        with open_store(spec.campaign.store, tmp_path).write() as launchpad:
            launchpad.connection.drop_database(spec.campaign.store.database)
