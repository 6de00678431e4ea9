"""The one training loop for every registered model: energy + force matching with Adam, its epochs run by
the epoch loop it shares with fine-tuning (``mlff.epochs``)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mlff import BEST_CHECKPOINT, preemption
from mlff.checkpoint import read_model_checkpoint, save_model_checkpoint
from mlff.epochs import EpochLog, EpochTrainer, run_epochs
from mlff.graph import MAX_ATOMIC_NUMBER
from mlff.models import ForceField, build_model, energy_and_forces
from mlff.prediction import predict
from mlff.trajectory import Trajectory
from records.summaries import TrainingSummary

LAST_CHECKPOINT = "last.pt"
# The loss weights (the paper's 1:1000) and gradient-clipping norm ``train`` uses unless told otherwise.
ENERGY_WEIGHT, FORCE_WEIGHT, GRAD_CLIP_NORM = 1.0, 1000.0, 10.0


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; training stops instead of going on."""


def require_labelled(trajectories: list[Trajectory], part: str) -> None:
    if not trajectories or sum(t.n_frames for t in trajectories) == 0:
        raise ValueError(f"the {part} set has no frames")
    for run, trajectory in enumerate(trajectories):
        if trajectory.energy_eV is None or trajectory.forces_eV_A is None:
            raise ValueError(f"{part} run {run} lacks reference energies or forces")
        for name in ("positions_A", "energy_eV", "forces_eV_A"):
            if not np.isfinite(getattr(trajectory, name)).all():
                raise ValueError(f"{part} run {run} has non-finite {name}")


def fit_atomic_energies(trajectories: list[Trajectory]) -> np.ndarray:
    """Per-element energies [MAX_ATOMIC_NUMBER + 1] (eV) whose sum best fits each frame's energy.

    Least squares over all frames of element counts against energies; with a single composition
    the system is underdetermined and the minimum-norm solution is taken. Absent elements get 0.
    """
    counts = np.concatenate(
        [np.tile(np.bincount(t.numbers, minlength=MAX_ATOMIC_NUMBER + 1), (t.n_frames, 1)) for t in trajectories]
    )  # [n_frames, MAX_ATOMIC_NUMBER + 1]
    energies_eV = np.concatenate([t.energy_eV for t in trajectories])  # [n_frames]
    present = counts.any(axis=0)
    solution, *_ = np.linalg.lstsq(counts[:, present].astype(np.float64), energies_eV, rcond=None)
    atomic_energies_eV = np.zeros(MAX_ATOMIC_NUMBER + 1)
    atomic_energies_eV[present] = solution
    return atomic_energies_eV


def validation_errors(model: ForceField, trajectories: list[Trajectory], batch_size: int) -> dict[str, float]:
    """Energy MAE per atom (eV/atom, over frames) and force MAE (eV/Å, over all components)."""
    energy_errors, force_errors = [], []
    for trajectory in trajectories:
        energies_eV, forces_eV_A = predict(model, trajectory, batch_size)
        energy_errors.append(np.abs(energies_eV - trajectory.energy_eV) / trajectory.n_atoms)
        force_errors.append(np.abs(forces_eV_A - trajectory.forces_eV_A).ravel())
    return {
        "energy_mae_eV_atom": float(np.concatenate(energy_errors).mean()),
        "force_mae_eV_A": float(np.concatenate(force_errors).mean()),
    }


