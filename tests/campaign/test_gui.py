"""`campaign gui`: FireWorks' web GUI over HTTP, scoped to one campaign, live, read-only, with a login."""

import base64
import json
import logging
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from matplotlib.image import imread

from campaign.cli import main
from campaign.gui import (
    CREDENTIALS_ENV,
    PASSWORD_ENV,
    USERNAME_ENV,
    Credentials,
    GuiError,
    ReadOnlyError,
    load_credentials,
    make_server,
    open_app,
    read_only,
)
from campaign.spec import parse_spec
from campaign.submission import add_tasks
from campaign.tasks import expand
from records.store import EmbeddedStore, StoreError
from repo_paths import EXAMPLES

CAMPAIGNS = ("alpha", "beta")
LOGIN = Credentials("curie", "s3cret-pa55")


def _spec_data(name: str) -> dict:
    data = yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())
    data["campaign"]["name"] = name
    data["campaign"]["store"] = {"embedded": "store.json"}
    return data


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A store file holding the quickstart campaign twice, as `alpha` and as `beta`."""
    root = tmp_path_factory.mktemp("gui-store")
    store = EmbeddedStore(root / "store.json")
    for name in CAMPAIGNS:
        spec = parse_spec(_spec_data(name))
        with store.write() as launchpad:
            add_tasks(launchpad, expand(spec, root), name, spec.spec_hash())
    return store.path


@pytest.fixture
def store(template, tmp_path) -> EmbeddedStore:
    shutil.copy(template, tmp_path / "store.json")
    return EmbeddedStore(tmp_path / "store.json")


def _fw_ids(store: EmbeddedStore, campaign: str) -> list[int]:
    with store.read() as launchpad:
        return sorted(doc["fw_id"] for doc in launchpad.fireworks.find({"spec._campaign.name": campaign}, {"fw_id": 1}))


def _total_fireworks(html: str) -> int:
    """The home page's total of fireworks (the link to /fw under the state table)."""
    (total,) = re.findall(r'<a href="/fw">([\d,]+)</a>', html)
    return int(total.replace(",", ""))


def _basic(credentials: Credentials) -> dict[str, str]:
    token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_index_and_lists_show_only_this_campaign(store):
    alpha, beta = _fw_ids(store, "alpha"), _fw_ids(store, "beta")
    assert alpha and beta and not set(alpha) & set(beta)
    with open_app("alpha", store) as app:
        client = app.test_client()
        home = client.get("/")
        listing = client.get("/fw/total/fw_id/ASCENDING/")
        workflows = client.get("/wf/")
    assert home.status_code == listing.status_code == workflows.status_code == 200
    assert _total_fireworks(home.text) == len(alpha)
    assert "campaign alpha" in home.text and "campaign beta" not in home.text
    assert "campaign alpha" in workflows.text and "campaign beta" not in workflows.text
    listed = {int(fw_id) for fw_id in re.findall(r'<a href="/fw/(\d+)">', listing.text)}
    assert listed and listed <= set(alpha)


def test_firework_and_workflow_pages_of_this_campaign_only(store):
    alpha, beta = _fw_ids(store, "alpha"), _fw_ids(store, "beta")
    with store.read() as launchpad:
        name = launchpad.fireworks.find_one({"fw_id": alpha[0]})["name"]
    with open_app("alpha", store) as app:
        client = app.test_client()
        page = client.get(f"/fw/{alpha[0]}")
        details = json.loads(client.get(f"/fw/{alpha[0]}/details").data)
        workflow = json.loads(client.get(f"/wf/{alpha[0]}/json").data)
        others = [client.get(url).status_code for url in
                  (f"/fw/{beta[0]}", f"/fw/{beta[0]}/details", f"/wf/{beta[0]}", f"/wf/{beta[0]}/json",
                   "/wf/metadata/campaign/beta/")]
    assert page.status_code == 200 and name in page.text
    assert details["fw_id"] == alpha[0] and details["spec"]["_campaign"]["name"] == "alpha"
    assert sorted(node["data"]["id"] for node in workflow["nodes"]) == alpha
    assert others == [404] * 5


def test_every_request_sees_the_store_as_it_is_now(store):
    alpha = _fw_ids(store, "alpha")
    with open_app("alpha", store) as app:
        client = app.test_client()
        before = client.get("/fw/DEFUSED/").text
        with store.write() as launchpad:  # the single writer changes the store after the GUI opened it
            launchpad.defuse_fw(alpha[-1])
        after = client.get("/fw/DEFUSED/").text
        page = client.get(f"/fw/{alpha[-1]}").text
    assert f'href="/fw/{alpha[-1]}"' not in before
    assert f'href="/fw/{alpha[-1]}"' in after
    assert "DEFUSED" in page


