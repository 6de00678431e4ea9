"""Offline rockets: reserve on the login node, run without database access, fold back.

This is how every rocket of ours runs, locally or on a compute node: only the login-node
``campaign`` process ever writes the store (see records/store.py for why).

1. ``reserve`` (login node, store locked): a READY firework becomes RESERVED with a launch directory
   holding ``FW.json`` and ``FW_offline.json``.
2. ``run_rocket`` (anywhere, no store): FireWorks' own Rocket in offline mode runs the firetasks and
   writes the outcome to ``FW_offline.json``.
3. ``fold`` (login node, store locked): ``recover_offline`` completes or fizzles the launch, and the
   result documents the firetask returned are upserted into the results collection. A launch that
   was preempted goes back to READY, and one an error handler can correct is corrected and rerun
   (``settle_failure``).
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import fireworks.core.rocket
from fireworks import FWorker, LaunchPad
from fireworks.core.launchpad import WFLock
from fireworks.core.rocket import Rocket
from monty.io import zopen

from launchers.handlers import find_correction, write_error
from records.results import store_results
from records.store import CAMPAIGN_ROOT, CAMPAIGN_SPEC_KEY, campaign_fireworks

OFFLINE_FILE = "FW_offline.json"
PING_JOIN_TIMEOUT_S = 10.0


def _zopen_text_by_default(filename, mode="rt", **kwargs):
    return zopen(filename, mode, **kwargs)


def patch_fireworks() -> None:
    """Make FireWorks' Rocket work with current monty; call it before a rocket runs.

    FireWorks' offline Rocket calls monty.io.zopen(path) without a mode, which current monty rejects
    ("zopen() missing 1 required positional argument: 'mode'"). The Rocket only ever reads text that
    way, so its module-level name is pointed at a zopen whose mode defaults to "rt".
    """
    fireworks.core.rocket.zopen = _zopen_text_by_default


def campaign_worker(campaign: str, category: str | None = None, root: str | Path | None = None) -> FWorker:
    """A FWorker that only takes fireworks of ``campaign`` (and of ``category`` when given); its rockets'
    firetasks find the campaign's files under ``root``, the campaign's folder (``CAMPAIGN_ROOT`` in its env)."""
    env = {} if root is None else {CAMPAIGN_ROOT: str(root)}
    return FWorker(name=f"campaign-{campaign}", category=category or "", query=campaign_fireworks(campaign), env=env)


def reserve(launchpad: LaunchPad, worker: FWorker, launch_dir: Path) -> tuple[int, int] | None:
    """Reserve the next READY firework into ``launch_dir``; (fw_id, launch_id), or None when none is ready."""
    launch_dir.mkdir(parents=True, exist_ok=True)
    firework, launch_id = launchpad.reserve_fw(worker, str(launch_dir))
    if firework is None:
        launch_dir.rmdir()
        return None
    firework.to_file(str(launch_dir / "FW.json"), indent=2)
    (launch_dir / OFFLINE_FILE).write_text(json.dumps({"launch_id": launch_id}))
    launchpad.add_offline_run(launch_id, firework.fw_id, firework.name)
    return firework.fw_id, launch_id


def timestamped_dir(root: Path, prefix: str) -> Path:
    """``root/<prefix>-<UTC time to the microsecond>``: a new launch or job directory's path."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    return root / f"{prefix}-{stamp}"


@contextlib.contextmanager
def one_workflow_refresh(launchpad: LaunchPad) -> Iterator[None]:
    """Reserve, or record the end of, many fireworks of one workflow with one workflow refresh
    instead of one each.

    FireWorks refreshes (loads, recomputes and writes back) the whole workflow after every
    reservation and every completed launch; a campaign is one workflow of thousands of fireworks,
    so an array's worth costs seconds per firework. In this block the refreshes are collected and
    done together on one loaded workflow at the end, also when the block raises. Reservation and
    ``recover_offline`` read and write only the fireworks' and launches' own documents, so the
    deferred refresh changes nothing they see; firework states are up to date after the block.
    """
    pending: list[int] = []
    launchpad._refresh_wf = pending.append  # the instance attribute shadows LaunchPad._refresh_wf
    try:
        yield
    finally:
        del launchpad._refresh_wf
        if pending:
            with WFLock(launchpad, pending[0]):
                workflow = launchpad.get_wf_by_fw_id_lzyfw(pending[0])
                updated: set[int] = set()
                for fw_id in pending:
                    updated = workflow.refresh(fw_id, updated)
                launchpad._update_wf(workflow, updated)


def run_rocket(launch_dir: Path, worker: FWorker) -> None:
    """Run the reserved firework in ``launch_dir`` with FireWorks' offline Rocket.

    A firetask's traceback goes to stderr, unless the firetask stopped because it was asked to
    (``mlff.preemption``): that is no error, and the launcher says in one line what was kept.

    The Rocket's ping thread writes one last FW_ping.json into the working directory after the
    run; it is joined before leaving ``launch_dir`` so that file lands there, not in the caller's.
    Daemon threads the run started are not joined: they cannot hold the process open, and one of
    them, tqdm's monitor of a progress bar an interrupt left open, wakes only every 10 s.
    """
    patch_fireworks()
    before = set(threading.enumerate())
    traceback_text = io.StringIO()
    with contextlib.chdir(launch_dir):
        Rocket(None, worker, None).run(err_file=traceback_text)
        for thread in set(threading.enumerate()) - before:
            if not thread.daemon:
                thread.join(PING_JOIN_TIMEOUT_S)
    if stop_details(launch_dir) is None:
        sys.stderr.write(traceback_text.getvalue())


