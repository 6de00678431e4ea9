"""Train / validation / test frames, split per run as in the paper, and a hash of a data set.

Each reference trajectory is one run at one temperature; every run contributes its own random
train, validation and test frames, so all temperatures are represented in every part.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from mlff.trajectory import Trajectory

PARTS = ("train", "validation", "test")


@dataclass(frozen=True)
class FrameSplit:
    """Frame indices per run: ``train[r]``, ``validation[r]``, ``test[r]`` index into run ``r``."""

    train: list[np.ndarray]
    validation: list[np.ndarray]
    test: list[np.ndarray]

    def select(self, trajectories: list[Trajectory], part: str) -> list[Trajectory]:
        """The frames of ``part`` ("train", "validation" or "test"), one Trajectory per run."""
        if part not in PARTS:
            raise ValueError(f"unknown split part {part!r}; expected one of {PARTS}")
        indices = getattr(self, part)
        if len(indices) != len(trajectories):
            raise ValueError(f"the split covers {len(indices)} runs but {len(trajectories)} trajectories were given")
        return [trajectory.select(frames) for trajectory, frames in zip(trajectories, indices)]

    def to_dict(self) -> dict:
        """Plain lists, for JSON."""
        return {part: [frames.tolist() for frames in getattr(self, part)] for part in PARTS}

    @classmethod
    def from_dict(cls, data: dict) -> FrameSplit:
        return cls(**{part: [np.asarray(frames, dtype=np.int64) for frames in data[part]] for part in PARTS})


def split_frames(
    trajectories: list[Trajectory], n_train_per_run: int, n_validation_per_run: int, seed: int
) -> FrameSplit:
    """Random disjoint train / validation / test frames of every run; the test part is the rest.

    Run ``r`` is shuffled by a generator seeded with ``(seed, r)``, so a run's split does not depend
    on the other runs. Indices are sorted within each part.
    """
    if n_train_per_run < 1 or n_validation_per_run < 0:
        raise ValueError(
            f"need n_train_per_run >= 1 and n_validation_per_run >= 0, got {n_train_per_run}, {n_validation_per_run}"
        )
    needed = n_train_per_run + n_validation_per_run
    parts = {part: [] for part in PARTS}
    for run, trajectory in enumerate(trajectories):
        if trajectory.n_frames < needed:
            raise ValueError(
                f"run {run} has {trajectory.n_frames} frames, fewer than the {n_train_per_run} train + "
                f"{n_validation_per_run} validation frames asked for"
            )
        order = np.random.default_rng([seed, run]).permutation(trajectory.n_frames)
        parts["train"].append(np.sort(order[:n_train_per_run]))
        parts["validation"].append(np.sort(order[n_train_per_run:needed]))
        parts["test"].append(np.sort(order[needed:]))
    return FrameSplit(**parts)


def dataset_hash(trajectories: list[Trajectory]) -> str:
    """sha256 over the numbers, cell, positions, energies and forces of every run, in order."""
    digest = hashlib.sha256()
    for trajectory in trajectories:
        for name in ("numbers", "cell_A", "positions_A", "energy_eV", "forces_eV_A"):
            values = getattr(trajectory, name)
            digest.update(name.encode())
            if values is None:
                digest.update(b"absent")
                continue
            values = np.ascontiguousarray(values, dtype=np.int64 if name == "numbers" else np.float64)
            digest.update(str(values.shape).encode())
            digest.update(values.tobytes())
    return digest.hexdigest()
