"""The campaign store: a FireWorks LaunchPad plus the results collection, embedded or on MongoDB.

The embedded store needs no server. It is one JSON file in mongomock-persistence's layout (so stock
``lpad`` reads it with ``MONGOMOCK_SERVERSTORE_FILE=<file>``). mongomock keeps the whole database in
the memory of one process, so concurrent writers would lose each other's work. Therefore every
write session holds an exclusive file lock from load to save, and the save is atomic (temp file,
fsync, rename). A session that raises saves nothing, so nothing half-written reaches the file.
Readers take a shared lock, load a snapshot, and never save.

On MongoDB the server handles concurrency; ``read`` and ``write`` both hand out a LaunchPad.

The queries every layer asks of a campaign's fireworks (``campaign_fireworks``, ``stage_states``,
``failed_fireworks``) live here too, next to the documents they read.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import bson.json_util
import mongomock
import mongomock_persistence  # noqa: F401  (adds to_dict/from_dict to mongomock's store classes)
import yaml
from fireworks import LaunchPad
from mongomock.store import DatabaseStore, ServerStore
from pymongo.errors import ConnectionFailure, PyMongoError

from records.atomic_file import atomic_write
from records.errors import CampaignError
from records.settings import StoreSpec

DATABASE = "fireworks"
RESULTS_COLLECTION = "campaign_results"
FIREWORKS_COLLECTIONS = ("fireworks", "launches", "offline_runs", "fw_id_assigner", "workflows")
LOG_LEVEL = "WARNING"
WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH  # a store file with none of them is read-only, even to root
CAMPAIGN_ROOT = "campaign_root"  # a launcher's FWorker env: the campaign's folder, that stored paths are relative to
CAMPAIGN_SPEC_KEY = "_campaign"  # a campaign firework's spec holds its identity (name, key, digest, stage) here
SERVER_TIMEOUT_S = 5.0  # how long a MongoDB store waits for its server to answer before saying none does


class StoreError(CampaignError, RuntimeError):
    """The store cannot be opened, read or saved."""


class EmbeddedLaunchPad(LaunchPad):
    """A LaunchPad over an in-memory mongomock server."""

    def __init__(self, server: ServerStore):
        # LaunchPad.__init__ builds a pymongo client; connect=False keeps it from ever connecting.
        super().__init__(
            host="mongodb://localhost:1/",
            uri_mode=True,
            name=DATABASE,
            mongoclient_kwargs={"connect": False},
            strm_lvl=LOG_LEVEL,
        )
        self.connection.close()
        self.connection = mongomock.MongoClient(_store=server)
        self.db = self.connection[DATABASE]
        for name in FIREWORKS_COLLECTIONS:
            setattr(self, name, self.db[name])


def _drop_unique_checks(launchpad: LaunchPad) -> None:
    """Make FireWorks' unique indexes plain ones in the embedded store.

    mongomock checks a unique index by scanning the whole collection on every insert and update,
    which makes adding or refreshing a workflow of N fireworks cost O(N²). FireWorks' id counters
    and the single writer already keep ``fw_id`` and ``launch_id`` unique. mongomock-persistence
    saves no indexes, so only the session that creates the database (FireWorks' reset builds the
    indexes) has any to change.
    """
    for name in FIREWORKS_COLLECTIONS:
        collection = launchpad.db[name]
        for index_name, index in collection.index_information().items():
            if index.get("unique") and index_name != "_id_":
                collection.drop_index(index_name)
                collection.create_index(index["key"], name=index_name)


def _initialise(launchpad: LaunchPad) -> bool:
    """Give an empty database FireWorks' id counters and indexes; never touches a database that
    holds work. Returns whether it did."""
    if launchpad.fw_id_assigner.count_documents({}):
        return False
    if launchpad.fireworks.count_documents({}) or launchpad.workflows.count_documents({}):
        raise StoreError("the database holds fireworks but no fw_id_assigner; it was not made by FireWorks")
    launchpad.reset("", require_password=False)
    return True


class EmbeddedStore:
    """The file-backed store at ``path``; see the module docstring for the locking rules."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).resolve()
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def describe(self) -> str:
        return f"embedded store {self.path}"

    def exists(self) -> bool:
        """Has anything been stored yet?"""
        return self.path.exists()

    @contextlib.contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        """Hold the store's lock file; a writer creates it, a reader only takes it when it exists (a reader
        writes nothing: each save replaces the store file in one rename, so a reader never sees half of one)."""
        if mode == fcntl.LOCK_EX:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.lock_path.exists():
            yield
            return
        try:
            lock = open(self.lock_path, "a" if mode == fcntl.LOCK_EX else "r")
        except OSError as err:  # a directory in its place, or no permission
            raise StoreError(f"{self.lock_path}: cannot open the store's lock file ({err.strerror}); "
                             "it must be a file this user can write") from None
        with lock:
            fcntl.flock(lock, mode)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> ServerStore:
        server = ServerStore.__new__(ServerStore)  # skip its __init__, which reads an environment variable
        server._databases = {}
        if self.path.exists():
            try:
                data = bson.json_util.loads(self.path.read_text())
                server._databases = {name: DatabaseStore.from_dict(db) for name, db in data.items()}
            except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:  # unreadable, or JSON of another shape
                raise StoreError(f"{self.path}: cannot read the embedded store ({type(err).__name__}: {err})") from err
        return server

    def _save(self, server: ServerStore) -> None:
        text = bson.json_util.dumps(server.to_dict())
        try:
            with atomic_write(self.path, "w") as fh:
                fh.write(text)
        except OSError as err:
            raise StoreError(f"{self.path}: could not save the store, nothing was changed ({err})") from err

    @contextlib.contextmanager
    def write(self) -> Iterator[LaunchPad]:
        """An exclusive session; its changes are saved atomically when the block exits cleanly.

        A store file that is not writable (``chmod 444``) is an error, not a file to replace."""
        if self.path.exists() and not (os.access(self.path, os.W_OK) and self.path.stat().st_mode & WRITE_BITS):
            raise StoreError(f"{self.path}: the embedded store is read-only; make it writable to change the campaign")
        with self._locked(fcntl.LOCK_EX):
            server = self._load()
            launchpad = EmbeddedLaunchPad(server)
            if _initialise(launchpad):
                _drop_unique_checks(launchpad)
            yield launchpad
            self._save(server)

    @contextlib.contextmanager
    def read(self) -> Iterator[LaunchPad]:
        """A snapshot for reading, which writes nothing; changes made through it are thrown away.
        A store that does not exist yet is a StoreError."""
        if not self.path.exists():
            raise StoreError(f"{self.path}: no embedded store there (the campaign has not been submitted)")
        with self._locked(fcntl.LOCK_SH):
            server = self._load()
        yield EmbeddedLaunchPad(server)


