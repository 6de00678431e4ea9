"""Error handlers for failed launches, in custodian's shape: ``check`` finds an error it knows,
``correct`` returns the correction as data and changes nothing itself.

The login node writes ``error.json`` into the failed launch's directory (the stage, the firetask's
inputs, FireWorks' stack trace and the corrections already made to this firework) and asks each
handler in turn; launchers/offline.py applies the first correction to the firework's inputs and
reruns it, and the rerun resumes from its checkpoints. An action is either
``{"input": name, "from": old, "to": new}`` or ``{"retry": attempt}``.

Physical instability is not an error: an MD run whose atoms fuse returns normally as a result
with its collapse time, never reaches these handlers and is never retried.
"""

from __future__ import annotations

import abc
import json
from pathlib import Path

from custodian.custodian import ErrorHandler

ERROR_FILE = "error.json"
HANDLER_DEFAULTS = {
    "learning_rate_factor": 0.5,  # a NaN loss multiplies the learning rate by this
    "max_learning_rate_corrections": 3,
    "batch_size_factor": 0.5,  # CUDA out of memory multiplies the batch size by this (down to 1)
    "max_md_retries": 2,  # an MD run that crashed is rerun from its checkpoint at most this often
}


class LaunchHandler(ErrorHandler, abc.ABC):
    """A handler of one stage's failures; ``settings`` override ``HANDLER_DEFAULTS``."""

    stage: str
    name: str
    changes_input: str | None = None  # the stage input a correction changes (a test checks that it is one)

    def __init__(self, settings: dict | None = None):
        unknown = sorted(set(settings or {}) - set(HANDLER_DEFAULTS))
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown settings {unknown}; known: {sorted(HANDLER_DEFAULTS)}")
        self.settings = {**HANDLER_DEFAULTS, **(settings or {})}

    @staticmethod
    def read_error(directory: str | Path) -> dict:
        path = Path(directory) / ERROR_FILE
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: cannot read the failure record ({err})") from err

    def previous_corrections(self, error: dict) -> int:
        return sum(c["handler"] == self.name for c in error["corrections"])

    @abc.abstractmethod
    def check(self, directory: str | Path = "./") -> bool:
        """Whether the failure in ``directory`` is one this handler can correct."""

    @abc.abstractmethod
    def correct(self, directory: str | Path = "./") -> dict:
        """``{"errors": [...], "actions": [...]}`` for the failure in ``directory``."""


class NonFiniteLossHandler(LaunchHandler):
    """Training loss became NaN or infinite: lower the learning rate and resume."""

    stage, name, changes_input = "train", "non_finite_loss", "learning_rate"

    def check(self, directory="./") -> bool:
        error = self.read_error(directory)
        return (
            error["stage"] == self.stage
            and "NonFiniteLossError" in error["stacktrace"]
            and self.previous_corrections(error) < self.settings["max_learning_rate_corrections"]
        )

    def correct(self, directory="./") -> dict:
        old = self.read_error(directory)["inputs"][self.changes_input]
        new = old * self.settings["learning_rate_factor"]
        return {"errors": ["non-finite training loss"],
                "actions": [{"input": self.changes_input, "from": old, "to": new}]}


class CudaOutOfMemoryHandler(LaunchHandler):
    """CUDA ran out of memory during training: halve the batch and resume."""

    stage, name, changes_input = "train", "cuda_out_of_memory", "batch_size"

    def check(self, directory="./") -> bool:
        error = self.read_error(directory)
        out_of_memory = "OutOfMemoryError" in error["stacktrace"] or "CUDA out of memory" in error["stacktrace"]
        return error["stage"] == self.stage and out_of_memory and error["inputs"][self.changes_input] > 1

    def correct(self, directory="./") -> dict:
        old = self.read_error(directory)["inputs"][self.changes_input]
        new = max(1, int(old * self.settings["batch_size_factor"]))
        return {"errors": ["CUDA out of memory"], "actions": [{"input": self.changes_input, "from": old, "to": new}]}


# Errors of the machine rather than of the inputs, which the same MD run may not meet again: the GPU
# or its driver failing, memory running out, a shared filesystem's hiccup.
RETRYABLE_MD_ERRORS = (
    "CUDA error", "CUDA out of memory", "OutOfMemoryError", "CUBLAS_STATUS", "cuDNN error", "NCCL error",
    "MemoryError", "Input/output error", "Stale file handle", "Connection timed out",
)


class MDCrashHandler(LaunchHandler):
    """The MD engine raised an error a retry can fix (``RETRYABLE_MD_ERRORS``): rerun from the
    checkpoint, a limited number of times. Anything else (a bad input, a bug) stays failed."""

    stage, name = "md", "md_crash"

    def check(self, directory="./") -> bool:
        error = self.read_error(directory)
        return (
            error["stage"] == self.stage
            and any(signature in error["stacktrace"] for signature in RETRYABLE_MD_ERRORS)
            and self.previous_corrections(error) < self.settings["max_md_retries"]
        )

    def correct(self, directory="./") -> dict:
        attempt = self.previous_corrections(self.read_error(directory)) + 1
        return {"errors": ["MD engine crashed"], "actions": [{"retry": attempt}]}


HANDLERS = (NonFiniteLossHandler, CudaOutOfMemoryHandler, MDCrashHandler)


def write_error(directory: str | Path, stage: str, inputs: dict, stacktrace: str, corrections: list[dict]) -> None:
    """Write the failure record the handlers read."""
    record = {"stage": stage, "inputs": inputs, "stacktrace": stacktrace, "corrections": corrections}
    (Path(directory) / ERROR_FILE).write_text(json.dumps(record, indent=2))


def find_correction(directory: str | Path) -> dict | None:
    """The first handler's correction for the failure recorded in ``directory``, with its name, or None."""
    for handler in (cls() for cls in HANDLERS):
        if handler.check(directory):
            return {"handler": handler.name, **handler.correct(directory)}
    return None
