"""Stores written by release 0.1.0 keep working: their digests and stored inputs are recomputed exactly,
and a campaign that release left half-run, moved to another folder, is migrated to relative paths,
resumes and finishes (tests/fixtures/release-0.1.0)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from campaign.cli import main
from campaign.spec import load_spec, parse_spec
from campaign.tasks import expand
from records.store import EmbeddedStore, results_collection
from repo_paths import FIXTURES
from workflows.firetasks import FIRETASKS

FIXTURE = FIXTURES / "release-0.1.0"
RESTORED = Path("/tmp/mlff-campaign-release-0.1.0")  # where the release wrote the fixture (it stored absolute paths)
QUICKSTART_BASE = Path("/campaigns")


def quickstart_variants() -> dict[str, dict]:
    """The release's examples/quickstart.yaml and the variants its digests were recorded for (make_digests.py)."""
    base = yaml.safe_load((FIXTURE / "quickstart.yaml").read_text())
    variants = {name: copy.deepcopy(base) for name in (
        "quickstart", "quickstart_torch_batch_repetitions", "quickstart_torch_batch_all", "quickstart_lammps",
        "quickstart_li2s_import")}
    variants["quickstart_torch_batch_repetitions"]["md"].update(engine="torch", batch="repetitions")
    variants["quickstart_torch_batch_all"]["md"].update(engine="torch", batch="all")
    variants["quickstart_lammps"]["md"]["engine"] = "lammps"
    li2s = variants["quickstart_li2s_import"]["materials"]["Li2S"]
    del li2s["generate"]
    li2s["import"] = [
        {"path": "li2s-800.xyz", "temperature_K": 800, "timestep_fs": 2.0},
        {"path": "li2s-1200.xyz", "temperature_K": 1200, "timestep_fs": 2.0},
    ]
    return variants


def _shape(value):
    """The shape of stored inputs: their keys, nested, without the values."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value[:1]]
    return type(value).__name__


def test_release_digests_are_recomputed_exactly_and_stored_inputs_keep_their_shape():
    """The migration relies on expand(absolute=True) giving what the release stored, digests and inputs;
    today's tasks hold the same inputs with paths relative to the campaign's folder."""
    recorded = json.loads((FIXTURE / "digests.json").read_text())
    specs = {name: (parse_spec(data), QUICKSTART_BASE) for name, data in quickstart_variants().items()}
    specs["fixture"] = (load_spec(FIXTURE / "campaign" / "spec.yaml"), RESTORED)
    assert set(specs) == set(recorded) - {"inputs_examples"}
    for name, (spec, base_dir) in specs.items():
        legacy = expand(spec, base_dir, absolute=True)
        assert {task.key: task.digest for task in legacy} == recorded[name], name
        by_key = {task.key: task for task in legacy}
        relative = {task.key: task for task in expand(spec, base_dir)}
        for example in recorded["inputs_examples"][name].values():
            assert by_key[example["key"]].inputs == example["inputs"], (name, example["key"])
            task = relative[example["key"]]
            assert _shape(task.inputs) == _shape(example["inputs"]), (name, task.key)
            FIRETASKS[task.stage].parse(example["inputs"])  # the release's stored inputs still parse
            out = task.inputs.get("out_path") or task.inputs.get("out_dir") or task.inputs["out_paths"][0]
            assert not Path(out).is_absolute()


@pytest.fixture
def moved_campaign(tmp_path):
    """The release's half-run campaign, copied to another folder than the one it was written in."""
    shutil.copytree(FIXTURE / "campaign", tmp_path / "moved")
    return tmp_path / "moved" / "spec.yaml"


@pytest.mark.slow
def test_a_campaign_the_release_left_half_run_is_migrated_moved_resumed_and_finished(moved_campaign):
    root = moved_campaign.parent
    submitted = CliRunner().invoke(main, ["submit", "--no-run", str(moved_campaign)])
    assert submitted.exit_code == 0, submitted.output
    assert "migrated 10 task(s)" in submitted.output and "0 new task(s), 10 already stored" in submitted.output
    again = CliRunner().invoke(main, ["submit", "--no-run", str(moved_campaign)])
    assert "migrated" not in again.output and "0 new task(s)" in again.output

    ran = CliRunner().invoke(main, ["run", str(moved_campaign)])
    assert ran.exit_code == 0, ran.output + repr(ran.exception)
    assert "requeued 1 interrupted firework(s): md/schnet/Li2S/1000K/rep0" in ran.output
    assert "done: 5 completed, 0 failed" in ran.output

    with EmbeddedStore(root / "store.json").read() as launchpad:
        states = {doc["name"]: doc["state"] for doc in launchpad.fireworks.find({}, {"name": 1, "state": 1})}
        docs = list(results_collection(launchpad).find({"campaign": "release-fixture"}))
    assert len(states) == 10 and set(states.values()) == {"COMPLETED"}
    kinds = sorted(doc["kind"] for doc in docs)
    # training, prediction (written by the release); 4 MD + 2 reference runs, 2 + 2 temperatures, 2 materials
    assert kinds == ["material"] * 2 + ["prediction"] + ["run"] * 6 + ["temperature"] * 4 + ["training"]
    for doc in docs:  # every file a document names is inside the moved campaign
        for field in ("checkpoint_path", "parity_path", "trajectory_path", "rdf_path"):
            if doc.get(field):
                assert not Path(doc[field]).is_absolute() and (root / doc[field]).is_file(), (field, doc[field])
    table = json.loads(CliRunner().invoke(main, ["results", str(moved_campaign), "--format", "json"]).output)
    assert [(row["model"], row["material"], row["n_runs"]) for row in table] == [("reference", "Li2S", 2), ("schnet", "Li2S", 4)]
