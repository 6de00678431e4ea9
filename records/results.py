"""Typed result documents and how they enter the store (the tables built from them: campaign/tables.py).

Firetasks return result documents in ``FWAction.stored_data["results"]``; when the login node folds a
finished launch back (launchers/offline.py), ``store_results`` validates each document against its
model and upserts it into the results collection under a deterministic ``_id``, so folding the same
launch twice changes nothing. Documents hold summaries only; trajectories and per-frame arrays stay
in files, referenced by path and sha256.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from fireworks import Firework, LaunchPad
from pydantic import BaseModel, ConfigDict, Field

from records.provenance import package_versions
from records.store import CAMPAIGN_SPEC_KEY, results_collection

REFERENCE_SOURCE = "reference"  # the source of the reference trajectories' documents


class Provenance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    package_versions: dict[str, str] = Field(..., description="Versions of the packages that decide the result.")
    device: str | None = Field(None, description="Torch device the work ran on.")
    seed: int | None = Field(None, description="Seed of the run.")
    engine: str | None = Field(None, description="MD engine.")
    tabulated_filters: bool | None = Field(None, description="MD forces from tabulated filters (md.tabulate_filters).")
    checkpoint_sha256: str | None = Field(None, description="sha256 of the model checkpoint used.")
    dataset_hash: str | None = Field(None, description="Hash of the training frames the model saw.")
    pretrained: str | None = Field(None, description="A pretrained model's name (mlff/pretrained.py).")
    pretrained_version: str | None = Field(None, description="Version of the package the pretrained model is from.")
    mode: str | None = Field(None, description="A pretrained model's mode: zero_shot or fine_tune.")
    checkpoint_file: str | None = Field(None, description="A pretrained model's weights used (fine-tuned: its "
                                        "checkpoint), whose sha256 is checkpoint_sha256.")
    base_checkpoint_file: str | None = Field(None, description="A fine-tuned model's starting weights.")
    base_checkpoint_sha256: str | None = Field(None, description="sha256 of base_checkpoint_file.")

    @classmethod
    def now(cls, **fields) -> Provenance:
        """The provenance of work done now, in this environment: ``fields`` and the versions of the packages."""
        return cls(package_versions=package_versions(), **fields)


class ResultDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str
    source: str = Field(..., description=f"Model name, or `{REFERENCE_SOURCE}` for the reference trajectories.")
    label: str | None = Field(None, description="A pretrained source's kind: `chgnet zero-shot`, `chgnet fine-tuned`; "
                              "None for a model trained from scratch and for the reference.")
    provenance: Provenance


class TrainingResult(ResultDoc):
    kind: Literal["training"] = "training"
    epochs_run: int
    best_epoch: int
    validation_energy_mae_eV_atom: float = Field(..., description="Best-checkpoint validation energy MAE, eV/atom.")
    validation_force_mae_eV_A: float = Field(..., description="Best-checkpoint validation force MAE, eV/Å.")
    n_parameters: int
    wall_s: float = Field(..., description="Training wall time, s.")
    checkpoint_path: str


class PredictionResult(ResultDoc):
    kind: Literal["prediction"] = "prediction"
    material: str
    n_frames: int = Field(..., description="Held-out frames scored.")
    energy_mae_eV_atom: float = Field(..., description="Energy MAE per atom, eV/atom.")
    energy_r2: float = Field(..., description="R² of total energies.")
    force_mae_eV_A: float = Field(..., description="Force-component MAE, eV/Å.")
    force_r2: float = Field(..., description="R² of force components.")
    parity_path: str = Field(..., description="npz file with predicted and reference energies and forces.")
    parity_sha256: str


class RunResult(ResultDoc):
    kind: Literal["run"] = "run"
    material: str
    temperature_K: float
    repetition: int = Field(..., description="Repetition (MD) or run (reference) index.")
    trajectory_path: str
    trajectory_sha256: str
    completed: bool = Field(..., description="False when the run stopped early on a physical instability.")
    stopped_early_reason: str | None = None
    collapse_time_ps: float | None = Field(None, description="Production time of the instability, ps.")
    analysed_ps: float = Field(..., description="Production time analysed after the discard, ps.")
    n_nonfinite_frames: int = Field(..., description="Frames with non-finite positions, excluded from analysis.")
    rdf_mae: float | None = Field(None, description="RDF MAE against the reference at this temperature (a reference "
                                  "run: against the other reference runs, or its second half against its first).")
    rdf_mae_noise_floor: float | None = Field(None, description="The RDF MAE the reference's own physics gives at this "
                                              "run's length (analysis/rdf_noise.py); None without a measured noise.")
    rdf_mae_resolution: float | None = Field(
        None, description="The smallest excess of the RDF MAE over the floor that the stability test detects at this "
        "run's length, at a 5 % false-alarm rate (analysis/rdf_noise.py).")
    threshold_resolvable: bool | None = Field(None, description="The noise floor is below half the paper's threshold.")
    min_distance_A: float | None = Field(..., description="Smallest interatomic distance in the written frames, Å.")
    stability: str = Field(..., description="The noise-aware verdict: consistent (the RDF MAE is within the reference's "
                           "own noise), lattice_mismatch, atom_fusion, or unknown (no reference or no measured noise).")
    paper_stable: bool | None = Field(None, description="The paper's verdict: RDF MAE below analysis.rdf_mae_threshold, "
                                      "no fusion, not stopped early; None without a reference.")
    time_to_collapse_ps: float | None = Field(
        None, description="Production time when the run stopped being valid (a windowed RDF MAE over the threshold, "
        "fused atoms, or the engine's early stop), ps; None when it stayed valid.")
    collapse_reason: str | None = Field(None, description="rdf_mismatch, atom_fusion, or the engine's early-stop reason.")
    diffusive: bool | None = Field(None, description="The MSD reached the diffusive regime (analysis/runs.py).")
    diffusion_verdict: str | None = Field(None, description="`diffusive`, or why not, with its numbers.")
    diffusivity_upper_bound_cm2_s: float | None = Field(
        None, description="For a run that did not diffuse: D is at most this, MSD(t) / 6t, cm²/s.")
    diffusivity_cm2_s: float | None = Field(
        None, description="Tracer diffusivity of the diffusing specie from the MSD slope in the diffusive window, "
        "cm²/s; only for a run that diffused."
    )
    diffusivity_cm2_s_low: float | None = Field(
        None, description="95 % interval of D from the generalised least-squares fit with the MSD's covariance "
        "(analysis/transport.diffusivity_interval): low end, cm²/s; only for a run that diffused.")
    diffusivity_cm2_s_high: float | None = Field(None, description="The same interval's high end, cm²/s (inf: unbounded).")
    diffusion_hops: float | None = Field(
        None, description="Hops of one hop length among the carriers that D implies over the analysed time, "
        "N·6D·t / hop²; a run diffused only with >= 2 (analysis/runs.py).")
    msd_fit_start_ps: float | None = Field(None, description="Start of the diffusive MSD fit window (lag time), ps.")
    msd_fit_end_ps: float | None = Field(None, description="End of the diffusive MSD fit window (lag time), ps.")
    msd_loglog_slope: float | None = Field(
        None, description="Slope of log MSD vs log t inside the fit window (1 = diffusive, 2 = ballistic), dimensionless."
    )
    conductivity_mS_cm: float | None = Field(None, description="Nernst–Einstein conductivity, mS/cm.")
    conductivity_mS_cm_low: float | None = Field(None, description="σ's 95 % interval (D's, scaled): low end, mS/cm.")
    conductivity_mS_cm_high: float | None = Field(None, description="The same interval's high end, mS/cm.")
    ns_per_day: float | None = Field(None, description="MD speed: this run's simulated ns per day of wall time "
                                     "(replicas batched in one process share that time).")


class TemperatureResult(ResultDoc):
    kind: Literal["temperature"] = "temperature"
    material: str
    temperature_K: float
    n_runs: int
    consistent_fraction: float = Field(..., description="Fraction of runs classed consistent with the reference.")
    paper_stable_fraction: float | None = Field(None, description="Fraction of runs stable by the paper's threshold.")
    n_diffusive: int | None = Field(None, description="Runs that diffused and did not fuse or stop: those D and σ are of.")
    rdf_mae_noise_floor: float | None = Field(None, description="The RDF MAE the reference's own physics gives at the "
                                              "runs' median length (analysis/rdf_noise.py).")
    rdf_mae_resolution: float | None = Field(None, description="The stability test's resolution at the runs' median "
                                             "length: the smallest detected excess of the RDF MAE over the floor.")
    threshold_resolvable: bool | None = Field(None, description="The noise floor is below half the paper's threshold.")
    collapse_rdf_threshold: float | None = Field(
        None, description="A collapse window's RDF MAE above this is a collapse: the stability test at the window's "
        "length, its false-alarm rate shared among a run's windows.")
    consistent_fraction_low: float | None = Field(None, description="Wilson 95 % interval of consistent_fraction: low "
                                                  "end.")
    consistent_fraction_high: float | None = Field(None, description="The same interval's high end.")
    rdf_mae_mean: float | None = None
    diffusivity_cm2_s_mean: float | None = Field(None, description="Mean over runs, cm²/s.")
    diffusivity_cm2_s_low: float | None = Field(None, description="Bootstrap 95 % interval of the mean D: low end, cm²/s.")
    diffusivity_cm2_s_high: float | None = Field(None, description="Bootstrap 95 % interval of the mean D: high end, cm²/s.")
    diffusivity_cm2_s_std: float | None = Field(None, description="Standard deviation over runs, cm²/s.")
    conductivity_mS_cm_mean: float | None = Field(None, description="Mean over runs, mS/cm.")
    conductivity_mS_cm_low: float | None = Field(None, description="Bootstrap 95 % interval of the mean σ: low end, mS/cm.")
    conductivity_mS_cm_high: float | None = Field(None, description="Bootstrap 95 % interval of the mean σ: high end, mS/cm.")
    diffusivity_cm2_s_pooled: float | None = Field(
        None, description="The runs' D pooled by their own intervals (inverse variance in ln D), cm²/s.")
    diffusivity_cm2_s_pooled_low: float | None = Field(None, description="95 % interval of the pooled D: low end, cm²/s.")
    diffusivity_cm2_s_pooled_high: float | None = Field(None, description="The same interval's high end, cm²/s.")
    conductivity_mS_cm_pooled: float | None = Field(None, description="σ of the pooled D, mS/cm.")
    conductivity_mS_cm_pooled_low: float | None = Field(None, description="95 % interval of that σ: low end, mS/cm.")
    conductivity_mS_cm_pooled_high: float | None = Field(None, description="The same interval's high end, mS/cm.")
    repetitions_chi2_per_dof: float | None = Field(
        None, description="χ²/(n − 1) of the runs' ln D about the pooled one: ~1 when the spread between repetitions "
        "is what their intervals say (the Birge ratio squared); None from one run.")
    repetitions_consistent: bool | None = Field(
        None, description="False when that χ² has p < 0.05: the runs scatter more than their intervals allow, and the "
        "pooled interval is widened by the Birge ratio.")


class DiffusionPathResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature_K: float = Field(..., description="The runs compared: those at the highest temperature.")
    overlap: float = Field(..., description="Bhattacharyya overlap of the occupancy density with the reference's (1 = same).")
    wrong_channel_fraction: float = Field(..., description="Fraction of the density in voxels the reference leaves empty.")
    wrong_channels: bool = Field(..., description="wrong_channel_fraction above analysis.diffusion_paths.WRONG_CHANNEL_FRACTION.")
    max_framework_drift_A: float = Field(..., description="Largest mean displacement of the framework over the runs, Å.")
    max_sublattice_drift_A: float = Field(..., description="Largest mean displacement of one element's sublattice, Å.")
    drifting_runs: int = Field(..., description="Runs whose framework or a sublattice drifted.")
    n_runs: int


class MaterialResult(ResultDoc):
    kind: Literal["material"] = "material"
    material: str
    temperatures_K: list[float]
    consistent_fraction: float = Field(..., description="Fraction of all runs classed consistent with the reference.")
    paper_stable_fraction: float | None = Field(None, description="Fraction of all runs stable by the paper's threshold.")
    rdf_mae_resolution: float | None = Field(None, description="Mean over temperatures of the stability test's "
                                             "resolution.")
    rdf_mae_mean: float | None = None
    activation_energy_eV: float | None = Field(None, description="Arrhenius activation energy of D, eV.")
    activation_energy_eV_low: float | None = Field(
        None, description="95 % interval of Ea: from the covariance of the fit weighted in ln D when every temperature "
        "has a pooled D, else the bootstrap over repetitions (resampled per temperature, refitted): low end, eV."
    )
    activation_energy_eV_high: float | None = Field(None, description="The same interval's high end, eV.")
    activation_energy_eV_bootstrap_low: float | None = Field(
        None, description="The bootstrap's 95 % interval of Ea, a check beside the fit's (>= 3 runs per temperature): "
        "low end, eV.")
    activation_energy_eV_bootstrap_high: float | None = Field(None, description="The same interval's high end, eV.")
    arrhenius_prefactor_cm2_s: float | None = Field(None, description="D0 of D(T) = D0 exp(−Ea / kB T), cm²/s.")
    arrhenius_prefactor_cm2_s_low: float | None = Field(None, description="95 % interval of D0 from the weighted fit: "
                                                        "low end, cm²/s.")
    arrhenius_prefactor_cm2_s_high: float | None = Field(None, description="The same interval's high end, cm²/s.")
    arrhenius_chi2_per_dof: float | None = Field(
        None, description="χ²/(n − 2) of the weighted fit; its intervals are widened by the Birge ratio when p < 0.05.")
    arrhenius_widened: bool | None = Field(None, description="The fit's intervals were widened: the temperatures "
                                           "scatter about the line more than their intervals allow.")
    arrhenius_reason: str | None = Field(None, description="Why there is no Ea and σ(target), e.g. `2 of 3 "
                                         "temperatures diffusive, 3 needed`; None when there are.")
    stability_score: float | None = Field(None, description="Normalised area under the survival curve, 0-1.")
    survival_time_ps: list[float] | None = Field(None, description="Times of the survival curve, ps.")
    survival_fraction: list[float] | None = Field(None, description="Fraction of the runs still valid at each time.")
    rdf_mae_noise_floor: float | None = Field(None, description="Mean over temperatures of the RDF MAE's noise floor.")
    target_temperature_K: float
    conductivity_target_mS_cm: float | None = Field(None, description="Extrapolated σ at the target temperature, mS/cm.")
    conductivity_target_mS_cm_low: float | None = Field(None, description="95 % interval of σ(target), from the same "
                                                        "source as Ea's: low end, mS/cm.")
    conductivity_target_mS_cm_high: float | None = Field(None, description="The same interval's high end, mS/cm.")
    conductivity_target_mS_cm_bootstrap_low: float | None = Field(
        None, description="The bootstrap's 95 % interval of σ(target), the check: low end, mS/cm.")
    conductivity_target_mS_cm_bootstrap_high: float | None = Field(None, description="The same interval's high end, mS/cm.")
    neg_log10_conductivity_target: float | None = Field(
        None, description="−log10 of σ(target) in mS/cm, the paper's Table 2 quantity."
    )
    n_carriers: int | None = Field(None, description="Atoms of the diffusing element in the cell (Nernst–Einstein's n).")
    volume_A3: float | None = Field(None, description="Cell volume, Å³.")
    diffusion_paths: DiffusionPathResult | None = Field(
        None, description="Where the diffusing element goes at the highest temperature, against the reference."
    )
    rdf_path: str | None = Field(None, description="npz file of the mean RDFs of this source and of the reference, per temperature.")
    density_path: str | None = Field(None, description="npz file of the diffusing element's occupancy density (diffusion_paths).")


PATH_FIELDS = ("checkpoint_path", "parity_path", "trajectory_path", "rdf_path", "density_path")  # files documents name


def relative_paths(doc: dict, root: str | os.PathLike | None) -> dict:
    """``doc`` with its files (``PATH_FIELDS``) that lie under ``root``, the campaign's folder, relative to it,
    so a moved campaign's documents still name its files; None leaves it as it is."""
    if root is None:
        return doc
    moved = {}
    for field in PATH_FIELDS:
        value = doc.get(field)
        if value and os.path.isabs(value) and Path(value).is_relative_to(root):
            moved[field] = str(Path(value).relative_to(root))
    return {**doc, **moved}


