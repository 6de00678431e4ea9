"""Stores written by release 0.1.0 keep working: the same specs expand to the same task digests and
stored inputs, and a campaign that release left half-run resumes and finishes (tests/fixtures/release-0.1.0)."""

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
RESTORED = Path("/tmp/mlff-campaign-release-0.1.0")  # the release stored absolute paths under this directory
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


def test_the_releases_specs_expand_to_its_digests_and_stored_inputs():
    recorded = json.loads((FIXTURE / "digests.json").read_text())
    expanded = {name: expand(parse_spec(data), QUICKSTART_BASE) for name, data in quickstart_variants().items()}
    expanded["fixture"] = expand(load_spec(FIXTURE / "campaign" / "spec.yaml"), RESTORED)
    assert set(expanded) == set(recorded) - {"inputs_examples"}
    for name, tasks in expanded.items():
        assert {task.key: task.digest for task in tasks} == recorded[name], name
        by_key = {task.key: task for task in tasks}
        for example in recorded["inputs_examples"][name].values():
            task = by_key[example["key"]]
            assert task.inputs == example["inputs"], (name, task.key)
            FIRETASKS[task.stage].parse(example["inputs"])  # the stored shape is what the firetask reads


@pytest.fixture
def restored_campaign():
    """The release's half-run campaign, copied to where the release wrote it."""
    if RESTORED.exists():
        shutil.rmtree(RESTORED)
    shutil.copytree(FIXTURE / "campaign", RESTORED)
    yield RESTORED / "spec.yaml"
    shutil.rmtree(RESTORED, ignore_errors=True)


@pytest.mark.slow
def test_a_campaign_the_release_left_half_run_resumes_and_finishes(restored_campaign):
    submitted = CliRunner().invoke(main, ["submit", "--no-run", str(restored_campaign)])
    assert submitted.exit_code == 0, submitted.output
    assert "0 new task(s), 10 already stored" in submitted.output

    ran = CliRunner().invoke(main, ["run", str(restored_campaign)])
    assert ran.exit_code == 0, ran.output + repr(ran.exception)
    assert "requeued 1 interrupted firework(s): md/schnet/Li2S/1000K/rep0" in ran.output
    assert "done: 5 completed, 0 failed" in ran.output

    with EmbeddedStore(RESTORED / "store.json").read() as launchpad:
        states = {doc["name"]: doc["state"] for doc in launchpad.fireworks.find({}, {"name": 1, "state": 1})}
        docs = list(results_collection(launchpad).find({"campaign": "release-fixture"}))
    assert len(states) == 10 and set(states.values()) == {"COMPLETED"}
    kinds = sorted(doc["kind"] for doc in docs)
    # training, prediction (written by the release); 4 MD + 2 reference runs, 2 + 2 temperatures, 2 materials
    assert kinds == ["material"] * 2 + ["prediction"] + ["run"] * 6 + ["temperature"] * 4 + ["training"]
    table = json.loads(CliRunner().invoke(main, ["results", str(restored_campaign), "--format", "json"]).output)
    assert [(row["model"], row["material"], row["n_runs"]) for row in table] == [("reference", "Li2S", 2), ("schnet", "Li2S", 4)]
