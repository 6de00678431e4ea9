"""Stores of earlier releases brought up to date: relative paths, and analyses made again under today's verdict.

**Relative paths** (release 0.1.0).
That release stored absolute paths in every task's inputs, and so in every digest: a campaign copied
or moved elsewhere expanded to new digests, and ``submit`` would have added its whole work again.
``migrate_absolute_paths`` finds such fireworks, recomputes what the release stored for them
(``expand(..., absolute=True)`` at the folder the release wrote them under), and for every stored
task that matches, renames its output directory (named after its digest) to the new digest's, and
rewrites its digest and inputs, and the result documents that name its files, to the relative
form. Fireworks of an older spec than the present one are left as they were.

**The noise-aware verdict** (stores written before it). ``rerun_outdated_analyses`` puts back to READY
every completed analyze firework whose run documents predate the noise-aware stability verdict
(``analysis/rdf_noise.py``; they have no ``paper_stable``), so that the next run redoes it and
replaces its documents: the trajectories are kept, only the analysis runs again.
"""

from __future__ import annotations

import os
from pathlib import Path

from fireworks import LaunchPad

from campaign.spec import CampaignSpec
from campaign.tasks import expand
from records.results import PATH_FIELDS
from records.store import CAMPAIGN_SPEC_KEY, StoreError, campaign_fireworks, results_collection
from workflows.build import Task

OUTPUT_INPUTS = ("out_path", "out_dir", "out_paths")  # the inputs naming a task's own directory


def _task_dir(inputs: dict) -> str | None:
    """The directory of a task's own outputs, from its stored inputs."""
    if "out_dir" in inputs:
        return inputs["out_dir"]
    path = inputs.get("out_path") or (inputs.get("out_paths") or [None])[0]
    return None if path is None else os.path.dirname(path)


def _written_under(task_dir: str, workdir: str, key: str) -> str | None:
    """The campaign folder a release-0.1.0 task directory ``<folder>/<workdir>/<key>/<digest[:12]>`` was written under."""
    suffix = f"/{os.path.normpath(workdir)}/{key}/"
    head, found, _ = task_dir.rpartition(suffix)
    return head if found else None


def migrate_absolute_paths(launchpad: LaunchPad, spec: CampaignSpec, root: Path, tasks: list[Task]) -> list[str]:
    """Migrate the campaign's fireworks written with absolute paths to relative ones (see the module
    docstring); ``root`` is the campaign's folder now and ``tasks`` its expansion. Returns the keys migrated."""
    campaign, workdir = spec.campaign.name, spec.campaign.workdir
    legacy = [
        doc for doc in launchpad.fireworks.find(campaign_fireworks(campaign), {"fw_id": 1, "spec": 1, "state": 1})
        if os.path.isabs(_task_dir(doc["spec"]["_tasks"][0]["inputs"]) or "")
    ]
    if not legacy or os.path.isabs(workdir):  # an absolute workdir was never relocatable
        return []
    first = legacy[0]["spec"]
    old_root = _written_under(_task_dir(first["_tasks"][0]["inputs"]), workdir, first[CAMPAIGN_SPEC_KEY]["key"])
    if old_root is None:
        return []
    old_tasks = {task.key: task for task in expand(spec, Path(old_root), absolute=True)}
    new_tasks = {task.key: task for task in tasks}
    moves: dict[str, str] = {}  # old task directory (relative) -> new one
    migrated = []
    for doc in legacy:
        identity = doc["spec"][CAMPAIGN_SPEC_KEY]
        old, new = old_tasks.get(identity["key"]), new_tasks.get(identity["key"])
        if old is None or new is None or old.digest != identity["digest"]:
            continue  # a task of another version of the spec: left as the release stored it
        if doc["state"] in ("RESERVED", "RUNNING") and spec.campaign.launcher != "local":
            raise StoreError(f"{identity['key']} was stored by release 0.1.0 and is {doc['state']}: migrate its "
                             "store once no array task runs (`campaign status` shows them)")
        old_dir = os.path.relpath(_task_dir(doc["spec"]["_tasks"][0]["inputs"]), old_root)
        new_dir = _task_dir(new.inputs)
        if (root / old_dir).exists() and not (root / new_dir).exists():
            (root / old_dir).rename(root / new_dir)
        moves[old_dir] = new_dir
        launchpad.fireworks.update_one({"fw_id": doc["fw_id"]}, {"$set": {
            f"spec.{CAMPAIGN_SPEC_KEY}.digest": new.digest, "spec._tasks.0.inputs": new.inputs,
        }})
        results_collection(launchpad).update_many({"campaign": campaign, "task_digest": old.digest},
                                                  {"$set": {"task_digest": new.digest}})
        migrated.append(identity["key"])
    _relocate_result_files(launchpad, campaign, old_root, moves)
    return migrated


def _relocate_result_files(launchpad: LaunchPad, campaign: str, old_root: str, moves: dict[str, str]) -> None:
    """Result documents' absolute files under ``old_root``: relative, in their task's new directory."""
    collection = results_collection(launchpad)
    for doc in collection.find({"campaign": campaign}):
        changed = {}
        for field in PATH_FIELDS:
            value = doc.get(field)
            if not value or not os.path.isabs(value) or not Path(value).is_relative_to(old_root):
                continue
            relative = os.path.relpath(value, old_root)
            for old_dir, new_dir in moves.items():
                if relative.startswith(old_dir + os.sep):
                    relative = new_dir + relative[len(old_dir):]
            changed[field] = relative
        if changed:
            collection.update_one({"_id": doc["_id"]}, {"$set": changed})


def rerun_outdated_analyses(launchpad: LaunchPad, campaign: str) -> list[str]:
    """Put back to READY the campaign's completed analyses whose run documents predate the noise-aware
    verdict (see the module docstring); returns their names."""
    results = results_collection(launchpad)
    rerun = []
    for doc in launchpad.fireworks.find(campaign_fireworks(campaign, state="COMPLETED",
                                                           **{f"spec.{CAMPAIGN_SPEC_KEY}.stage": "analyze"}),
                                        {"fw_id": 1, "name": 1, "spec._tasks": 1}):
        inputs = doc["spec"]["_tasks"][0]["inputs"]
        outdated = {"campaign": campaign, "kind": "run", "source": inputs["source"], "material": inputs["material"],
                    "paper_stable": {"$exists": False}}
        if results.count_documents(outdated, limit=1):
            launchpad.rerun_fw(doc["fw_id"])
            rerun.append(doc["name"])
    return rerun

