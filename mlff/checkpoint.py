"""Model checkpoints: name, hyperparameters and weights (never a pickled module)."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from mlff.models import ForceField, build_model
from mlff.models.base import resolve_device
from records.atomic_file import atomic_write
from records.errors import CampaignError

CHECKPOINT_FORMAT = "mlff-checkpoint-1"


class CheckpointError(CampaignError, ValueError):
    """A checkpoint file is missing, corrupt or of an unknown format."""


def save_model_checkpoint(
    path: str | os.PathLike, model: ForceField, *, dataset_hash: str, extra: dict | None = None
) -> None:
    """Write ``model`` to ``path`` atomically (records/atomic_file.py).

    ``extra`` holds anything else to keep (epoch, scores, optimizer state): tensors, numbers,
    strings and containers of them, so that it loads with ``weights_only=True``.
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_name": model.name,
        "hparams": dict(model.hparams),
        "state_dict": model.state_dict(),
        "dataset_hash": dataset_hash,
        "extra": extra or {},
    }
    with atomic_write(path) as fh:
        torch.save(payload, fh)


def read_model_checkpoint(path: str | os.PathLike, device: str | torch.device | None = None) -> dict:
    """The stored dictionary of a checkpoint, tensors mapped to ``device`` (default: CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    try:
        payload = torch.load(path, map_location=device or "cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({err})") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: expected checkpoint format {CHECKPOINT_FORMAT!r}, found {found!r}")
    return payload


def load_model(path: str | os.PathLike, device: str | torch.device | None = None) -> tuple[ForceField, dict]:
    """The model stored at ``path`` in eval mode on ``device`` (default: CUDA if available, else CPU),
    in the floating-point dtype it was saved in, and the checkpoint's metadata (everything but the weights)."""
    device = resolve_device(device)
    payload = read_model_checkpoint(path, device)
    try:
        model = build_model(payload["model_name"], **payload["hparams"])
        model.to(device=device, dtype=payload["state_dict"]["atomic_energies_eV"].dtype)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: checkpoint does not match a known model ({err})") from err
    metadata = {key: value for key, value in payload.items() if key != "state_dict"}
    return model.eval(), metadata
