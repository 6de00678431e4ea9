"""The campaign's stages as plain functions: the one call each firetask makes.

Each takes the JSON inputs that campaign/tasks.py built, reads its input files, calls mlff/ (models,
training, MD) and analysis/ (pure numpy), writes its outputs into its own directory, and returns
``{"summary": ..., "results": [...]}``: a JSON summary for the launch record and the typed result
documents (campaign/results.py) for the results collection. They hold the glue between file formats
and result documents, so mlff/ and analysis/ stay free of campaign concepts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis.errors import mae, r2_score
from analysis.rdf import RDF, rdf, rdf_mae
from analysis.stability import classify_stability, min_distance_A
from analysis.statistics import DiffusiveWindow, diffusive_window
from analysis.transport import conductivity_at_mS_cm, conductivity_mS_cm, diffusivity_cm2_s, mean_square_displacement
from campaign.results import (
    MaterialResult,
    PredictionResult,
    Provenance,
    RunResult,
    TemperatureResult,
    TrainingResult,
)
from mlff.atomic_file import atomic_write
from mlff.provenance import package_versions, sha256_file
from mlff.trajectory import Trajectory, read_system, read_trajectory

FS_PER_PS = 1000.0


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


MD_CHECKPOINT_SUFFIXES = {"ase": ".checkpoint.npz", "torch": ".checkpoint.pt", "lammps": ".checkpoint.json"}
BATCH_CHECKPOINT = "batch.checkpoint.pt"  # one per batch directory (torch engine)


def md_checkpoint_path(trajectory_path: str | Path, engine: str, batch: bool = False) -> Path:
    """Where an MD task keeps its checkpoint: next to its trajectory, or for a batch (``trajectory_path``
    one of its trajectories) one in the batch's directory; a rerun (after preemption or a lost job)
    resumes from it."""
    if batch:
        return Path(trajectory_path).with_name(BATCH_CHECKPOINT)
    return Path(trajectory_path).with_suffix(MD_CHECKPOINT_SUFFIXES[engine])


def reference(mode: str, material: str, out_path: str, **settings) -> dict:
    """Generate (``mode="generate"``) or import (``mode="import"``) one reference trajectory."""
    from mlff.md import MDProtocol
    from mlff.reference import generate_reference, import_reference
    from mlff.structures import load_structure

    if mode == "generate":
        summary = generate_reference(
            load_structure(settings["structure"]),
            settings["calculator"],
            MDProtocol(**settings["protocol"]),
            seed=settings["seed"],
            out_path=out_path,
            device=_device(settings["device"]),
        )
    elif mode == "import":
        summary = import_reference(settings["source_path"], out_path, timestep_fs=settings["timestep_fs"])
    else:
        raise ValueError(f"reference mode must be 'generate' or 'import', got {mode!r}")
    if settings.get("structure") == "LGPS":
        from mlff.structures import LGPS_ORDERING

        summary = {**summary, "structure_ordering": LGPS_ORDERING}
    _write_json(md_summary_path(out_path), summary)
    summary = {**summary, "material": material, "out_path": out_path, "sha256": sha256_file(out_path)}
    return {"summary": summary, "results": []}


def _training_split(references: list[dict], n_train_per_run: int, n_validation_per_run: int, split_seed: int):
    from mlff.data import split_frames

    trajectories = [read_trajectory(entry["path"]) for entry in references]
    return trajectories, split_frames(trajectories, n_train_per_run, n_validation_per_run, split_seed)


def train(
    model: str,
    hparams: dict,
    references: list[dict],
    n_train_per_run: int,
    n_validation_per_run: int,
    split_seed: int,
    out_dir: str,
    seed: int,
    device: str,
    **settings,
) -> dict:
    """Train ``model`` on the paper's per-run split of the training references."""
    from mlff.data import dataset_hash
    from mlff.training import train as train_model

    trajectories, split = _training_split(references, n_train_per_run, n_validation_per_run, split_seed)
    train_set, validation_set = split.select(trajectories, "train"), split.select(trajectories, "validation")
    data_hash = dataset_hash(train_set + validation_set)
    device = _device(device)
    summary = train_model(
        model, hparams, train_set, validation_set, out_dir, seed=seed, device=device, dataset_hash=data_hash,
        resume=True, **settings
    )
    checkpoint = summary["checkpoint"]
    doc = TrainingResult(
        source=model,
        epochs_run=summary["epochs_run"],
        best_epoch=summary["best_epoch"],
        validation_energy_mae_eV_atom=summary["best_validation_energy_mae_eV_atom"],
        validation_force_mae_eV_A=summary["best_validation_force_mae_eV_A"],
        n_parameters=summary["n_parameters"],
        wall_s=summary["wall_s"],
        checkpoint_path=checkpoint,
        provenance=_provenance(
            device=device, seed=seed, checkpoint_sha256=sha256_file(checkpoint), dataset_hash=data_hash
        ),
    )
    return {"summary": summary, "results": [doc.model_dump()]}


