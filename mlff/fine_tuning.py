"""Fine-tuning a pretrained MLIP on a campaign's training split, with the package's own trainer.

Only CHGNet is fine-tuned here (``mlff.pretrained.FINE_TUNABLE``), with ``chgnet.trainer.Trainer``.
It gets what the zoo's training (``mlff.training``) gets: the same frames, the same energy:force
weights on the same errors (MAE of energy per atom and of force components), the same learning
rate, batch size, epochs and wall-time budget, and the same epoch loop (``mlff.epochs``), so the
checkpoint kept is the one best on the validation frames by the same score, energy_weight * energy
MAE + force_weight * force MAE. The trainer runs one epoch per call, so the budget and a stop
request are checked between epochs; its printout goes to ``chgnet-trainer.log``. A stopped fine-tune (``mlff.preemption``) starts again from the pretrained
weights.

The checkpoint (``best.pt``) holds the model (``CHGNet.as_dict``), the dataset hash, and the base
weights' file and sha256; ``mlff.pretrained.Pretrained.calculator`` loads it.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np
import torch

from mlff import BEST_CHECKPOINT, preemption
from mlff.epochs import EpochLog, EpochTrainer, run_epochs
from mlff.pretrained import FINE_TUNABLE, Pretrained, chgnet_model
from mlff.training import require_labelled, training_summary
from mlff.trajectory import Trajectory
from records.atomic_file import atomic_write
from records.provenance import sha256_file
from records.summaries import TrainingSummary

TRAINER_LOG = "chgnet-trainer.log"


def _chgnet_data(trajectories: list[Trajectory], batch_size: int, seed: int, shuffle: bool):
    """A CHGNet data loader over every frame: pymatgen structures, energies per atom (eV/atom), forces (eV/Å)."""
    from chgnet.data.dataset import StructureData, collate_graphs
    from pymatgen.core import Lattice, Structure

    structures, energies, forces = [], [], []
    for trajectory in trajectories:
        lattice = Lattice(trajectory.cell_A)
        for frame in range(trajectory.n_frames):
            structures.append(Structure(lattice, trajectory.numbers.tolist(), trajectory.positions_A[frame],
                                        coords_are_cartesian=True))
            energies.append(float(trajectory.energy_eV[frame]) / trajectory.n_atoms)
            forces.append(trajectory.forces_eV_A[frame].tolist())
    data = StructureData(structures, energies, forces, shuffle=False)
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_graphs,
                                       generator=torch.Generator().manual_seed(seed))


class _CHGNetFineTuner(EpochTrainer):
    """CHGNet's own ``trainer``, one epoch per call, for ``mlff.epochs.run_epochs``; ``best.pt`` as in the
    module docstring. It keeps no progress: a stopped fine-tune starts again."""

    def __init__(self, trainer, train_loader, validation_loader, out_dir: Path, name: str, dataset_hash: str,
                 base: Path, base_sha256: str):
        self.trainer, self.train_loader, self.validation_loader = trainer, train_loader, validation_loader
        self.out_dir, self.name, self.dataset_hash = out_dir, name, dataset_hash
        self.base, self.base_sha256 = base, base_sha256

    def run_epoch(self, epoch: int) -> tuple[dict[str, float], dict[str, float]]:
        preemption.stop_if_requested()  # the trainer cannot stop within an epoch
        self.trainer.starting_epoch, self.trainer.epochs = epoch - 1, epoch
        with open(self.out_dir / TRAINER_LOG, "a") as log, contextlib.redirect_stdout(log):
            self.trainer.train(self.train_loader, self.validation_loader, save_dir="")
        history = self.trainer.training_history
        if len(history["e"]["val"]) < epoch or not np.isfinite([history["e"]["val"][-1], history["f"]["val"][-1]]).all():
            raise FloatingPointError(f"fine-tuning {self.name}: non-finite loss in epoch {epoch} "
                                     f"(see {self.out_dir / TRAINER_LOG})")
        return {"energy_mae_eV_atom": history["e"]["val"][-1], "force_mae_eV_A": history["f"]["val"][-1]}, {}

    def save_best(self, epoch: int, errors: dict[str, float]) -> None:
        with atomic_write(self.out_dir / BEST_CHECKPOINT, "wb") as fh:
            torch.save({"model": self.trainer.model.as_dict(), "dataset_hash": self.dataset_hash, "epoch": epoch,
                        "base_checkpoint": str(self.base), "base_checkpoint_sha256": self.base_sha256}, fh)


def fine_tune(
    pretrained: Pretrained,
    train: list[Trajectory],
    validation: list[Trajectory],
    out_dir: str | os.PathLike,
    *,
    seed: int,
    device: str,
    dataset_hash: str,
    energy_weight: float,
    force_weight: float,
    learning_rate: float,
    batch_size: int,
    max_epochs: int,
    max_wall_s: float | None,
) -> TrainingSummary:
    """Fine-tune ``pretrained`` on ``train``, keeping the checkpoint best on ``validation`` (see the module
    docstring). Returns the summary ``mlff.training.train`` returns, plus the base weights' file and sha256."""
    from chgnet.trainer import Trainer

    if pretrained.name not in FINE_TUNABLE:
        raise ValueError(f"{pretrained.name} cannot be fine-tuned here (fine-tunable: {', '.join(FINE_TUNABLE)})")
    start_s = time.monotonic()
    require_labelled(train, "train")
    require_labelled(validation, "validation")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (base,) = pretrained.weights()
    base_sha256 = sha256_file(base)
    with open(out_dir / TRAINER_LOG, "w") as log, contextlib.redirect_stdout(log):
        model = chgnet_model(device)
        trainer = Trainer(model, targets="ef", energy_loss_ratio=energy_weight, force_loss_ratio=force_weight,
                          criterion="MAE", learning_rate=learning_rate, epochs=max_epochs, use_device=device,
                          torch_seed=seed, data_seed=seed, print_freq=10**9)
        train_loader = _chgnet_data(train, batch_size, seed, shuffle=True)
        validation_loader = _chgnet_data(validation, batch_size, seed, shuffle=False)
    fine_tuner = _CHGNetFineTuner(trainer, train_loader, validation_loader, out_dir, pretrained.name, dataset_hash,
                                  base, base_sha256)
    epoch_log = EpochLog()
    stopped_by = run_epochs(fine_tuner, epoch_log, out_dir, start_s=start_s, max_epochs=max_epochs, max_wall_s=max_wall_s,
                            energy_weight=energy_weight, force_weight=force_weight)
    return training_summary(pretrained.name, epoch_log.curve, stopped_by, epoch_log.best, start_s,
                            sum(p.numel() for p in trainer.model.parameters()), out_dir, dataset_hash, seed, device,
                            base_checkpoint=str(base), base_checkpoint_sha256=base_sha256)
