"""Cooperative stop on SIGTERM / SIGUSR1 (Slurm's walltime or preemption warning).

Long loops (training batches, MD steps) poll ``requested()``; when it is true they write their
checkpoint and raise ``Preempted``. The rocket then records the launch as preempted, and the login
node puts the firework back to READY instead of marking it failed; it resumes from the checkpoint.
"""

from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
_requested = {"signal": None}


class Preempted(BaseException):
    """Raised after a checkpoint was written because the job was told to stop.

    A BaseException, so ``except Exception`` blocks in between cannot swallow it.
    """

    def __init__(self, checkpoint_path: str):
        super().__init__(f"stopped by signal {_requested['signal']}; checkpoint at {checkpoint_path}")
        self.checkpoint_path = checkpoint_path

    def to_dict(self) -> dict:
        """What FireWorks stores as the exception's details: the mark the login node looks for."""
        return {"preempted": True, "checkpoint_path": self.checkpoint_path, "signal": _requested["signal"]}


def _note(signum, _frame) -> None:
    _requested["signal"] = signum


def install_handlers() -> None:
    """Make SIGTERM and SIGUSR1 set the stop request instead of killing the process."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _note)


def requested() -> bool:
    return _requested["signal"] is not None


def clear() -> None:
    """Forget a stop request (for tests, and for a process that runs several rockets)."""
    _requested["signal"] = None
