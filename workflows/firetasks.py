"""The firetasks. Their class paths are stored in every firework document: a database schema.

Each class states its ``_fw_name`` as ``{{module.Class}}`` so FireWorks imports it by path with no
registry to configure. Never move or rename these classes without a migration of stored workflows.
Each one parses its stored ``inputs`` (built by campaign/tasks.py) into the typed inputs of its stage
(workflows/inputs.py), calls the one plain stage function those inputs are for
(workflows/stages/), and returns the result documents, their paths relative to the campaign's
folder, for the login node to store.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ClassVar, Union

from fireworks import FiretaskBase, FWAction
from pydantic import TypeAdapter

from records.results import relative_paths
from records.store import CAMPAIGN_ROOT
from workflows import inputs
from workflows.stages import analyze, md, prediction, reference, training


class _StageTask(FiretaskBase):
    required_params = ["inputs"]
    stage_of: ClassVar[dict[type, Callable[..., dict]]]  # the stage function of each kind of inputs

    @classmethod
    @functools.cache
    def _adapter(cls) -> TypeAdapter:
        return TypeAdapter(Union[tuple(cls.stage_of)])  # noqa: UP007

    @classmethod
    def parse(cls, stored: dict, root: str | None = None):
        """The typed inputs of stored ``inputs`` (pydantic's ValidationError when they are none of them), their
        paths made absolute under the campaign's folder ``root`` when it is given."""
        return cls._adapter().validate_python(stored, context={inputs.ROOT: root})

    def run_task(self, fw_spec: dict) -> FWAction:
        root = fw_spec.get("_fw_env", {}).get(CAMPAIGN_ROOT)  # the launcher's FWorker says where the campaign is
        parsed = self.parse(self["inputs"], root)
        outcome = self.stage_of[type(parsed)](parsed)
        results = [relative_paths(doc, root) for doc in outcome["results"]]
        return FWAction(stored_data={"summary": outcome["summary"], "results": results})


class ReferenceTask(_StageTask):
    """Generate or import one reference trajectory."""

    _fw_name = "{{workflows.firetasks.ReferenceTask}}"
    stage_of = {inputs.GenerateReferenceInputs: reference.generate_reference,
                inputs.ImportReferenceInputs: reference.import_reference}


class TrainTask(_StageTask):
    """Train one model (or fine-tune a pretrained one) on the training material's reference frames."""

    _fw_name = "{{workflows.firetasks.TrainTask}}"
    stage_of = {inputs.TrainInputs: training.train, inputs.FineTuneInputs: training.fine_tune}


class PredictTask(_StageTask):
    """Score a trained or pretrained model's energies and forces on held-out reference frames of one material."""

    _fw_name = "{{workflows.firetasks.PredictTask}}"
    stage_of = {inputs.PredictInputs: prediction.predict, inputs.PretrainedPredictInputs: prediction.predict}


class MDTask(_StageTask):
    """One MLFF-MD run, or a batch of runs integrated together."""

    _fw_name = "{{workflows.firetasks.MDTask}}"
    stage_of = {inputs.MDRunInputs: md.md, inputs.MDBatchInputs: md.md, inputs.PretrainedMDInputs: md.md}


class AnalyzeTask(_StageTask):
    """RDF, stability, diffusion and Arrhenius over all runs of one source on one material."""

    _fw_name = "{{workflows.firetasks.AnalyzeTask}}"
    stage_of = {inputs.AnalyzeInputs: analyze.analyze}


FIRETASKS = {"reference": ReferenceTask, "train": TrainTask, "predict": PredictTask, "md": MDTask, "analyze": AnalyzeTask}
