"""Fine-tuning a pretrained MLIP on a campaign's training split, with the package's own trainer.

Only CHGNet is fine-tuned here (``mlff.pretrained.FINE_TUNABLE``), with ``chgnet.trainer.Trainer``.
It gets what the zoo's training loop (``mlff.training``) gets: the same frames, the same
energy:force weights on the same errors (MAE of energy per atom and of force components), the same
learning rate, batch size, epochs and wall-time budget, and the checkpoint kept is the one best on
the validation frames by the same score, energy_weight * energy MAE + force_weight * force MAE.
The trainer runs one epoch at a time, so the budget is checked between epochs; its printout goes to
``chgnet-trainer.log``. A stopped fine-tune (``mlff.preemption``) starts again from the pretrained
weights.

The checkpoint (``best.pt``) holds the model (``CHGNet.as_dict``), the dataset hash, and the base
weights' file and sha256; ``mlff.pretrained.Pretrained.calculator`` loads it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from mlff import BEST_CHECKPOINT, preemption
from mlff.pretrained import FINE_TUNABLE, Pretrained, chgnet_model
from mlff.training import LEARNING_CURVE, require_labelled, training_summary
from mlff.trajectory import Trajectory
from records.atomic_file import atomic_write
from records.provenance import sha256_file

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
) -> dict:
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
    curve, best, slowest_epoch_s, stopped_by = [], {"score": math.inf, "epoch": 0}, 0.0, "max_epochs"
    for epoch in range(1, max_epochs + 1):
        preemption.stop_if_requested()
        if max_wall_s is not None and epoch > 1 and time.monotonic() - start_s + slowest_epoch_s > max_wall_s:
            stopped_by = "max_wall_s"
            break
        epoch_start_s = time.monotonic()
        trainer.starting_epoch, trainer.epochs = epoch - 1, epoch
        with open(out_dir / TRAINER_LOG, "a") as log, contextlib.redirect_stdout(log):
            trainer.train(train_loader, validation_loader, save_dir="")
        history = trainer.training_history
        if len(history["e"]["val"]) < epoch or not np.isfinite([history["e"]["val"][-1], history["f"]["val"][-1]]).all():
            raise FloatingPointError(f"fine-tuning {pretrained.name}: non-finite loss in epoch {epoch} "
                                     f"(see {out_dir / TRAINER_LOG})")
        errors = {"energy_mae_eV_atom": history["e"]["val"][-1], "force_mae_eV_A": history["f"]["val"][-1]}
        score = energy_weight * errors["energy_mae_eV_atom"] + force_weight * errors["force_mae_eV_A"]
        if score < best["score"]:
            best = {"score": score, "epoch": epoch, **errors}
            with atomic_write(out_dir / BEST_CHECKPOINT, "wb") as fh:
                torch.save({"model": trainer.model.as_dict(), "dataset_hash": dataset_hash, "epoch": epoch,
                            "base_checkpoint": str(base), "base_checkpoint_sha256": base_sha256}, fh)
        slowest_epoch_s = max(slowest_epoch_s, time.monotonic() - epoch_start_s)
        curve.append({"epoch": epoch, "validation_energy_mae_eV_atom": errors["energy_mae_eV_atom"],
                      "validation_force_mae_eV_A": errors["force_mae_eV_A"], "validation_score": score,
                      "wall_s": time.monotonic() - start_s})
        with atomic_write(out_dir / LEARNING_CURVE, "w") as fh:
            json.dump(curve, fh, indent=1)
    return training_summary(pretrained.name, curve, stopped_by, best, start_s,
                            sum(p.numel() for p in trainer.model.parameters()), out_dir, dataset_hash, seed, device,
                            base_checkpoint=str(base), base_checkpoint_sha256=base_sha256)
