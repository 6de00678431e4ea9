"""The MD stage: MLFF-MD runs of one task, each with its trajectory and its run summary (``records.summaries``)."""

from __future__ import annotations

from pathlib import Path

from mlff.models.base import resolve_device
from records.provenance import sha256_file
from records.summaries import MDRunSummary, write_run_summary
from workflows.inputs import MDBatchInputs, MDRunInputs, PretrainedMDInputs
from workflows.stages.pretrained import pretrained_provenance

MD_CHECKPOINT = "md-checkpoint.npz"  # one per MD or reference task, next to its trajectories


def _md_engine(inputs: MDRunInputs | MDBatchInputs | PretrainedMDInputs, device: str):
    """The engine of an MD task and what its run summaries record of the model."""
    from mlff.md.engine import engine_class
    from mlff.structures import load_structure

    atoms = load_structure(inputs.structure)
    if isinstance(inputs, PretrainedMDInputs):
        from mlff.md.ase_engine import AseEngine

        calculator = inputs.pretrained.model().calculator(device, inputs.pretrained.checkpoint)
        return AseEngine(atoms, calculator), {**pretrained_provenance(inputs.pretrained),
                                              "label": inputs.pretrained.label}
    from mlff.checkpoint import load_model

    model, _ = load_model(inputs.checkpoint, device=device)
    tabulated = inputs.tabulate_filters and model.tabulate_filters()
    return engine_class(inputs.engine).from_model(model, atoms), {
        "checkpoint_sha256": sha256_file(inputs.checkpoint), "tabulated_filters": tabulated,
    }


def md(inputs: MDRunInputs | MDBatchInputs | PretrainedMDInputs) -> dict:
    """MLFF-MD runs of one task, all integrated together by its engine (``mlff.md``): one run, or a batch;
    a pretrained model's runs one at a time by the ASE engine.

    Every run writes its trajectory and, next to it, its summary; an instability ends a run early as
    a result. The task resumes from its checkpoint (``MD_CHECKPOINT`` in the trajectories' directory).
    With ``tabulate_filters``, a model with distance-only parts evaluates them from tables
    (``ForceField.tabulate_filters``); the summaries record whether.
    """
    from mlff.md.driver import run_md

    device = str(resolve_device(inputs.device))
    protocols, seeds, out_paths = zip(*[(protocol.protocol(), seed, path) for protocol, seed, path in inputs.runs()])
    engine, recorded = _md_engine(inputs, device)
    summaries = run_md(
        engine, list(protocols), list(seeds), list(out_paths), checkpoint_path=Path(out_paths[0]).with_name(MD_CHECKPOINT),
        fusion_distance_A=inputs.fusion_distance_A,
    )
    summaries = [MDRunSummary.model_validate({**summary, "device": device, **recorded}) for summary in summaries]
    for summary, path in zip(summaries, out_paths, strict=True):
        write_run_summary(path, summary)
    return {"summary": {"runs": [summary.model_dump() for summary in summaries]}, "results": []}
