"""Put a campaign's tasks into the store, adding only what is not there yet.

A campaign is one FireWorks workflow (``metadata.campaign``). A task is already stored when a
firework of the campaign carries its digest (campaign/tasks.py), so submitting the same spec twice
adds nothing, and adding a model or a temperature adds only the tasks that are new, linked to the
stored parents they depend on (completed parents make the new children READY at once).
"""

from __future__ import annotations

from fireworks import LaunchPad
from fireworks.core.launchpad import WFLock

from records.store import CAMPAIGN_SPEC_KEY, campaign_fireworks
from workflows.build import Task, build_firework, build_workflow


def stored_digests(launchpad: LaunchPad, campaign: str) -> dict[str, int]:
    """digest -> fw_id of every firework stored for ``campaign``."""
    cursor = launchpad.fireworks.find(campaign_fireworks(campaign), {"fw_id": 1, f"spec.{CAMPAIGN_SPEC_KEY}.digest": 1})
    return {doc["spec"][CAMPAIGN_SPEC_KEY]["digest"]: doc["fw_id"] for doc in cursor}


def add_tasks(launchpad: LaunchPad, tasks: list[Task], campaign: str, spec_hash: str) -> list[Task]:
    """Store the tasks that are new (given parents first); returns them."""
    stored = stored_digests(launchpad, campaign)
    new = [task for task in tasks if task.digest not in stored]
    if not new:
        return []
    if not stored:
        launchpad.add_wf(build_workflow(new, campaign, spec_hash))
        return new

    anchor = next(iter(stored.values()))
    workflow = launchpad.get_wf_by_fw_id_lzyfw(anchor)
    digest_of = {task.key: task.digest for task in tasks}
    new_ids = {task.key: -(index + 1) for index, task in enumerate(new)}
    for task in new:
        fw_id = new_ids[task.key]
        workflow.id_fw[fw_id] = build_firework(task, campaign, spec_hash, fw_id)
        workflow.links[fw_id] = []
        workflow.fw_states[fw_id] = "WAITING"
    for task in new:
        for parent in task.parents:
            parent_id = new_ids.get(parent, stored.get(digest_of[parent]))
            workflow.links[parent_id].append(new_ids[task.key])
    updated = set(new_ids.values())
    for fw_id in new_ids.values():
        updated = workflow.refresh(fw_id, updated)
    if spec_hash not in workflow.metadata.setdefault("spec_hashes", []):
        workflow.metadata["spec_hashes"].append(spec_hash)
    with WFLock(launchpad, anchor):
        launchpad._update_wf(workflow, updated)  # FireWorks' own append_wf path, generalised to many parents
    return new


def retry_failed(launchpad: LaunchPad, campaign: str) -> list[str]:
    """Put the campaign's FIZZLED fireworks back to READY (once their cause is fixed); returns their names."""
    failed = list(launchpad.fireworks.find(campaign_fireworks(campaign, state="FIZZLED"), {"fw_id": 1, "name": 1}))
    for doc in failed:
        launchpad.rerun_fw(doc["fw_id"])
    return [doc["name"] for doc in failed]
