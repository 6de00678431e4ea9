"""Spec settings that the layers below ``campaign/`` read: where the store is, how Slurm runs the work.

They are sections of the campaign spec (``campaign/spec.py``, which validates the whole file), kept
here so that launchers and the store can use them without importing the campaign layer.
"""

from __future__ import annotations

import json
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

PositiveFloat = Annotated[float, Field(gt=0)]


def _admits(annotation, kinds: tuple[type, ...]) -> bool:
    """Whether ``annotation`` (a field's type, with its arguments: ``list[float]``, ``int | None``) names one
    of ``kinds`` or ``Any``."""
    if annotation is Any or annotation in kinds:
        return True
    return any(_admits(argument, kinds) for argument in typing.get_args(annotation))


def _has_boolean(value) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, list | tuple):
        return any(_has_boolean(item) for item in value)
    return isinstance(value, dict) and any(_has_boolean(item) for item in value.values())


class Strict(BaseModel):
    """A spec section: unknown keys are errors, numbers must be finite, a YAML boolean is no number, and a
    validated section does not change."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value, info: ValidationInfo):
        """pydantic reads true as 1 and false as 0 where a number is expected (``repetitions: true``)."""
        annotation = cls.model_fields[info.field_name].annotation
        if _has_boolean(value) and _admits(annotation, (int, float)) and not _admits(annotation, (bool,)):
            if isinstance(value, bool):
                raise ValueError(f"expected a number, got the YAML boolean {json.dumps(value)}")
            raise ValueError(f"expected numbers, got a YAML boolean (true or false) in {json.dumps(value, default=str)}")
        return value


class StoreSpec(Strict):
    """Where the FireWorks LaunchPad and the results live. Give exactly one of the three."""

    embedded: str | None = Field(
        None, description="Path of the file-backed embedded store (no server needed), relative to the spec file."
    )
    launchpad: str | None = Field(
        None, description="Path of a FireWorks my_launchpad.yaml for a real MongoDB, relative to the spec file."
    )
    uri: str | None = Field(None, description="MongoDB connection URI, e.g. mongodb://user@host:27017/mlff.")
    database: str = Field("mlff_campaign", description="Database on the `uri` server holding workflows and results.")

    @model_validator(mode="after")
    def _exactly_one(self) -> StoreSpec:
        given = [name for name in ("embedded", "launchpad", "uri") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of embedded, launchpad, uri (got {given or 'none'})")
        if self.uri and not self.uri.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("uri must start with mongodb:// or mongodb+srv://")
        return self


class CPUResources(Strict):
    """Slurm settings of one category of array tasks; null leaves a directive out of the script."""

    partition: str | None = Field(None, description="Slurm partition (--partition); null for the cluster default.")
    account: str | None = Field(None, description="Slurm account charged (--account); null for the user's default.")
    qos: str | None = Field(None, description="Slurm quality of service (--qos); null for the default.")
    walltime_minutes: int = Field(240, ge=1, description="Time limit of one array task in minutes (--time).")
    memory_GB: PositiveFloat = Field(8.0, description="Memory per array task in GB (--mem).")
    cpus_per_task: int = Field(2, ge=1, description="CPU cores per array task (--cpus-per-task).")
    warning_s: int = Field(
        300, ge=10, description="Seconds before the time limit at which Slurm sends SIGUSR1 so the task checkpoints."
    )
    max_concurrent: int = Field(16, ge=1, description="Array tasks of this category running at once (the %M of --array).")
    pre_command: str = Field(
        "", description="Shell lines run before the rocket, e.g. `module load cuda/12.4` or `conda activate mlff`."
    )


class GPUResources(CPUResources):
    gres: str | None = Field("gpu:1", description="Generic resources per array task (--gres); one GPU by default.")
    memory_GB: PositiveFloat = Field(16.0, description="Memory per array task in GB (--mem).")
    cpus_per_task: int = Field(4, ge=1, description="CPU cores per array task (--cpus-per-task).")


class ResourcesSpec(Strict):
    """Where and how Slurm runs the work (used with `campaign.launcher: slurm`)."""

    rockets: Literal["offline", "online"] = Field(
        "offline",
        description="`offline`: work is reserved on the login node and compute nodes need no database access "
        "(the only choice with the embedded store); `online`: array tasks pull work from the MongoDB store.",
    )
    gpu: GPUResources = Field(default_factory=GPUResources, description="Array tasks of reference, train, predict, md.")
    cpu: CPUResources = Field(default_factory=CPUResources, description="Array tasks of analyze.")