def test_the_gui_never_writes_the_store(store):
    alpha = _fw_ids(store, "alpha")
    content, mtime_ns = store.path.read_bytes(), store.path.stat().st_mtime_ns
    files = sorted(p.name for p in store.path.parent.iterdir())
    urls = ["/", "/?fw_query=%7B%22state%22%3A%22READY%22%7D", "/fw/", "/wf/", "/fw/READY/", f"/fw/{alpha[0]}",
            f"/fw/{alpha[0]}/details", f"/wf/{alpha[0]}", f"/wf/{alpha[0]}/json", "/report/", "/dashboard/",
            "/reports/fireworks/days/7/fig.png", "/reports/workflows/hours/12/fig.png"]
    with open_app("alpha", store) as app:
        client = app.test_client()
        assert [client.get(url).status_code for url in urls] == [200] * len(urls)
        served = app.lp
        with pytest.raises(ReadOnlyError):
            served.defuse_fw(alpha[0])
    assert store.path.read_bytes() == content and store.path.stat().st_mtime_ns == mtime_ns
    assert sorted(p.name for p in store.path.parent.iterdir()) == files


def test_every_kind_of_write_through_the_read_only_launchpad_raises(store):
    alpha = _fw_ids(store, "alpha")
    with store.read() as launchpad:
        view = read_only(launchpad)
        original = launchpad.get_fw_dict_by_id(alpha[0])
        assert view.get_fw_dict_by_id(alpha[0]) == original  # reads work
        writes = [
            lambda: view.fireworks.update_one({"fw_id": alpha[0]}, {"$set": {"state": "DEFUSED"}}),
            lambda: view.workflows.delete_many({}),
            lambda: view.db["campaign_results"].insert_one({"x": 1}),
            lambda: view.fireworks.aggregate([{"$match": {}}, {"$out": "copy"}]),
            lambda: view.rerun_fw(alpha[0]),
            lambda: view.reset("", require_password=False),
            lambda: view.connection.drop_database("fireworks"),
        ]
        for write in writes:
            with pytest.raises(ReadOnlyError):
                write()
        assert launchpad.get_fw_dict_by_id(alpha[0]) == original
        assert launchpad.workflows.count_documents({}) == len(CAMPAIGNS)


def test_credentials_from_the_environment_are_required(store, monkeypatch):
    monkeypatch.setenv(USERNAME_ENV, LOGIN.username)
    monkeypatch.setenv(PASSWORD_ENV, LOGIN.password)
    fw_id = _fw_ids(store, "alpha")[0]
    urls = ["/", f"/fw/{fw_id}", "/reports/fireworks/days/7/fig.png", "/static/css/styles.css"]
    with open_app("alpha", store, load_credentials()) as app:
        client = app.test_client()
        anonymous = [client.get(url).status_code for url in urls]
        wrong = [client.get(url, headers=_basic(Credentials(LOGIN.username, "guess"))).status_code for url in urls]
        right = [client.get(url, headers=_basic(LOGIN)).status_code for url in urls]
    assert anonymous == wrong == [401] * len(urls)
    assert right == [200] * len(urls)


def test_credentials_come_one_way_from_a_private_file_or_the_environment(tmp_path):
    path = tmp_path / "gui.yaml"
    path.write_text(yaml.safe_dump({"username": LOGIN.username, "password": LOGIN.password}))
    path.chmod(0o600)
    assert load_credentials(path, environ={}) == LOGIN
    assert load_credentials(environ={CREDENTIALS_ENV: str(path)}) == LOGIN
    assert load_credentials(environ={}) is None
    assert LOGIN.password not in repr(LOGIN)
    with pytest.raises(GuiError, match=f"only {USERNAME_ENV} is set"):
        load_credentials(environ={USERNAME_ENV: "curie"})
    with pytest.raises(GuiError, match="give them one way"):
        load_credentials(path, environ={USERNAME_ENV: "curie", PASSWORD_ENV: "x"})
    path.chmod(0o644)
    with pytest.raises(GuiError, match=f"{path}: .*read by others .*644"):
        load_credentials(path, environ={})


def test_a_non_loopback_host_needs_credentials(store, tmp_path):
    spec = tmp_path / "alpha.yaml"
    spec.write_text(yaml.safe_dump(_spec_data("alpha")))
    refused = CliRunner().invoke(main, ["gui", str(spec), "--host", "0.0.0.0", "--port", "0"], env={
        USERNAME_ENV: None, PASSWORD_ENV: None, CREDENTIALS_ENV: None})
    assert refused.exit_code == 1 and "--host 0.0.0.0 can be reached from other machines" in refused.output
    with open_app("alpha", store, LOGIN) as app:
        server = make_server(app, "0.0.0.0", 0)
        server.server_close()


