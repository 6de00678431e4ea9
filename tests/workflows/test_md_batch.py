"""md.batch: one MD firework per batch of runs, integrated together by the torch engine."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from campaign.spec import SpecError, parse_spec
from campaign.submission import add_tasks
from campaign.tasks import _md_run_entries, expand
from mlff.checkpoint import save_model_checkpoint
from mlff.md.protocol import MDProtocol
from mlff.models import build_model
from mlff.trajectory import read_trajectory
from model_sizes import SMALL_HPARAMS
from records.store import EmbeddedStore
from records.summaries import summary_path
from repo_paths import EXAMPLES
from workflows.firetasks import FIRETASKS
from workflows.inputs import MDBatchInputs
from workflows.stages.md import md


@pytest.fixture(scope="module")
def quickstart() -> dict:
    return yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())


def _batched(quickstart: dict, batch: str) -> dict:
    data = copy.deepcopy(quickstart)
    data["md"].update(engine="torch", batch=batch)
    return data


def _tasks(data: dict, base_dir: Path = Path("/campaigns")):
    return expand(parse_spec(data), base_dir)


def _runs(tasks) -> dict:
    """(model, material, T, repetition) -> (seed, trajectory path) of every MD run."""
    return {
        (task.labels["model"], task.labels["material"], run["temperature_K"], run["repetition"]): (run["seed"], run["path"])
        for task in tasks if task.stage == "md"
        for run in _md_run_entries(task)
    }


@pytest.mark.parametrize("batch", ["repetitions", "all"])
def test_one_md_task_per_batch_with_the_runs_and_seeds_of_the_unbatched_spec(quickstart, batch):
    spec = parse_spec(quickstart)
    lone, batched = _tasks(_batched(quickstart, "none")), _tasks(_batched(quickstart, batch))
    md = [t for t in batched if t.stage == "md"]
    per_batch = spec.md.repetitions * (1 if batch == "repetitions" else len(spec.md.temperatures_K))
    assert len(md) == len(spec.models) * len(spec.materials) * len(spec.md.temperatures_K) * spec.md.repetitions // per_batch
    assert all(len(t.inputs["replicas"]) == per_batch for t in md)
    if batch == "repetitions":
        assert all(len({r["temperature_K"] for r in t.inputs["replicas"]}) == 1 for t in md)
    lone_runs, batched_runs = _runs(lone), _runs(batched)
    assert lone_runs.keys() == batched_runs.keys()
    assert {key: seed for key, (seed, _) in lone_runs.items()} == {key: seed for key, (seed, _) in batched_runs.items()}
    assert len({path for _, path in batched_runs.values()}) == len(batched_runs)

    for analyze in (t for t in batched if t.stage == "analyze" and t.labels["model"] != "reference"):
        mine = [t for t in md if (t.labels["model"], t.labels["material"]) == (analyze.labels["model"], analyze.labels["material"])]
        assert {t.key for t in mine} <= set(analyze.parents)
        expected = {path for t in mine for path in t.inputs["out_paths"]}
        assert {entry["path"] for entry in analyze.inputs["runs"]} == expected


def test_batching_keeps_every_other_task_and_resubmitting_adds_nothing(quickstart, tmp_path):
    lone, batched = _tasks(_batched(quickstart, "none"), tmp_path), _tasks(_batched(quickstart, "repetitions"), tmp_path)
    unchanged = {t.key: t.digest for t in lone if t.stage in ("reference", "train", "predict")}
    assert unchanged == {t.key: t.digest for t in batched if t.stage in ("reference", "train", "predict")}
    data = _batched(quickstart, "repetitions")
    store, spec_hash = EmbeddedStore(tmp_path / "store.json"), parse_spec(data).spec_hash()
    with store.write() as launchpad:
        assert len(add_tasks(launchpad, batched, "quickstart", spec_hash)) == len(batched)
    with store.write() as launchpad:
        assert add_tasks(launchpad, _tasks(data, tmp_path), "quickstart", spec_hash) == []


@pytest.mark.parametrize("engine", ["ase", "lammps"])
def test_batching_needs_the_torch_engine(quickstart, engine):
    data = copy.deepcopy(quickstart)
    data["md"].update(engine=engine, batch="repetitions")
    with pytest.raises(SpecError, match=r"md: batch: 'repetitions' needs engine: torch"):
        parse_spec(data)


def test_md_stage_of_a_batch_writes_one_trajectory_and_summary_per_replica(quickstart, tmp_path):
    data = _batched(quickstart, "all")
    data["md"].update(temperatures_K=[600, 900], repetitions=2, production_ps=0.02, discard_ps=0.01)
    data["md"]["ramp"] = {"start_K": 300, "ramp_ps": 0.01}
    task = next(t for t in _tasks(data, tmp_path) if t.stage == "md" and t.labels["model"] == "schnet")
    torch.manual_seed(0)
    checkpoint = tmp_path / "best.pt"
    save_model_checkpoint(checkpoint, build_model("schnet", **SMALL_HPARAMS["schnet"]), dataset_hash="test")
    inputs = {**task.inputs, "checkpoint": str(checkpoint), "structure": "Li2S", "device": "cpu"}

    parsed = FIRETASKS["md"].parse(inputs, str(tmp_path))  # as the firetask does: paths under the campaign's folder
    assert isinstance(parsed, MDBatchInputs)
    outcome = md(parsed)

    replicas, paths = inputs["replicas"], parsed.out_paths
    assert all(path.startswith(str(tmp_path)) for path in paths)
    assert len(outcome["summary"]["runs"]) == len(replicas) == len(paths) == 4
    assert inputs["tabulate_filters"] and all(summary["tabulated_filters"] for summary in outcome["summary"]["runs"])
    for replica, path, summary in zip(replicas, paths, outcome["summary"]["runs"], strict=True):
        trajectory = read_trajectory(path)
        assert trajectory.metadata["seed"] == replica["seed"]
        assert trajectory.metadata["target_temperature_K"] == replica["temperature_K"]
        assert trajectory.n_frames == summary["n_frames_written"] == MDProtocol(**replica["protocol"]).n_production_steps
        assert summary_path(path).is_file()
    first_frames = [read_trajectory(path).positions_A[0] for path in paths]
    assert not np.allclose(first_frames[0], first_frames[1])  # own seeds, own trajectories