class MongoStore:
    """A real MongoDB, by URI or by a FireWorks launchpad YAML."""

    def __init__(self, uri: str | None = None, database: str = DATABASE, launchpad_file: str | None = None):
        self.uri, self.database, self.launchpad_file = uri, database, launchpad_file

    def describe(self) -> str:
        return f"MongoDB launchpad file {self.launchpad_file}" if self.launchpad_file else "MongoDB at the given URI"

    def exists(self) -> bool:
        """A server is always there to ask (``read`` says when it cannot be reached)."""
        return True

    def check_server(self) -> None:
        """Raise StoreError, within SERVER_TIMEOUT_S, unless the server answers; changes nothing on it."""
        self._answering().connection.close()

    def _connect(self) -> LaunchPad:
        launchpad = self._answering()
        _initialise(launchpad)
        return launchpad

    def _answering(self) -> LaunchPad:
        """A LaunchPad on the server, which has answered; a StoreError within SERVER_TIMEOUT_S when none does."""
        timeout = {"serverSelectionTimeoutMS": round(SERVER_TIMEOUT_S * 1000)}
        try:
            if self.launchpad_file:
                settings = read_launchpad_file(self.launchpad_file)
                settings["mongoclient_kwargs"] = {**timeout, **(settings.get("mongoclient_kwargs") or {})}
                launchpad = LaunchPad.from_dict(settings)
            else:
                launchpad = LaunchPad(host=self.uri, uri_mode=True, name=self.database, strm_lvl=LOG_LEVEL,
                                      mongoclient_kwargs=timeout)
        except (PyMongoError, TypeError, ValueError) as err:  # a malformed URI, port or client option
            raise StoreError(f"{self.describe()}: cannot connect ({err})") from None
        try:
            launchpad.connection.admin.command("ping")
        except PyMongoError as err:
            hosts = ", ".join(f"{host}:{port}" for host, port in launchpad.connection.topology_description
                              .server_descriptions()) or "the server"
            launchpad.connection.close()
            if isinstance(err, ConnectionFailure):
                raise StoreError(f"{self.describe()}: no MongoDB server answers at {hosts} "
                                 f"(waited {SERVER_TIMEOUT_S:g} s)") from None
            raise StoreError(f"{self.describe()}: the MongoDB server at {hosts} refused: {err}") from None
        return launchpad

    @contextlib.contextmanager
    def write(self) -> Iterator[LaunchPad]:
        launchpad = self._connect()
        try:
            yield launchpad
        finally:
            launchpad.connection.close()

    read = write