def predict(
    model: str,
    material: str,
    checkpoint: str,
    references: list[dict],
    n_frames: int,
    held_out_split: dict | None,
    training_references: list[dict],
    seed: int,
    device: str,
    out_dir: str,
) -> dict:
    """Energy and force errors of a trained model on ``n_frames`` held-out frames of ``material``."""
    from mlff.checkpoint import load_model
    from mlff.prediction import predict as predict_frames

    device = _device(device)
    held_out: dict[str, np.ndarray] = {}  # training runs: only their test frames are held out
    if held_out_split is not None:
        _, split = _training_split(training_references, **held_out_split)
        held_out = {entry["path"]: frames for entry, frames in zip(training_references, split.test, strict=True)}
    pool = []  # (reference index, frame index) of every held-out frame
    trajectories = [read_trajectory(entry["path"]) for entry in references]
    for index, (entry, trajectory) in enumerate(zip(references, trajectories, strict=True)):
        frames = held_out.get(entry["path"], np.arange(trajectory.n_frames))
        pool.extend((index, int(frame)) for frame in frames)
    if not pool:
        raise ValueError(f"{material}: no held-out reference frames left to score")
    rng = np.random.default_rng(seed)
    chosen = [pool[i] for i in np.sort(rng.choice(len(pool), size=min(n_frames, len(pool)), replace=False))]

    network, _ = load_model(checkpoint, device=device)
    predicted_E, reference_E, predicted_F, reference_F, n_atoms = [], [], [], [], []
    for index, trajectory in enumerate(trajectories):
        frames = np.array([frame for i, frame in chosen if i == index], dtype=np.int64)
        if frames.size == 0:
            continue
        subset = trajectory.select(frames)
        energies, forces = predict_frames(network, subset, device=device)
        predicted_E.append(energies)
        reference_E.append(subset.energy_eV)
        predicted_F.append(forces.reshape(-1, 3))
        reference_F.append(subset.forces_eV_A.reshape(-1, 3))
        n_atoms.append(np.full(len(frames), subset.n_atoms))
    predicted_E, reference_E = np.concatenate(predicted_E), np.concatenate(reference_E)  # [n_frames]
    predicted_F, reference_F = np.concatenate(predicted_F), np.concatenate(reference_F)  # [n_frames * n_atoms, 3]
    n_atoms = np.concatenate(n_atoms)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parity = out / "parity.npz"
    np.savez_compressed(
        parity, predicted_energy_eV=predicted_E, reference_energy_eV=reference_E, n_atoms=n_atoms,
        predicted_forces_eV_A=predicted_F, reference_forces_eV_A=reference_F,
    )
    doc = PredictionResult(
        source=model,
        material=material,
        n_frames=len(chosen),
        energy_mae_eV_atom=mae(predicted_E / n_atoms, reference_E / n_atoms),
        energy_r2=r2_score(predicted_E, reference_E),
        force_mae_eV_A=mae(predicted_F, reference_F),
        force_r2=r2_score(predicted_F, reference_F),
        parity_path=str(parity),
        parity_sha256=sha256_file(parity),
        provenance=_provenance(device=device, seed=seed, checkpoint_sha256=sha256_file(checkpoint)),
    )
    return {"summary": {"n_frames": len(chosen), "parity_path": str(parity)}, "results": [doc.model_dump()]}


