"""`campaign gui`: FireWorks' web GUI over HTTP, scoped to one campaign, live, read-only, with a login."""

import base64
import html
import json
import logging
import os
import re
import select
import shutil
import subprocess
import sys
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
    QueryError,
    ReadOnlyError,
    check_user_query,
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


def _query_url(name: str, query: dict) -> str:
    return f"/?{name}=" + urllib.parse.quote(json.dumps(query))


def _text(response) -> str:
    """The response's text with HTML entities decoded (Flask's error pages escape quotes)."""
    return html.unescape(response.text)


def _tracebacks(caplog) -> list[str]:
    """Messages of the log records that carry a traceback (Flask logs one for every 500)."""
    return [record.getMessage() for record in caplog.records if record.exc_info]


CATASTROPHIC = {"$expr": {"$regexMatch": {"input": "$name", "regex": "^([\\s\\S]+)+!$"}}}  # backtracks on any name
REFUSED_QUERIES = [
    ("fw_query", CATASTROPHIC, "fw_query: the query operator $expr"),
    ("fw_query", {"$where": "sleep(100000)"}, "fw_query: the query operator $where"),
    ("fw_query", {"$and": [{"state": "READY"}, {"$expr": {"$regexFind": {"input": "$name", "regex": "(a+)+$"}}}]},
     "fw_query.$and[1]: the query operator $expr"),
    ("fw_query", {"name": {"$not": {"$function": {"body": "x", "args": [], "lang": "js"}}}},
     "fw_query.name.$not: the query operator $function"),
    ("fw_query", {"name": {"$eq": {"$regexMatch": 1}}}, "fw_query.name.$eq: the query operator $regexMatch"),
    ("wf_query", {"metadata.campaign": {"$in": ["alpha", {"$where": "1"}]}},
     "wf_query.metadata.campaign.$in[1]: the query operator $where"),
    ("wf_query", {"$or": []}, "wf_query.$or: expected a non-empty list of queries"),
    ("fw_query", {"fw_id": {"$in": 5}}, "fw_query.fw_id.$in: expected a list of values"),
    ("fw_query", {"name": {"$regex": "md", "$options": "(?s)"}}, "fw_query.name.$options: expected some of"),
]


@pytest.mark.parametrize("name, query, reason", REFUSED_QUERIES, ids=[r for _, _, r in REFUSED_QUERIES])
def test_a_query_operator_that_evaluates_a_users_pattern_or_code_is_refused_with_400(store, caplog, name, query,
                                                                                     reason):
    with open_app("alpha", store) as app:
        started = time.monotonic()
        response = app.test_client().get(_query_url(name, query))
        elapsed_s = time.monotonic() - started
    assert response.status_code == 400 and reason in _text(response)
    assert elapsed_s < 2 and not _tracebacks(caplog)
    with pytest.raises(QueryError, match=re.escape(reason)):
        check_user_query(query, name)


def test_the_whitelisted_operators_still_filter(store):
    alpha = _fw_ids(store, "alpha")
    with store.read() as launchpad:
        md = launchpad.fireworks.count_documents({"spec._campaign.name": "alpha", "name": {"$regex": "md/"}})
    queries = {
        json.dumps({"fw_id": {"$in": alpha[:2]}}): 2,
        json.dumps({"fw_id": {"$gte": alpha[1], "$lte": alpha[3]}}): 3,
        json.dumps({"$or": [{"fw_id": alpha[0]}, {"fw_id": {"$gt": alpha[-2]}}]}): 2,
        json.dumps({"$nor": [{"fw_id": alpha[0]}], "fw_id": {"$nin": [alpha[1]], "$ne": alpha[2]}}): len(alpha) - 3,
        json.dumps({"name": {"$regex": "MD/", "$options": "i"}}): md,
        json.dumps({"name": {"$not": {"$regex": "md/"}}, "spec._campaign": {"$exists": True}}): len(alpha) - md,
        json.dumps({"spec._campaign.name": "alpha"}): len(alpha),
    }
    assert 0 < md < len(alpha)
    with open_app("alpha", store) as app:
        client = app.test_client()
        pages = {query: client.get("/?fw_query=" + urllib.parse.quote(query)) for query in queries}
    assert {query: page.status_code for query, page in pages.items()} == dict.fromkeys(queries, 200)
    assert {query: _total_fireworks(page.text) for query, page in pages.items()} == queries


