"""Universal pretrained MLIPs as ASE calculators: the reference calculator and a campaign's pretrained entries.

Names (``PRETRAINED``):

``"chgnet"``
    CHGNet 0.3.0, the weights inside the ``chgnet`` wheel, computing energy and forces only (MD
    needs no stress or magnetic moments; skipping them saves about a third of each call).
``"sevennet-0"``
    SevenNet-0 (11 July 2024), the checkpoint inside the ``sevenn`` wheel.
``"package.module:ClassName"``
    Any ASE calculator class, built with the entry's ``options`` as keyword arguments (a local MACE,
    ORB or MatterSim checkpoint on a cluster that has the weights). Options whose names end in
    ``path``, ``paths`` or ``file`` name weight files: they must exist, their sha256 is recorded,
    and a relative one is relative to the campaign's folder.

Nothing is downloaded: a missing weight file is an error when the spec is validated (``check``).
A fine-tuned model (``mlff.fine_tuning``) is the same calculator with the weights of its
checkpoint instead of the wheel's.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from ase.calculators.calculator import BaseCalculator

CHGNET_MODEL = "0.3.0"  # the CHGNet weights shipped in the chgnet wheel
CHGNET_CHECKPOINT = f"pretrained/{CHGNET_MODEL}/chgnet_0.3.0_e29f68s314m37.pth.tar"  # in the chgnet wheel
SEVENNET_CHECKPOINT = "pretrained_potentials/SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth"  # in the sevenn wheel
PRETRAINED = {"chgnet": "chgnet", "sevennet-0": "sevenn"}  # built-in name -> its package's distribution
FINE_TUNABLE = ("chgnet",)  # the built-ins whose own trainer mlff.fine_tuning drives
WEIGHT_OPTION_SUFFIXES = ("path", "paths", "file")  # options of a calculator class that name weight files
MODE_NAMES = {"zero_shot": "zero-shot", "fine_tune": "fine-tuned"}  # how results name a pretrained entry's mode


def results_label(name: str, mode: str) -> str:
    """How results name a pretrained entry: ``chgnet zero-shot``, ``chgnet fine-tuned``."""
    return f"{name} {MODE_NAMES[mode]}"


def is_weight_option(key: str) -> bool:
    return key.endswith(WEIGHT_OPTION_SUFFIXES)


def resolve_weight_paths(options: Mapping[str, Any], root: str | os.PathLike) -> dict[str, Any]:
    """``options`` with the weight files they name (relative ones) made absolute under ``root``."""
    def under_root(path):
        return path if os.path.isabs(path) else os.path.join(root, path)

    return {key: ([under_root(v) for v in value] if isinstance(value, list | tuple) else under_root(value))
            if is_weight_option(key) else value for key, value in options.items()}


def _package_dir(package: str) -> Path:
    """Where an installed package lies, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ValueError(f"the {package} package is not installed")
    return Path(spec.origin).parent


def _chgnet_weights() -> Path:
    return _package_dir("chgnet") / CHGNET_CHECKPOINT


def _sevennet_weights() -> Path:
    return _package_dir("sevenn") / SEVENNET_CHECKPOINT


def _chgnet_calculator(model, device: str) -> BaseCalculator:
    from chgnet.model.dynamics import CHGNetCalculator

    class EnergyForcesCHGNet(CHGNetCalculator):
        implemented_properties = ("energy", "free_energy", "forces")

        def calculate(self, atoms=None, properties=None, system_changes=None):
            super().calculate(atoms, properties, system_changes, task="ef")

    return EnergyForcesCHGNet(model=model, use_device=device)


def chgnet_model(device: str, checkpoint: str | Path | None = None):
    """CHGNet: the wheel's weights, or a fine-tuned checkpoint's (``mlff.fine_tuning``)."""
    import torch
    from chgnet.model import CHGNet

    if checkpoint is None:
        return CHGNet.load(model_name=CHGNET_MODEL, use_device=device, verbose=False)
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model = CHGNet.from_dict(saved["model"])
    except Exception as err:
        raise ValueError(f"{checkpoint}: not a fine-tuned CHGNet checkpoint ({err})") from err
    return model.to(device).eval()


@dataclass(frozen=True)
class Pretrained:
    """A pretrained MLIP by name (see the module docstring), with a calculator class's keyword arguments."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def builtin(self) -> bool:
        return self.name in PRETRAINED

    def calculator_class(self) -> type[BaseCalculator] | None:
        """The ASE calculator class of a ``package.module:ClassName`` name (None for a built-in); a name that
        is neither raises ValueError saying why. Imports, instantiates nothing."""
        if self.builtin:
            return None
        module_name, _, class_name = self.name.partition(":")
        if not module_name or not class_name:
            raise ValueError(f"unknown pretrained model or calculator {self.name!r}; expected one of "
                             f"{', '.join(PRETRAINED)} or 'package.module:ClassName'")
        if module_name.startswith("."):
            raise ValueError(f"calculator {self.name!r}: {module_name} is a relative module name; give the whole "
                             "package path, such as ase.calculators.emt:EMT")
        try:
            found = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"calculator {self.name!r}: cannot import {class_name} from {module_name} ({err})") from err
        if not (isinstance(found, type) and issubclass(found, BaseCalculator)):
            raise ValueError(f"calculator {self.name!r} is not an ASE calculator class")
        return found

    def weights(self) -> list[Path]:
        """The weight files this model reads (a calculator class: its options that name files)."""
        if self.name == "chgnet":
            return [_chgnet_weights()]
        if self.name == "sevennet-0":
            return [_sevennet_weights()]
        files = []
        for key, value in self.options.items():
            if is_weight_option(key):
                files += [Path(v) for v in (value if isinstance(value, list | tuple) else [value])]
        return files

    def check(self) -> None:
        """Raise ValueError unless the calculator can be built offline: a known name or an importable ASE
        calculator class, and every weight file present. Loads no weights."""
        if self.builtin and self.options:
            raise ValueError(f"{self.name} takes no options, got {sorted(self.options)}")
        self.calculator_class()
        missing = [str(path) for path in self.weights() if not path.is_file()]
        if missing:
            raise ValueError(f"{self.name}: weight file(s) {', '.join(missing)} not found; nothing is downloaded")

    def version(self) -> str:
        """The version of the package the model comes from."""
        top_module = PRETRAINED.get(self.name) or self.name.partition(":")[0].split(".")[0]
        distributions = metadata.packages_distributions().get(top_module, [top_module])
        try:
            return metadata.version(distributions[0])
        except metadata.PackageNotFoundError:
            return "unknown"

    def calculator(self, device: str, checkpoint: str | Path | None = None) -> BaseCalculator:
        """The ASE calculator on ``device``, with the weights of a fine-tuned ``checkpoint`` if given."""
        if self.name == "chgnet":
            return _chgnet_calculator(chgnet_model(device, checkpoint), device)
        if checkpoint is not None:
            raise ValueError(f"{self.name} cannot be fine-tuned here (fine-tunable: {', '.join(FINE_TUNABLE)})")
        if self.name == "sevennet-0":
            from sevenn.calculator import SevenNetCalculator

            return SevenNetCalculator(str(_sevennet_weights()), device=device)
        return self.calculator_class()(**self.options)
