"""The local launcher: run a campaign's rockets one after another on this machine until none is ready.

Each rocket is reserved, run offline and folded back (launchers/offline.py), so the store is locked
only for the moments of reserving and folding, and ``campaign status`` works while a rocket runs.
One local launcher per campaign at a time: it holds a lock file that names its process and host,
and a second one exits with a clear message instead of running the same work twice.

Ctrl-C or SIGTERM is an interrupt, not a failure: the running stage writes its checkpoint and
stops (``mlff.preemption``), its firework goes back to READY, and the launcher returns without
starting more work; a second Ctrl-C stops the stage at once, which then resumes from its last
checkpoint. A launcher killed outright leaves its firework RESERVED or RUNNING; the next run puts it
back to READY.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from launchers.offline import (
    campaign_worker,
    fold,
    fold_all,
    outcome,
    requeue,
    reserve,
    run_rocket,
    stop_details,
    timestamped_dir,
    unfinished_launches,
)
from mlff import preemption
from records.errors import CampaignError
from records.store import EmbeddedStore, MongoStore, campaign_fireworks

LOCK_FILE = "local-launcher.lock"  # in the campaign's launch directory


class LauncherBusy(CampaignError, RuntimeError):
    """Another local launcher is already running this campaign."""


class LockError(CampaignError, OSError):
    """The launcher's lock file cannot be made or opened."""


@dataclass
class LocalRun:
    completed: list[str] = field(default_factory=list)
    fizzled: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    stopped_by: int | None = None  # the signal that interrupted the run, or None when it ran out of work
    interrupted: dict[str, str | None] = field(default_factory=dict)  # name -> its checkpoint (None: it starts again)


@contextlib.contextmanager
def _exclusive(lock_path: Path, campaign: str) -> Iterator[None]:
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(lock_path, "a+")
    except OSError as err:  # a directory in its place, or no permission
        raise LockError(f"{lock_path}: cannot open the local launcher's lock file ({err.strerror}); it must be a "
                        "file this user can write") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(lock_path)
            raise LauncherBusy(
                f"another local launcher is running campaign {campaign!r} (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}); wait for it or stop it first"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _holder(lock_path: Path) -> dict:
    """What the lock file says of the launcher that holds (or held) it: pid and host."""
    try:
        return json.loads(lock_path.read_text())
    except (OSError, ValueError):
        return {}


def live_launcher(launch_root: Path) -> dict | None:
    """The pid and host of the local launcher running in ``launch_root``, or None when none runs. Writes nothing."""
    lock_path = Path(launch_root) / LOCK_FILE
    if not lock_path.exists():
        return None
    with open(lock_path) as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(lock_path)
        fcntl.flock(lock, fcntl.LOCK_UN)
    return None


def run_local(
    store: EmbeddedStore | MongoStore,
    campaign: str,
    launch_root: Path,
    echo: Callable[[str], None] = print,
    root: Path | None = None,
) -> LocalRun:
    """Run every ready firework of ``campaign`` until none is left or an interrupt (Ctrl-C, SIGTERM)
    stops the launcher; returns what happened. ``root`` is the campaign's folder, which stored paths
    are relative to."""
    report = LocalRun()
    worker = campaign_worker(campaign, root=root)
    with _exclusive(launch_root / LOCK_FILE, campaign), preemption.stopping_on(preemption.INTERRUPT_SIGNALS):
        _requeue_abandoned(store, campaign, report, echo)
        while not preemption.requested():
            launch_dir = timestamped_dir(launch_root, "launcher")
            with store.write() as launchpad:
                reserved = reserve(launchpad, worker, launch_dir)
                if reserved is None:
                    break
                fw_id, launch_id = reserved
                name = launchpad.get_fw_by_id(fw_id).name
                if preemption.requested():  # interrupted while reserving: leave it for the next run
                    requeue(launchpad, {"fw_id": fw_id, "launch_id": launch_id})
                    break
                remaining = launchpad.fireworks.count_documents(
                    campaign_fireworks(campaign, state={"$in": ["READY", "WAITING"]})
                )
            echo(f"── {name}  (fw {fw_id}; {remaining} more waiting or ready)")
            run_rocket(launch_dir, worker)
            with store.write() as launchpad:
                state = fold(launchpad, launch_id)
            if state == "COMPLETED":
                report.completed.append(name)
            elif state == "FIZZLED":
                report.fizzled.append(name)
                echo(f"   {name} FIZZLED; its error is in {launch_dir}")
            else:  # interrupted, or corrected by an error handler: READY again, picked up below or next time
                report.requeued.append(name)
                stopped = stop_details(launch_dir)
                if stopped is None:
                    echo(f"   {name} back to {state}; its checkpoint is kept in its directory, see {launch_dir}")
                else:  # the caller tells the user, in one line with the rest of the interrupted run
                    report.interrupted[name] = stopped.get("checkpoint_path")
        report.stopped_by = preemption.requested_signal()
    return report


def _requeue_abandoned(store, campaign: str, report: LocalRun, echo: Callable[[str], None]) -> None:
    """Fold back launches that finished after their launcher stopped; put those that never finished back to READY."""
    with store.write() as launchpad:
        finished = []
        for run in unfinished_launches(launchpad, campaign):
            if outcome(run["launch_dir"]) is not None:
                finished.append(run["launch_id"])
            else:
                requeue(launchpad, run)
                report.requeued.append(run["name"])
        fold_all(launchpad, finished)
    if report.requeued:
        echo(f"requeued {len(report.requeued)} interrupted firework(s): {', '.join(report.requeued)}")