def md(
    model: str,
    material: str,
    checkpoint: str,
    structure: str,
    engine: str,
    tabulate_filters: bool,
    fusion_distance_A: float,
    device: str,
    protocol: dict | None = None,
    seed: int | None = None,
    out_path: str | None = None,
    replicas: list[dict] | None = None,
    out_paths: list[str] | None = None,
) -> dict:
    """One MLFF-MD run (``protocol``, ``seed``, ``out_path``) or a batch of runs integrated together
    (``replicas``, each with its ``protocol`` and ``seed``, and one trajectory per replica in ``out_paths``).

    Engines: ``ase`` (ASE calculator and thermostat), ``torch`` (our integrator, mlff/batched.py; the
    only engine for batches) and ``lammps`` (fix external, mlff/lammps_engine.py). All write the same
    trajectory format and, per run, the same summary, and resume from their own checkpoint; an
    instability ends a run early as a result. With ``tabulate_filters``, a model with distance-only
    parts evaluates them from tables (``ForceField.tabulate_filters``); the summary records whether.
    """
    from mlff.md import MDProtocol
    from mlff.structures import load_structure

    if (replicas is None) == (protocol is None) or (replicas is None) != (out_paths is None):
        raise ValueError("md needs either protocol, seed and out_path (one run) or replicas and out_paths (a batch)")
    device = _device(device)
    atoms, batched = load_structure(structure), replicas is not None
    if batched and engine != "torch":
        raise ValueError(f"a batch of MD runs needs the torch engine, got engine {engine!r}")
    if not batched:
        replicas, out_paths = [{"protocol": protocol, "seed": seed}], [out_path]
    if engine not in MD_CHECKPOINT_SUFFIXES:
        raise ValueError(f"unknown MD engine {engine!r}; available: {', '.join(MD_CHECKPOINT_SUFFIXES)}")
    from mlff.checkpoint import load_model

    protocols = [MDProtocol(**replica["protocol"]) for replica in replicas]
    seeds = [replica["seed"] for replica in replicas]
    model, checkpoint_path = load_model(checkpoint, device=device)[0], md_checkpoint_path(out_paths[0], engine, batched)
    tabulated = tabulate_filters and model.tabulate_filters()
    if engine == "ase":
        from mlff.calculator import MLFFCalculator
        from mlff.md import run_md

        summaries = [run_md(
            atoms, MLFFCalculator(model), protocols[0], seed=seeds[0], out_path=out_paths[0],
            fusion_distance_A=fusion_distance_A, checkpoint_path=checkpoint_path,
        )]
    elif engine == "torch":
        from mlff.batched import run_batched_md

        summaries = run_batched_md(
            model, atoms, protocols, seeds, out_paths, checkpoint_path=checkpoint_path, fusion_distance_A=fusion_distance_A,
        )
    else:
        from mlff.lammps_engine import run_lammps_md

        summaries = [run_lammps_md(
            atoms, model, protocols[0], seeds[0], out_paths[0],
            fusion_distance_A=fusion_distance_A, checkpoint_path=checkpoint_path,
        )]
    checkpoint_sha256 = sha256_file(checkpoint)
    summaries = [
        {**summary, "device": device, "checkpoint_sha256": checkpoint_sha256, "tabulated_filters": tabulated}
        for summary in summaries
    ]
    for summary, path in zip(summaries, out_paths, strict=True):
        _write_json(md_summary_path(path), summary)
    return {"summary": {"runs": summaries} if batched else summaries[0], "results": []}


def production_frames(trajectory: Trajectory, discard_ps: float) -> tuple[Trajectory, int]:
    """Frames after the discard, with non-finite frames removed; also how many were removed."""
    kept = trajectory.select(trajectory.time_fs >= discard_ps * FS_PER_PS)
    finite = np.isfinite(kept.positions_A).all(axis=(1, 2))
    return kept.select(np.flatnonzero(finite)), int((~finite).sum())


def _rdf(trajectory: Trajectory, settings: dict) -> RDF:
    """Total RDF plus the requested partials whose elements this material has."""
    from ase.data import chemical_symbols

    present = {chemical_symbols[z] for z in np.unique(trajectory.numbers)}
    pairs = [tuple(pair) for pair in settings["pairs"] if set(pair) <= present]
    return rdf(
        trajectory.positions_A, trajectory.cell_A, trajectory.numbers, settings["r_max_A"], settings["n_bins"],
        pairs=pairs, frame_stride=settings["frame_stride"],
    )


