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

- **Queries that cannot run away:** a user's ``fw_query`` or ``wf_query`` may use only field
  equality, ``$and $or $nor $not``, the comparisons ``$eq $ne $gt $gte $lt $lte $in $nin $exists``
  and ``$regex`` (with ``$options``); any other operator (``$expr``, ``$where``, ``$function``, ...)
  is refused with 400 naming it (``check_user_query``). A ``$regex`` matches its text as a literal
  substring (``literal_patterns``). So the store never evaluates a user's pattern or code: Python's
  ``re`` holds the GIL while it matches, so a backtracking pattern would stall every thread.
- **A time budget per request:** each request runs in its own thread, and its work in a worker
  thread with a deadline (``request_budget_s``, default ``REQUEST_BUDGET_S``). Past it the request is
  answered 504 and the worker stops at its next read of the store. This is the second line: no
  deadline can interrupt one call that holds the GIL, which is why the operators are whitelisted.
- **Malformed URLs:** a page number, sort order or key, report interval, collection or count that
  FireWorks' views would fail on (a 500) is a 400 naming the value and what is expected.
- **Unreadable store:** while the store file cannot be read (overwritten with garbage, removed) every
  page is a 503 naming the file and the reason; the next request reads it again.

FireWorks' report view adds its time window into the base query it is handed
(``FWReport.get_stats``), so the base queries are rebuilt for every request and the report chart is
handed a copy.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import ipaddress
import json
import math
import os
import re
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from fireworks import LaunchPad
from fireworks.features.fw_report import DATE_KEYS, FWReport
from fireworks.flask_site.app import app as fireworks_app
from fireworks.flask_site.app import authenticate, check_auth
from flask import Flask, Response, abort, request, session
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

REQUEST_BUDGET_S = 10.0  # the longest one request may work before it is answered 504 and its work stops
LOGICAL_OPERATORS = frozenset({"$and", "$or", "$nor"})  # each takes a list of queries
COMPARISON_OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$exists"})  # each takes a value
LIST_OPERATORS = frozenset({"$in", "$nin"})  # each takes a list of values
QUERY_OPERATORS = LOGICAL_OPERATORS | COMPARISON_OPERATORS | LIST_OPERATORS | {"$not", "$regex", "$options"}
REGEX_OPTIONS = frozenset("imsx")  # MongoDB's $options letters; none changes what a literal pattern can cost
MAX_QUERY_DEPTH = 16  # levels of objects and lists in a user's query
USER_QUERIES = ("fw_query", "wf_query")  # the home page's query-string arguments that a user writes as JSON
PAGED_VIEWS = frozenset({"fw_state", "wf_state", "wf_metadata_find"})  # FireWorks' views that read ?page=
MAX_PAGE = 10**9  # far past any listing, and (page - 1) * 20 documents to skip fits a 64-bit integer
SORT_ORDERS = ("ASCENDING", "DESCENDING")
REPORT_COLLECTIONS = ("fireworks", "workflows")
MAX_REPORT_INTERVALS = 1000  # 1000 years back still is a date Python can represent
MONGODB_INTS = range(-(2**63), 2**63)  # the integers BSON can store (pymongo raises OverflowError beyond)


class GuiError(CampaignError, RuntimeError):
    """The GUI cannot start as asked."""


class ReadOnlyError(PermissionError):
    """Something tried to change the store through the GUI's read-only launchpad."""


class QueryError(ValueError):
    """A user's query (``fw_query``, ``wf_query``) uses an operator the GUI does not run, or is malformed."""


class RequestTimeoutError(TimeoutError):
    """A request's work ran past its time budget (raised at its next read of the store)."""


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


def check_user_query(query: dict, name: str = "query") -> None:
    """Raise QueryError unless ``query`` (a user's parsed ``fw_query`` or ``wf_query``, called ``name`` in
    the message) is built only from field equality and QUERY_OPERATORS, each with an operand of its kind.

    These operators compare values. The others evaluate something the user wrote: ``$expr`` with
    ``$regexMatch`` runs a pattern, ``$where`` and ``$function`` run JavaScript, and a backtracking
    pattern runs for hours while holding the interpreter. A ``$regex`` is safe only because
    ``literal_patterns`` escapes it.
    """
    _check_query(query, name, 0)


