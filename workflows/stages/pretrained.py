"""What the results of a pretrained model's stages record of it."""

from __future__ import annotations

import hashlib

from records.provenance import sha256_file
from workflows.inputs import PretrainedInputs


PRETRAINED_PROVENANCE = ("pretrained", "pretrained_version", "mode", "checkpoint_file", "base_checkpoint_file",
                         "base_checkpoint_sha256")  # besides checkpoint_sha256


def pretrained_provenance(pretrained: PretrainedInputs) -> dict:
    """What a pretrained model's results record of it: name, package version, mode, the weights used and,
    once fine-tuned, the weights it started from."""
    model = pretrained.model()
    files = [str(path) for path in model.weights()]
    weights_file, weights_sha256 = None, None  # a calculator class may name no file, or several
    if files:
        hashes = [sha256_file(file) for file in files]
        weights_file = ", ".join(files)
        weights_sha256 = hashes[0] if len(hashes) == 1 else hashlib.sha256("".join(hashes).encode()).hexdigest()
    recorded = {"pretrained": pretrained.name, "pretrained_version": model.version(), "mode": pretrained.mode}
    if pretrained.checkpoint is None:
        return {**recorded, "checkpoint_file": weights_file, "checkpoint_sha256": weights_sha256}
    return {**recorded, "checkpoint_file": pretrained.checkpoint, "checkpoint_sha256": sha256_file(pretrained.checkpoint),
            "base_checkpoint_file": weights_file, "base_checkpoint_sha256": weights_sha256}