@dataclass(frozen=True)
class RunAnalysis:
    """What ``analyse_run`` measures of one MD run (None where it cannot be measured)."""

    rdf: RDF | None  # of the production frames, when there is a reference to compare with
    rdf_mae: float | None
    min_distance_A: float | None  # over every finite frame, the ramp included
    window: DiffusiveWindow | None  # where the MSD is fitted
    diffusivity_cm2_s: float | None
    conductivity_mS_cm: float | None


def analyse_run(
    trajectory: Trajectory, production: Trajectory, temperature_K: float, specie: int, reference: RDF | None,
    rdf_settings: dict,
) -> RunAnalysis:
    """RDF and its MAE against ``reference``, the smallest interatomic distance, and the diffusing
    ``specie``'s MSD -> diffusive window -> D -> σ, of one run; ``production`` is ``trajectory``'s
    frames after the discard (``production_frames``)."""
    finite = trajectory.positions_A[np.isfinite(trajectory.positions_A).all(axis=(1, 2))]
    smallest = float(min_distance_A(finite, trajectory.cell_A).min()) if len(finite) else None
    mask = production.numbers == specie
    window = d_cm2_s = sigma = None
    if production.n_frames >= 3 and mask.any():
        framework = ~mask
        msd = mean_square_displacement(
            production.positions_A, production.cell_A, coordinates="wrapped", atom_mask=mask,
            framework_mask=framework if framework.any() else None,
        )
        time_fs = production.time_fs - production.time_fs[0]
        try:  # the ballistic start and long, noisy lags are left out of the fit
            window = diffusive_window(msd, time_fs)
        except ValueError:  # too few frames, or an MSD that is zero at some lag: no diffusive regime to fit
            window = None
        if window is not None:
            d_cm2_s, _ = diffusivity_cm2_s(msd, time_fs, window.start_fs, window.end_fs)
            volume_A3 = abs(float(np.linalg.det(production.cell_A)))
            sigma = conductivity_mS_cm(d_cm2_s, int(mask.sum()), volume_A3, temperature_K)
    curve = r_mae = None
    if production.n_frames and reference is not None:
        curve = _rdf(production, rdf_settings)
        r_mae = rdf_mae(curve, reference)
    return RunAnalysis(curve, r_mae, smallest, window, d_cm2_s, sigma)


RDF_FILE = "rdf.npz"