def _refused(operator: str, where: str) -> QueryError:
    return QueryError(f"{where}: the query operator {operator} is not allowed here (the campaign GUI runs no "
                      f"user pattern or code); a query may use {', '.join(sorted(QUERY_OPERATORS))}")


def _check_depth(where: str, depth: int) -> None:
    if depth > MAX_QUERY_DEPTH:
        raise QueryError(f"{where}: the query is nested deeper than {MAX_QUERY_DEPTH} levels")


def _check_query(query, where: str, depth: int) -> None:
    """A query document: ``{field: condition, "$and": [query, ...], ...}``."""
    _check_depth(where, depth)
    if not isinstance(query, dict):
        raise QueryError(f"{where}: expected a JSON object (a query), not {json.dumps(query)[:80]}")
    for key, value in query.items():
        if key in LOGICAL_OPERATORS:
            if not (isinstance(value, list) and value):
                raise QueryError(f"{where}.{key}: expected a non-empty list of queries")
            for index, clause in enumerate(value):
                _check_query(clause, f"{where}.{key}[{index}]", depth + 1)
        elif key.startswith("$"):
            raise _refused(key, where)
        else:
            _check_condition(value, f"{where}.{key}", depth + 1)


def _check_condition(condition, where: str, depth: int) -> None:
    """What a field is matched against: a value, or an object of operators such as ``{"$gt": 3}``."""
    _check_depth(where, depth)
    if not (isinstance(condition, dict) and any(key.startswith("$") for key in condition)):
        _check_value(condition, where, depth)
        return
    for operator, operand in condition.items():
        if operator == "$not":
            if not (isinstance(operand, dict) and operand and all(key.startswith("$") for key in operand)):
                raise QueryError(f"{where}.$not: expected an object of operators, such as {{\"$regex\": \"text\"}}")
            _check_condition(operand, f"{where}.$not", depth + 1)
        elif operator in COMPARISON_OPERATORS:
            _check_value(operand, f"{where}.{operator}", depth + 1)
        elif operator in LIST_OPERATORS:
            if not isinstance(operand, list):
                raise QueryError(f"{where}.{operator}: expected a list of values")
            _check_value(operand, f"{where}.{operator}", depth + 1)
        elif operator == "$regex":
            if not isinstance(operand, str):
                raise QueryError(f"{where}.$regex: expected a string (matched as literal text)")
        elif operator == "$options":
            if not (isinstance(operand, str) and set(operand) <= REGEX_OPTIONS):
                raise QueryError(f"{where}.$options: expected some of the letters {''.join(sorted(REGEX_OPTIONS))}")
        elif operator.startswith("$"):
            raise _refused(operator, where)
        else:
            raise QueryError(f"{where}: mixes operators and the field {operator}; give one or the other")


