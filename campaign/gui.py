"""``campaign gui``: FireWorks' web GUI scoped to one campaign, live and read-only.

FireWorks' GUI (``fireworks.flask_site.app``) is one Flask app per process that reads ``app.lp``.
``open_app`` configures it for one campaign:

- **Scoped:** every listing is ANDed with the campaign's base queries (fireworks by
  ``spec._campaign.name``, workflows by ``metadata.campaign``, as workflows/build.py stores them);
  the page of a firework or workflow of another campaign is a 404.
- **Live:** on the embedded store each request sees the file as it is now: it is reloaded under the
  store's shared lock whenever its inode, size or modification time changed since the last load.
- **Read-only:** the launchpad the GUI reads refuses every write with ``ReadOnlyError``, and the GUI
  never opens a write session, so it cannot save the embedded store (the ``campaign`` process is
  its single writer). FireWorks' GUI has no endpoint that writes; its one route without a login
  and without the base query, the report chart, is replaced by a scoped one.
- **Credentials:** HTTP basic auth on every route (FireWorks' own check), from the environment or
  a credentials file, never from the command line. Without them only a loopback address is served.

- **Literal queries:** a ``$regex`` in a user's ``fw_query`` or ``wf_query`` matches its text as a
  literal substring (``literal_patterns``), so no pattern can backtrack for seconds.
- **Concurrent:** each request runs in its own thread; the embedded store reloads under a lock.

FireWorks' report view adds its time window into the base query it is handed
(``FWReport.get_stats``), so the base queries are rebuilt for every request and the report chart is
handed a copy.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import os
import re
import socket
import stat
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from fireworks import LaunchPad
from fireworks.features.fw_report import DATE_KEYS, FWReport
from fireworks.flask_site.app import app as fireworks_app
from fireworks.flask_site.app import authenticate, check_auth
from flask import Flask, Response, abort, request
from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import make_server as make_wsgi_server

from records.errors import CampaignError
from records.store import (
    FIREWORKS_COLLECTIONS,
    EmbeddedStore,
    MongoStore,
    StoreError,
    campaign_fireworks,
    campaign_workflows,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
USERNAME_ENV = "CAMPAIGN_GUI_USERNAME"
PASSWORD_ENV = "CAMPAIGN_GUI_PASSWORD"
CREDENTIALS_ENV = "CAMPAIGN_GUI_CREDENTIALS"
SCOPE_CONFIG = "CAMPAIGN_GUI_SCOPE"
COLLECTION_READS = frozenset(
    {"find", "find_one", "count_documents", "estimated_document_count", "distinct", "index_information",
     "list_indexes", "name", "full_name"}
)
GRIDFS_READS = frozenset({"get", "get_version", "get_last_version", "exists", "find", "find_one", "list"})
FILTERED_READS = frozenset({"find", "find_one", "count_documents", "distinct"})  # reads whose filter a user may write
WRITING_STAGES = frozenset({"$out", "$merge"})


class GuiError(CampaignError, RuntimeError):
    """The GUI cannot start as asked."""


class ReadOnlyError(PermissionError):
    """Something tried to change the store through the GUI's read-only launchpad."""


@dataclass(frozen=True)
class Credentials:
    """HTTP basic-auth login of the GUI."""

    username: str
    password: str = field(repr=False)


def load_credentials(
    path: str | os.PathLike | None = None, environ: Mapping[str, str] = os.environ
) -> Credentials | None:
    """The GUI login from $CAMPAIGN_GUI_USERNAME and $CAMPAIGN_GUI_PASSWORD, or from a YAML file with
    ``username`` and ``password`` (``path``, else $CAMPAIGN_GUI_CREDENTIALS); None when neither is given."""
    path = path or environ.get(CREDENTIALS_ENV)
    in_env = [name for name in (USERNAME_ENV, PASSWORD_ENV) if environ.get(name)]
    if path and in_env:
        raise GuiError(
            f"GUI credentials are given both by {' and '.join(in_env)} and by the file {path}; give them one way"
        )
    if len(in_env) == 1:
        raise GuiError(f"set both {USERNAME_ENV} and {PASSWORD_ENV}; only {in_env[0]} is set")
    if in_env:
        return Credentials(environ[USERNAME_ENV], environ[PASSWORD_ENV])
    return _read_credentials(Path(path)) if path else None


