"""The analyze stage: per-run, per-temperature and per-material result documents of one source (a model or the
reference) on one material.

It reads the trajectories and run summaries, hands their frames to analysis/ (``analysis.verdicts``: every rule
of a verdict lives there) and writes what comes back as result documents. ``run_document`` makes one run's
document; ``campaign analyze`` calls it too, so a file analysed by hand gets the document its campaign stored.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from analysis.aggregation import TemperatureSummary, summarise_material, summarise_temperature
from analysis.diffusion_paths import compare_paths
from analysis.rdf import RDF, mean_rdf
from analysis.settings import AnalysisSettings
from analysis.verdicts import Reference, RunAssessment, RunFrames, assess_run, reference_at
from mlff import preemption
from mlff.trajectory import Trajectory, read_system, read_trajectory
from records.atomic_file import atomic_write
from records.provenance import sha256_file
from records.results import (
    DiffusionPathResult,
    MaterialResult,
    Provenance,
    RunResult,
    TemperatureResult,
)
from records.summaries import MDRunSummary, stored_run_summary
from workflows.inputs import AnalyzeInputs, RunEntry
from workflows.stages.pretrained import PRETRAINED_PROVENANCE

RDF_FILE = "rdf.npz"
DENSITY_FILE = "density.npz"


def run_frames(trajectory: Trajectory, path: str, discard_ps: float) -> RunFrames:
    """The frames the analysis reads of ``trajectory`` (from the file ``path``), the first ``discard_ps`` of
    production left out of the analysed ones."""
    production, n_nonfinite = trajectory.production(discard_ps)
    finite = trajectory.finite()
    return RunFrames(path, finite.positions_A, finite.time_fs, production.positions_A, production.time_fs,
                     trajectory.cell_A, trajectory.numbers, n_nonfinite, trajectory.metadata.get("production_ps"))


def run_document(
    frames: RunFrames, summary: MDRunSummary | None, settings: AnalysisSettings, discard_ps: float,
    reference: Reference | None, *, source: str, label: str | None, material: str, temperature_K: float,
    repetition: int, seed: int | None = None,
) -> tuple[RunResult, RunAssessment]:
    """The result document of one run and the assessment behind it: its frames, its MD summary (None: none),
    the analysis settings and what it is compared with (``analysis.verdicts``); the rest names it."""
    assessed = assess_run(frames, temperature_K, settings, reference, summary, discard_ps)
    recorded = {} if summary is None else {
        "engine": summary.engine, "device": summary.device, "checkpoint_sha256": summary.checkpoint_sha256,
        "tabulated_filters": summary.tabulated_filters,
        **{name: getattr(summary, name) for name in PRETRAINED_PROVENANCE},
    }
    document = RunResult(
        source=source,
        label=label,
        material=material,
        temperature_K=temperature_K,
        repetition=repetition,
        trajectory_path=frames.path,
        trajectory_sha256=sha256_file(frames.path),
        **assessed.document_fields(),
        ns_per_day=summary.ns_per_day if summary is not None else None,
        provenance=Provenance.now(seed=seed if seed is not None else summary and summary.seed, **recorded),
    )
    return document, assessed


def _read_frames(entry: RunEntry, discard_ps: float) -> RunFrames | None:
    trajectory = read_trajectory(entry.path)
    return run_frames(trajectory, entry.path, discard_ps) if trajectory.n_frames else None


def _md_summary(entry: RunEntry) -> MDRunSummary | None:
    """The MD summary the campaign wrote for a run (an imported reference's says nothing about stopping)."""
    summary = stored_run_summary(entry.path)
    return summary if isinstance(summary, MDRunSummary) else None


def _references(inputs: AnalyzeInputs) -> dict[float, Reference]:
    """The reference of every temperature that has reference frames."""
    references = {}
    for temperature_K in sorted({entry.temperature_K for entry in inputs.references}):
        runs = [_read_frames(e, inputs.discard_ps) for e in inputs.references if e.temperature_K == temperature_K]
        reference = reference_at([run for run in runs if run is not None], inputs)
        if reference is not None:
            references[temperature_K] = reference
    return references


def _write_rdf(path: Path, reference_rdf: dict[float, RDF], source_rdf: dict[float, RDF]) -> None:
    """Mean RDF curves for plotting: key ``<reference|source>|<T>K|<label>`` -> g [n_bins], plus ``r_A``."""
    arrays = {
        f"{kind}|{temperature_K:g}K|{label}": g
        for kind, curves in (("reference", reference_rdf), ("source", source_rdf))
        for temperature_K, curve in curves.items()
        for label, g in curve.g.items()
    }
    first = next(iter(reference_rdf.values()), None) or next(iter(source_rdf.values()), None)
    if first is not None:
        arrays["r_A"] = first.r_A
    np.savez_compressed(path, **arrays)


def _diffusion_paths(inputs: AnalyzeInputs, density_path: Path) -> DiffusionPathResult | None:
    """The diffusing element's paths in the runs at the highest temperature against the reference runs there;
    writes both occupancy densities to ``density_path``. None when there is nothing to compare."""
    if not inputs.runs:
        return None
    top_K = max(entry.temperature_K for entry in inputs.runs)
    runs, references = ([read_trajectory(e.path).production(inputs.discard_ps)[0]
                         for e in entries if e.temperature_K == top_K] for entries in (inputs.runs, inputs.references))
    runs, references = [t for t in runs if t.n_frames], [t for t in references if t.n_frames]
    specie = inputs.specie_number
    if not runs or not references:
        return None
    mobile = runs[0].numbers == specie
    if not mobile.any() or mobile.all():  # no diffusing element, or no framework for it to move through
        return None
    compared = compare_paths([t.positions_A for t in runs], [t.positions_A for t in references], runs[0].cell_A,
                             runs[0].numbers, mobile_number=specie)
    np.savez_compressed(density_path, density=compared.density, reference_density=compared.reference_density)
    return DiffusionPathResult(
        temperature_K=top_K, overlap=compared.overlap, wrong_channel_fraction=compared.wrong_channel_fraction,
        wrong_channels=compared.wrong_channels,
        max_framework_drift_A=max(d.framework_A for d in compared.drifts),
        max_sublattice_drift_A=max(max(d.sublattice_A.values()) for d in compared.drifts),
        drifting_runs=sum(d.drifting for d in compared.drifts), n_runs=len(compared.drifts),
    )


def analyze(inputs: AnalyzeInputs) -> dict:
    """Per-run, per-temperature and per-material results of one source (model or reference) on one material."""
    out = Path(inputs.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    references = _references(inputs)
    run_docs, verdicts, run_rdf = [], [], {}  # run_rdf: this source's run RDFs per temperature, for the report
    assessed_at: dict[float, list[RunAssessment]] = {}
    for entry in inputs.runs:
        preemption.stop_if_requested()  # nothing to keep: a stopped analysis starts again
        doc, assessed = run_document(
            run_frames(read_trajectory(entry.path), entry.path, inputs.discard_ps), _md_summary(entry), inputs,
            inputs.discard_ps, references.get(entry.temperature_K), source=inputs.source, label=inputs.label,
            material=inputs.material, temperature_K=entry.temperature_K,
            repetition=entry.repetition if entry.repetition is not None else entry.run or 0, seed=entry.seed,
        )
        run_docs.append(doc)
        verdicts.append(assessed.verdict(entry.temperature_K))
        assessed_at.setdefault(entry.temperature_K, []).append(assessed)
        if assessed.measured.rdf is not None:
            run_rdf.setdefault(entry.temperature_K, []).append(assessed.measured.rdf)
    temperatures = [summarise_temperature([v for v in verdicts if v.temperature_K == t])
                    for t in sorted({v.temperature_K for v in verdicts})]
    temperature_docs = [_temperature_document(inputs, t, assessed_at[t.temperature_K]) for t in temperatures]
    numbers, cell_A = read_system(inputs.runs[0].path)
    material = summarise_material(verdicts, temperatures, inputs.target_temperature_K,
                                  int((numbers == inputs.specie_number).sum()), abs(float(np.linalg.det(cell_A))))
    _write_rdf(out / RDF_FILE, {t: r.mean for t, r in references.items()},
               {t: mean_rdf(curves) for t, curves in run_rdf.items()})
    paths = _diffusion_paths(inputs, out / DENSITY_FILE)
    activation, sigma = material.activation_energy_eV, material.conductivity_target_mS_cm
    floors = [doc.rdf_mae_noise_floor for doc in temperature_docs if doc.rdf_mae_noise_floor is not None]
    resolutions = [doc.rdf_mae_resolution for doc in temperature_docs if doc.rdf_mae_resolution is not None]
    material_doc = MaterialResult(
        source=inputs.source,
        label=inputs.label,
        material=inputs.material,
        temperatures_K=material.temperatures_K,
        consistent_fraction=material.consistent_fraction,
        paper_stable_fraction=material.paper_stable_fraction,
        rdf_mae_mean=material.rdf_mae_mean,
        rdf_mae_noise_floor=float(np.mean(floors)) if floors else None,
        rdf_mae_resolution=float(np.mean(resolutions)) if resolutions else None,
        activation_energy_eV=activation and activation.value,
        activation_energy_eV_low=_finite(activation and activation.low),
        activation_energy_eV_high=_finite(activation and activation.high),
        arrhenius_prefactor_cm2_s=material.arrhenius_prefactor_cm2_s,
        arrhenius_reason=material.arrhenius_reason,
        target_temperature_K=inputs.target_temperature_K,
        conductivity_target_mS_cm=sigma and sigma.value,
        conductivity_target_mS_cm_low=_finite(sigma and sigma.low),
        conductivity_target_mS_cm_high=_finite(sigma and sigma.high),
        conductivity_target_mS_cm_bootstrap_low=_end(material.conductivity_target_bootstrap_mS_cm, 0),
        conductivity_target_mS_cm_bootstrap_high=_end(material.conductivity_target_bootstrap_mS_cm, 1),
        activation_energy_eV_bootstrap_low=_end(material.activation_energy_bootstrap_eV, 0),
        activation_energy_eV_bootstrap_high=_end(material.activation_energy_bootstrap_eV, 1),
        arrhenius_prefactor_cm2_s_low=_end(material.prefactor_interval_cm2_s, 0),
        arrhenius_prefactor_cm2_s_high=_end(material.prefactor_interval_cm2_s, 1),
        arrhenius_chi2_per_dof=material.arrhenius_chi2_per_dof,
        arrhenius_widened=material.arrhenius_widened if material.activation_energy_eV is not None else None,
        neg_log10_conductivity_target=-float(np.log10(sigma.value)) if sigma and sigma.value > 0 else None,
        n_carriers=material.n_carriers,
        volume_A3=material.volume_A3,
        stability_score=material.stability_score,
        survival_time_ps=material.survival_time_ps,
        survival_fraction=material.survival_fraction,
        diffusion_paths=paths,
        rdf_path=str(out / RDF_FILE),
        density_path=str(out / DENSITY_FILE) if paths is not None else None,
        provenance=Provenance.now(),
    )
    docs = [doc.model_dump() for doc in (*run_docs, *temperature_docs, material_doc)]
    with atomic_write(out / "results.json", "w") as fh:
        json.dump({"results": docs}, fh, indent=2)
    return {"summary": {"n_runs": len(run_docs), "results_path": str(out / "results.json")}, "results": docs}


def _finite(value: float | None) -> float | None:
    """``value``, or None where it is missing or not a number (an interval that could not be estimated)."""
    return None if value is None or not np.isfinite(value) else float(value)


def _end(interval: tuple[float, float] | None, which: int) -> float | None:
    """One end of an interval that may be missing, as ``_finite`` keeps it."""
    return None if interval is None else _finite(interval[which])


def _median(values: list[float | None]) -> float | None:
    values = [value for value in values if value is not None]
    return float(np.median(values)) if values else None


def _temperature_document(inputs: AnalyzeInputs, summary: TemperatureSummary,
                          assessed: list[RunAssessment]) -> TemperatureResult:
    """The runs at one temperature; the floor, resolution and collapse threshold at their median length."""
    d, sigma = summary.diffusivity_cm2_s, summary.conductivity_mS_cm
    floor = _median([run.rdf_mae_noise_floor for run in assessed])
    pooled, pooled_sigma = summary.diffusivity_pooled_cm2_s, summary.conductivity_pooled_mS_cm
    return TemperatureResult(
        source=inputs.source,
        label=inputs.label,
        material=inputs.material,
        temperature_K=summary.temperature_K,
        n_runs=summary.n_runs,
        n_diffusive=summary.n_diffusive,
        consistent_fraction=summary.consistent_fraction,
        consistent_fraction_low=summary.consistent_interval[0],
        consistent_fraction_high=summary.consistent_interval[1],
        paper_stable_fraction=summary.paper_stable_fraction,
        rdf_mae_mean=summary.rdf_mae_mean,
        rdf_mae_noise_floor=floor,
        rdf_mae_resolution=_median([run.rdf_mae_resolution for run in assessed]),
        threshold_resolvable=None if floor is None else floor < inputs.rdf_mae_threshold / 2,
        collapse_rdf_threshold=_median([run.collapse_rdf_threshold for run in assessed]),
        diffusivity_cm2_s_mean=d and d.value,
        diffusivity_cm2_s_low=_finite(d and d.low),
        diffusivity_cm2_s_high=_finite(d and d.high),
        diffusivity_cm2_s_std=summary.diffusivity_cm2_s_std,
        conductivity_mS_cm_mean=sigma and sigma.value,
        conductivity_mS_cm_low=_finite(sigma and sigma.low),
        conductivity_mS_cm_high=_finite(sigma and sigma.high),
        diffusivity_cm2_s_pooled=pooled and pooled.value,
        diffusivity_cm2_s_pooled_low=pooled and pooled.low,
        diffusivity_cm2_s_pooled_high=pooled and pooled.high,
        conductivity_mS_cm_pooled=pooled_sigma and pooled_sigma.value,
        conductivity_mS_cm_pooled_low=pooled_sigma and pooled_sigma.low,
        conductivity_mS_cm_pooled_high=pooled_sigma and pooled_sigma.high,
        repetitions_chi2_per_dof=pooled and pooled.chi2_per_dof,
        repetitions_consistent=pooled and pooled.consistent,
        provenance=Provenance.now(),
    )
