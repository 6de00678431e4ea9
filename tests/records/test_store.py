"""The embedded store under concurrency and failure; stock `lpad` reads it; a real MongoDB when given."""

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from campaign.spec import parse_spec
from campaign.submission import add_tasks
from campaign.tasks import expand
from records.settings import StoreSpec
from records.store import EmbeddedStore, open_store
from repo_paths import EXAMPLES

CAMPAIGN = [str(Path(sys.executable).with_name("campaign"))]


def _spec(tmp_path: Path, name: str) -> Path:
    data = yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())
    data["campaign"]["name"] = name
    data["campaign"]["store"] = {"embedded": "shared-store.json"}
    data["campaign"]["workdir"] = f"runs-{name}"
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_failed_write_session_leaves_the_file_untouched(tmp_path):
    store = EmbeddedStore(tmp_path / "store.json")
    with store.write() as launchpad:
        launchpad.db.marker.insert_one({"n": 1})
    before = store.path.read_bytes()
    with pytest.raises(RuntimeError, match="boom"), store.write() as launchpad:
        launchpad.db.marker.insert_one({"n": 2})
        raise RuntimeError("boom")
    with store.read() as launchpad:
        launchpad.db.marker.insert_one({"n": 3})  # a reader's change is never saved
    assert store.path.read_bytes() == before
    assert not list(tmp_path.glob("*.tmp"))


def test_a_corrupt_store_file_is_a_clear_error(tmp_path):
    path = tmp_path / "store.json"
    path.write_text("{not json")
    with pytest.raises(Exception, match=f"{path}: cannot read the embedded store"), EmbeddedStore(path).read():
        pass


@pytest.mark.slow
def test_four_concurrent_campaign_processes_lose_and_duplicate_nothing(tmp_path):
    shared = _spec(tmp_path, "shared")
    own = [_spec(tmp_path, f"c{i}") for i in range(4)]
    processes = [
        subprocess.Popen(
            ["bash", "-c", " && ".join(f"{' '.join(CAMPAIGN)} submit --no-run {p}" for p in (own[i], shared, own[i]))],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(4)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    n_tasks = len(expand(parse_spec(yaml.safe_load(shared.read_text())), tmp_path))

    with EmbeddedStore(tmp_path / "shared-store.json").read() as launchpad:
        fireworks = list(launchpad.fireworks.find({}, {"fw_id": 1, "spec._campaign": 1}))
        workflows = list(launchpad.workflows.find({}, {"metadata": 1, "nodes": 1}))
    per_campaign = {}
    for fw in fireworks:
        per_campaign.setdefault(fw["spec"]["_campaign"]["name"], []).append(fw["spec"]["_campaign"]["digest"])
    assert sorted(per_campaign) == ["c0", "c1", "c2", "c3", "shared"]
    for name, digests in per_campaign.items():
        assert len(digests) == n_tasks == len(set(digests)), name
    assert len({fw["fw_id"] for fw in fireworks}) == len(fireworks) == 5 * n_tasks
    assert sorted(w["metadata"]["campaign"] for w in workflows) == ["c0", "c1", "c2", "c3", "shared"]
    added = [line for out in outputs for line in out.splitlines() if "campaign 'shared'" in line]
    assert sorted(int(line.split(": ")[1].split()[0]) for line in added) == [0, 0, 0, n_tasks]


def test_stock_lpad_reads_the_embedded_store(tmp_path):
    spec_path = _spec(tmp_path, "stock")
    spec = parse_spec(yaml.safe_load(spec_path.read_text()))
    store = EmbeddedStore(tmp_path / "shared-store.json")
    with store.write() as launchpad:
        add_tasks(launchpad, expand(spec, tmp_path), "stock", spec.spec_hash())
    copy = tmp_path / "copy-for-lpad.json"  # stock lpad saves on exit, unlocked: give it a copy
    shutil.copy(store.path, copy)
    lpad = Path(sys.executable).with_name("lpad")
    result = subprocess.run(
        [str(lpad), "get_fws", "-n", "train/schnet", "-d", "all"],
        env={**os.environ, "MONGOMOCK_SERVERSTORE_FILE": str(copy)}, capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    firework = json.loads(result.stdout)
    assert firework["name"] == "train/schnet" and firework["state"] == "WAITING"
    assert firework["spec"]["_campaign"]["name"] == "stock"


@pytest.mark.mongodb
@pytest.mark.skipif(not os.environ.get("CAMPAIGN_TEST_MONGODB_URI"), reason="CAMPAIGN_TEST_MONGODB_URI is not set")
def test_submission_on_a_real_mongodb(tmp_path):
    database = f"mlff_campaign_test_{uuid.uuid4().hex[:8]}"
    store = open_store(StoreSpec(uri=os.environ["CAMPAIGN_TEST_MONGODB_URI"], database=database), tmp_path)
    spec = parse_spec(yaml.safe_load(_spec(tmp_path, "mongo").read_text()))
    tasks = expand(spec, tmp_path)
    try:
        with store.write() as launchpad:
            assert len(add_tasks(launchpad, tasks, "mongo", spec.spec_hash())) == len(tasks)
        with store.write() as launchpad:
            assert add_tasks(launchpad, tasks, "mongo", spec.spec_hash()) == []
            assert launchpad.fireworks.count_documents({"spec._campaign.name": "mongo"}) == len(tasks)
    finally:
        with store.write() as launchpad:
            launchpad.connection.drop_database(database)
