"""Offline rockets and the local launcher: with stock FireWorks tasks, and a small campaign interrupted by signals."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner
from fireworks import Firework, Workflow
from fireworks.user_objects.firetasks.script_task import PyTask

from campaign.cli import main
from cu_campaign import cu_spec, write_cu_campaign
from launchers.local import LauncherBusy, _exclusive, run_local
from launchers.offline import (
    campaign_worker,
    fold,
    outcome,
    reserve,
    run_rocket,
    unfinished_launches,
)
from records.store import EmbeddedStore, results_collection


def _workflow(campaign: str, *, fail_second: bool = False) -> Workflow:
    identity = {"name": campaign, "key": "", "digest": "", "stage": "analyze", "spec_hash": "h", "labels": {}}
    first = Firework(
        PyTask(func="json.dumps", args=[1]), name="first", fw_id=-1,
        spec={"_campaign": {**identity, "key": "first", "digest": "d1"}},
    )
    second = Firework(
        PyTask(func="math.sqrt", args=[-1.0 if fail_second else 4.0]), name="second", fw_id=-2,
        spec={"_campaign": {**identity, "key": "second", "digest": "d2"}},
    )
    return Workflow([first, second], {-1: [-2]}, metadata={"campaign": campaign})


def test_offline_rocket_runs_despite_monty_zopen_requiring_a_mode(tmp_path):
    store = EmbeddedStore(tmp_path / "store.json")
    with store.write() as launchpad:
        launchpad.add_wf(_workflow("c"))
        fw_id, launch_id = reserve(launchpad, campaign_worker("c"), tmp_path / "launch")
    run_rocket(tmp_path / "launch", campaign_worker("c"))  # reads FW_offline.json through monty.io.zopen
    assert outcome(tmp_path / "launch") == "COMPLETED"
    assert "started_on" in json.loads((tmp_path / "launch" / "FW_offline.json").read_text())
    with store.write() as launchpad:
        assert fold(launchpad, launch_id) == "COMPLETED"
        assert launchpad.get_fw_by_id(fw_id).state == "COMPLETED"
        assert unfinished_launches(launchpad, "c") == []


def test_local_launcher_runs_to_the_end_and_reports_failures(tmp_path):
    store = EmbeddedStore(tmp_path / "store.json")
    with store.write() as launchpad:
        launchpad.add_wf(_workflow("ok"))
        launchpad.add_wf(_workflow("bad", fail_second=True))
    report = run_local(store, "ok", tmp_path / "launches", echo=lambda _: None)
    assert (report.completed, report.fizzled) == (["first", "second"], [])
    report = run_local(store, "bad", tmp_path / "launches", echo=lambda _: None)
    assert (report.completed, report.fizzled) == (["first"], ["second"])
    with store.read() as launchpad:
        states = {fw["name"] + "/" + fw["spec"]["_campaign"]["name"]: fw["state"] for fw in launchpad.fireworks.find()}
    assert states == {"first/ok": "COMPLETED", "second/ok": "COMPLETED", "first/bad": "COMPLETED", "second/bad": "FIZZLED"}


def test_an_interrupted_run_is_requeued_and_finished_work_is_kept(tmp_path):
    store = EmbeddedStore(tmp_path / "store.json")
    with store.write() as launchpad:
        launchpad.add_wf(_workflow("c"))
    run_local(store, "c", tmp_path / "launches", echo=lambda _: None)  # both complete
    with store.write() as launchpad:
        launchpad.add_wf(_workflow("d"))
        reserve(launchpad, campaign_worker("d"), tmp_path / "abandoned")  # reserved, never run: like Ctrl-C
    report = run_local(store, "d", tmp_path / "launches", echo=lambda _: None)
    assert report.requeued == ["first"] and report.completed == ["first", "second"]
    report = run_local(store, "c", tmp_path / "launches", echo=lambda _: None)
    assert report.completed == [] and report.requeued == []


def test_one_local_launcher_per_campaign(tmp_path):
    entered = threading.Event()
    release = threading.Event()

    def hold():
        with _exclusive(tmp_path / "local-launcher.lock", "c"):
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    entered.wait(10)
    try:
        with pytest.raises(LauncherBusy, match="another local launcher is running campaign 'c'"):
            with _exclusive(tmp_path / "local-launcher.lock", "c"):
                pass
    finally:
        release.set()
        holder.join()


@pytest.mark.slow
@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGKILL, -9)],
                         ids=["ctrl-c", "sigterm", "kill-9"])
def test_an_interrupted_local_run_keeps_its_work_and_the_next_run_finishes(tmp_path, signum, exit_code):
    """Ctrl-C or SIGTERM during MD: the launcher checkpoints, puts the firework back to READY and exits
    within 5 s, saying in one line what was kept and how to go on, with no traceback. kill -9: status says
    the work is interrupted and how to resume it. Either way the next `campaign run` finishes the campaign,
    with nothing FIZZLED and every result stored once."""
    spec = write_cu_campaign(tmp_path, cu_spec("interrupted", md_production_ps=2.0, repetitions=1))
    assert CliRunner().invoke(main, ["submit", "--no-run", str(spec)]).exit_code == 0
    output = _interrupt_when(spec, tmp_path / "runs" / "md", signum, exit_code)
    status = CliRunner().invoke(main, ["status", str(spec)])
    assert "FIZZLED" not in status.output
    md = "md/schnet/Cu/300K/rep0"
    if signum == signal.SIGKILL:
        assert f"INTERRUPTED {md}" in status.output and f"campaign run {spec}" in status.output
    else:
        (checkpoint,) = (tmp_path / "runs" / md).rglob("md-checkpoint.npz")
        assert f"{md} is back to READY and resumes from {checkpoint}; continue with `campaign run {spec}`" in output
        assert "Traceback" not in output and "INTERRUPTED" not in status.output
        assert _states(spec)[md] == "READY"

    finished = CliRunner().invoke(main, ["run", str(spec)])
    assert finished.exit_code == 0, finished.output
    assert set(_states(spec).values()) == {"COMPLETED"}
    with EmbeddedStore(spec.parent / "store.json").read() as launchpad:
        ids = [doc["_id"] for doc in results_collection(launchpad).find({"campaign": "interrupted"}, {"_id": 1})]
    assert len(ids) == len(set(ids)) == 1 + 1 + 2 * 3  # training, prediction, and the reference's and schnet's run, T, material
    (summary_file,) = (tmp_path / "runs" / md).rglob("trajectory.summary.json")
    assert json.loads(summary_file.read_text())["resumed_from_step"] >= 100  # continued, not started over


def _interrupt_when(spec, checkpoints, signum: int, exit_code: int) -> str:
    """Run `campaign run SPEC` in its own process, send it ``signum`` once a checkpoint is under
    ``checkpoints`` (its stage has run its first 100 steps) and wait for it to exit with ``exit_code``
    within 5 s; returns what it printed."""
    launcher = subprocess.Popen([sys.executable, "-m", "campaign.cli", "run", str(spec)], cwd=spec.parent,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not list(checkpoints.rglob("md-checkpoint.npz")):
            assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()[0]
            time.sleep(0.2)
        os.kill(launcher.pid, signum)
        stopped_s = time.monotonic()
        output, _ = launcher.communicate(timeout=30)
        assert time.monotonic() - stopped_s < 5 and launcher.returncode == exit_code, output
    finally:
        launcher.kill()
    return output


@pytest.mark.slow
@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_an_interrupt_during_reference_generation_exits_within_5_s_in_one_line(tmp_path, signum, exit_code):
    """The first stage a run starts: the progress bar it leaves open keeps tqdm's monitor thread, which
    wakes every 10 s, alive; the launcher no longer waits for it."""
    spec = cu_spec("interrupted", repetitions=1)
    spec["materials"]["Cu"]["generate"]["production_ps"] = 5.0
    spec_path = write_cu_campaign(tmp_path, spec)
    assert CliRunner().invoke(main, ["submit", "--no-run", str(spec_path)]).exit_code == 0
    output = _interrupt_when(spec_path, tmp_path / "runs" / "reference", signum, exit_code)
    reference = "reference/Cu/300K/run0"
    (checkpoint,) = (tmp_path / "runs" / reference).rglob("md-checkpoint.npz")
    lines = [line for line in output.splitlines() if line.startswith("interrupted")]
    assert lines == [f"interrupted ({signal.Signals(signum).name}): 0 firework(s) finished in this run and are kept; "
                     f"{reference} is back to READY and resumes from {checkpoint}; continue with "
                     f"`campaign run {spec_path}`"]
    assert "Traceback" not in output and _states(spec_path)[reference] == "READY"


def _states(spec_path) -> dict[str, str]:
    with EmbeddedStore(spec_path.parent / "store.json").read() as launchpad:
        return {doc["name"]: doc["state"] for doc in launchpad.fireworks.find({}, {"name": 1, "state": 1})}


def test_campaign_run_names_failed_work_and_how_to_retry_it_with_a_failing_exit(tmp_path):
    spec = cu_spec("failing")
    spec["materials"]["Cu"]["generate"]["calculator"] = "cu_campaign:BrokenEMT"
    path = write_cu_campaign(tmp_path, spec)
    first = CliRunner().invoke(main, ["submit", str(path)])
    again = CliRunner().invoke(main, ["run", str(path)])  # nothing left to run, the failure is still there
    for result in (first, again):
        assert result.exit_code == 1, result.output
        assert "1 firework(s) FIZZLED" in result.output and "reference/Cu/300K/run0" in result.output
        assert f"campaign run --retry-failed {path}" in result.output