@dataclass
class _ZooTrainer(EpochTrainer):
    """A registered model's epochs: Adam, the learning rate lowered on a validation plateau, ``best.pt`` and,
    after every epoch, ``last.pt`` with everything a resume needs."""

    model: ForceField
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    shuffler: np.random.Generator
    train: list[Trajectory]
    validation: list[Trajectory]
    out_dir: Path
    batch_size: int
    energy_weight: float
    force_weight: float
    grad_clip_norm: float
    learning_rate: float
    dataset_hash: str
    seed: int

    def __post_init__(self):
        self.frames = [(run, frame) for run, trajectory in enumerate(self.train) for frame in range(trajectory.n_frames)]

    def run_epoch(self, epoch: int) -> tuple[dict[str, float], dict[str, float]]:
        self.model.train()
        train_loss = train_epoch(
            self.model, self.train, self.frames, self.shuffler, self.optimizer, self.batch_size, self.energy_weight,
            self.force_weight, self.grad_clip_norm, epoch, self.out_dir / LAST_CHECKPOINT,
        )
        self.model.eval()
        return validation_errors(self.model, self.validation, self.batch_size), {"train_loss": train_loss}

    def after_validation(self, score: float) -> dict[str, float]:
        self.scheduler.step(score)
        return {"learning_rate": self.optimizer.param_groups[0]["lr"]}

    def save_best(self, epoch: int, errors: dict[str, float]) -> None:
        save_model_checkpoint(self.out_dir / BEST_CHECKPOINT, self.model, dataset_hash=self.dataset_hash,
                              extra={"epoch": epoch, "seed": self.seed, "validation": errors})

    def save_progress(self, epoch: int, log: EpochLog, wall_s: float) -> None:
        save_model_checkpoint(self.out_dir / LAST_CHECKPOINT, self.model, dataset_hash=self.dataset_hash, extra={
            "epoch": epoch,
            "seed": self.seed,
            **log.checkpoint_extra(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "learning_rate": self.learning_rate,
            "shuffler_state": json.dumps(self.shuffler.bit_generator.state),
            "torch_rng_state": torch.get_rng_state(),
            "wall_s": wall_s,
        })


def train(
    model_name: str,
    hparams: dict,
    train: list[Trajectory],
    validation: list[Trajectory],
    out_dir: str | os.PathLike,
    *,
    energy_weight: float = ENERGY_WEIGHT,
    force_weight: float = FORCE_WEIGHT,
    learning_rate: float,
    batch_size: int,
    max_epochs: int,
    max_wall_s: float | None,
    seed: int,
    device: str,
    dataset_hash: str,
    progress: bool = True,
    grad_clip_norm: float = GRAD_CLIP_NORM,
    lr_patience_epochs: int = 5,
    lr_factor: float = 0.5,
    resume: bool = False,
) -> TrainingSummary:
    """Train ``model_name`` on ``train`` and keep the checkpoint that is best on ``validation``.

    Loss per batch = energy_weight * MAE(energy per atom, eV/atom) + force_weight * MAE(force
    components, eV/Å). MAE rather than MSE: the errors reported (and used to pick the best epoch)
    are MAEs, so training minimises what is reported, and MAE is less dominated than MSE by the few
    high-force frames of the hottest runs. The paper's 1:1000 weighting is the default.

    Adam; the learning rate is multiplied by ``lr_factor`` after ``lr_patience_epochs`` epochs
    without a better validation score (the same weighted MAE sum); gradients are clipped to
    norm ``grad_clip_norm``. Before the first step the per-element reference energies are fitted
    to what the untrained model leaves of the ``train`` energies, so training starts from the
    best energy offset.

    Writes to ``out_dir``: ``best.pt`` (best validation score), ``last.pt`` (every epoch, with
    optimizer and scheduler state, epoch and best score in ``extra``) and ``learning_curve.json``.
    Stops after ``max_epochs``, or before an epoch that would overrun ``max_wall_s`` at the pace
    of the slowest epoch so far (at least one epoch always runs). Raises NonFiniteLossError on a
    NaN or infinite loss.

    With ``resume`` and a ``last.pt`` in ``out_dir``, training continues after that epoch with its
    weights, optimizer and scheduler state, random-number states, best score and wall time; a
    ``learning_rate`` different from the one it was saved with (an error handler lowered it)
    scales the current learning rate by their ratio. When ``mlff.preemption`` is asked to stop,
    training raises ``Preempted`` at the next batch; the unfinished epoch is redone on resume.
    """
    start_s = time.monotonic()
    require_labelled(train, "train")
    require_labelled(validation, "validation")
    for name, value in (("learning_rate", learning_rate), ("batch_size", batch_size), ("max_epochs", max_epochs)):
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)

    torch.manual_seed(seed)
    shuffler = np.random.default_rng(seed)
    model = build_model(model_name, **hparams).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=lr_factor, patience=lr_patience_epochs)
    log = EpochLog()
    last_path = out_dir / LAST_CHECKPOINT
    if resume and last_path.exists():
        saved = read_model_checkpoint(last_path, device)
        if saved["dataset_hash"] != dataset_hash or saved["model_name"] != model_name:
            raise ValueError(f"{last_path}: cannot resume, it was trained on other data or is another model")
        extra = saved["extra"]
        model.load_state_dict(saved["state_dict"])
        optimizer.load_state_dict(extra["optimizer"])
        scheduler.load_state_dict(extra["scheduler"])
        for group in optimizer.param_groups:
            group["lr"] *= learning_rate / extra["learning_rate"]
        shuffler.bit_generator.state = json.loads(extra["shuffler_state"])
        torch.set_rng_state(extra["torch_rng_state"])
        log = EpochLog.resumed(extra, out_dir)
        start_s -= extra["wall_s"]
    else:
        untrained_energies_eV = [predict(model, trajectory, batch_size)[0] for trajectory in train]
        residuals = [replace(t, energy_eV=t.energy_eV - e) for t, e in zip(train, untrained_energies_eV)]
        model.set_atomic_energies(fit_atomic_energies(residuals))
    trainer = _ZooTrainer(model, optimizer, scheduler, shuffler, train, validation, out_dir, batch_size, energy_weight,
                          force_weight, grad_clip_norm, learning_rate, dataset_hash, seed)
    stopped_by = run_epochs(trainer, log, out_dir, start_s=start_s, max_epochs=max_epochs, max_wall_s=max_wall_s,
                            energy_weight=energy_weight, force_weight=force_weight, progress=progress,
                            description=f"train {model_name}")
    return training_summary(model_name, log.curve, stopped_by, log.best, start_s,
                            sum(p.numel() for p in model.parameters()), out_dir, dataset_hash, seed, device,
                            conservative=model.conservative)


