"""Fine-tuning CHGNet (mlff/fine_tuning.py) through the zoo's epoch loop, on EMT-labelled copper frames."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from mlff import preemption
from mlff.fine_tuning import fine_tune
from mlff.pretrained import Pretrained
from mlff.training import train
from records.provenance import sha256_file
from test_training import SMALL_HPARAMS, emt_run


@pytest.fixture(scope="module")
def runs():
    return [emt_run(6, seed=0)], [emt_run(3, seed=1)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fine_tune(out_dir, runs, **overrides):
    settings = dict(seed=0, device="cpu", dataset_hash="h", energy_weight=1.0, force_weight=1000.0,
                    learning_rate=1e-4, batch_size=3, max_epochs=2, max_wall_s=None)
    return fine_tune(Pretrained("chgnet"), *runs, out_dir, **{**settings, **overrides})


def test_fine_tuning_keeps_the_best_epoch_and_returns_what_training_returns(runs, tmp_path):
    summary = _fine_tune(tmp_path / "chgnet", runs)
    trained = train("schnet", SMALL_HPARAMS["schnet"], *runs, tmp_path / "schnet", learning_rate=1e-3, batch_size=3,
                    max_epochs=1, max_wall_s=None, seed=0, device="cpu", dataset_hash="h", progress=False)
    assert type(summary) is type(trained)
    assert trained.conservative is not None and trained.base_checkpoint is None
    assert summary.conservative is None and summary.base_checkpoint is not None
    assert summary.epochs_run == 2 and summary.stopped_by == "max_epochs"
    curve = json.loads((tmp_path / "chgnet" / "learning_curve.json").read_text())
    assert [row["epoch"] for row in curve] == [1, 2]
    best_row = min(curve, key=lambda row: row["validation_score"])
    assert summary.best_epoch == best_row["epoch"]
    assert summary.best_validation_force_mae_eV_A == pytest.approx(best_row["validation_force_mae_eV_A"])
    assert best_row["validation_score"] == pytest.approx(
        best_row["validation_energy_mae_eV_atom"] + 1000.0 * best_row["validation_force_mae_eV_A"])
    best = torch.load(summary.checkpoint, weights_only=False)
    assert best["epoch"] == summary.best_epoch and best["dataset_hash"] == "h"
    assert best["base_checkpoint_sha256"] == summary.base_checkpoint_sha256 == sha256_file(summary.base_checkpoint)


def test_fine_tuning_stops_at_the_wall_time_budget(runs, tmp_path):
    summary = _fine_tune(tmp_path, runs, max_epochs=5, max_wall_s=0.0)
    assert summary.epochs_run == 1 and summary.stopped_by == "max_wall_s"
    assert (tmp_path / "best.pt").is_file()


def test_a_stopped_fine_tune_names_no_checkpoint(runs, tmp_path, stop_signals):
    """CHGNet's trainer cannot stop within an epoch: a stop asked for before one raises Preempted, to start over."""
    os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(preemption.Preempted) as stopped:
        _fine_tune(tmp_path, runs)
    assert stopped.value.checkpoint_path is None
    assert not (tmp_path / "best.pt").exists()