def read_launchpad_file(path: str | os.PathLike) -> dict:
    """The settings of a FireWorks launchpad YAML file (a mapping with at least ``host``); a StoreError naming
    the file and what is wrong with it otherwise."""
    try:
        settings = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise StoreError(f"{path}: cannot read the launchpad file ({err.strerror})") from None
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise StoreError(f"{path}: the launchpad file is not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(settings, dict):
        raise StoreError(f"{path}: a launchpad file is a YAML mapping of LaunchPad settings (host, port, name, "
                         f"username, password, ...), not {type(settings).__name__}")
    if not isinstance(settings.get("host"), str):
        raise StoreError(f"{path}: the launchpad file names no host (a server name, or a mongodb:// URI with "
                         "uri_mode: true)")
    return settings


def open_store(store: StoreSpec, base_dir: Path) -> EmbeddedStore | MongoStore:
    """The store a spec names; relative paths are taken from the spec file's directory."""
    logging.getLogger("launchpad").setLevel(LOG_LEVEL)
    if store.embedded:
        return EmbeddedStore(base_dir / store.embedded)
    if store.launchpad:
        return MongoStore(launchpad_file=str(base_dir / store.launchpad))
    return MongoStore(uri=store.uri, database=store.database)


def results_collection(launchpad: LaunchPad):
    """The collection holding the typed result documents, next to FireWorks' own."""
    return launchpad.db[RESULTS_COLLECTION]


def campaign_fireworks(campaign: str, **conditions) -> dict:
    """The query for ``campaign``'s fireworks, with ``conditions`` (field -> value or operator) ANDed in."""
    return {f"spec.{CAMPAIGN_SPEC_KEY}.name": campaign, **conditions}


def campaign_workflows(campaign: str) -> dict:
    """The query for ``campaign``'s workflow (workflows/build.py names it in its metadata)."""
    return {"metadata.campaign": campaign}


def stage_states(launchpad: LaunchPad, campaign: str) -> dict[str, dict[str, int]]:
    """stage -> FireWorks state -> how many of ``campaign``'s fireworks are in it."""
    counts: dict[str, dict[str, int]] = {}
    for doc in launchpad.fireworks.find(campaign_fireworks(campaign), {"state": 1, f"spec.{CAMPAIGN_SPEC_KEY}.stage": 1}):
        per_state = counts.setdefault(doc["spec"][CAMPAIGN_SPEC_KEY]["stage"], {})
        per_state[doc["state"]] = per_state.get(doc["state"], 0) + 1
    return counts


def active_fireworks(launchpad: LaunchPad, campaign: str) -> list[str]:
    """The names of ``campaign``'s fireworks that a launcher has reserved or is running."""
    query = campaign_fireworks(campaign, state={"$in": ["RESERVED", "RUNNING"]})
    return [doc["name"] for doc in launchpad.fireworks.find(query, {"name": 1})]


def failed_fireworks(launchpad: LaunchPad, campaign: str) -> list[dict]:
    """``campaign``'s FIZZLED fireworks: name, fw_id and the directory of their last launch (None if unknown)."""
    failed = []
    for doc in launchpad.fireworks.find(campaign_fireworks(campaign, state="FIZZLED"), {"name": 1, "fw_id": 1}):
        launch = launchpad.launches.find_one({"fw_id": doc["fw_id"]}, sort=[("launch_id", -1)])
        failed.append({"name": doc["name"], "fw_id": doc["fw_id"], "launch_dir": launch["launch_dir"] if launch else None})
    return failed