def test_no_store_yet_is_a_clear_error_and_creates_nothing(tmp_path):
    with pytest.raises(StoreError, match=f"{tmp_path / 'store.json'}: there is no embedded store yet"):
        with open_app("alpha", EmbeddedStore(tmp_path / "store.json")):
            pass
    assert not list(tmp_path.iterdir())


def _serve(app):
    """Serve ``app`` on 127.0.0.1 at a free port in a thread; returns the server (shut it down after)."""
    server = make_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_real_server_serves_the_campaign_over_http(store):
    fw_id = _fw_ids(store, "alpha")[0]
    with open_app("alpha", store, LOGIN) as app:
        server = _serve(app)
        try:
            base = f"http://127.0.0.1:{server.server_port}"
            request = urllib.request.Request(f"{base}/fw/{fw_id}/details", headers=_basic(LOGIN))
            with urllib.request.urlopen(request, timeout=30) as response:
                details = json.loads(response.read())
            with pytest.raises(urllib.error.HTTPError, match="401"):
                urllib.request.urlopen(f"{base}/", timeout=30)
        finally:
            server.shutdown()
            server.server_close()
    assert details["spec"]["_campaign"]["name"] == "alpha"


def test_a_users_regular_expression_matches_literally_and_cannot_backtrack(store):
    """`fw_query` is the user's: its $regex matches as literal text (`md/` finds the md fireworks, `^md/`
    nothing), so a backtracking pattern such as (a+)+$ is only text too."""
    alpha = _fw_ids(store, "alpha")
    with open_app("alpha", store) as app:
        client = app.test_client()
        backtracking = urllib.parse.quote(json.dumps({"name": {"$regex": "(" + "a" * 24 + "+)+$"}}))
        started = time.monotonic()
        nothing = client.get(f"/?fw_query={backtracking}")
        elapsed_s = time.monotonic() - started
        literal = client.get("/?fw_query=" + urllib.parse.quote(json.dumps({"name": {"$regex": "md/"}})))
        pattern = client.get("/?fw_query=" + urllib.parse.quote(json.dumps({"name": {"$regex": "^md/"}})))
    assert nothing.status_code == literal.status_code == 200 and elapsed_s < 5
    assert _total_fireworks(nothing.text) == 0
    assert 0 < _total_fireworks(literal.text) < len(alpha)  # a substring of the md fireworks' names
    assert _total_fireworks(pattern.text) == 0  # "^md/" is text, and no name contains it


def test_the_server_answers_a_request_while_another_is_still_running(store):
    gate, inside = threading.Event(), threading.Event()

    def slow(*_args, **_kwargs):
        inside.set()
        gate.wait(30)
        return "slow"

    with open_app("alpha", store) as app:
        app.view_functions["simple"] = slow  # the report chart's route, made to wait (open_app sets it anew)
        server = _serve(app)
        base = f"http://127.0.0.1:{server.server_port}"
        slow_url = f"{base}/reports/fireworks/days/1/fig.png"
        waiting = threading.Thread(target=lambda: urllib.request.urlopen(slow_url, timeout=60).read())
        try:
            waiting.start()
            assert inside.wait(30)
            with urllib.request.urlopen(f"{base}/fw/", timeout=10) as response:  # while the chart still waits
                assert response.status == 200 and not gate.is_set()
        finally:
            gate.set()
            waiting.join(60)
            server.shutdown()
            server.server_close()


@pytest.mark.browser
def test_headless_chromium_renders_the_home_page(store, tmp_path, caplog, chromium):
    screenshot = tmp_path / "gui.png"
    caplog.set_level(logging.INFO, logger="werkzeug")
    with open_app("alpha", store) as app:
        server = _serve(app)
        try:
            subprocess.run(
                [str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1280,900", f"--screenshot={screenshot}",
                 f"http://127.0.0.1:{server.server_port}/"],
                check=True, capture_output=True, timeout=180,
            )
        finally:
            server.shutdown()
            server.server_close()
    served = " ".join(record.getMessage() for record in caplog.records)
    assert re.search(r'"GET / HTTP/1\.1" 200', served)
    assert re.search(r'"GET /reports/fireworks/\S+ HTTP/1\.1" 200', served)  # the chart the page embeds
    pixels = imread(screenshot)  # [900, 1280, channels], floats in [0, 1]
    assert pixels.shape[:2] == (900, 1280)
    rgb = pixels[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.05
    assert len(np.unique(np.round(rgb * 255).astype(int), axis=0)) > 100
