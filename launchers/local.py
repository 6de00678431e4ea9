"""The local launcher: run a campaign's rockets one after another on this machine until none is ready.

Each rocket is reserved, run offline and folded back (launchers/offline.py), so the store is locked
only for the moments of reserving and folding, and ``campaign status`` works while a rocket runs.
One local launcher per campaign at a time: a second one exits with a clear message instead of
running the same work twice. Interrupting it (Ctrl-C) loses nothing that finished; the next run
puts the interrupted firework back to READY, and it restarts from its checkpoints.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from records.store import EmbeddedStore, MongoStore, campaign_fireworks
from launchers.offline import (
    campaign_worker,
    fold,
    fold_all,
    outcome,
    requeue,
    reserve,
    run_rocket,
    timestamped_dir,
    unfinished_launches,
)


class LauncherBusy(RuntimeError):
    """Another local launcher is already running this campaign."""


@dataclass
class LocalRun:
    completed: list[str] = field(default_factory=list)
    fizzled: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _exclusive(lock_path: Path, campaign: str) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise LauncherBusy(
                f"another local launcher is running campaign {campaign!r} (pid {lock.read().strip() or '?'}); "
                "wait for it or stop it first"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run_local(
    store: EmbeddedStore | MongoStore,
    campaign: str,
    launch_root: Path,
    echo: Callable[[str], None] = print,
) -> LocalRun:
    """Run every ready firework of ``campaign`` until none is left; returns what happened."""
    report = LocalRun()
    worker = campaign_worker(campaign)
    with _exclusive(launch_root / "local-launcher.lock", campaign):
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
        while True:
            launch_dir = timestamped_dir(launch_root, "launcher")
            with store.write() as launchpad:
                reserved = reserve(launchpad, worker, launch_dir)
                if reserved is None:
                    break
                fw_id, launch_id = reserved
                name = launchpad.get_fw_by_id(fw_id).name
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
            else:  # preempted, or corrected by an error handler: READY again and picked up below
                report.requeued.append(name)
                echo(f"   {name} requeued ({state}); see {launch_dir}")
    return report
