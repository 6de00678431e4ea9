"""The campaign's stages as plain functions: the one call each firetask makes.

Each takes its typed inputs (workflows/inputs.py), reads its input files, calls mlff/ (models,
training, MD) and analysis/ (pure numpy), writes its outputs into its own directory, and returns
``{"summary": ..., "results": [...]}``: a JSON summary for the launch record and the typed result
documents (records/results.py) for the results collection. They hold the glue between file formats
and result documents, so mlff/ and analysis/ stay free of campaign concepts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis.aggregation import RunVerdict, TemperatureSummary, summarise_material, summarise_temperature
from analysis.diffusion_paths import compare_paths
from analysis.errors import mae, r2_score
from analysis.rdf import CHEMICAL_SYMBOLS, RDF, leave_one_out_maes, mean_rdf
from analysis.runs import RDFSettings, analyse_run, collapse, material_rdf
from analysis.stability import run_stability
from mlff import preemption
from mlff.trajectory import read_system, read_trajectory
from records.atomic_file import atomic_write
from records.provenance import package_versions, sha256_file
from records.units import FS_PER_PS
from records.results import (
    REFERENCE_SOURCE,
    DiffusionPathResult,
    MaterialResult,
    PredictionResult,
    Provenance,
    RunResult,
    TemperatureResult,
    TrainingResult,
)
from workflows.inputs import (
    AnalyzeInputs,
    FineTuneInputs,
    GenerateReferenceInputs,
    ImportReferenceInputs,
    MDBatchInputs,
    MDRunInputs,
    PredictInputs,
    PretrainedInputs,
    PretrainedMDInputs,
    PretrainedPredictInputs,
    RunEntry,
    SplitInputs,
    TrainInputs,
)

MD_CHECKPOINT = "md-checkpoint.npz"  # one per MD or reference task, next to its trajectories
RDF_FILE = "rdf.npz"
DENSITY_FILE = "density.npz"


def _device(device: str) -> str:
    from mlff.models.base import resolve_device

    return str(resolve_device(None if device == "auto" else device))


def _provenance(**fields) -> dict:
    return Provenance(package_versions=package_versions(), **fields).model_dump()


def _write_json(path: Path, data: dict) -> None:
    with atomic_write(path, "w") as fh:
        json.dump(data, fh, indent=2)


def md_summary_path(trajectory_path: str | Path) -> Path:
    """Where an MD run writes its summary (completed, collapse time, ...) next to its trajectory."""
    return Path(trajectory_path).with_suffix(".json")


def generate_reference(inputs: GenerateReferenceInputs) -> dict:
    """One reference trajectory, by MD with the reference calculator."""
    from mlff.reference import generate_reference as run_reference
    from mlff.structures import BUILTIN_SOURCES, load_structure

    summary = run_reference(
        load_structure(inputs.structure), inputs.calculator, inputs.protocol.protocol(), seed=inputs.seed,
        out_path=inputs.out_path, device=_device(inputs.device),
        checkpoint_path=Path(inputs.out_path).with_name(MD_CHECKPOINT),
    )
    if inputs.structure in BUILTIN_SOURCES:
        summary = {**summary, "structure_source": BUILTIN_SOURCES[inputs.structure]}
    return _reference_outcome(inputs.material, inputs.out_path, summary)


def import_reference(inputs: ImportReferenceInputs) -> dict:
    """One reference trajectory, converted from a file."""
    from mlff.reference import import_reference as convert

    summary = convert(inputs.source_path, inputs.out_path, timestep_fs=inputs.timestep_fs)
    return _reference_outcome(inputs.material, inputs.out_path, summary)


def _reference_outcome(material: str, out_path: str, summary: dict) -> dict:
    _write_json(md_summary_path(out_path), summary)
    summary = {**summary, "material": material, "out_path": out_path, "sha256": sha256_file(out_path)}
    return {"summary": summary, "results": []}


def _training_split(references: list[RunEntry], split: SplitInputs):
    from mlff.data import split_frames

    trajectories = [read_trajectory(entry.path) for entry in references]
    return trajectories, split_frames(trajectories, split.n_train_per_run, split.n_validation_per_run, split.split_seed)


def _training_sets(inputs: TrainInputs | FineTuneInputs):
    """(train frames, validation frames, their dataset hash) of the paper's per-run split."""
    from mlff.data import dataset_hash

    split_inputs = SplitInputs(n_train_per_run=inputs.n_train_per_run, n_validation_per_run=inputs.n_validation_per_run,
                               split_seed=inputs.split_seed)
    trajectories, split = _training_split(inputs.references, split_inputs)
    train_set, validation_set = split.select(trajectories, "train"), split.select(trajectories, "validation")
    return train_set, validation_set, dataset_hash(train_set + validation_set)


