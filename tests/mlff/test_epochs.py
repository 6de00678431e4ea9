"""The one epoch loop (mlff/epochs.py) with a scripted trainer: which epochs are kept, what the learning
curve and a resume hold, and where the wall-time budget stops it, on a clock the test moves."""

from __future__ import annotations

import json

import pytest

from mlff import epochs
from mlff.epochs import LEARNING_CURVE, EpochLog, EpochTrainer, run_epochs

# Per epoch: validation energy MAE (eV/atom), force MAE (eV/Å) and the epoch's length (s).
SCRIPT = [(0.5, 0.30, 10.0), (0.4, 0.10, 30.0), (0.1, 0.20, 10.0), (0.3, 0.05, 20.0), (0.2, 0.09, 10.0)]
ENERGY_WEIGHT, FORCE_WEIGHT = 1.0, 10.0  # scores 3.5, 1.4, 2.1, 0.8, 1.1: epochs 1, 2 and 4 improve


class Clock:
    def __init__(self):
        self.now_s = 1000.0

    def monotonic(self) -> float:
        return self.now_s


class ScriptedTrainer(EpochTrainer):
    """Each epoch takes its scripted time on ``clock`` and scores its scripted errors."""

    def __init__(self, clock: Clock):
        self.clock, self.saved_best, self.progress = clock, [], []

    def run_epoch(self, epoch):
        energy, force, length_s = SCRIPT[epoch - 1]
        self.clock.now_s += length_s
        return {"energy_mae_eV_atom": energy, "force_mae_eV_A": force}, {"train_loss": 10.0 * epoch}

    def after_validation(self, score):
        return {"learning_rate": score / 100}

    def save_best(self, epoch, errors):
        self.saved_best.append(epoch)

    def save_progress(self, epoch, log, wall_s):
        self.progress.append((epoch, log.checkpoint_extra(), wall_s))


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(epochs.time, "monotonic", clock.monotonic)
    return clock


def run(trainer, log, tmp_path, clock, **options):
    settings = dict(start_s=1000.0, max_epochs=len(SCRIPT), max_wall_s=None, energy_weight=ENERGY_WEIGHT,
                    force_weight=FORCE_WEIGHT)
    return run_epochs(trainer, log, tmp_path, **{**settings, **options})


def test_every_better_epoch_is_kept_and_the_curve_written(tmp_path, clock):
    trainer, log = ScriptedTrainer(clock), EpochLog()
    assert run(trainer, log, tmp_path, clock) == "max_epochs"
    assert trainer.saved_best == [1, 2, 4]
    assert log.best == {"score": pytest.approx(0.8), "epoch": 4, "energy_mae_eV_atom": 0.3, "force_mae_eV_A": 0.05}
    assert log.slowest_epoch_s == 30.0
    curve = json.loads((tmp_path / LEARNING_CURVE).read_text())
    assert curve == log.curve and [row["epoch"] for row in curve] == [1, 2, 3, 4, 5]
    assert list(curve[0]) == ["epoch", "train_loss", "validation_energy_mae_eV_atom", "validation_force_mae_eV_A",
                              "validation_score", "learning_rate", "wall_s"]
    assert [row["validation_score"] for row in curve] == pytest.approx([3.5, 1.4, 2.1, 0.8, 1.1])
    assert [row["wall_s"] for row in curve] == [10.0, 40.0, 50.0, 70.0, 80.0]
    assert [epoch for epoch, _, _ in trainer.progress] == [1, 2, 3, 4, 5]
    assert trainer.progress[2][1]["best_epoch"] == 2 and trainer.progress[2][2] == 50.0


def test_the_budget_stops_before_an_epoch_as_long_as_the_slowest(tmp_path, clock):
    """After epoch 2 (40 s, slowest 30 s) a third epoch would end by 70 s: over a 65 s budget, within 70 s."""
    trainer = ScriptedTrainer(clock)
    assert run(trainer, EpochLog(), tmp_path, clock, max_wall_s=65.0) == "max_wall_s"
    assert trainer.saved_best == [1, 2]
    clock.now_s, trainer = 1000.0, ScriptedTrainer(clock)
    assert run(trainer, EpochLog(), tmp_path, clock, max_wall_s=70.0, max_epochs=3) == "max_epochs"
    clock.now_s, trainer = 1000.0, ScriptedTrainer(clock)
    assert run(trainer, EpochLog(), tmp_path, clock, max_wall_s=0.0) == "max_wall_s"  # epoch 1 always runs
    assert trainer.saved_best == [1]


def test_a_resumed_log_goes_on_after_its_epoch(tmp_path, clock):
    """A log restored after epoch 2 from a checkpoint and a curve that had gone on to epoch 3 runs epochs 3 to 5,
    and keeps epoch 2 as the best until epoch 4 beats it."""
    first = ScriptedTrainer(clock)
    run(first, EpochLog(), tmp_path, clock, max_epochs=3)
    _, saved, wall_s = first.progress[1]
    log = EpochLog.resumed({"epoch": 2, **saved}, tmp_path)
    assert [row["epoch"] for row in log.curve] == [1, 2] and log.best["epoch"] == 2 and log.slowest_epoch_s == 30.0
    clock.now_s, resumed = 1000.0 + wall_s, ScriptedTrainer(clock)
    run(resumed, log, tmp_path, clock)
    assert resumed.saved_best == [4]
    assert [row["epoch"] for row in json.loads((tmp_path / LEARNING_CURVE).read_text())] == [1, 2, 3, 4, 5]
