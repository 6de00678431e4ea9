"""Data splits, data-set hashes, training and prediction, on frames labelled by ASE's EMT."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT

from mlff.checkpoint import load_model, read_model_checkpoint
from mlff.data import FrameSplit, dataset_hash, split_frames
from mlff.models import MODELS, build_model, energy_and_forces
from mlff.prediction import predict
from mlff.training import (
    NonFiniteLossError,
    fit_atomic_energies,
    train,
    validation_errors,
)
from mlff.trajectory import Trajectory
from model_sizes import TRAINING_HPARAMS as SMALL_HPARAMS


def emt_run(n_frames: int, seed: int, element: str = "Cu", a_A: float = 3.61) -> Trajectory:
    """Rattled 4-atom fcc cells labelled with EMT energies and forces: one 'run'."""
    base = bulk(element, "fcc", a=a_A, cubic=True)
    rng = np.random.default_rng(seed)
    positions, energies, forces = [], [], []
    for _ in range(n_frames):
        atoms = base.copy()
        atoms.positions += rng.normal(0.0, 0.1, atoms.positions.shape)
        atoms.calc = EMT()
        energies.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces())
        positions.append(atoms.positions)
    return Trajectory(
        numbers=base.numbers, cell_A=base.cell.array, positions_A=np.array(positions), step=np.arange(n_frames),
        time_fs=2.0 * np.arange(n_frames), energy_eV=np.array(energies), forces_eV_A=np.array(forces),
    )


@pytest.fixture(scope="module")
def runs():
    return [emt_run(12, seed=0), emt_run(10, seed=1)]


# ---------------------------------------------------------------- splits and hashes


def test_split_is_disjoint_per_run_and_reproducible(runs):
    split = split_frames(runs, n_train_per_run=5, n_validation_per_run=2, seed=3)
    for run, trajectory in enumerate(runs):
        parts = [split.train[run], split.validation[run], split.test[run]]
        assert [len(p) for p in parts] == [5, 2, trajectory.n_frames - 7]
        assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(trajectory.n_frames))
    again = split_frames(runs, 5, 2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(split.train + split.test, again.train + again.test))
    other = split_frames(runs, 5, 2, seed=4)
    assert any(not np.array_equal(a, b) for a, b in zip(split.train, other.train))
    shorter_first_run = split_frames([runs[0].select(slice(0, 9)), runs[1]], 5, 2, seed=3)
    assert np.array_equal(shorter_first_run.train[1], split.train[1])  # runs are split independently
    restored = FrameSplit.from_dict(json.loads(json.dumps(split.to_dict())))
    assert all(np.array_equal(a, b) for a, b in zip(restored.validation, split.validation))


def test_split_select_returns_the_frames(runs):
    split = split_frames(runs, 4, 3, seed=0)
    validation = split.select(runs, "validation")
    assert [t.n_frames for t in validation] == [3, 3]
    np.testing.assert_array_equal(validation[1].forces_eV_A, runs[1].forces_eV_A[split.validation[1]])
    with pytest.raises(ValueError, match="unknown split part"):
        split.select(runs, "holdout")


def test_split_rejects_runs_with_too_few_frames(runs):
    with pytest.raises(ValueError, match="run 1 has 10 frames"):
        split_frames(runs, n_train_per_run=8, n_validation_per_run=3, seed=0)


def test_dataset_hash_sees_every_change(runs):
    reference = dataset_hash(runs)
    copy = [dataclasses.replace(t, forces_eV_A=t.forces_eV_A.copy()) for t in runs]
    assert dataset_hash(copy) == reference
    copy[1].forces_eV_A[4, 2, 1] += 1e-9
    assert dataset_hash(copy) != reference
    changed_energy = [runs[0], dataclasses.replace(runs[1], energy_eV=runs[1].energy_eV + 1e-9)]
    assert dataset_hash(changed_energy) != reference
    changed_cell = [dataclasses.replace(runs[0], cell_A=runs[0].cell_A * 1.0001), runs[1]]
    assert dataset_hash(changed_cell) != reference
    assert dataset_hash(runs[::-1]) != reference


def test_fit_atomic_energies_recovers_per_element_energies():
    rng = np.random.default_rng(0)
    truth_eV = {29: -3.7, 79: -2.9}
    runs = []
    for numbers in ([29, 29, 29, 79], [29, 79, 79, 79]):
        n_frames = 5
        energies = sum(truth_eV[z] for z in numbers) + rng.normal(0.0, 1e-6, n_frames)
        runs.append(Trajectory(
            numbers=np.array(numbers), cell_A=4 * np.eye(3), positions_A=rng.random((n_frames, 4, 3)),
            step=np.arange(n_frames), time_fs=np.arange(n_frames) * 1.0, energy_eV=energies,
            forces_eV_A=np.zeros((n_frames, 4, 3)),
        ))
    fitted = fit_atomic_energies(runs)
    assert fitted[29] == pytest.approx(-3.7, abs=1e-5) and fitted[79] == pytest.approx(-2.9, abs=1e-5)
    assert np.count_nonzero(fitted) == 2


# ---------------------------------------------------------------- prediction


def test_predict_matches_single_frames_for_any_batch_size(runs):
    torch.manual_seed(0)
    model = build_model("schnet", **SMALL_HPARAMS["schnet"]).to(torch.float64)
    trajectory = runs[1]
    energies, forces = predict(model, trajectory, batch_size=4)
    assert energies.shape == (10,) and forces.shape == (10, 4, 3) and energies.dtype == np.float64
    for frame in (0, 5, 9):
        graph = model.make_graph([(trajectory.numbers, trajectory.positions_A[frame], trajectory.cell_A)])
        energy, frame_forces = energy_and_forces(model, graph)
        assert energies[frame] == pytest.approx(energy.item(), rel=1e-12)
        np.testing.assert_allclose(forces[frame], frame_forces.numpy(), atol=1e-12)
    energies_one, forces_one = predict(model, trajectory, batch_size=1)
    np.testing.assert_allclose(energies_one, energies, rtol=1e-12)
    np.testing.assert_allclose(forces_one, forces, atol=1e-12)


# ---------------------------------------------------------------- training


def test_every_registered_model_has_training_sizes():
    """A model added to the registry trains below only with small sizes in tests/model_sizes.py."""
    assert set(SMALL_HPARAMS) == set(MODELS)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_training_lowers_the_force_error_and_writes_checkpoints(name, runs, tmp_path):
    split = split_frames(runs, n_train_per_run=6, n_validation_per_run=2, seed=0)
    train_runs, validation_runs = split.select(runs, "train"), split.select(runs, "validation")
    summary = train(
        name, SMALL_HPARAMS[name], train_runs, validation_runs, tmp_path, learning_rate=3e-3, batch_size=4,
        max_epochs=4, max_wall_s=None, seed=0, device="cpu", dataset_hash=dataset_hash(runs), progress=False,
    )
    torch.manual_seed(0)
    untrained = build_model(name, **SMALL_HPARAMS[name])
    trained, metadata = load_model(summary.checkpoint, device="cpu")
    before = validation_errors(untrained, train_runs, batch_size=4)["force_mae_eV_A"]
    after = validation_errors(trained, train_runs, batch_size=4)["force_mae_eV_A"]
    assert after < 0.95 * before
    assert summary.epochs_run == 4 and summary.stopped_by == "max_epochs"
    assert summary.dataset_hash == metadata["dataset_hash"] == dataset_hash(runs)
    assert summary.n_parameters == sum(p.numel() for p in trained.parameters())
    assert summary.conservative is type(trained).conservative
    curve = json.loads((tmp_path / "learning_curve.json").read_text())
    assert [row["epoch"] for row in curve] == [1, 2, 3, 4]
    best_row = min(curve, key=lambda row: row["validation_score"])
    assert summary.best_epoch == best_row["epoch"] == metadata["extra"]["epoch"]
    assert summary.best_validation_force_mae_eV_A == pytest.approx(best_row["validation_force_mae_eV_A"])
    last = read_model_checkpoint(tmp_path / "last.pt")
    assert last["extra"]["epoch"] == 4 and last["extra"]["best_epoch"] == summary.best_epoch
    assert last["extra"]["optimizer"]["state"] and "best" in last["extra"]["scheduler"]


def test_training_stops_at_the_wall_time_budget(runs, tmp_path):
    summary = train(
        "schnet", SMALL_HPARAMS["schnet"], runs[:1], runs[1:], tmp_path, learning_rate=1e-3, batch_size=6,
        max_epochs=50, max_wall_s=0.0, seed=0, device="cpu", dataset_hash="h", progress=False,
    )
    assert summary.epochs_run == 1 and summary.stopped_by == "max_wall_s"
    assert (tmp_path / "best.pt").is_file()


def test_non_finite_loss_raises(runs, tmp_path):
    with pytest.raises(NonFiniteLossError, match="non-finite training loss"):
        train(
            "schnet", SMALL_HPARAMS["schnet"], runs[:1], runs[1:], tmp_path, learning_rate=1e30, batch_size=2,
            max_epochs=3, max_wall_s=None, seed=0, device="cpu", dataset_hash="h", progress=False,
        )


def test_training_rejects_unlabelled_frames(runs, tmp_path):
    unlabelled = dataclasses.replace(runs[0], forces_eV_A=None)
    energies = runs[1].energy_eV.copy()
    energies[3] = np.nan
    not_finite = dataclasses.replace(runs[1], energy_eV=energies)
    for train_runs, validation_runs, message in [
        ([unlabelled], runs[1:], "train run 0 lacks"),
        (runs[:1], [not_finite], "validation run 0 has non-finite energy_eV"),
    ]:
        with pytest.raises(ValueError, match=message):
            train(
                "schnet", {}, train_runs, validation_runs, tmp_path, learning_rate=1e-3, batch_size=2, max_epochs=1,
                max_wall_s=None, seed=0, device="cpu", dataset_hash="h", progress=False,
            )
