"""The one MD checkpoint format, for every engine: an ``.npz`` file written atomically.

It holds ``format``, ``identity`` (what a run must match to resume from it: engine, protocols, seeds
and atoms), ``driver`` (JSON: the step, the live replicas and what the driver has recorded for every
replica, wall time) and the engine's own state as arrays named ``engine.<name>``. Floats round-trip
exactly (float64 arrays; JSON writes Python floats with their shortest exact repr), which is what
lets the torch engine resume bitwise.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlff.md.protocol import MDProtocol
from records.atomic_file import atomic_write

CHECKPOINT_FORMAT = "mlff-md-checkpoint-1"
ENGINE_PREFIX = "engine."


@dataclass(frozen=True)
class MDCheckpoint:
    """A run's state at the end of ``step``; ``records[r]`` is replica r's (``driver.ReplicaRecord``) as a dict."""

    step: int
    live: list[int]  # replicas still running, in the engine's slot order
    records: list[dict]
    wall_s: float
    engine_state: dict[str, np.ndarray]  # the live replicas' state, as the engine gave it


def run_identity(engine: str, protocols: list[MDProtocol], seeds: list[int], numbers: np.ndarray) -> str:
    """What a checkpoint must match to be resumed."""
    return json.dumps(
        {"engine": engine, "protocols": [dataclasses.asdict(p) for p in protocols], "seeds": list(seeds),
         "numbers": np.asarray(numbers).tolist()},
        sort_keys=True,
    )


def save_md_checkpoint(path: str | os.PathLike, identity: str, checkpoint: MDCheckpoint) -> None:
    driver = {"step": checkpoint.step, "live": checkpoint.live, "records": checkpoint.records, "wall_s": checkpoint.wall_s}
    arrays = {f"{ENGINE_PREFIX}{name}": np.asarray(value) for name, value in checkpoint.engine_state.items()}
    with atomic_write(path) as fh:
        np.savez(fh, format=CHECKPOINT_FORMAT, identity=identity, driver=json.dumps(driver), **arrays)


def read_md_checkpoint(path: str | os.PathLike, identity: str | None = None) -> MDCheckpoint:
    """The checkpoint at ``path``; with ``identity``, one of another run raises ValueError."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable MD checkpoint ({err}); remove it to start the run over") from err
    if str(stored.get("format")) != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an MD checkpoint of format {CHECKPOINT_FORMAT!r}; remove it to start over")
    if identity is not None and str(stored["identity"]) != identity:
        raise ValueError(
            f"{path}: MD checkpoint of another run (engine, protocols, seeds or structure differ); remove it to start over"
        )
    driver = json.loads(str(stored["driver"]))
    engine_state = {key.removeprefix(ENGINE_PREFIX): value for key, value in stored.items() if key.startswith(ENGINE_PREFIX)}
    return MDCheckpoint(driver["step"], driver["live"], driver["records"], driver["wall_s"], engine_state)
