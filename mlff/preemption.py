"""Cooperative stop on a signal: Slurm's time-limit or preemption warning, scancel, Ctrl-C, kill.

Long loops (training batches, MD steps, reference MD, prediction and analysis) poll ``requested()``;
when it is true they write their checkpoint, if they have one, and raise ``Preempted``. The rocket
then records the launch as preempted, and the login node puts the firework back to READY instead of
marking it failed; it resumes from its checkpoint. A second Ctrl-C does not wait for the next poll:
it raises ``Interrupted`` wherever the process is, and the work resumes from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)  # what Slurm sends an array task (launchers/slurm.py)
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # what a user sends the local launcher: Ctrl-C, kill
_requested = {"signal": None}


class Preempted(BaseException):
    """Raised after a checkpoint was written (``checkpoint_path``; None for work that keeps none and
    starts again) because the process was told to stop.

    A BaseException, so ``except Exception`` blocks in between cannot swallow it.
    """

    def __init__(self, checkpoint_path: str | None):
        where = f"checkpoint at {checkpoint_path}" if checkpoint_path else "no checkpoint: it starts again"
        super().__init__(f"stopped by signal {_requested['signal']}; {where}")
        self.checkpoint_path = checkpoint_path

    def to_dict(self) -> dict:
        """What FireWorks stores as the exception's details: the mark the login node looks for."""
        return {"preempted": True, "checkpoint_path": self.checkpoint_path, "signal": _requested["signal"]}


class Interrupted(Preempted):
    """A second Ctrl-C: the work stops at once and resumes from its last checkpoint, if any."""

    def __init__(self):
        super().__init__(None)


def _note(signum, _frame) -> None:
    if signum == signal.SIGINT and _requested["signal"] == signal.SIGINT:
        raise Interrupted()
    _requested["signal"] = signum


def install_handlers(signals: tuple[int, ...] = STOP_SIGNALS) -> dict:
    """Make ``signals`` set the stop request instead of killing the process; returns the handlers they had."""
    previous = {signum: signal.getsignal(signum) for signum in signals}
    for signum in signals:
        signal.signal(signum, _note)
    return previous


@contextlib.contextmanager
def stopping_on(signals: tuple[int, ...]) -> Iterator[None]:
    """Inside the block ``signals`` ask for a stop (a fresh request); afterwards their handlers are restored."""
    clear()
    previous = install_handlers(signals)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def requested() -> bool:
    return _requested["signal"] is not None


def requested_signal() -> int | None:
    """The signal that asked for a stop, or None."""
    return _requested["signal"]


def stop_if_requested() -> None:
    """For work without a checkpoint: raise ``Preempted`` when a stop was asked for."""
    if requested():
        raise Preempted(None)


def clear() -> None:
    """Forget a stop request (for tests, and for a process that runs several rockets)."""
    _requested["signal"] = None