def stop_details(launch_dir: Path) -> dict | None:
    """What the firetask in ``launch_dir`` stored when it stopped because it was asked to (the
    ``to_dict`` of ``mlff.preemption.Preempted``: its ``checkpoint_path`` and ``signal``), or None
    when it finished, failed, or has not ended."""
    try:
        data = json.loads((Path(launch_dir) / OFFLINE_FILE).read_text())
    except (OSError, ValueError):
        return None
    stored = (data.get("fwaction") or {}).get("stored_data") or {}
    details = (stored.get("_exception") or {}).get("_details") or {}
    return details if details.get("preempted") else None


def outcome(launch_dir: Path) -> str | None:
    """The final state an offline rocket wrote (COMPLETED, FIZZLED, ...), or None while unfinished."""
    path = Path(launch_dir) / OFFLINE_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get("state") if "fwaction" in data else None


def fold(launchpad: LaunchPad, launch_id: int) -> str:
    """Record a finished offline launch in the store; returns the firework's new state."""
    launch_dir = launchpad.get_launch_by_id(launch_id).launch_dir
    if outcome(launch_dir) is None:
        raise RuntimeError(f"launch {launch_id} in {launch_dir} has not finished; nothing to fold")
    return fold_all(launchpad, [launch_id])[launch_id]


def fold_all(launchpad: LaunchPad, launch_ids: list[int]) -> dict[int, str]:
    """``fold`` for many launches whose rockets have finished (the callers have checked their
    ``outcome``), recorded with one workflow refresh for all of them (``one_workflow_refresh``);
    launch id -> the firework's new state."""
    fw_ids = {
        doc["launch_id"]: doc["fw_id"]
        for doc in launchpad.launches.find({"launch_id": {"$in": list(launch_ids)}}, {"launch_id": 1, "fw_id": 1})
    }
    with one_workflow_refresh(launchpad):
        for launch_id in launch_ids:
            launchpad.recover_offline(launch_id)
    states = {}
    for launch_id in launch_ids:  # the firework states are known once the workflow is refreshed
        firework = launchpad.get_fw_by_id(fw_ids[launch_id])
        if firework.state == "COMPLETED":
            store_results(launchpad, firework, launchpad.get_launch_by_id(launch_id))
        states[launch_id] = settle_failure(launchpad, launch_id) if firework.state == "FIZZLED" else firework.state
    return states


def settle_failure(launchpad: LaunchPad, launch_id: int) -> str:
    """Decide what a FIZZLED launch means; returns the firework's new state.

    A launch stopped by ``mlff.preemption`` (walltime warning, SIGTERM) was not a failure: its
    firework goes back to READY and resumes from its checkpoint. Otherwise the error handlers
    (launchers/handlers.py) may return a correction, which is applied to the firetask's inputs,
    recorded in ``spec._corrections``, and the firework reruns. What no handler corrects stays FIZZLED.
    """
    launch = launchpad.get_launch_by_id(launch_id)
    exception = ((launch.action.stored_data if launch.action else None) or {}).get("_exception") or {}
    if (exception.get("_details") or {}).get("preempted"):
        launchpad.rerun_fw(launch.fw_id)
        return launchpad.get_fw_by_id(launch.fw_id).state
    firework = launchpad.get_fw_by_id(launch.fw_id)
    stage = firework.spec.get(CAMPAIGN_SPEC_KEY, {}).get("stage", "")
    inputs = firework.spec["_tasks"][0].get("inputs", {})
    corrections = firework.spec.get("_corrections", [])
    write_error(launch.launch_dir, stage, inputs, exception.get("_stacktrace") or "", corrections)
    correction = find_correction(launch.launch_dir)
    if correction is None or not correction["actions"]:
        return "FIZZLED"
    changed = {f"_tasks.0.inputs.{a['input']}": a["to"] for a in correction["actions"] if "input" in a}
    if changed:
        launchpad.update_spec([launch.fw_id], changed)
    launchpad.update_spec([launch.fw_id], {"$push": {"spec._corrections": {**correction, "launch_id": launch_id}}}, mongo=True)
    launchpad.rerun_fw(launch.fw_id)
    return launchpad.get_fw_by_id(launch.fw_id).state


def unfinished_launches(launchpad: LaunchPad, campaign: str) -> list[dict]:
    """Offline runs of ``campaign`` that were reserved but never folded back, each with its
    ``launch_dir`` (one query for all of them, not one per run)."""
    fw_ids = [doc["fw_id"] for doc in launchpad.fireworks.find(campaign_fireworks(campaign), {"fw_id": 1})]
    runs = list(launchpad.offline_runs.find({"completed": False, "deprecated": {"$ne": True}, "fw_id": {"$in": fw_ids}}))
    launch_dirs = {
        doc["launch_id"]: doc["launch_dir"]
        for doc in launchpad.launches.find({"launch_id": {"$in": [run["launch_id"] for run in runs]}},
                                           {"launch_id": 1, "launch_dir": 1})
    }
    return [{**run, "launch_dir": launch_dirs[run["launch_id"]]} for run in runs]


def requeue(launchpad: LaunchPad, run: dict) -> None:
    """Put the firework of an abandoned offline run back to READY (it resumes from its checkpoints)."""
    launchpad.forget_offline(run["launch_id"], launch_mode=True)
    launchpad.rerun_fw(run["fw_id"])