def absolute_paths(doc: dict, root: str | os.PathLike) -> dict:
    """``doc`` with its relative files (``PATH_FIELDS``) under ``root``, the campaign's folder: where to open them."""
    return {**doc, **{field: str(Path(root) / doc[field]) for field in PATH_FIELDS if doc.get(field)}}


RESULT_MODELS = {m.model_fields["kind"].default: m for m in (TrainingResult, PredictionResult, RunResult, TemperatureResult, MaterialResult)}


def result_id(campaign: str, doc: dict) -> str:
    """Deterministic document id: <campaign>/<kind>/<source>[/<material>[/<temperature>[/<repetition>]]]."""
    parts = [campaign, doc["kind"], doc["source"]]
    for key in ("material", "temperature_K", "repetition"):
        if key in doc:
            parts.append(f"{doc[key]:g}K" if key == "temperature_K" else str(doc[key]))
    return "/".join(parts)


def store_results(launchpad: LaunchPad, firework: Firework, launch) -> int:
    """Upsert the result documents of a completed launch; returns how many were stored."""
    identity = firework.spec[CAMPAIGN_SPEC_KEY]
    docs = (launch.action.stored_data or {}).get("results", []) if launch.action else []
    collection = results_collection(launchpad)
    for doc in docs:
        model = RESULT_MODELS.get(doc.get("kind"))
        if model is None:
            raise ValueError(f"firework {firework.fw_id} returned a result of unknown kind {doc.get('kind')!r}")
        validated = model.model_validate(doc).model_dump(mode="json")
        validated.update(
            campaign=identity["name"],
            task_key=identity["key"],
            task_digest=identity["digest"],
            spec_hash=identity["spec_hash"],
            fw_id=firework.fw_id,
            launch_id=launch.launch_id,
        )
        collection.replace_one({"_id": result_id(identity["name"], doc)}, {"_id": result_id(identity["name"], doc), **validated}, upsert=True)
    return len(docs)
