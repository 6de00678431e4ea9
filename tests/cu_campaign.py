"""A small Cu campaign at 300 K for the launcher tests: an EMT reference and one tiny SchNet, stable for the
tens of ps the fault tests need, and quick everywhere else."""

from __future__ import annotations

from pathlib import Path

import yaml
from ase.build import bulk
from ase.calculators.emt import EMT


def cu_spec(name: str, *, launcher: str = "local", md_production_ps: float = 0.1, repetitions: int = 2) -> dict:
    return {
        "campaign": {"name": name, "store": {"embedded": "store.json"}, "launcher": launcher, "workdir": "runs",
                     "seed": 1, "device": "cpu"},
        "materials": {"Cu": {"structure": "cu.extxyz", "generate": {
            "calculator": "ase.calculators.emt:EMT", "runs": 1, "ramp_ps": 0.02, "production_ps": 0.3}}},
        "training": {"material": "Cu", "temperatures_K": [300], "n_train_per_run": 60, "n_validation_per_run": 20,
                     "batch_size": 10, "learning_rate": 0.003, "max_epochs": 10, "max_wall_minutes": 1},
        "models": {"schnet": {"hidden_channels": 8, "num_interactions": 1, "cutoff_A": 4.0}},
        "prediction": {"n_frames": 10},
        "md": {"temperatures_K": [300], "repetitions": repetitions, "ramp": {"start_K": 100, "ramp_ps": 0.02},
               "production_ps": md_production_ps, "discard_ps": 0.02, "save_every_steps": 2},
        "analysis": {"rdf": {"r_max_A": 3.5, "n_bins": 20}, "diffusing_specie": "Cu"},
    }


def write_cu_campaign(directory: Path, spec: dict) -> Path:
    """``spec`` as ``directory``/campaign.yaml, beside the Cu structure it names; the spec's path."""
    directory.mkdir(parents=True, exist_ok=True)
    bulk("Cu", cubic=True).repeat(2).write(directory / "cu.extxyz")
    path = directory / "campaign.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


class BrokenEMT(EMT):
    """A reference calculator that always fails: a stage that FIZZLEs for good."""

    def calculate(self, *args, **kwargs):
        raise RuntimeError("this calculator always fails")
