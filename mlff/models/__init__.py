"""Registry of force-field models by name."""

from __future__ import annotations

import inspect

from mlff.models.base import ForceField, energy_and_forces
from mlff.models.cgcnn import CGCNN
from mlff.models.deeper_gatgnn import DeeperGATGNN
from mlff.models.dimenet import DimeNet
from mlff.models.dimenet_pp import DimeNetPlusPlus
from mlff.models.equiformer import Equiformer
from mlff.models.escn import ESCN
from mlff.models.forcenet import ForceNet
from mlff.models.gns_tat import GNSTAT
from mlff.models.leftnet import LEFTNet
from mlff.models.scn import SCN
from mlff.models.schnet import SchNet

MODELS: dict[str, type[ForceField]] = {
    model.name: model
    for model in (
        SchNet, DimeNetPlusPlus, ForceNet, GNSTAT, LEFTNet, CGCNN, DimeNet, DeeperGATGNN, ESCN, SCN, Equiformer
    )
}

__all__ = ["MODELS", "ForceField", "build_model", "energy_and_forces"]


def build_model(name: str, **hparams) -> ForceField:
    """A freshly initialised model ``name`` with ``hparams`` overriding its defaults."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    model_class = MODELS[name]
    accepted = set(inspect.signature(model_class.__init__).parameters) - {"self"}
    unknown = sorted(set(hparams) - accepted)
    if unknown:
        raise ValueError(f"unknown hyperparameters {unknown} for model {name!r}; accepted: {sorted(accepted)}")
    return model_class(**hparams)