def _training_outcome(inputs: TrainInputs | FineTuneInputs, summary: dict, label: str | None = None,
                      **provenance) -> dict:
    """The training result document; ``provenance`` of a pretrained model (``_pretrained_provenance``)."""
    provenance = provenance or {"checkpoint_sha256": sha256_file(summary["checkpoint"])}
    doc = TrainingResult(
        source=inputs.model,
        label=label,
        epochs_run=summary["epochs_run"],
        best_epoch=summary["best_epoch"],
        validation_energy_mae_eV_atom=summary["best_validation_energy_mae_eV_atom"],
        validation_force_mae_eV_A=summary["best_validation_force_mae_eV_A"],
        n_parameters=summary["n_parameters"],
        wall_s=summary["wall_s"],
        checkpoint_path=summary["checkpoint"],
        provenance=_provenance(device=summary["device"], seed=inputs.seed, dataset_hash=summary["dataset_hash"],
                               **provenance),
    )
    return {"summary": summary, "results": [doc.model_dump()]}


def train(inputs: TrainInputs) -> dict:
    """Train a model on the paper's per-run split of the training references."""
    from mlff.training import train as train_model

    train_set, validation_set, data_hash = _training_sets(inputs)
    summary = train_model(
        inputs.model, inputs.hparams, train_set, validation_set, inputs.out_dir, seed=inputs.seed,
        device=_device(inputs.device), dataset_hash=data_hash, resume=True, energy_weight=inputs.energy_weight,
        force_weight=inputs.force_weight, learning_rate=inputs.learning_rate, batch_size=inputs.batch_size,
        max_epochs=inputs.max_epochs, max_wall_s=inputs.max_wall_s,
    )
    return _training_outcome(inputs, summary)


def fine_tune(inputs: FineTuneInputs) -> dict:
    """Fine-tune a pretrained MLIP on the same split, with the same settings (``mlff.fine_tuning``)."""
    from mlff.fine_tuning import fine_tune as fine_tune_model

    train_set, validation_set, data_hash = _training_sets(inputs)
    summary = fine_tune_model(
        inputs.pretrained.model(), train_set, validation_set, inputs.out_dir, seed=inputs.seed,
        device=_device(inputs.device), dataset_hash=data_hash, energy_weight=inputs.energy_weight,
        force_weight=inputs.force_weight, learning_rate=inputs.learning_rate, batch_size=inputs.batch_size,
        max_epochs=inputs.max_epochs, max_wall_s=inputs.max_wall_s,
    )
    fine_tuned = inputs.pretrained.model_copy(update={"checkpoint": summary["checkpoint"]})
    return _training_outcome(inputs, summary, label=fine_tuned.label, **_pretrained_provenance(fine_tuned))


PRETRAINED_PROVENANCE = ("pretrained", "pretrained_version", "mode", "checkpoint_file", "base_checkpoint_file",
                         "base_checkpoint_sha256")  # besides checkpoint_sha256