def _read_credentials(path: Path) -> Credentials:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise GuiError(f"{path}: cannot read the GUI credentials file ({err})") from err
    if mode & 0o077:
        raise GuiError(f"{path}: the GUI credentials file may be read by others (mode {mode:o}); chmod 600 it")
    if not (isinstance(data, dict) and set(data) == {"username", "password"}
            and all(isinstance(value, str) and value for value in data.values())):
        raise GuiError(f"{path}: expected exactly the keys `username` and `password`, each a non-empty (quoted) string")
    return Credentials(data["username"], data["password"])


class _ReadOnly:
    """Passes the ``reads`` attributes of ``target`` through; any other attribute raises ReadOnlyError."""

    reads: frozenset[str] = frozenset()

    def __init__(self, target, label: str):
        self._target, self._label = target, label

    def __getattr__(self, name: str):
        if name in self.reads:
            return getattr(self._target, name)
        raise ReadOnlyError(f"{self._label}.{name}: the campaign GUI reads the store and never changes it")


def literal_patterns(query):
    """``query`` with every ``$regex`` pattern escaped, so it matches its text literally as a substring.

    A user's pattern (the GUI's ``fw_query``) runs against every document; a backtracking one such as
    ``(a+)+$`` takes time exponential in its length. A literal substring is what a user means.
    """
    if isinstance(query, dict):
        return {key: re.escape(value) if key == "$regex" and isinstance(value, str) else literal_patterns(value)
                for key, value in query.items()}
    if isinstance(query, list):
        return [literal_patterns(item) for item in query]
    if isinstance(query, re.Pattern):
        return re.compile(re.escape(query.pattern), query.flags)
    return query


class _ReadOnlyCollection(_ReadOnly):
    reads = COLLECTION_READS - FILTERED_READS

    def __getattr__(self, name: str):
        if name in FILTERED_READS:
            method = getattr(self._target, name)
            return lambda *args, **kwargs: method(*(literal_patterns(arg) for arg in args),
                                                  **{k: literal_patterns(v) for k, v in kwargs.items()})
        return super().__getattr__(name)

    def aggregate(self, pipeline: list[dict], *args, **kwargs):
        if any(WRITING_STAGES & stage.keys() for stage in pipeline):
            raise ReadOnlyError(f"{self._label}.aggregate: a pipeline with {sorted(WRITING_STAGES)} writes; refused")
        return self._target.aggregate(literal_patterns(pipeline), *args, **kwargs)


class _ReadOnlyDatabase(_ReadOnly):
    reads = frozenset({"name", "list_collection_names"})

    def __getitem__(self, name: str) -> _ReadOnlyCollection:
        return _ReadOnlyCollection(self._target[name], f"{self._label}.{name}")


class _ReadOnlyGridFS(_ReadOnly):
    reads = GRIDFS_READS


def read_only(launchpad: LaunchPad) -> LaunchPad:
    """A view of ``launchpad`` that reads as it does and raises ReadOnlyError on every write."""
    view = object.__new__(type(launchpad))
    view.__dict__.update(launchpad.__dict__)
    view.connection = _ReadOnly(launchpad.connection, "client")
    view.db = _ReadOnlyDatabase(launchpad.db, "db")
    for name in FIREWORKS_COLLECTIONS:
        setattr(view, name, view.db[name])
    if launchpad.gridfs_fallback is not None:
        view.gridfs_fallback = _ReadOnlyGridFS(launchpad.gridfs_fallback, "gridfs")
    return view


class _LiveEmbedded:
    """The embedded store's current contents, read-only, reloaded when the file changed."""

    def __init__(self, store: EmbeddedStore):
        self.store = store
        self._stamp: tuple[int, ...] | None = None
        self._launchpad: LaunchPad | None = None
        self._reloading = threading.Lock()

    def _file_stamp(self) -> tuple[int, ...]:
        try:
            info = self.store.path.stat()
        except OSError as err:
            raise StoreError(f"{self.store.path}: cannot read the embedded store ({err})") from err
        return info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns

    def launchpad(self) -> LaunchPad:
        # Stamped before loading: a save between the two only costs one more reload. Requests run in
        # threads; one reloads at a time, and a request keeps the snapshot it was given.
        with self._reloading:
            stamp = self._file_stamp()
            if stamp != self._stamp:
                with self.store.read() as launchpad:
                    self._launchpad = read_only(launchpad)
                self._stamp = stamp
            return self._launchpad


@dataclass(frozen=True)
class _Scope:
    campaign: str
    launchpad: Callable[[], LaunchPad]


