"""Registry of force-field models by name.

``MODELS`` maps each name to its class. A model's module is imported the first time its class is
looked up, so a process that uses SchNet does not pay for the e3nn-based models (eSCN, SCN,
Equiformer), whose import costs about 1.4 s, most of it torch._dynamo pulled in by e3nn, nor for
torch_geometric, which DeeperGATGNN, eSCN, SCN and Equiformer use for their segment operations and
which adds about 2 s (1 s on top of e3nn: it pulls in torch._dynamo too, and its own subpackages).

To add a model:

1. Write ``mlff/models/<module>.py`` with a subclass of ``base.ForceField``: a ``name``, keyword
   hyperparameters with type hints and the paper's defaults (``build_model`` checks values against the
   hints), ``super().__init__(locals())`` first, and ``atom_energies_eV`` (or, for direct forces,
   ``conservative = False`` and ``atom_energies_and_forces``). Comment tensor shapes.
2. Register it below: ``_REGISTERED[name] = (module, class)``.
3. Give it small sizes in ``tests/model_sizes.py``. The tests that run over ``MODELS`` then check it:
   invariances, forces = -dE/dx, batching and dtypes (``tests/mlff/test_models.py``), training
   (``tests/mlff/test_training.py``), the ASE calculator and a whole small campaign.
4. Add its row to ``docs/models.md``: its paper, forces, parameter count and how it departs from the paper.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Iterator, Mapping

from pydantic import TypeAdapter, ValidationError

from mlff.models.base import ForceField, energy_and_forces

# name -> (module, class); each class's ``name`` attribute is its key here.
_REGISTERED = {
    "schnet": ("mlff.models.schnet", "SchNet"),
    "dimenet++": ("mlff.models.dimenet_pp", "DimeNetPlusPlus"),
    "forcenet": ("mlff.models.forcenet", "ForceNet"),
    "gns-tat": ("mlff.models.gns_tat", "GNSTAT"),
    "leftnet": ("mlff.models.leftnet", "LEFTNet"),
    "cgcnn": ("mlff.models.cgcnn", "CGCNN"),
    "dimenet": ("mlff.models.dimenet", "DimeNet"),
    "deeper-gatgnn": ("mlff.models.deeper_gatgnn", "DeeperGATGNN"),
    "escn": ("mlff.models.escn", "ESCN"),
    "scn": ("mlff.models.scn", "SCN"),
    "equiformer": ("mlff.models.equiformer", "Equiformer"),
}


class _Registry(Mapping[str, type[ForceField]]):
    def __getitem__(self, name: str) -> type[ForceField]:
        module, class_name = _REGISTERED[name]
        return getattr(importlib.import_module(module), class_name)

    def __contains__(self, name: object) -> bool:  # without importing the model's module
        return name in _REGISTERED

    def __iter__(self) -> Iterator[str]:
        return iter(_REGISTERED)

    def __len__(self) -> int:
        return len(_REGISTERED)


MODELS: Mapping[str, type[ForceField]] = _Registry()

__all__ = ["MODELS", "ForceField", "build_model", "energy_and_forces"]


def build_model(name: str, **hparams) -> ForceField:
    """A freshly initialised model ``name`` with ``hparams`` overriding its defaults.

    Each value must have its constructor parameter's type (strictly: 8.7 or True is no integer,
    "abc" no number; an integer is a number), and each model checks its values' ranges."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    model_class = MODELS[name]
    accepted = set(inspect.signature(model_class.__init__).parameters) - {"self"}
    unknown = sorted(set(hparams) - accepted)
    if unknown:
        raise ValueError(f"unknown hyperparameters {unknown} for model {name!r}; accepted: {sorted(accepted)}")
    types = typing.get_type_hints(model_class.__init__)
    for parameter, value in hparams.items():
        try:
            TypeAdapter(types[parameter]).validate_python(value, strict=True)
        except ValidationError:
            raise ValueError(f"hyperparameter {parameter} of {name!r} must be {types[parameter].__name__}, "
                             f"got {value!r}") from None
    return model_class(**hparams)