def _mean_rdf(curves: list[RDF]) -> RDF:
    """The mean of RDFs on the same bins, label by label."""
    return RDF(r_A=curves[0].r_A, g={label: np.mean([c.g[label] for c in curves], axis=0) for label in curves[0].g})


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


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def analyze(
    source: str,
    material: str,
    runs: list[dict],
    references: list[dict],
    discard_ps: float,
    rdf: dict,
    rdf_mae_threshold: float,
    fusion_distance_A: float,
    diffusing_specie: str,
    target_temperature_K: float,
    out_dir: str,
) -> dict:
    """Per-run, per-temperature and per-material results of one source (model or reference)."""
    from ase.data import atomic_numbers

    rdf_settings = rdf
    specie = atomic_numbers[diffusing_specie]
    reference_rdf: dict[float, RDF] = {}
    for temperature_K in sorted({entry["temperature_K"] for entry in references}):
        frames = [
            production_frames(read_trajectory(e["path"]), discard_ps)[0] for e in references if e["temperature_K"] == temperature_K
        ]
        curves = [_rdf(t, rdf_settings) for t in frames if t.n_frames]
        if curves:
            reference_rdf[temperature_K] = _mean_rdf(curves)

    run_docs = []
    run_rdf: dict[float, list[RDF]] = {}  # RDFs of this source's runs, per temperature, for the report's plots
    for entry in runs:
        trajectory = read_trajectory(entry["path"])
        summary_file = md_summary_path(entry["path"])
        summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
        production, n_nonfinite = production_frames(trajectory, discard_ps)
        measured = analyse_run(
            trajectory, production, entry["temperature_K"], specie, reference_rdf.get(entry["temperature_K"]), rdf_settings
        )
        if measured.rdf is not None:
            run_rdf.setdefault(entry["temperature_K"], []).append(measured.rdf)
        r_mae, smallest, window = measured.rdf_mae, measured.min_distance_A, measured.window
        stopped = summary.get("stopped_early_reason")
        if stopped is not None:  # non-finite forces and temperature blow-ups come from atoms running into each other
            stability = "atom_fusion"
        else:  # with no reference RDF only the fusion criterion can be judged
            stability = classify_stability(0.0 if r_mae is None else r_mae, smallest, rdf_mae_threshold, fusion_distance_A)
        run_docs.append(
            RunResult(
                source=source,
                material=material,
                temperature_K=entry["temperature_K"],
                repetition=entry.get("repetition", entry.get("run", 0)),
                trajectory_path=entry["path"],
                trajectory_sha256=sha256_file(entry["path"]),
                completed=stopped is None,
                stopped_early_reason=stopped,
                collapse_time_ps=summary.get("collapse_time_ps"),
                analysed_ps=float(production.time_fs[-1] - production.time_fs[0]) / FS_PER_PS if production.n_frames else 0.0,
                n_nonfinite_frames=n_nonfinite,
                rdf_mae=r_mae,
                min_distance_A=smallest,
                stability=stability,
                diffusivity_cm2_s=measured.diffusivity_cm2_s,
                msd_fit_start_ps=window.start_fs / FS_PER_PS if window else None,
                msd_fit_end_ps=window.end_fs / FS_PER_PS if window else None,
                msd_loglog_slope=window.loglog_slope if window else None,
                conductivity_mS_cm=measured.conductivity_mS_cm,
                provenance=_provenance(
                    seed=entry.get("seed"), engine=summary.get("engine"), device=summary.get("device"),
                    checkpoint_sha256=summary.get("checkpoint_sha256"), tabulated_filters=summary.get("tabulated_filters"),
                ),
            )
        )

    temperature_docs = []
    for temperature_K in sorted({doc.temperature_K for doc in run_docs}):
        at_t = [doc for doc in run_docs if doc.temperature_K == temperature_K]
        diffusivities = [doc.diffusivity_cm2_s for doc in at_t if doc.diffusivity_cm2_s is not None]
        temperature_docs.append(
            TemperatureResult(
                source=source,
                material=material,
                temperature_K=temperature_K,
                n_runs=len(at_t),
                stable_fraction=sum(doc.stability == "stable" for doc in at_t) / len(at_t),
                rdf_mae_mean=_mean([doc.rdf_mae for doc in at_t]),
                diffusivity_cm2_s_mean=_mean(diffusivities),
                diffusivity_cm2_s_std=float(np.std(diffusivities)) if diffusivities else None,
                conductivity_mS_cm_mean=_mean([doc.conductivity_mS_cm for doc in at_t]),
                provenance=_provenance(),
            )
        )

    fit_points = [(d.temperature_K, d.diffusivity_cm2_s_mean) for d in temperature_docs if (d.diffusivity_cm2_s_mean or 0) > 0]
    activation_eV = sigma_target = None
    if len(fit_points) >= 2:
        numbers, cell_A = read_system(runs[0]["path"])
        n_carriers = int((numbers == specie).sum())
        volume_A3 = abs(float(np.linalg.det(cell_A)))
        temperatures, diffusivities = zip(*fit_points, strict=True)
        sigma_target, fit = conductivity_at_mS_cm(temperatures, diffusivities, target_temperature_K, n_carriers, volume_A3)
        activation_eV = fit.activation_energy_eV
    material_doc = MaterialResult(
        source=source,
        material=material,
        temperatures_K=[d.temperature_K for d in temperature_docs],
        stable_fraction=sum(doc.stability == "stable" for doc in run_docs) / len(run_docs),
        rdf_mae_mean=_mean([doc.rdf_mae for doc in run_docs]),
        activation_energy_eV=activation_eV,
        target_temperature_K=target_temperature_K,
        conductivity_target_mS_cm=sigma_target,
        neg_log10_conductivity_target=-float(np.log10(sigma_target)) if sigma_target else None,
        provenance=_provenance(),
    )
    docs = [doc.model_dump() for doc in (*run_docs, *temperature_docs, material_doc)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "results.json", {"results": docs})
    _write_rdf(out / RDF_FILE, reference_rdf, {t: _mean_rdf(curves) for t, curves in run_rdf.items()})
    return {"summary": {"n_runs": len(run_docs), "results_path": str(out / "results.json")}, "results": docs}
