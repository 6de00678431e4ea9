"""The typed inputs of every stage: what campaign/tasks.py stores in a firework, parsed back in the firetask.

Each model mirrors the stored dictionary exactly (``extra="forbid"``): the stored shape is part of
every task's digest, so these models describe it and never change it. A firetask parses its stored
``inputs`` into one of them (workflows/firetasks.py) and hands it to one stage function
(workflows/stages/); the planner validates every task it makes against the same model. Stored paths
are relative to the campaign's folder; the firetask makes them absolute (``StoredPath``).
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from analysis.settings import AnalysisSettings
from mlff.md.protocol import MDProtocol
from mlff.pretrained import Pretrained, resolve_weight_paths, results_label
from mlff.structures import BUILTIN_STRUCTURES

ROOT = "campaign_root"  # the validation context's key for the campaign's folder


def _in_campaign(path: str, info: ValidationInfo) -> str:
    """A stored path, relative to the campaign's folder, made absolute under it when the context gives it
    (the firetask's; the planner checks stored paths as they are)."""
    root = (info.context or {}).get(ROOT)
    return path if root is None or os.path.isabs(path) else os.path.join(root, path)


def _structure_in_campaign(source: str, info: ValidationInfo) -> str:
    return source if source in BUILTIN_STRUCTURES else _in_campaign(source, info)


StoredPath = Annotated[str, AfterValidator(_in_campaign)]
StructureSource = Annotated[str, AfterValidator(_structure_in_campaign)]  # a built-in's name or a StoredPath


class Inputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunEntry(Inputs):
    """One trajectory a stage reads: a reference run (``run``) or an MD run (``repetition``)."""

    path: StoredPath
    temperature_K: float
    run: int | None = None
    repetition: int | None = None
    seed: int | None = None


class ProtocolInputs(Inputs):
    """The MD protocol as stored (``mlff.md.protocol.MDProtocol``'s fields; its defaults for the rest)."""

    temperature_K: float
    timestep_fs: float
    ramp_start_K: float
    ramp_ps: float
    production_ps: float
    save_every_steps: int

    def protocol(self) -> MDProtocol:
        return MDProtocol(**self.model_dump())


class GenerateReferenceInputs(Inputs):
    """Generate one reference trajectory by MD with a reference ASE calculator."""

    mode: Literal["generate"]
    material: str
    structure: StructureSource = Field(..., description="A built-in structure's name or a structure file's path.")
    calculator: str
    protocol: ProtocolInputs
    seed: int
    device: str
    out_path: StoredPath


class ImportReferenceInputs(Inputs):
    """Import one reference trajectory from a file."""

    mode: Literal["import"]
    material: str
    source_path: StoredPath
    temperature_K: float
    timestep_fs: float
    out_path: StoredPath


class PretrainedInputs(Inputs):
    """A pretrained MLIP (``mlff.pretrained``) as stored: its name, mode, calculator options and, once
    fine-tuned, the checkpoint with its new weights."""

    name: str
    mode: Literal["zero_shot", "fine_tune"]
    options: dict[str, Any]
    checkpoint: StoredPath | None = None  # the fine-tuned weights; None: the pretrained ones

    @field_validator("options")
    @classmethod
    def _weights_in_campaign(cls, options: dict, info: ValidationInfo) -> dict:
        root = (info.context or {}).get(ROOT)
        return options if root is None else resolve_weight_paths(options, root)

    def model(self) -> Pretrained:
        return Pretrained(self.name, self.options)

    @property
    def label(self) -> str:
        return results_label(self.name, self.mode)


class _TrainingSettings(Inputs):
    """The training split and settings a model trains (or a pretrained one fine-tunes) with."""

    references: list[RunEntry]
    n_train_per_run: int
    n_validation_per_run: int
    split_seed: int
    energy_weight: float
    force_weight: float
    learning_rate: float
    batch_size: int
    max_epochs: int
    max_wall_s: float | None
    seed: int
    device: str
    out_dir: StoredPath


class TrainInputs(_TrainingSettings):
    """Train one model on the per-run split of the training references."""

    model: str
    hparams: dict[str, int | float | str | bool | None]


class FineTuneInputs(_TrainingSettings):
    """Fine-tune one pretrained MLIP on the per-run split of the training references."""

    model: str
    pretrained: PretrainedInputs


class SplitInputs(Inputs):
    """The training split, to find the held-out frames of the training material."""

    n_train_per_run: int
    n_validation_per_run: int
    split_seed: int


class _PredictSettings(Inputs):
    model: str
    material: str
    references: list[RunEntry]
    n_frames: int
    held_out_split: SplitInputs | None
    training_references: list[RunEntry]
    seed: int
    device: str
    out_dir: StoredPath


class PredictInputs(_PredictSettings):
    """Score a trained model's energies and forces on held-out frames of one material."""

    checkpoint: StoredPath


class PretrainedPredictInputs(_PredictSettings):
    """Score a pretrained (or fine-tuned) MLIP's energies and forces on held-out frames of one material."""

    pretrained: PretrainedInputs


class MDReplica(Inputs):
    """One run of a batch of MD runs."""

    protocol: ProtocolInputs
    seed: int
    temperature_K: float
    repetition: int


class _MDSettings(Inputs):
    model: str
    material: str
    checkpoint: StoredPath
    structure: StructureSource
    engine: str
    tabulate_filters: bool
    fusion_distance_A: float
    device: str


class MDRunInputs(_MDSettings):
    """One MLFF-MD run (``md.batch: none``)."""

    protocol: ProtocolInputs
    seed: int
    out_path: StoredPath

    def runs(self) -> list[tuple[ProtocolInputs, int, str]]:
        """(protocol, seed, trajectory path) of every run."""
        return [(self.protocol, self.seed, self.out_path)]


class MDBatchInputs(_MDSettings):
    """MLFF-MD runs integrated together (``md.batch: repetitions`` or ``all``), one trajectory each."""

    replicas: list[MDReplica]
    out_paths: list[StoredPath]

    def runs(self) -> list[tuple[ProtocolInputs, int, str]]:
        """(protocol, seed, trajectory path) of every run."""
        return [(replica.protocol, replica.seed, path) for replica, path in zip(self.replicas, self.out_paths, strict=True)]


class PretrainedMDInputs(Inputs):
    """One MD run of a pretrained (or fine-tuned) MLIP, by the ASE engine."""

    model: str
    material: str
    pretrained: PretrainedInputs
    structure: StructureSource
    fusion_distance_A: float
    device: str
    protocol: ProtocolInputs
    seed: int
    out_path: StoredPath

    def runs(self) -> list[tuple[ProtocolInputs, int, str]]:
        """(protocol, seed, trajectory path) of every run."""
        return [(self.protocol, self.seed, self.out_path)]


class AnalyzeInputs(AnalysisSettings, Inputs):
    """RDF, stability, diffusion and Arrhenius over all runs of one source (a model or the reference) on one material,
    with the spec's analysis settings (``analysis.settings.AnalysisSettings``, stored by ``AnalysisSettings.stored``)."""

    source: str
    material: str
    runs: list[RunEntry]
    references: list[RunEntry]
    discard_ps: float
    out_dir: StoredPath
    label: str | None = Field(None, description="A pretrained source's label (`chgnet zero-shot`); stored for those "
                              "only.")
