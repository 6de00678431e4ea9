"""expand(spec) -> tasks and build_workflow(tasks) -> Workflow are pure: tested without a database."""

import copy
from pathlib import Path

import pytest
import yaml

from campaign.spec import parse_spec
from campaign.submission import add_tasks
from campaign.tasks import count_by_stage, expand
from records.store import EmbeddedStore
from repo_paths import EXAMPLES
from workflows.build import STAGES, build_workflow


@pytest.fixture(scope="module")
def quickstart() -> dict:
    return yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())


def _tasks(data: dict, base_dir: Path = Path("/campaigns")):
    return expand(parse_spec(data), base_dir)


def test_tasks_come_parents_first_with_unique_keys(quickstart):
    tasks = _tasks(quickstart)
    seen = set()
    for task in tasks:
        assert task.key not in seen
        assert all(parent in seen for parent in task.parents), task.key
        seen.add(task.key)
    assert count_by_stage(tasks) == {"reference": 8, "train": 2, "predict": 4, "md": 16, "analyze": 6}


def test_md_runs_have_distinct_recorded_seeds_and_their_own_files(quickstart):
    md = [t for t in _tasks(quickstart) if t.stage == "md"]
    assert len({t.inputs["seed"] for t in md}) == len(md)
    assert len({t.inputs["out_path"] for t in md}) == len(md)
    assert all(t.inputs["out_path"].startswith("quickstart-runs/md/") for t in md)  # relative to the spec's folder
    assert {t.inputs["protocol"]["timestep_fs"] for t in md} == {2.0}


def test_expansion_is_deterministic(quickstart):
    first, second = _tasks(quickstart), _tasks(copy.deepcopy(quickstart))
    assert [(t.key, t.digest, t.inputs) for t in first] == [(t.key, t.digest, t.inputs) for t in second]


def _digests(tasks):
    return {t.key: t.digest for t in tasks}


def test_a_changed_md_setting_changes_only_md_and_its_analysis(quickstart):
    changed = copy.deepcopy(quickstart)
    changed["md"]["production_ps"] = 1.0
    before, after = _digests(_tasks(quickstart)), _digests(_tasks(changed))
    differ = {key.split("/")[0] for key in before if before[key] != after[key]}
    assert differ == {"md", "analyze"}
    # The reference analysis uses md.discard_ps only, which did not change... but its runs are untouched:
    assert before["train/schnet"] == after["train/schnet"]


def test_adding_a_temperature_keeps_every_existing_task(quickstart):
    bigger = copy.deepcopy(quickstart)
    bigger["md"]["temperatures_K"] = [800, 1000, 1200]
    before, after = _digests(_tasks(quickstart)), _digests(_tasks(bigger))
    kept = {key for key in before if not key.startswith(("analyze/", "predict/"))}
    assert all(before[key] == after[key] for key in kept)
    new = set(after) - set(before)
    assert {key.split("/")[0] for key in new} == {"reference", "md"}
    assert len([k for k in new if k.startswith("md/")]) == 2 * 2 * 2


def test_build_workflow_links_follow_task_parents(quickstart):
    tasks = _tasks(quickstart)
    workflow = build_workflow(tasks, "quickstart", "abc123")
    assert len(workflow.fws) == len(tasks)
    assert workflow.metadata == {"campaign": "quickstart", "spec_hashes": ["abc123"]}
    by_name = {fw.name: fw for fw in workflow.fws}
    for task in tasks:
        fw = by_name[task.key]
        parent_names = {by_name_id.name for by_name_id in workflow.fws if fw.fw_id in workflow.links[by_name_id.fw_id]}
        assert parent_names == set(task.parents), task.key
        assert fw.spec["_campaign"]["digest"] == task.digest
        assert fw.spec["_category"] == STAGES[task.stage].category
    md = by_name["md/schnet/LGPS/800K/rep0"]
    serialized = md.to_dict()["spec"]["_tasks"][0]
    assert serialized["_fw_name"] == "{{workflows.firetasks.MDTask}}"
    assert serialized["inputs"]["protocol"]["temperature_K"] == 800.0


def test_submitting_twice_adds_nothing_and_new_work_links_to_stored_parents(quickstart, tmp_path):
    store = EmbeddedStore(tmp_path / "store.json")
    tasks = _tasks(quickstart, tmp_path)
    spec_hash = parse_spec(quickstart).spec_hash()
    with store.write() as launchpad:
        assert len(add_tasks(launchpad, tasks, "quickstart", spec_hash)) == len(tasks)
    with store.write() as launchpad:
        assert add_tasks(launchpad, tasks, "quickstart", spec_hash) == []

    bigger = copy.deepcopy(quickstart)
    bigger["md"]["temperatures_K"] = [800, 1000, 1200]
    more = _tasks(bigger, tmp_path)
    with store.write() as launchpad:
        added = add_tasks(launchpad, more, "quickstart", parse_spec(bigger).spec_hash())
    assert {t.digest for t in added} == {t.digest for t in more} - {t.digest for t in tasks}
    assert {t.key for t in added if t.stage in ("reference", "md")} == {
        t.key for t in more if "/1000K/" in t.key
    }
    assert not [t for t in added if t.stage == "train"]

    with store.read() as launchpad:
        fireworks = list(launchpad.fireworks.find({}, {"fw_id": 1, "name": 1, "state": 1, "spec._campaign.digest": 1}))
        workflow = launchpad.workflows.find_one({"metadata.campaign": "quickstart"})
    assert len(fireworks) == len(tasks) + len(added)
    assert len({f["spec"]["_campaign"]["digest"] for f in fireworks}) == len(fireworks)
    ids = {f["spec"]["_campaign"]["digest"]: f["fw_id"] for f in fireworks}
    md_1000 = next(t for t in more if t.key == "md/schnet/LGPS/1000K/rep0")
    train_id = ids[next(t for t in more if t.key == "train/schnet").digest]
    assert ids[md_1000.digest] in workflow["links"][str(train_id)]
    assert len(workflow["metadata"]["spec_hashes"]) == 2
