"""An ASE calculator for any registered force field, fresh or from a checkpoint."""

from __future__ import annotations

import os

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from mlff.checkpoint import load_model
from mlff.models import MODELS, ForceField, build_model, energy_and_forces
from mlff.models.base import resolve_device


class MLFFCalculator(Calculator):
    """Energy (eV) and forces (eV/Å) of a periodic ``ase.Atoms`` from a ForceField."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, model: ForceField, **kwargs):
        super().__init__(**kwargs)
        self.model = model.eval()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        graph = self.model.make_graph([self.atoms])
        energy_eV, forces_eV_A = energy_and_forces(self.model, graph)
        energy_eV = float(energy_eV[0])
        self.results = {
            "energy": energy_eV,
            "free_energy": energy_eV,
            "forces": forces_eV_A.cpu().numpy().astype(np.float64),
        }


def load_calculator(
    name_or_path: str, seed: int = 0, device: str | None = None, **hparams
) -> MLFFCalculator:
    """A calculator from a checkpoint file, or a freshly initialised registered model.

    An existing file is loaded as a checkpoint (``hparams`` must then be empty: they are stored in
    it). A registered model name gives a new model seeded with ``seed`` and built with ``hparams``.
    ``device`` defaults to CUDA when available, else CPU.
    """
    device = resolve_device(device)
    if os.path.isfile(name_or_path):
        if hparams:
            raise ValueError(
                f"{name_or_path} is a checkpoint: its hyperparameters are stored in it, got {sorted(hparams)}"
            )
        model, _ = load_model(name_or_path, device)
    elif name_or_path in MODELS:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(name_or_path, **hparams)
        model.to(device)
    else:
        raise ValueError(f"{name_or_path!r} is neither a checkpoint file nor a known model {sorted(MODELS)}")
    return MLFFCalculator(model)