def _pretrained_provenance(pretrained: PretrainedInputs) -> dict:
    """What a pretrained model's results record of it: name, package version, mode, the weights used and,
    once fine-tuned, the weights it started from."""
    model = pretrained.model()
    files = [str(path) for path in model.weights()]
    weights_file, weights_sha256 = None, None  # a calculator class may name no file, or several
    if files:
        hashes = [sha256_file(file) for file in files]
        weights_file = ", ".join(files)
        weights_sha256 = hashes[0] if len(hashes) == 1 else hashlib.sha256("".join(hashes).encode()).hexdigest()
    recorded = {"pretrained": pretrained.name, "pretrained_version": model.version(), "mode": pretrained.mode}
    if pretrained.checkpoint is None:
        return {**recorded, "checkpoint_file": weights_file, "checkpoint_sha256": weights_sha256}
    return {**recorded, "checkpoint_file": pretrained.checkpoint, "checkpoint_sha256": sha256_file(pretrained.checkpoint),
            "base_checkpoint_file": weights_file, "base_checkpoint_sha256": weights_sha256}


def _predictor(inputs: PredictInputs | PretrainedPredictInputs, device: str):
    """(frames -> (energies, forces), the provenance of the model, its label) of a prediction's model."""
    if isinstance(inputs, PretrainedPredictInputs):
        from mlff.prediction import predict_with_calculator

        calculator = inputs.pretrained.model().calculator(device, inputs.pretrained.checkpoint)
        return (lambda frames: predict_with_calculator(calculator, frames)), \
            _pretrained_provenance(inputs.pretrained), inputs.pretrained.label
    from mlff.checkpoint import load_model
    from mlff.prediction import predict as predict_frames

    network, _ = load_model(inputs.checkpoint, device=device)
    return (lambda frames: predict_frames(network, frames, device=device)), \
        {"checkpoint_sha256": sha256_file(inputs.checkpoint)}, None


