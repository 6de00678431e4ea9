"""Offline rockets and the local launcher, with stock FireWorks tasks (no models involved)."""

import json
import threading

import pytest
from fireworks import Firework, Workflow
from fireworks.user_objects.firetasks.script_task import PyTask

from launchers.local import LauncherBusy, _exclusive, run_local
from launchers.offline import (
    campaign_worker,
    fold,
    outcome,
    reserve,
    run_rocket,
    unfinished_launches,
)
from records.store import EmbeddedStore


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
