"""Turn tasks into FireWorks objects: pure functions, testable without a database."""

from __future__ import annotations

from dataclasses import dataclass, field

from fireworks import Firework, Workflow

from records.store import CAMPAIGN_SPEC_KEY
from workflows.firetasks import FIRETASKS


@dataclass(frozen=True)
class Stage:
    """How a stage's fireworks are dispatched: the Slurm array category (slurm_templates/) and the
    priority among READY fireworks (higher runs first: finish what unblocks the most downstream work)."""

    category: str
    priority: int


# The stages in dependency order: the one table of them.
STAGES = {
    "reference": Stage(category="gpu", priority=50),
    "train": Stage(category="gpu", priority=40),
    "predict": Stage(category="gpu", priority=20),
    "md": Stage(category="gpu", priority=30),
    "analyze": Stage(category="cpu", priority=10),
}


@dataclass(frozen=True)
class Task:
    """One unit of work, one firework (campaign/tasks.py makes them)."""

    key: str
    stage: str
    inputs: dict  # JSON-serialisable inputs of the stage (workflows/inputs.py)
    parents: tuple[str, ...] = ()
    digest: str = ""
    labels: dict = field(default_factory=dict)  # model, material, temperature_K, repetition where they apply


def build_firework(task: Task, campaign: str, spec_hash: str, fw_id: int) -> Firework:
    """One firework running the task's stage; ``spec._campaign`` carries its identity."""
    spec = {
        CAMPAIGN_SPEC_KEY: {
            "name": campaign,
            "key": task.key,
            "digest": task.digest,
            "stage": task.stage,
            "spec_hash": spec_hash,
            "labels": task.labels,
        },
        "_category": STAGES[task.stage].category,
        "_priority": STAGES[task.stage].priority,
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