def predict(inputs: PredictInputs | PretrainedPredictInputs) -> dict:
    """Energy and force errors of a trained or pretrained model on ``n_frames`` held-out frames of a material."""
    device = _device(inputs.device)
    held_out: dict[str, np.ndarray] = {}  # training runs: only their test frames are held out
    if inputs.held_out_split is not None:
        _, split = _training_split(inputs.training_references, inputs.held_out_split)
        held_out = {entry.path: frames for entry, frames in zip(inputs.training_references, split.test, strict=True)}
    pool = []  # (reference index, frame index) of every held-out frame
    trajectories = [read_trajectory(entry.path) for entry in inputs.references]
    for index, (entry, trajectory) in enumerate(zip(inputs.references, trajectories, strict=True)):
        frames = held_out.get(entry.path, np.arange(trajectory.n_frames))
        pool.extend((index, int(frame)) for frame in frames)
    if not pool:
        raise ValueError(f"{inputs.material}: no held-out reference frames left to score")
    rng = np.random.default_rng(inputs.seed)
    chosen = [pool[i] for i in np.sort(rng.choice(len(pool), size=min(inputs.n_frames, len(pool)), replace=False))]

    predict_frames, model_provenance, label = _predictor(inputs, device)
    predicted_E, reference_E, predicted_F, reference_F, n_atoms = [], [], [], [], []
    for index, trajectory in enumerate(trajectories):
        preemption.stop_if_requested()  # nothing to keep: a stopped prediction starts again
        frames = np.array([frame for i, frame in chosen if i == index], dtype=np.int64)
        if frames.size == 0:
            continue
        subset = trajectory.select(frames)
        energies, forces = predict_frames(subset)
        predicted_E.append(energies)
        reference_E.append(subset.energy_eV)
        predicted_F.append(forces.reshape(-1, 3))
        reference_F.append(subset.forces_eV_A.reshape(-1, 3))
        n_atoms.append(np.full(len(frames), subset.n_atoms))
    predicted_E, reference_E = np.concatenate(predicted_E), np.concatenate(reference_E)  # [n_frames]
    predicted_F, reference_F = np.concatenate(predicted_F), np.concatenate(reference_F)  # [n_frames * n_atoms, 3]
    n_atoms = np.concatenate(n_atoms)

    out = Path(inputs.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parity = out / "parity.npz"
    np.savez_compressed(
        parity, predicted_energy_eV=predicted_E, reference_energy_eV=reference_E, n_atoms=n_atoms,
        predicted_forces_eV_A=predicted_F, reference_forces_eV_A=reference_F,
    )
    doc = PredictionResult(
        source=inputs.model,
        label=label,
        material=inputs.material,
        n_frames=len(chosen),
        energy_mae_eV_atom=mae(predicted_E / n_atoms, reference_E / n_atoms),
        energy_r2=r2_score(predicted_E, reference_E),
        force_mae_eV_A=mae(predicted_F, reference_F),
        force_r2=r2_score(predicted_F, reference_F),
        parity_path=str(parity),
        parity_sha256=sha256_file(parity),
        provenance=_provenance(device=device, seed=inputs.seed, **model_provenance),
    )
    return {"summary": {"n_frames": len(chosen), "parity_path": str(parity)}, "results": [doc.model_dump()]}


def _md_engine(inputs: MDRunInputs | MDBatchInputs | PretrainedMDInputs, device: str):
    """The engine of an MD task and what its run summaries record of the model."""
    from mlff.md.engine import engine_class
    from mlff.structures import load_structure

    atoms = load_structure(inputs.structure)
    if isinstance(inputs, PretrainedMDInputs):
        from mlff.md.ase_engine import AseEngine

        calculator = inputs.pretrained.model().calculator(device, inputs.pretrained.checkpoint)
        return AseEngine(atoms, calculator), {**_pretrained_provenance(inputs.pretrained),
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

    device = _device(inputs.device)
    protocols, seeds, out_paths = zip(*[(protocol.protocol(), seed, path) for protocol, seed, path in inputs.runs()])
    engine, recorded = _md_engine(inputs, device)
    summaries = run_md(
        engine, list(protocols), list(seeds), list(out_paths), checkpoint_path=Path(out_paths[0]).with_name(MD_CHECKPOINT),
        fusion_distance_A=inputs.fusion_distance_A,
    )
    summaries = [{**summary, "device": device, **recorded} for summary in summaries]
    for summary, path in zip(summaries, out_paths, strict=True):
        _write_json(md_summary_path(path), summary)
    return {"summary": {"runs": summaries}, "results": []}


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


@dataclass(frozen=True)
class _ReferenceAt:
    """The reference runs at one temperature: their production RDFs, their mean, the RDF MAE's noise
    floor, and the windowed RDF MAE above which a run's window counts as collapsed."""

    paths: list[str]
    curves: list[RDF]
    mean: RDF
    maes: list[float]  # each run against the others (one run: its second half against its first)
    collapse_threshold: float

    @property
    def noise_floor(self) -> float:
        return float(np.mean(self.maes))


def _references(inputs: AnalyzeInputs, settings: RDFSettings) -> dict[float, _ReferenceAt]:
    """The reference runs of every temperature (see ``_ReferenceAt``)."""
    references = {}
    for temperature_K in sorted({entry.temperature_K for entry in inputs.references}):
        entries = [e for e in inputs.references if e.temperature_K == temperature_K]
        trajectories = [read_trajectory(e.path) for e in entries]
        kept = [(e.path, t, t.production(inputs.discard_ps)[0]) for e, t in zip(entries, trajectories) if t.n_frames]
        kept = [(path, whole, production) for path, whole, production in kept if production.n_frames]
        if not kept:
            continue
        curves = [material_rdf(p.positions_A, p.cell_A, p.numbers, settings) for _, _, p in kept]
        if len(curves) >= 2:
            maes = leave_one_out_maes(curves)
        else:  # one run: its two halves are the independent samples
            production = kept[0][2]
            halves = np.array_split(np.arange(production.n_frames), 2)
            maes = [leave_one_out_maes([material_rdf(production.positions_A[h], production.cell_A, production.numbers,
                                                     settings) for h in halves])[0]] if min(map(len, halves)) else [0.0]
        mean = mean_rdf(curves)
        window_maes = [
            mae for _, whole, _ in kept
            for mae in collapse(whole.finite().positions_A, whole.finite().time_fs, whole.cell_A, whole.numbers, mean,
                                settings, np.inf, inputs.collapse_window_ps * FS_PER_PS,
                                np.full(whole.finite().n_frames, np.inf), 0.0).window_maes
        ]
        threshold = max(inputs.rdf_mae_threshold, 2 * float(np.mean(window_maes)) if window_maes else 0.0)
        references[temperature_K] = _ReferenceAt([path for path, _, _ in kept], curves, mean, maes, threshold)
    return references


def _compared_with(inputs: AnalyzeInputs, entry: RunEntry, reference: _ReferenceAt | None) -> RDF | None:
    """What a run's RDF is compared with: the reference's mean; for a reference run, the other reference runs
    (never itself)."""
    if reference is None or inputs.source != REFERENCE_SOURCE or entry.path not in reference.paths:
        return None if reference is None else reference.mean
    others = [curve for path, curve in zip(reference.paths, reference.curves, strict=True) if path != entry.path]
    return mean_rdf(others) if others else None


def _run_document(inputs: AnalyzeInputs, entry: RunEntry, reference: _ReferenceAt | None, settings: RDFSettings):
    """The run document of one trajectory, its production RDF (None without a reference) and its verdict."""
    trajectory = read_trajectory(entry.path)
    summary_file = md_summary_path(entry.path)
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    production, n_nonfinite = trajectory.production(inputs.discard_ps)
    finite = trajectory.finite()
    compared = _compared_with(inputs, entry, reference)
    measured = analyse_run(
        finite.positions_A, finite.time_fs, production.positions_A, production.time_fs, trajectory.cell_A,
        trajectory.numbers, entry.temperature_K, CHEMICAL_SYMBOLS.index(inputs.diffusing_specie), compared, settings,
        collapse_reference=None if reference is None else reference.mean,
        collapse_window_fs=inputs.collapse_window_ps * FS_PER_PS,
        rdf_mae_threshold=None if reference is None else reference.collapse_threshold,
        fusion_distance_A=inputs.fusion_distance_A,
    )
    r_mae = measured.rdf_mae
    if r_mae is None and reference is not None and entry.path in reference.paths:  # the one reference run: its halves
        r_mae = reference.noise_floor
    stopped, window, verdict = summary.get("stopped_early_reason"), measured.window, measured.verdict
    collapse_ps, collapse_reason = _collapse(summary, measured)
    analysed_ps = float(production.time_fs[-1] - production.time_fs[0]) / FS_PER_PS if production.n_frames else 0.0
    floor = reference.noise_floor if reference is not None else None
    doc = RunResult(
        source=inputs.source,
        label=inputs.label,
        material=inputs.material,
        temperature_K=entry.temperature_K,
        repetition=entry.repetition if entry.repetition is not None else entry.run or 0,
        trajectory_path=entry.path,
        trajectory_sha256=sha256_file(entry.path),
        completed=stopped is None,
        stopped_early_reason=stopped,
        collapse_time_ps=summary.get("collapse_time_ps"),
        analysed_ps=analysed_ps,
        n_nonfinite_frames=n_nonfinite,
        rdf_mae=r_mae,
        rdf_mae_noise_floor=floor,
        threshold_resolvable=None if floor is None else floor < inputs.rdf_mae_threshold / 2,
        min_distance_A=measured.min_distance_A,
        stability=run_stability(stopped, r_mae, measured.min_distance_A, inputs.rdf_mae_threshold,
                                inputs.fusion_distance_A),
        time_to_collapse_ps=collapse_ps,
        collapse_reason=collapse_reason,
        diffusive=verdict.diffusive if verdict else None,
        diffusion_verdict=verdict.reason if verdict else None,
        diffusivity_upper_bound_cm2_s=verdict.upper_bound_cm2_s if verdict else None,
        diffusivity_cm2_s=measured.diffusivity_cm2_s,
        ns_per_day=summary.get("ns_per_day"),
        msd_fit_start_ps=window.start_fs / FS_PER_PS if window else None,
        msd_fit_end_ps=window.end_fs / FS_PER_PS if window else None,
        msd_loglog_slope=window.loglog_slope if window else None,
        conductivity_mS_cm=measured.conductivity_mS_cm,
        provenance=_provenance(
            seed=entry.seed, engine=summary.get("engine"), device=summary.get("device"),
            checkpoint_sha256=summary.get("checkpoint_sha256"), tabulated_filters=summary.get("tabulated_filters"),
            **{name: summary.get(name) for name in PRETRAINED_PROVENANCE},
        ),
    )
    length_ps = (trajectory.metadata.get("production_ps") or analysed_ps + inputs.discard_ps)
    run_verdict = RunVerdict(doc.temperature_K, doc.stability, doc.rdf_mae, bool(doc.diffusive), doc.diffusivity_cm2_s,
                             doc.conductivity_mS_cm, analysed_ps, collapse_ps, length_ps)
    return doc, measured.rdf, run_verdict


def _collapse(summary: dict, measured) -> tuple[float | None, str | None]:
    """The earliest of the engine's early stop and the analysis' collapse: (time since production began, ps; why)."""
    times = []
    if summary.get("stopped_early_reason") is not None:
        times.append((summary["collapse_time_ps"], summary["stopped_early_reason"]))
    if measured.collapse is not None and measured.collapse.time_fs is not None:
        times.append((measured.collapse.time_fs / FS_PER_PS, measured.collapse.reason))
    return min(times) if times else (None, None)


def _diffusion_paths(inputs: AnalyzeInputs, density_path: Path) -> DiffusionPathResult | None:
    """The diffusing element's paths in the runs at the highest temperature against the reference runs there;
    writes both occupancy densities to ``density_path``. None when there is nothing to compare."""
    if not inputs.runs:
        return None
    top_K = max(entry.temperature_K for entry in inputs.runs)
    runs, references = ([read_trajectory(e.path).production(inputs.discard_ps)[0]
                         for e in entries if e.temperature_K == top_K] for entries in (inputs.runs, inputs.references))
    runs, references = [t for t in runs if t.n_frames], [t for t in references if t.n_frames]
    specie = CHEMICAL_SYMBOLS.index(inputs.diffusing_specie)
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
    settings = RDFSettings(inputs.rdf.r_max_A, inputs.rdf.n_bins, inputs.rdf.pairs, inputs.rdf.frame_stride)
    out = Path(inputs.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    references = _references(inputs, settings)
    run_docs, verdicts, run_rdf = [], [], {}  # run_rdf: this source's run RDFs per temperature, for the report
    for entry in inputs.runs:
        preemption.stop_if_requested()  # nothing to keep: a stopped analysis starts again
        doc, curve, verdict = _run_document(inputs, entry, references.get(entry.temperature_K), settings)
        run_docs.append(doc)
        verdicts.append(verdict)
        if curve is not None:
            run_rdf.setdefault(entry.temperature_K, []).append(curve)
    temperatures = [summarise_temperature([v for v in verdicts if v.temperature_K == t])
                    for t in sorted({v.temperature_K for v in verdicts})]
    temperature_docs = [_temperature_document(inputs, t, references.get(t.temperature_K)) for t in temperatures]
    numbers, cell_A = read_system(inputs.runs[0].path)
    material = summarise_material(verdicts, temperatures, inputs.target_temperature_K,
                                  int((numbers == CHEMICAL_SYMBOLS.index(inputs.diffusing_specie)).sum()),
                                  abs(float(np.linalg.det(cell_A))))
    _write_rdf(out / RDF_FILE, {t: r.mean for t, r in references.items()},
               {t: mean_rdf(curves) for t, curves in run_rdf.items()})
    paths = _diffusion_paths(inputs, out / DENSITY_FILE)
    activation, sigma = material.activation_energy_eV, material.conductivity_target_mS_cm
    floors = [references[t].noise_floor for t in material.temperatures_K if t in references]
    material_doc = MaterialResult(
        source=inputs.source,
        label=inputs.label,
        material=inputs.material,
        temperatures_K=material.temperatures_K,
        stable_fraction=material.stable_fraction,
        rdf_mae_mean=material.rdf_mae_mean,
        rdf_mae_noise_floor=float(np.mean(floors)) if floors else None,
        activation_energy_eV=activation and activation.value,
        activation_energy_eV_low=_finite(activation and activation.low),
        activation_energy_eV_high=_finite(activation and activation.high),
        arrhenius_prefactor_cm2_s=material.arrhenius_prefactor_cm2_s,
        arrhenius_reason=material.arrhenius_reason,
        target_temperature_K=inputs.target_temperature_K,
        conductivity_target_mS_cm=sigma and sigma.value,
        conductivity_target_mS_cm_low=_finite(sigma and sigma.low),
        conductivity_target_mS_cm_high=_finite(sigma and sigma.high),
        neg_log10_conductivity_target=-float(np.log10(sigma.value)) if sigma and sigma.value > 0 else None,
        n_carriers=material.n_carriers,
        volume_A3=material.volume_A3,
        stability_score=material.stability_score,
        survival_time_ps=material.survival_time_ps,
        survival_fraction=material.survival_fraction,
        diffusion_paths=paths,
        rdf_path=str(out / RDF_FILE),
        density_path=str(out / DENSITY_FILE) if paths is not None else None,
        provenance=_provenance(),
    )
    docs = [doc.model_dump() for doc in (*run_docs, *temperature_docs, material_doc)]
    _write_json(out / "results.json", {"results": docs})
    return {"summary": {"n_runs": len(run_docs), "results_path": str(out / "results.json")}, "results": docs}


def _finite(value: float | None) -> float | None:
    """``value``, or None where it is missing or not a number (an interval that could not be estimated)."""
    return None if value is None or not np.isfinite(value) else float(value)


def _temperature_document(inputs: AnalyzeInputs, summary: TemperatureSummary,
                          reference: _ReferenceAt | None) -> TemperatureResult:
    d, sigma = summary.diffusivity_cm2_s, summary.conductivity_mS_cm
    floor = None if reference is None else reference.noise_floor
    return TemperatureResult(
        source=inputs.source,
        label=inputs.label,
        material=inputs.material,
        temperature_K=summary.temperature_K,
        n_runs=summary.n_runs,
        n_diffusive=summary.n_diffusive,
        stable_fraction=summary.stable_fraction,
        stable_fraction_low=summary.stable_interval[0],
        stable_fraction_high=summary.stable_interval[1],
        rdf_mae_mean=summary.rdf_mae_mean,
        rdf_mae_noise_floor=floor,
        threshold_resolvable=None if floor is None else floor < inputs.rdf_mae_threshold / 2,
        collapse_rdf_threshold=None if reference is None else reference.collapse_threshold,
        diffusivity_cm2_s_mean=d and d.value,
        diffusivity_cm2_s_low=_finite(d and d.low),
        diffusivity_cm2_s_high=_finite(d and d.high),
        diffusivity_cm2_s_std=summary.diffusivity_cm2_s_std,
        conductivity_mS_cm_mean=sigma and sigma.value,
        conductivity_mS_cm_low=_finite(sigma and sigma.low),
        conductivity_mS_cm_high=_finite(sigma and sigma.high),
        provenance=_provenance(),
    )