def _check_value(value, where: str, depth: int) -> None:
    """A value compared as it is: no key of an object inside it may be an operator."""
    _check_depth(where, depth)
    if isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("$"):
                raise _refused(key, where)
            _check_value(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_value(item, f"{where}[{index}]", depth + 1)


_DEADLINE = contextvars.ContextVar("campaign_gui_deadline", default=math.inf)  # time.monotonic() when the budget ends


def _check_deadline() -> None:
    """Raise RequestTimeoutError once the current request (if any) has spent its time budget."""
    if time.monotonic() > _DEADLINE.get():
        raise RequestTimeoutError("this request ran past its time budget; it was stopped at a read of the store")


class _ReadOnlyCollection(_ReadOnly):
    """A collection's reads, each checking the request's deadline first; a user's $regex matches literally."""

    reads = COLLECTION_READS - FILTERED_READS

    def __getattr__(self, name: str):
        if name in FILTERED_READS:
            method = getattr(self._target, name)

            def read(*args, **kwargs):
                _check_deadline()
                return method(*(literal_patterns(arg) for arg in args),
                              **{k: literal_patterns(v) for k, v in kwargs.items()})
            return read
        return super().__getattr__(name)

    def aggregate(self, pipeline: list[dict], *args, **kwargs):
        if any(WRITING_STAGES & stage.keys() for stage in pipeline):
            raise ReadOnlyError(f"{self._label}.aggregate: a pipeline with {sorted(WRITING_STAGES)} writes; refused")
        _check_deadline()
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
    request_budget_s: float


@contextlib.contextmanager
def open_app(
    campaign: str, store: EmbeddedStore | MongoStore, credentials: Credentials | None = None,
    request_budget_s: float = REQUEST_BUDGET_S,
) -> Iterator[Flask]:
    """FireWorks' GUI app showing only ``campaign`` from ``store``, live, read-only, behind ``credentials``,
    answering every request within ``request_budget_s`` (504 when its work takes longer).

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

        fireworks_app.config[SCOPE_CONFIG] = _Scope(campaign, current, request_budget_s)
        if credentials is not None:
            fireworks_app.config.update(WEBGUI_USERNAME=credentials.username, WEBGUI_PASSWORD=credentials.password)
        if _scope_request not in fireworks_app.before_request_funcs.get(None, []):  # Flask allows setup only once
            fireworks_app.before_request(_scope_request)
            fireworks_app.register_error_handler(StoreError, _store_unreadable)
            fireworks_app.register_error_handler(RequestTimeoutError, _over_budget)
        fireworks_app.view_functions["simple"] = _report_chart
        unbudgeted = fireworks_app.wsgi_app
        fireworks_app.wsgi_app = _Budgeted(unbudgeted, request_budget_s)
        try:
            yield fireworks_app
        finally:
            fireworks_app.wsgi_app = unbudgeted
            for key in (SCOPE_CONFIG, "WEBGUI_USERNAME", "WEBGUI_PASSWORD"):
                fireworks_app.config.pop(key, None)
            fireworks_app.lp = None


def _scope_request() -> Response | None:
    """Before every request: log in, refuse malformed values, point the app at the current store, 404 pages
    of other campaigns."""
    app = fireworks_app
    auth = request.authorization
    if app.config.get("WEBGUI_USERNAME") is not None and not (auth and check_auth(auth.username, auth.password)):
        return authenticate()
    _check_request()
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


def _check_request() -> None:
    """Abort with 400 (naming the value and what is expected) for a value in the URL that a FireWorks view
    would fail on, or a user's query with an operator the GUI does not run (``check_user_query``)."""
    ids, args = request.view_args or {}, request.args
    if request.endpoint == "home":
        for name in USER_QUERIES:
            _check_query_argument(name, args.get(name))
    for name in ("fw_filt", "wf_filt"):  # a filter a user set earlier, kept in the session cookie
        try:
            check_user_query(session.get(name) or {}, name)
        except QueryError:
            session.pop(name)
    if request.endpoint in PAGED_VIEWS and "page" in args:
        _whole_number("page", args["page"], 1, MAX_PAGE)
    if "sorting_order" in ids and ids["sorting_order"] not in SORT_ORDERS:
        abort(400, f"the sort order {ids['sorting_order']!r} is neither {' nor '.join(SORT_ORDERS)}")
    if "sorting_key" in ids:
        _check_field_path("the sort key", ids["sorting_key"])
    if "key" in ids:
        _check_field_path("the metadata key", ids["key"])
    if "value" in ids:
        _check_metadata_value(ids["value"])
    for name in ("fw_id", "wf_id"):
        if name in ids and ids[name] not in MONGODB_INTS:
            abort(404)
    if "coll" in ids and ids["coll"] not in REPORT_COLLECTIONS:
        abort(400, f"the report collection {ids['coll']!r} is neither {' nor '.join(REPORT_COLLECTIONS)}")
    if "interval" in ids and ids["interval"] not in DATE_KEYS:
        abort(400, f"the report interval {ids['interval']!r} is not one of {', '.join(DATE_KEYS)}")
    if "num_intervals" in ids:
        _whole_number("the number of intervals", str(ids["num_intervals"]), 1, MAX_REPORT_INTERVALS)


def _check_query_argument(name: str, text: str | None) -> None:
    """A JSON object that ``check_user_query`` refuses is a 400; text that is not a JSON object is left to
    FireWorks, which says so on the page."""
    if not text:
        return
    try:
        query = json.loads(text)
    except (ValueError, RecursionError):
        return
    if isinstance(query, dict):
        try:
            check_user_query(query, name)
        except QueryError as err:
            abort(400, str(err))


def _whole_number(name: str, text: str, low: int, high: int) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(high)) and low <= int(text) <= high):
        abort(400, f"{name} must be a whole number from {low} to {high}, not {text!r}")
    return int(text)