@contextlib.contextmanager
def open_app(
    campaign: str, store: EmbeddedStore | MongoStore, credentials: Credentials | None = None
) -> Iterator[Flask]:
    """FireWorks' GUI app showing only ``campaign`` from ``store``, live, read-only, behind ``credentials``.

    FireWorks' GUI is one app per process, so one campaign GUI can be open at a time.
    """
    if fireworks_app.config.get(SCOPE_CONFIG) is not None:
        raise GuiError("a campaign GUI is already open in this process (FireWorks' GUI is one app per process)")
    with contextlib.ExitStack() as stack:
        if isinstance(store, EmbeddedStore):
            if not store.path.exists():
                raise StoreError(f"{store.path}: there is no embedded store yet; `campaign submit` creates it")
            current = _LiveEmbedded(store).launchpad
        else:
            view = read_only(stack.enter_context(store.read()))

            def current() -> LaunchPad:
                return view

        fireworks_app.config[SCOPE_CONFIG] = _Scope(campaign, current)
        if credentials is not None:
            fireworks_app.config.update(WEBGUI_USERNAME=credentials.username, WEBGUI_PASSWORD=credentials.password)
        if _scope_request not in fireworks_app.before_request_funcs.get(None, []):
            fireworks_app.before_request(_scope_request)
        fireworks_app.view_functions["simple"] = _report_chart
        try:
            yield fireworks_app
        finally:
            for key in (SCOPE_CONFIG, "WEBGUI_USERNAME", "WEBGUI_PASSWORD"):
                fireworks_app.config.pop(key, None)
            fireworks_app.lp = None


def _scope_request() -> Response | None:
    """Before every request: log in, point the app at the current store, 404 pages of other campaigns."""
    app = fireworks_app
    auth = request.authorization
    if app.config.get("WEBGUI_USERNAME") is not None and not (auth and check_auth(auth.username, auth.password)):
        return authenticate()
    scope: _Scope = app.config[SCOPE_CONFIG]
    app.BASE_Q = campaign_fireworks(scope.campaign)
    app.BASE_Q_WF = campaign_workflows(scope.campaign)
    app.lp = scope.launchpad()
    ids = request.view_args or {}
    if "fw_id" in ids and not app.lp.fireworks.count_documents({"fw_id": ids["fw_id"], **app.BASE_Q}):
        abort(404)
    if "wf_id" in ids and not app.lp.workflows.count_documents({"nodes": ids["wf_id"], **app.BASE_Q_WF}):
        abort(404)
    return None


def _report_chart(coll: str, interval: str, num_intervals: str) -> Response:
    """FireWorks' report chart (PNG), counting only the campaign's fireworks or workflows."""
    app = fireworks_app
    base_queries = {"fireworks": app.BASE_Q, "workflows": app.BASE_Q_WF}
    if coll not in base_queries or interval not in DATE_KEYS or not num_intervals.isdigit():
        abort(404)
    figure = FWReport(app.lp).plot_stats(coll, interval, int(num_intervals), additional_query=dict(base_queries[coll]))
    png = io.BytesIO()
    figure.savefig(png, format="png")
    return Response(png.getvalue(), mimetype="image/png")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(app: Flask, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> BaseWSGIServer:
    """A server for ``app`` that handles each request in its own thread, so no request waits for another
    (port 0: any free port); a host other than loopback is refused unless the app has credentials."""
    if app.config.get("WEBGUI_USERNAME") is None and not _is_loopback(host):
        raise GuiError(
            f"--host {host} can be reached from other machines, so the GUI needs a login: set {USERNAME_ENV} and "
            f"{PASSWORD_ENV}, or give a credentials file (--credentials or {CREDENTIALS_ENV}); or keep the default "
            f"--host {DEFAULT_HOST} and forward the port with `ssh -L`"
        )
    try:
        socket.getaddrinfo(host, port)
    except OSError as err:
        raise GuiError(f"--host {host}: not an address of this machine ({err})") from err
    return make_wsgi_server(host, port, app, threaded=True)  # reports a port in use and exits


def serve(app: Flask, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, echo: Callable[[str], None] = print) -> None:
    """Serve ``app`` until Ctrl-C (werkzeug's server stops and closes on it)."""
    server = make_server(app, host, port)
    echo(f"campaign GUI at http://{host}:{server.server_port}/ (Ctrl-C stops it)")
    server.serve_forever()
