"""The training stage: a zoo model trained, or a pretrained model fine-tuned, on the paper's per-run split of the
training material's reference runs."""

from __future__ import annotations

from mlff.models.base import resolve_device
from mlff.trajectory import read_trajectory
from records.provenance import sha256_file
from records.results import Provenance, TrainingResult
from records.summaries import TrainingSummary
from workflows.inputs import FineTuneInputs, RunEntry, SplitInputs, TrainInputs
from workflows.stages.pretrained import pretrained_provenance


def training_split(references: list[RunEntry], split: SplitInputs):
    """The reference runs' trajectories and the paper's per-run split of their frames (``mlff.data.split_frames``)."""
    from mlff.data import split_frames

    trajectories = [read_trajectory(entry.path) for entry in references]
    return trajectories, split_frames(trajectories, split.n_train_per_run, split.n_validation_per_run, split.split_seed)


def _training_sets(inputs: TrainInputs | FineTuneInputs):
    """(train frames, validation frames, their dataset hash) of the paper's per-run split."""
    from mlff.data import dataset_hash

    split_inputs = SplitInputs(n_train_per_run=inputs.n_train_per_run, n_validation_per_run=inputs.n_validation_per_run,
                               split_seed=inputs.split_seed)
    trajectories, split = training_split(inputs.references, split_inputs)
    train_set, validation_set = split.select(trajectories, "train"), split.select(trajectories, "validation")
    return train_set, validation_set, dataset_hash(train_set + validation_set)


def _training_outcome(inputs: TrainInputs | FineTuneInputs, summary: TrainingSummary, label: str | None = None,
                      **provenance) -> dict:
    """The training result document; ``provenance`` of a pretrained model (``pretrained_provenance``)."""
    provenance = provenance or {"checkpoint_sha256": sha256_file(summary.checkpoint)}
    doc = TrainingResult(
        source=inputs.model,
        label=label,
        epochs_run=summary.epochs_run,
        best_epoch=summary.best_epoch,
        validation_energy_mae_eV_atom=summary.best_validation_energy_mae_eV_atom,
        validation_force_mae_eV_A=summary.best_validation_force_mae_eV_A,
        n_parameters=summary.n_parameters,
        wall_s=summary.wall_s,
        checkpoint_path=summary.checkpoint,
        provenance=Provenance.now(device=summary.device, seed=inputs.seed, dataset_hash=summary.dataset_hash,
                                  **provenance),
    )
    return {"summary": summary.model_dump(), "results": [doc.model_dump()]}


def train(inputs: TrainInputs) -> dict:
    """Train a model on the paper's per-run split of the training references."""
    from mlff.training import train as train_model

    train_set, validation_set, data_hash = _training_sets(inputs)
    summary = train_model(
        inputs.model, inputs.hparams, train_set, validation_set, inputs.out_dir, seed=inputs.seed,
        device=str(resolve_device(inputs.device)), dataset_hash=data_hash, resume=True,
        energy_weight=inputs.energy_weight, force_weight=inputs.force_weight, learning_rate=inputs.learning_rate,
        batch_size=inputs.batch_size, max_epochs=inputs.max_epochs, max_wall_s=inputs.max_wall_s,
    )
    return _training_outcome(inputs, summary)


def fine_tune(inputs: FineTuneInputs) -> dict:
    """Fine-tune a pretrained MLIP on the same split, with the same settings (``mlff.fine_tuning``)."""
    from mlff.fine_tuning import fine_tune as fine_tune_model

    train_set, validation_set, data_hash = _training_sets(inputs)
    summary = fine_tune_model(
        inputs.pretrained.model(), train_set, validation_set, inputs.out_dir, seed=inputs.seed,
        device=str(resolve_device(inputs.device)), dataset_hash=data_hash, energy_weight=inputs.energy_weight,
        force_weight=inputs.force_weight, learning_rate=inputs.learning_rate, batch_size=inputs.batch_size,
        max_epochs=inputs.max_epochs, max_wall_s=inputs.max_wall_s,
    )
    fine_tuned = inputs.pretrained.model_copy(update={"checkpoint": summary.checkpoint})
    return _training_outcome(inputs, summary, label=fine_tuned.label, **pretrained_provenance(fine_tuned))
