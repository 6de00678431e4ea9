"""The prediction stage: a trained or pretrained model's energy and force errors on held-out reference frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.errors import mae, r2_score
from mlff import preemption
from mlff.models.base import resolve_device
from mlff.trajectory import read_trajectory
from records.provenance import sha256_file
from records.results import PredictionResult, Provenance
from workflows.inputs import PredictInputs, PretrainedPredictInputs
from workflows.stages.pretrained import pretrained_provenance
from workflows.stages.training import training_split


def _predictor(inputs: PredictInputs | PretrainedPredictInputs, device: str):
    """(frames -> (energies, forces), the provenance of the model, its label) of a prediction's model."""
    if isinstance(inputs, PretrainedPredictInputs):
        from mlff.prediction import predict_with_calculator

        calculator = inputs.pretrained.model().calculator(device, inputs.pretrained.checkpoint)
        return (lambda frames: predict_with_calculator(calculator, frames)), \
            pretrained_provenance(inputs.pretrained), inputs.pretrained.label
    from mlff.checkpoint import load_model
    from mlff.prediction import predict as predict_frames

    network, _ = load_model(inputs.checkpoint, device=device)
    return (lambda frames: predict_frames(network, frames, device=device)), \
        {"checkpoint_sha256": sha256_file(inputs.checkpoint)}, None


def predict(inputs: PredictInputs | PretrainedPredictInputs) -> dict:
    """Energy and force errors of a trained or pretrained model on ``n_frames`` held-out frames of a material."""
    device = str(resolve_device(inputs.device))
    held_out: dict[str, np.ndarray] = {}  # training runs: only their test frames are held out
    if inputs.held_out_split is not None:
        _, split = training_split(inputs.training_references, inputs.held_out_split)
        held_out = {entry.path: frames for entry, frames in zip(inputs.training_references, split.test, strict=True)}
    pool = []  # (reference index, frame index) of every held-out frame
    trajectories = [read_trajectory(entry.path) for entry in inputs.references]
    for index, (entry, trajectory) in enumerate(zip(inputs.references, trajectories, strict=True)):
        frames = held_out.get(entry.path, np.arange(trajectory.n_frames))
        pool.extend((index, int(frame)) for frame in frames)
    if not pool:
        raise ValueError(f"{inputs.material}: no held-out reference frames left to score")
    rng = np.random.default_rng(inputs.seed)
    chosen = [pool[i] for i in np.sort(rng.choice(len(pool), size=min(inputs.n_frames, len(pool)), replace=False))]

    predict_frames, model_provenance, label = _predictor(inputs, device)
    predicted_E, reference_E, predicted_F, reference_F, n_atoms = [], [], [], [], []
    for index, trajectory in enumerate(trajectories):
        preemption.stop_if_requested()  # nothing to keep: a stopped prediction starts again
        frames = np.array([frame for i, frame in chosen if i == index], dtype=np.int64)
        if frames.size == 0:
            continue
        subset = trajectory.select(frames)
        energies, forces = predict_frames(subset)
        predicted_E.append(energies)
        reference_E.append(subset.energy_eV)
        predicted_F.append(forces.reshape(-1, 3))
        reference_F.append(subset.forces_eV_A.reshape(-1, 3))
        n_atoms.append(np.full(len(frames), subset.n_atoms))
    predicted_E, reference_E = np.concatenate(predicted_E), np.concatenate(reference_E)  # [n_frames]
    predicted_F, reference_F = np.concatenate(predicted_F), np.concatenate(reference_F)  # [n_frames * n_atoms, 3]
    n_atoms = np.concatenate(n_atoms)

    out = Path(inputs.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parity = out / "parity.npz"
    np.savez_compressed(
        parity, predicted_energy_eV=predicted_E, reference_energy_eV=reference_E, n_atoms=n_atoms,
        predicted_forces_eV_A=predicted_F, reference_forces_eV_A=reference_F,
    )
    doc = PredictionResult(
        source=inputs.model,
        label=label,
        material=inputs.material,
        n_frames=len(chosen),
        energy_mae_eV_atom=mae(predicted_E / n_atoms, reference_E / n_atoms),
        energy_r2=r2_score(predicted_E, reference_E),
        force_mae_eV_A=mae(predicted_F, reference_F),
        force_r2=r2_score(predicted_F, reference_F),
        parity_path=str(parity),
        parity_sha256=sha256_file(parity),
        provenance=Provenance.now(device=device, seed=inputs.seed, **model_provenance),
    )
    return {"summary": {"n_frames": len(chosen), "parity_path": str(parity)}, "results": [doc.model_dump()]}
