"""The summaries a run leaves next to its output: typed, so the writer and every reader agree on their fields.

* ``MDRunSummary``: one MD run (an MLFF-MD run or a generated reference), written by the MD stage next to
  its trajectory ``X.frames`` as ``X.summary.json`` and read by the analysis (was it stopped early, when,
  on which engine and device, with which model).
* ``ImportedRunSummary``: a reference trajectory converted from a file.
* ``TrainingSummary``: one training or fine-tuning run, returned by ``mlff.training.train`` and
  ``mlff.fine_tuning.fine_tune``.

Release 0.1.0 wrote a run's summary as ``X.json``, with no ``kind``; ``stored_run_summary`` still reads it
for a trajectory a campaign wrote. A name of its own (``.summary.json``) keeps a user's ``X.json`` (say,
``campaign analyze X.frames --json > X.json``) from being taken for one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

from records.atomic_file import atomic_write
from records.errors import CampaignError

SUMMARY_SUFFIX = ".summary.json"
LEGACY_SUMMARY_SUFFIX = ".json"  # release 0.1.0


class SummaryError(CampaignError, ValueError):
    """A summary file that cannot be read or is not a run summary."""


class _Summary(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MDRunSummary(_Summary):
    kind: Literal["md"] = "md"
    n_steps_run: int = Field(..., description="Steps integrated, ramp included.")
    n_frames_written: int
    completed: bool
    stopped_early_reason: str | None = Field(..., description="Why the engine stopped the run (mlff.md.protocol."
                                             "INSTABILITIES), or None.")
    collapse_time_ps: float | None = Field(..., description="When it stopped, since production began, ps.")
    temperature_K: float | None = Field(..., description="Mean kinetic temperature of production, K.")
    wall_s: float
    ns_per_day: float | None = Field(None, description="Simulated ns per day of wall time (release 0.1.0: none).")
    seed: int
    engine: str
    resumed_from_step: int | None
    device: str | None = Field(None, description="Torch device the run ran on (the MD stage adds it).")
    # What the MD stage records of the model.
    checkpoint_sha256: str | None = None
    tabulated_filters: bool | None = None
    label: str | None = None
    pretrained: str | None = None
    pretrained_version: str | None = None
    mode: str | None = None
    checkpoint_file: str | None = None
    base_checkpoint_file: str | None = None
    base_checkpoint_sha256: str | None = None
    # What a generated reference records of its calculator and structure.
    calculator: str | None = None
    calculator_version: str | None = None
    calculator_model: str | None = None
    structure_source: dict[str, Any] | None = Field(None, description="Where a built-in structure comes from "
                                                    "(mlff.structures.BUILTIN_SOURCES).")


class ImportedRunSummary(_Summary):
    kind: Literal["imported"] = "imported"
    n_frames: int
    n_atoms: int
    formula: str
    has_energies: bool
    has_forces: bool
    timestep_fs: float
    source_format: str
    out_path: str


def _run_kind(data: Any) -> str | None:
    """A run summary's kind; release 0.1.0 wrote none: an MD run's has ``n_steps_run``, an import's does not."""
    if not isinstance(data, dict):
        return getattr(data, "kind", None)
    return data.get("kind", "md" if "n_steps_run" in data else "imported")


RunSummary = Annotated[Annotated[MDRunSummary, Tag("md")] | Annotated[ImportedRunSummary, Tag("imported")],
                       Discriminator(_run_kind)]
_RUN_SUMMARY = TypeAdapter(RunSummary)


class TrainingSummary(_Summary):
    kind: Literal["training"] = "training"
    model_name: str
    epochs_run: int
    stopped_by: str = Field(..., description="What ended training: max_epochs or max_wall_s.")
    best_epoch: int
    best_validation_energy_mae_eV_atom: float
    best_validation_force_mae_eV_A: float
    wall_s: float
    n_parameters: int
    checkpoint: str = Field(..., description="The best checkpoint's path.")
    dataset_hash: str
    seed: int
    device: str
    conservative: bool | None = Field(None, description="A zoo model's forces are the energy's negative gradient.")
    base_checkpoint: str | None = Field(None, description="A fine-tuned model's starting weights.")
    base_checkpoint_sha256: str | None = None


def summary_path(trajectory_path: str | os.PathLike) -> Path:
    """Where a run's summary lies: ``X.summary.json`` next to its trajectory ``X.frames``."""
    return Path(trajectory_path).with_suffix(SUMMARY_SUFFIX)


def write_run_summary(trajectory_path: str | os.PathLike, summary: MDRunSummary | ImportedRunSummary) -> Path:
    """Write ``summary`` next to its trajectory, atomically; returns its path."""
    path = summary_path(trajectory_path)
    with atomic_write(path, "w") as fh:
        fh.write(summary.model_dump_json(indent=2))
    return path


def read_run_summary(path: str | os.PathLike) -> MDRunSummary | ImportedRunSummary:
    """The run summary in the file ``path`` (either name, either release); a ``SummaryError`` naming the file
    when it is unreadable or no run summary."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SummaryError(f"{path}: not a readable run summary ({err})") from None
    try:
        return _RUN_SUMMARY.validate_python(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in err.errors()[:3])
        raise SummaryError(f"{path}: not a run summary ({problems})") from None


def stored_run_summary(trajectory_path: str | os.PathLike) -> MDRunSummary | ImportedRunSummary | None:
    """The summary a campaign's stage wrote for its trajectory: ``X.summary.json``, or release 0.1.0's ``X.json``;
    None when it wrote none. Only for trajectories a campaign wrote: a user's file beside one is not looked at."""
    for path in (summary_path(trajectory_path), Path(trajectory_path).with_suffix(LEGACY_SUMMARY_SUFFIX)):
        if path.is_file():
            return read_run_summary(path)
    return None
