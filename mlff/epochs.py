"""The one epoch loop, shared by the zoo's training (``mlff.training``) and fine-tuning (``mlff.fine_tuning``).

``run_epochs`` owns what every training does around its epochs: the validation score, the best epoch
and its checkpoint, the learning curve, the wall-time budget, and what a resume needs of them
(``EpochLog``). A trainer (``EpochTrainer``) owns one epoch, its own checkpoints, and how often it
polls ``mlff.preemption``.
"""

from __future__ import annotations

import abc
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from records.atomic_file import atomic_write

LEARNING_CURVE = "learning_curve.json"


@dataclass
class EpochLog:
    """What the epoch loop has recorded so far; a resumed training restores it (``resumed``)."""

    curve: list[dict] = field(default_factory=list)  # one row per epoch run, as in LEARNING_CURVE
    best: dict = field(default_factory=lambda: {"score": math.inf, "epoch": 0})  # and the best epoch's errors
    slowest_epoch_s: float = 0.0

    def checkpoint_extra(self) -> dict:
        """What a checkpoint keeps of the log (beside the epoch) for ``resumed``."""
        return {"best_epoch": self.best["epoch"], "best_score": self.best["score"], "best": json.dumps(self.best),
                "slowest_epoch_s": self.slowest_epoch_s}

    @classmethod
    def resumed(cls, extra: dict, out_dir: Path) -> EpochLog:
        """The log as it was after epoch ``extra["epoch"]``, from a checkpoint's ``extra`` (``checkpoint_extra``)
        and the learning curve in ``out_dir``, which may have gone on."""
        curve = json.loads((out_dir / LEARNING_CURVE).read_text())[: extra["epoch"]]
        return cls(curve, json.loads(extra["best"]), extra["slowest_epoch_s"])


class EpochTrainer(abc.ABC):
    """One epoch and the checkpoints of a training, for ``run_epochs``."""

    @abc.abstractmethod
    def run_epoch(self, epoch: int) -> tuple[dict[str, float], dict[str, float]]:
        """Train epoch ``epoch`` (from 1) and validate. Returns the validation errors (``energy_mae_eV_atom``,
        eV/atom, and ``force_mae_eV_A``, eV/Å) and the training's learning-curve columns (``train_loss``, or
        none). Polls ``mlff.preemption`` as often as the trainer can stop, and raises ``Preempted``."""

    def after_validation(self, score: float) -> dict[str, float]:
        """Act on the epoch's validation ``score`` (a learning-rate schedule); returns learning-curve columns."""
        return {}

    @abc.abstractmethod
    def save_best(self, epoch: int, errors: dict[str, float]) -> None:
        """Write the checkpoint of ``epoch``, the best so far on validation, to BEST_CHECKPOINT."""

    def save_progress(self, epoch: int, log: EpochLog, wall_s: float) -> None:
        """After each epoch, keep what a resume needs, ``wall_s`` (s) having passed; a trainer that starts over
        keeps nothing."""


def run_epochs(
    trainer: EpochTrainer,
    log: EpochLog,
    out_dir: Path,
    *,
    start_s: float,
    max_epochs: int,
    max_wall_s: float | None,
    energy_weight: float,
    force_weight: float,
    progress: bool = False,
    description: str = "",
) -> str:
    """The one epoch loop: run ``trainer``'s epochs from the one after ``log``'s last up to ``max_epochs``.

    Each epoch is scored on validation by energy_weight * energy MAE (eV/atom) + force_weight * force MAE
    (eV/Å); a better score than the best so far has its checkpoint written (``trainer.save_best``). After
    each epoch ``log`` has its row, the learning curve is written to ``out_dir / LEARNING_CURVE`` and the
    trainer saves its progress. Stops before an epoch that would overrun ``max_wall_s``, counted from
    ``start_s`` (``time.monotonic``), at the pace of the slowest epoch so far (epoch 1 always runs).
    Returns what stopped it: ``"max_epochs"`` or ``"max_wall_s"``.
    """
    stopped_by = "max_epochs"
    epochs = tqdm(range(len(log.curve) + 1, max_epochs + 1), desc=description, unit="epoch", disable=not progress)
    for epoch in epochs:
        if max_wall_s is not None and epoch > 1 and time.monotonic() - start_s + log.slowest_epoch_s > max_wall_s:
            stopped_by = "max_wall_s"
            break
        epoch_start_s = time.monotonic()
        errors, training_columns = trainer.run_epoch(epoch)
        score = energy_weight * errors["energy_mae_eV_atom"] + force_weight * errors["force_mae_eV_A"]
        scored_columns = trainer.after_validation(score)
        if score < log.best["score"]:
            log.best = {"score": score, "epoch": epoch, **errors}
            trainer.save_best(epoch, errors)
        log.slowest_epoch_s = max(log.slowest_epoch_s, time.monotonic() - epoch_start_s)
        log.curve.append({
            "epoch": epoch,
            **training_columns,
            "validation_energy_mae_eV_atom": errors["energy_mae_eV_atom"],
            "validation_force_mae_eV_A": errors["force_mae_eV_A"],
            "validation_score": score,
            **scored_columns,
            "wall_s": time.monotonic() - start_s,
        })
        with atomic_write(out_dir / LEARNING_CURVE, "w") as fh:
            json.dump(log.curve, fh, indent=1)
        trainer.save_progress(epoch, log, time.monotonic() - start_s)
        epochs.set_postfix(val_force_mae_eV_A=f"{errors['force_mae_eV_A']:.4f}")
    epochs.close()
    return stopped_by
