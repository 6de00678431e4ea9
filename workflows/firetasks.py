"""The firetasks. Their class paths are stored in every firework document: a database schema.

Each class states its ``_fw_name`` as ``{{module.Class}}`` so FireWorks imports it by path with no
registry to configure. Never move or rename these classes without a migration of stored workflows. Each one reads its
``inputs`` (built by campaign/tasks.py), calls one plain stage function from workflows/stages.py,
and returns the result documents for the login node to store.
"""

from __future__ import annotations

from fireworks import FiretaskBase, FWAction

from workflows import stages


class _StageTask(FiretaskBase):
    required_params = ["inputs"]
    stage = staticmethod(lambda **inputs: {})

    def run_task(self, fw_spec: dict) -> FWAction:
        outcome = type(self).stage(**self["inputs"])
        return FWAction(stored_data={"summary": outcome["summary"], "results": outcome["results"]})


class ReferenceTask(_StageTask):
    """Generate or import one reference trajectory."""

    _fw_name = "{{workflows.firetasks.ReferenceTask}}"
    stage = staticmethod(stages.reference)


class TrainTask(_StageTask):
    """Train one model on the training material's reference frames."""

    _fw_name = "{{workflows.firetasks.TrainTask}}"
    stage = staticmethod(stages.train)


class PredictTask(_StageTask):
    """Score a trained model's energies and forces on held-out reference frames of one material."""

    _fw_name = "{{workflows.firetasks.PredictTask}}"
    stage = staticmethod(stages.predict)


class MDTask(_StageTask):
    """One MLFF-MD run."""

    _fw_name = "{{workflows.firetasks.MDTask}}"
    stage = staticmethod(stages.md)


class AnalyzeTask(_StageTask):
    """RDF, stability, diffusion and Arrhenius over all runs of one source on one material."""

    _fw_name = "{{workflows.firetasks.AnalyzeTask}}"
    stage = staticmethod(stages.analyze)


FIRETASKS = {"reference": ReferenceTask, "train": TrainTask, "predict": PredictTask, "md": MDTask, "analyze": AnalyzeTask}
