"""Turn tasks into FireWorks objects: pure functions, testable without a database."""

from __future__ import annotations

from fireworks import Firework, Workflow

from campaign.tasks import Task
from workflows.firetasks import FIRETASKS

# Slurm array categories (see slurm_templates/): GPU work and CPU work.
CATEGORY = {"reference": "gpu", "train": "gpu", "predict": "gpu", "md": "gpu", "analyze": "cpu"}
# Higher runs first among READY fireworks: finish what unblocks the most downstream work.
PRIORITY = {"reference": 50, "train": 40, "md": 30, "predict": 20, "analyze": 10}


def build_firework(task: Task, campaign: str, spec_hash: str, fw_id: int) -> Firework:
    """One firework running the task's stage; ``spec._campaign`` carries its identity."""
    spec = {
        "_campaign": {
            "name": campaign,
            "key": task.key,
            "digest": task.digest,
            "stage": task.stage,
            "spec_hash": spec_hash,
            "labels": task.labels,
        },
        "_category": CATEGORY[task.stage],
        "_priority": PRIORITY[task.stage],
    }
    return Firework([FIRETASKS[task.stage](inputs=task.inputs)], spec=spec, name=task.key, fw_id=fw_id)


def build_workflow(tasks: list[Task], campaign: str, spec_hash: str) -> Workflow:
    """A workflow of all ``tasks`` (given parents first) with links following task parents."""
    fw_ids = {task.key: -(index + 1) for index, task in enumerate(tasks)}
    fireworks = [build_firework(task, campaign, spec_hash, fw_ids[task.key]) for task in tasks]
    links = {fw_ids[task.key]: [] for task in tasks}
    for task in tasks:
        for parent in task.parents:
            links[fw_ids[parent]].append(fw_ids[task.key])
    return Workflow(
        fireworks,
        links_dict=links,
        name=f"campaign {campaign}",
        metadata={"campaign": campaign, "spec_hashes": [spec_hash]},
    )
