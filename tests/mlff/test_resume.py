"""Checkpoint and resume: a stopped or killed training or MD run continues exactly where it was."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from torch.optim.optimizer import register_optimizer_step_post_hook

from md_runs import ase_md
from mlff import preemption
from mlff.checkpoint import read_model_checkpoint
from mlff.md.checkpoint import read_md_checkpoint
from mlff.md.protocol import MDProtocol
from mlff.training import train
from mlff.trajectory import read_trajectory
from test_training import SMALL_HPARAMS, emt_run

PROTOCOL = MDProtocol(temperature_K=600.0, ramp_start_K=100.0, ramp_ps=0.04, production_ps=0.1, save_every_steps=3)


class FailAt(EMT):
    """EMT that calls ``fail`` at its ``at``-th force evaluation."""

    def __init__(self, at: int, fail):
        super().__init__()
        self.at, self.fail, self.calls = at, fail, 0

    def calculate(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at:
            self.fail()
        super().calculate(*args, **kwargs)


def signal_at(at: int) -> FailAt:
    """Sends this process SIGTERM at the ``at``-th evaluation (as Slurm would)."""
    return FailAt(at, lambda: os.kill(os.getpid(), signal.SIGTERM))


def crash_at(at: int) -> FailAt:
    """Dies at the ``at``-th evaluation, like a process killed with -9 mid-run."""

    def crash():
        raise SystemExit("killed")

    return FailAt(at, crash)


def _copper():
    return bulk("Cu", cubic=True).repeat(2)


def _md(tmp_path, name, calculator, every=10):
    return ase_md(
        _copper(), calculator, PROTOCOL, seed=7, out_path=tmp_path / f"{name}.frames", progress=False,
        checkpoint_path=tmp_path / f"{name}.checkpoint.npz", checkpoint_every_steps=every,
    )


@pytest.mark.parametrize("stop_call", [9, 35], ids=["during_ramp", "during_production"])
def test_md_stopped_by_a_signal_resumes_to_the_same_trajectory(tmp_path, stop_signals, stop_call):
    straight = _md(tmp_path, "straight", EMT())
    with pytest.raises(preemption.Preempted) as stopped:
        _md(tmp_path, "stopped", signal_at(stop_call))
    assert stopped.value.to_dict()["preempted"] is True
    saved = read_md_checkpoint(tmp_path / "stopped.checkpoint.npz")
    assert 0 < saved.step < PROTOCOL.n_ramp_steps + PROTOCOL.n_production_steps
    assert ("chain_eta" in saved.engine_state) == (saved.step > PROTOCOL.n_ramp_steps)
    preemption.clear()
    resumed = _md(tmp_path, "stopped", EMT())
    reference, continued = read_trajectory(tmp_path / "straight.frames"), read_trajectory(tmp_path / "stopped.frames")
    np.testing.assert_array_equal(continued.step, reference.step)
    np.testing.assert_allclose(continued.positions_A, reference.positions_A, rtol=0, atol=1e-9)
    np.testing.assert_allclose(continued.temperature_K, reference.temperature_K, rtol=1e-9)
    assert resumed["n_frames_written"] == straight["n_frames_written"] == reference.n_frames
    assert resumed["temperature_K"] == pytest.approx(straight["temperature_K"], rel=1e-9)


def test_md_killed_between_checkpoints_drops_later_frames_and_stays_continuous(tmp_path):
    _md(tmp_path, "straight", EMT())
    with pytest.raises(SystemExit):
        _md(tmp_path, "killed", crash_at(47))  # production step 27: frames up to 27 written, checkpoint at 20
    written = read_trajectory(tmp_path / "killed.frames")
    saved_step = read_md_checkpoint(tmp_path / "killed.checkpoint.npz").step
    assert written.step[-1] > saved_step - PROTOCOL.n_ramp_steps  # frames beyond the checkpoint exist
    _md(tmp_path, "killed", EMT())
    reference, continued = read_trajectory(tmp_path / "straight.frames"), read_trajectory(tmp_path / "killed.frames")
    np.testing.assert_array_equal(continued.step, reference.step)
    np.testing.assert_array_equal(np.diff(continued.time_fs), PROTOCOL.save_every_steps * PROTOCOL.timestep_fs)
    np.testing.assert_allclose(continued.positions_A, reference.positions_A, rtol=0, atol=1e-9)


def test_md_refuses_a_checkpoint_of_another_run(tmp_path, stop_signals):
    with pytest.raises(preemption.Preempted):
        _md(tmp_path, "run", signal_at(20))
    with pytest.raises(ValueError, match="checkpoint of another run"):
        ase_md(_copper(), EMT(), PROTOCOL, seed=8, out_path=tmp_path / "run.frames", progress=False,
               checkpoint_path=tmp_path / "run.checkpoint.npz")


def _train(out_dir, train_runs, validation_runs, **overrides):
    settings = dict(learning_rate=3e-3, batch_size=3, max_epochs=3, max_wall_s=None, seed=0, device="cpu",
                    dataset_hash="h", progress=False, resume=True)
    return train("schnet", SMALL_HPARAMS["schnet"], train_runs, validation_runs, out_dir, **{**settings, **overrides})


class StopInEpoch:
    """Sends SIGTERM after the ``at``-th optimiser step."""

    def __init__(self, at: int):
        self.at, self.calls = at, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGTERM)


def test_training_stopped_mid_epoch_resumes_to_the_same_model(tmp_path, stop_signals):
    train_runs, validation_runs = [emt_run(6, seed=0)], [emt_run(3, seed=1)]
    straight = _train(tmp_path / "straight", train_runs, validation_runs)
    hook = register_optimizer_step_post_hook(StopInEpoch(at=3))  # after batch 1 of epoch 2 (2 per epoch)
    try:
        with pytest.raises(preemption.Preempted):
            _train(tmp_path / "stopped", train_runs, validation_runs)
    finally:
        hook.remove()
    assert read_model_checkpoint(tmp_path / "stopped" / "last.pt")["extra"]["epoch"] == 1
    preemption.clear()
    resumed = _train(tmp_path / "stopped", train_runs, validation_runs)
    assert resumed.epochs_run == straight.epochs_run == 3
    assert resumed.best_epoch == straight.best_epoch
    assert resumed.best_validation_force_mae_eV_A == pytest.approx(straight.best_validation_force_mae_eV_A, rel=1e-6)
    final, expected = read_model_checkpoint(tmp_path / "stopped" / "last.pt"), read_model_checkpoint(tmp_path / "straight" / "last.pt")
    for name, tensor in expected["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][name], tensor, rtol=1e-6, atol=1e-8)


def test_training_resumes_with_a_lowered_learning_rate(tmp_path):
    train_runs, validation_runs = [emt_run(6, seed=0)], [emt_run(3, seed=1)]
    _train(tmp_path, train_runs, validation_runs, max_epochs=1)
    saved_lr = read_model_checkpoint(tmp_path / "last.pt")["extra"]["optimizer"]["param_groups"][0]["lr"]
    _train(tmp_path, train_runs, validation_runs, max_epochs=2, learning_rate=1.5e-3)
    resumed = read_model_checkpoint(tmp_path / "last.pt")["extra"]
    assert resumed["epoch"] == 2 and resumed["learning_rate"] == 1.5e-3
    assert resumed["optimizer"]["param_groups"][0]["lr"] == pytest.approx(saved_lr * 0.5)
