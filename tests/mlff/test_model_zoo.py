"""Every registered model through the campaign's stages: reference -> train -> md -> analyze.

The stage functions are the ones the firetasks call (workflows/stages/). The reference is a short
Lennard-Jones MD of the 12-atom Li2S cell; every model is tiny (tests/model_sizes.py), trains two
epochs and runs ten MD steps, so this checks the wiring of each model into the campaign, not physics.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from campaign.spec import load_spec
from campaign.tasks import count_by_stage, expand
from mlff.models import MODELS
from mlff.trajectory import read_trajectory
from model_sizes import SMALL_HPARAMS
from records.results import MaterialResult, RunResult, TemperatureResult, TrainingResult
from repo_paths import EXAMPLES
from workflows.inputs import (
    AnalyzeInputs,
    GenerateReferenceInputs,
    MDRunInputs,
    TrainInputs,
)
from workflows.stages.analyze import RDF_FILE, analyze
from workflows.stages.md import md
from workflows.stages.reference import generate_reference
from workflows.stages.training import train

TEMPERATURE_K = 1000.0
TIMESTEP_FS = 2.0
MD_PRODUCTION_PS = 0.02  # 10 steps
PAPER_SPEC = EXAMPLES / "paper.yaml"
RDF = {"r_max_A": 4.0, "n_bins": 20, "pairs": [["Li", "S"]], "frame_stride": 1}


def protocol(ramp_ps: float, production_ps: float) -> dict:
    return {
        "temperature_K": TEMPERATURE_K, "timestep_fs": TIMESTEP_FS, "ramp_start_K": 100.0, "ramp_ps": ramp_ps,
        "production_ps": production_ps, "save_every_steps": 1,
    }


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> list[dict]:
    """One 16-frame reference run of Li2S at 1000 K, as the analyze and train stages receive it."""
    out_path = tmp_path_factory.mktemp("reference") / "run0.frames"
    outcome = generate_reference(GenerateReferenceInputs(
        mode="generate", material="Li2S", out_path=str(out_path), structure="Li2S",
        calculator="ase.calculators.lj:LennardJones", protocol=protocol(ramp_ps=0.004, production_ps=0.032), seed=11,
        device="cpu",
    ))
    assert outcome["summary"]["completed"] and read_trajectory(out_path).n_frames == 16
    return [{"path": str(out_path), "temperature_K": TEMPERATURE_K, "run": 0}]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_trains_runs_md_and_is_analysed(name, references, tmp_path):
    trained = train(TrainInputs(
        model=name, hparams=SMALL_HPARAMS[name], references=references, n_train_per_run=8, n_validation_per_run=4,
        split_seed=0, out_dir=str(tmp_path / "train"), seed=5, device="cpu", energy_weight=1.0, force_weight=1000.0,
        learning_rate=1e-3, batch_size=4, max_epochs=2, max_wall_s=None,
    ))
    (training_doc,) = trained["results"]
    TrainingResult.model_validate(training_doc)
    assert training_doc["source"] == name and training_doc["epochs_run"] == 2
    curve = json.loads((tmp_path / "train" / "learning_curve.json").read_text())
    assert [row["epoch"] for row in curve] == [1, 2]
    assert all(math.isfinite(row[key]) for row in curve for key in ("train_loss", "validation_score"))
    checkpoint = trained["summary"]["checkpoint"]

    trajectory_path = tmp_path / "md" / "rep0.frames"
    ran = md(MDRunInputs(
        model=name, material="Li2S", checkpoint=checkpoint, structure="Li2S", engine="ase", tabulate_filters=True,
        fusion_distance_A=0.5, device="cpu", protocol=protocol(ramp_ps=0.004, production_ps=MD_PRODUCTION_PS), seed=3,
        out_path=str(trajectory_path),
    ))
    assert ran["summary"]["runs"][0]["completed"], ran["summary"]
    trajectory = read_trajectory(trajectory_path)
    assert trajectory.n_frames == round(MD_PRODUCTION_PS * 1000 / TIMESTEP_FS) and trajectory.n_atoms == 12
    np.testing.assert_allclose(np.diff(trajectory.time_fs), TIMESTEP_FS)
    assert np.isfinite(trajectory.positions_A).all()

    analysed = analyze(AnalyzeInputs(
        source=name, material="Li2S",
        runs=[{"path": str(trajectory_path), "temperature_K": TEMPERATURE_K, "repetition": 0, "seed": 3}],
        references=references, discard_ps=0.0, rdf=RDF, rdf_mae_threshold=0.02, fusion_distance_A=0.5,
        diffusing_specie="Li", target_temperature_K=300.0, out_dir=str(tmp_path / "analysis"),
    ))
    run_doc, temperature_doc, material_doc = analysed["results"]
    RunResult.model_validate(run_doc)
    TemperatureResult.model_validate(temperature_doc)
    MaterialResult.model_validate(material_doc)
    assert run_doc["source"] == name and run_doc["completed"] and math.isfinite(run_doc["rdf_mae"])
    assert run_doc["provenance"]["engine"] == "ase"
    saved = json.loads((tmp_path / "analysis" / "results.json").read_text())["results"]
    assert [doc["kind"] for doc in saved] == ["run", "temperature", "material"]
    assert (tmp_path / "analysis" / RDF_FILE).exists()


def test_the_paper_example_is_the_papers_whole_benchmark():
    """LGPS trains, Li3PS4 and Li4GeS4 transfer; 11 models; 800-1200 K in 100 K steps; 6 repetitions; 3 reference runs."""
    spec = load_spec(PAPER_SPEC)
    assert list(spec.materials) == ["LGPS", "Li3PS4", "Li4GeS4"] and spec.training.material == "LGPS"
    assert {material.structure for material in spec.materials.values()} == {"LGPS", "Li3PS4", "Li4GeS4"}
    assert all(material.generate.runs == 3 for material in spec.materials.values())
    assert spec.models == {name: {} for name in MODELS}  # each model at its defaults: 128, 6 Å, 500
    assert (spec.training.energy_weight, spec.training.force_weight) == (1.0, 1000.0)
    assert spec.md.temperatures_K == spec.training.temperatures_K == [800, 900, 1000, 1100, 1200]
    assert (spec.md.repetitions, spec.md.timestep_fs, spec.md.production_ps, spec.md.discard_ps) == (6, 2.0, 50.0, 15.0)
    counts = count_by_stage(expand(spec, PAPER_SPEC.parent))
    n_materials, n_temperatures = len(spec.materials), len(spec.md.temperatures_K)
    assert counts["train"] == len(MODELS)
    assert counts["md"] == len(MODELS) * n_materials * n_temperatures * spec.md.repetitions
    assert counts == {"reference": 3 * 5 * 3, "train": 11, "predict": 11 * 3, "md": 11 * 3 * 5 * 6, "analyze": 12 * 3}