def _check_field_path(name: str, path: str) -> None:
    if any(not part or part.startswith("$") or "\0" in part for part in path.split(".")):
        abort(400, f"{name} {path!r} is not a field name: dot-separated names, none empty or starting with $")


def _check_metadata_value(value: str) -> None:
    """FireWorks looks a metadata value up as an integer when it reads as one; BSON stores 64 bits of it."""
    try:
        number = int(value)
    except ValueError:
        return
    if number not in MONGODB_INTS:
        abort(400, f"the metadata value {value} is beyond the 64-bit integers a store holds")


def _store_unreadable(err: StoreError) -> Response:
    return Response(f"the campaign store is unreadable: {err}\nThe GUI reads it again on the next request.\n",
                    503, mimetype="text/plain")


def _over_budget(err: RequestTimeoutError) -> Response:
    return Response(_over_budget_text(fireworks_app.config[SCOPE_CONFIG].request_budget_s), 504, mimetype="text/plain")


def _over_budget_text(budget_s: float) -> str:
    return (f"this request took longer than the campaign GUI's budget of {budget_s:g} s per request and was stopped; "
            "narrow the query or ask for fewer report intervals\n")


@dataclass
class _Answer:
    """What a request's worker thread produced: a WSGI status, headers and body, or the error it raised."""

    done: threading.Event = field(default_factory=threading.Event)
    status: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    error: Exception | None = None


class _Budgeted:
    """WSGI middleware: runs each request in a worker thread and answers 504 once it has taken ``budget_s``.

    The thread serving the request only waits, so it answers on time whatever the worker does. The
    worker's reads of the store check the deadline (``_check_deadline``), so an abandoned request stops
    working at its next read instead of competing with the others for the interpreter.
    """

    def __init__(self, app: Callable, budget_s: float):
        self.app, self.budget_s = app, budget_s

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        answer = _Answer()
        deadline = time.monotonic() + self.budget_s
        threading.Thread(target=self._work, args=(environ, answer, deadline), daemon=True,
                         name=f"campaign-gui {environ.get('PATH_INFO', '')}").start()
        if not answer.done.wait(self.budget_s):
            start_response("504 Gateway Timeout", [("Content-Type", "text/plain; charset=utf-8")])
            return [_over_budget_text(self.budget_s).encode()]
        if answer.error is not None:
            raise answer.error
        start_response(answer.status, answer.headers)
        return answer.body

    def _work(self, environ: dict, answer: _Answer, deadline: float) -> None:
        _DEADLINE.set(deadline)

        def start_response(status: str, headers: list[tuple[str, str]], exc_info=None) -> Callable:
            answer.status, answer.headers = status, headers
            return answer.body.append

        try:
            response = self.app(environ, start_response)
            try:
                answer.body.extend(response)
            finally:
                if hasattr(response, "close"):
                    response.close()
        except Exception as err:  # raised again by the thread serving the request, as if it had run there
            answer.error = err
        finally:
            answer.done.set()


def _report_chart(coll: str, interval: str, num_intervals: str) -> Response:
    """FireWorks' report chart (PNG), counting only the campaign's fireworks or workflows (``_check_request``
    has checked the collection, interval and number of intervals)."""
    app = fireworks_app
    base_queries = {"fireworks": app.BASE_Q, "workflows": app.BASE_Q_WF}
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
    (port 0: any free port, which ``server.server_port`` tells); a host other than loopback is refused
    unless the app has credentials."""
    if not 0 <= port <= 65535:
        raise GuiError(f"--port {port}: a port is a number from 1 to 65535 (or 0, any free port)")
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