def test_a_refused_filter_left_in_the_session_cookie_is_dropped(store):
    """A filter reaches every listing through the session (FireWorks keeps the last query there); one that
    did not pass the whitelist (a cookie from before it, signed with a shared FWAPP_SECRET_KEY) is dropped."""
    alpha = _fw_ids(store, "alpha")
    with open_app("alpha", store) as app:
        client = app.test_client()
        with client.session_transaction() as cookie:
            cookie["fw_filt"] = {"$where": "sleep(100000)"}
            cookie["wf_filt"] = {"metadata.campaign": "alpha"}
        listing = client.get("/fw/")
        with client.session_transaction() as cookie:
            kept = dict(cookie)
    assert listing.status_code == 200
    assert {int(fw_id) for fw_id in re.findall(r'<a href="/fw/(\d+)">', listing.text)} <= set(alpha)
    assert "fw_filt" not in kept and kept["wf_filt"] == {"metadata.campaign": "alpha"}


def _start_cli_gui(spec: Path) -> tuple[subprocess.Popen, str]:
    """`campaign gui SPEC --port 0` in its own process (so that a request that holds its interpreter cannot
    hold the test's); returns the process and the address it serves, read from what it prints."""
    env = {key: value for key, value in os.environ.items()
           if key not in (USERNAME_ENV, PASSWORD_ENV, CREDENTIALS_ENV)}
    server = subprocess.Popen([sys.executable, "-m", "campaign.cli", "gui", str(spec), "--port", "0"],
                              cwd=spec.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.poll() is None:
        if select.select([server.stdout], [], [], 0.5)[0]:
            found = re.search(r"(http://127\.0\.0\.1:\d+)/", server.stdout.readline())
            if found:
                return server, found.group(1)
    server.kill()
    raise AssertionError(f"`campaign gui` did not start: {server.communicate(timeout=30)}")


def _get(url: str, timeout_s: float) -> tuple[int | str, float]:
    """The status of GET ``url`` (or the error's name when there is none) and the seconds it took."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as err:
        status = err.code
    except OSError as err:
        status = type(err).__name__
    return status, time.monotonic() - started


@pytest.mark.slow
def test_a_catastrophic_pattern_and_a_concurrent_page_both_answer_within_2_s(store, tmp_path):
    """The issue's probe against `campaign gui` on loopback: the $regexMatch query froze the whole GUI."""
    spec = tmp_path / "alpha.yaml"
    spec.write_text(yaml.safe_dump(_spec_data("alpha")))
    server, base = _start_cli_gui(spec)
    try:
        results: dict[str, tuple[int | str, float]] = {}
        urls = {"pattern": base + _query_url("fw_query", CATASTROPHIC), "page": f"{base}/fw/"}
        clients = [threading.Thread(target=lambda key=key: results.update({key: _get(urls[key], 2)}))
                   for key in urls]
        for client in clients:
            client.start()
        for client in clients:
            client.join(10)
        assert results["pattern"][0] == 400 and results["page"][0] == 200, results
        assert max(elapsed_s for _, elapsed_s in results.values()) < 2, results
    finally:
        server.kill()
        _, stderr = server.communicate(timeout=30)
    assert "Traceback" not in stderr


def test_a_request_past_its_time_budget_is_answered_504_and_stops_working(store, caplog):
    reads, stopped = [], threading.Event()

    def endless(*_args, **_kwargs):
        try:
            while True:  # a view that never finishes, reading the store as FireWorks' views do
                reads.append(fireworks_app.lp.fireworks.count_documents({}))
                time.sleep(0.01)
        finally:
            stopped.set()

    with open_app("alpha", store, request_budget_s=0.5) as app:
        fireworks_app = app
        app.view_functions["simple"] = endless  # the report chart's route (open_app sets it anew)
        client = app.test_client()
        started = time.monotonic()
        over = client.get("/reports/fireworks/days/1/fig.png")
        elapsed_s = time.monotonic() - started
        assert stopped.wait(5)
        n_reads = len(reads)
        time.sleep(0.2)
        after = client.get("/fw/")
    assert over.status_code == 504 and "budget of 0.5 s per request" in over.text
    assert 0.5 <= elapsed_s < 2
    assert len(reads) == n_reads > 0  # it stopped at a read of the store, and read nothing since
    assert after.status_code == 200 and not _tracebacks(caplog)


MALFORMED = [
    ("/fw/total/fw_id/SIDEWAYS/", "the sort order 'SIDEWAYS' is neither ASCENDING nor DESCENDING"),
    ("/wf/total/_id/up/", "the sort order 'up' is neither ASCENDING nor DESCENDING"),
    ("/fw/total/$where/ASCENDING/", "the sort key '$where' is not a field name"),
    ("/wf/READY/name..x/ASCENDING/", "the sort key 'name..x' is not a field name"),
    ("/fw/?page=abc", "page must be a whole number from 1 to"),
    ("/fw/READY/?page=0", "page must be a whole number from 1 to"),
    ("/wf/?page=-3", "page must be a whole number from 1 to"),
    ("/wf/total/_id/ASCENDING/?page=1e3", "page must be a whole number from 1 to"),
    ("/fw/?page=99999999999999999999999", "page must be a whole number from 1 to"),
    ("/wf/metadata/campaign/alpha/?page=two", "page must be a whole number from 1 to"),
    ("/wf/metadata/$where/1/", "the metadata key '$where' is not a field name"),
    ("/wf/metadata/campaign/99999999999999999999/", "the metadata value 99999999999999999999 is beyond"),
    ("/report/weeks/", "the report interval 'weeks' is not one of years, months, days, hours, minutes"),
    ("/report/days/abc/", "the number of intervals must be a whole number from 1 to 1000, not 'abc'"),
    ("/report/days/-1/", "the number of intervals must be a whole number from 1 to 1000, not '-1'"),
    ("/report/years/100000/", "the number of intervals must be a whole number from 1 to 1000, not '100000'"),
    ("/reports/fireworks/days/%C2%B2/fig.png", "the number of intervals must be a whole number from 1 to 1000"),
    ("/reports/workflows/years/99999/fig.png", "the number of intervals must be a whole number from 1 to 1000"),
    ("/reports/fireworks/fortnights/2/fig.png", "the report interval 'fortnights' is not one of"),
    ("/reports/launches/days/3/fig.png", "the report collection 'launches' is neither fireworks nor workflows"),
]


@pytest.mark.parametrize("url, reason", MALFORMED, ids=[url for url, _ in MALFORMED])
def test_a_malformed_value_in_the_url_is_a_400_saying_why(store, caplog, url, reason):
    with open_app("alpha", store) as app:
        response = app.test_client().get(url)
    assert response.status_code == 400 and reason in _text(response)
    assert not _tracebacks(caplog)


def test_values_a_view_can_take_give_its_normal_page(store, caplog):
    """Text that is not a JSON object is FireWorks' to report (on the page); an id past 64 bits is no
    firework (a real MongoDB raises OverflowError on it)."""
    huge = "9" * 25
    with open_app("alpha", store) as app:
        client = app.test_client()
        flashed = [client.get(f"/?fw_query={text}") for text in ("notjson", "[1]", "%7B%7B")]
        missing = [client.get(url).status_code for url in (f"/fw/{huge}", f"/fw/{huge}/details", f"/wf/{huge}",
                                                            f"/wf/{huge}/json")]
        first = client.get("/fw/total/fw_id/ASCENDING/?page=1")
    assert [page.status_code for page in flashed] == [200] * 3
    assert all("is not a valid JSON object" in _text(page) for page in flashed)
    assert missing == [404] * 4 and first.status_code == 200
    assert not _tracebacks(caplog)


def test_an_unreadable_store_is_a_503_naming_it_until_it_is_readable_again(store, caplog):
    fw_id = _fw_ids(store, "alpha")[0]
    content = store.path.read_bytes()
    urls = ["/", "/fw/", "/wf/", f"/fw/{fw_id}", f"/wf/{fw_id}/json", "/report/", "/reports/fireworks/days/7/fig.png"]
    with open_app("alpha", store) as app:
        client = app.test_client()
        before = client.get("/").status_code
        store.path.write_bytes(b"\x00\x01 not a store {")  # overwritten while the GUI runs
        broken = [client.get(url) for url in urls]
        store.path.write_bytes(content)
        after = [client.get(url).status_code for url in urls]
    assert before == 200
    assert [page.status_code for page in broken] == [503] * len(urls)
    assert all(f"the campaign store is unreadable: {store.path}: cannot read" in page.text for page in broken)
    assert after == [200] * len(urls)
    assert not _tracebacks(caplog)


@pytest.mark.parametrize("port", ["70000", "65536", "-1"])
def test_a_port_outside_0_to_65535_is_a_usage_error_naming_port(tmp_path, monkeypatch, port):
    spec = tmp_path / "alpha.yaml"
    spec.write_text(yaml.safe_dump(_spec_data("alpha")))
    EmbeddedStore(tmp_path / "store.json").path.write_text("{}")
    served = []
    monkeypatch.setattr("campaign.gui.serve", lambda app, host, port, echo: served.append(port))
    refused = CliRunner().invoke(main, ["gui", str(spec), "--port", port])
    assert refused.exit_code == 2 and "--port" in refused.output and port in refused.output
    assert "Traceback" not in refused.output and served == []
    chosen = CliRunner().invoke(main, ["gui", str(spec), "--port", "0"])  # 0: any free port
    assert chosen.exit_code == 0 and served == [0]


def test_make_server_refuses_a_port_outside_0_to_65535(store):
    with open_app("alpha", store) as app:
        for port in (70000, -1):
            with pytest.raises(GuiError, match=f"--port {port}: a port is a number from 1 to 65535"):
                make_server(app, "127.0.0.1", port)



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