def training_summary(model_name: str, curve: list[dict], stopped_by: str, best: dict, start_s: float,
                     n_parameters: int, out_dir: Path, dataset_hash: str, seed: int, device,
                     **extra) -> TrainingSummary:
    """What a training (or fine-tuning, ``mlff.fine_tuning``) returns: its epochs, best validation errors,
    checkpoint and what it trained on, plus ``extra`` (fields of ``TrainingSummary``)."""
    return TrainingSummary(
        model_name=model_name,
        epochs_run=len(curve),
        stopped_by=stopped_by,
        best_epoch=best["epoch"],
        best_validation_energy_mae_eV_atom=best["energy_mae_eV_atom"],
        best_validation_force_mae_eV_A=best["force_mae_eV_A"],
        wall_s=time.monotonic() - start_s,
        n_parameters=n_parameters,
        checkpoint=str(out_dir / BEST_CHECKPOINT),
        dataset_hash=dataset_hash,
        seed=seed,
        device=str(device),
        **extra,
    )


def train_epoch(
    model, trajectories, frames, shuffler, optimizer, batch_size, energy_weight, force_weight, grad_clip_norm, epoch,
    checkpoint_path,
) -> float:
    """One pass over ``frames`` (run, frame) in a shuffled order; the frame-weighted mean loss.

    Raises ``Preempted`` (naming ``checkpoint_path``, the last finished epoch) when asked to stop.
    """
    order = shuffler.permutation(len(frames))
    total_loss, dtype = 0.0, model.atomic_energies_eV.dtype
    for batch_number, start in enumerate(range(0, len(order), batch_size)):
        if preemption.requested():
            raise preemption.Preempted(str(checkpoint_path))
        picked = [(trajectories[run], frame) for run, frame in (frames[i] for i in order[start : start + batch_size])]
        graph = model.make_graph([(t.numbers, t.positions_A[f], t.cell_A) for t, f in picked])
        as_tensor = lambda array: torch.as_tensor(array, dtype=dtype, device=graph.cell_A.device)  # noqa: E731
        reference_energy_eV = as_tensor(np.array([t.energy_eV[f] for t, f in picked]))  # [batch]
        reference_forces_eV_A = as_tensor(np.concatenate([t.forces_eV_A[f] for t, f in picked]))  # [n_atoms, 3]
        atoms_per_structure = torch.bincount(graph.batch, minlength=graph.n_structures)  # [batch]
        energy_eV, forces_eV_A = energy_and_forces(model, graph, training=True)
        energy_loss = ((energy_eV - reference_energy_eV).abs() / atoms_per_structure).mean()
        force_loss = (forces_eV_A - reference_forces_eV_A).abs().mean()
        loss = energy_weight * energy_loss + force_weight * force_loss
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite training loss in epoch {epoch}, batch {batch_number}: energy term "
                f"{energy_loss.item()}, force term {force_loss.item()}"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
        optimizer.step()
        total_loss += loss.item() * len(picked)
    return total_loss / len(frames)
