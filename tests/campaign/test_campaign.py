"""A whole small campaign, end to end through the CLI: CHGNet reference -> train -> predict -> MD -> analysis."""

import json
import shutil
from pathlib import Path

import ase.io
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from campaign.cli import main
from campaign.spec import load_spec
from mlff.trajectory import read_trajectory
from records.provenance import sha256_file
from records.store import EmbeddedStore, results_collection

TINY = {
    "campaign": {"name": "tiny", "store": {"embedded": "store.json"}, "workdir": "runs", "seed": 7, "device": "cpu"},
    "materials": {
        "LGPS": {"structure": "LGPS", "generate": {"calculator": "chgnet", "ramp_ps": 0.02, "production_ps": 0.1}},
        "Li2S": {"structure": "Li2S", "generate": {"calculator": "chgnet", "ramp_ps": 0.02, "production_ps": 0.1}},
    },
    "training": {
        "material": "LGPS", "temperatures_K": [800, 1200], "n_train_per_run": 25, "n_validation_per_run": 10,
        "batch_size": 5, "max_epochs": 3, "max_wall_minutes": 1,
    },
    "models": {
        "schnet": {"hidden_channels": 16, "num_filters": 16, "num_interactions": 1, "num_gaussians": 16, "cutoff_A": 4.0},
        "dimenet++": {
            "hidden_channels": 8, "out_emb_channels": 8, "int_emb_size": 4, "basis_emb_size": 4,
            "num_interactions": 1, "cutoff_A": 3.5,
        },
    },
    "prediction": {"n_frames": 10},
    "md": {
        "temperatures_K": [800, 1200], "repetitions": 1, "ramp": {"start_K": 100, "ramp_ps": 0.02},
        "production_ps": 0.1, "discard_ps": 0.02,
    },
    "analysis": {"rdf": {"r_max_A": 5.0, "n_bins": 50, "pairs": [["Li", "S"], ["P", "S"]]}},
}


@pytest.fixture(scope="module")
def campaign_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("campaign")
    (directory / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    result = CliRunner().invoke(main, ["submit", str(directory / "tiny.yaml")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "done: 24 completed, 0 failed" in result.output
    return directory


@pytest.mark.slow
def test_results_table_covers_every_model_material_and_the_reference(campaign_dir):
    result = CliRunner().invoke(main, ["results", str(campaign_dir / "tiny.yaml"), "--format", "json"])
    rows = json.loads(result.output)
    assert [(r["model"], r["material"]) for r in rows] == [
        ("reference", "LGPS"), ("reference", "Li2S"),
        ("dimenet++", "LGPS"), ("dimenet++", "Li2S"), ("schnet", "LGPS"), ("schnet", "Li2S"),
    ]
    for row in rows:
        assert row["kind"] == ("reference" if row["model"] == "reference" else "trained")
        assert 0 <= row["consistent_fraction"] <= 1 and 0 <= row["paper_stable_fraction"] <= 1
        assert 0 <= row["stability_score"] <= 1
        # Two temperatures of sub-picosecond runs: not enough for an Arrhenius fit, and said why.
        assert row["neg_log10_sigma_target"] is None and row["activation_energy_eV"] is None
        assert "not diffusive" in row["arrhenius_reason"] or "temperatures diffusive" in row["arrhenius_reason"]
        if row["model"] == "reference":  # one run: its second half against its first, never itself against itself
            assert row["rdf_mae"] > 0 and row["rdf_mae_noise_floor"] > 0 and row["rdf_mae_resolution"] > 0
            assert row["force_mae_eV_A"] is None
        else:
            assert 0 < row["force_mae_eV_A"] < 10 and row["force_r2"] <= 1
    csv = CliRunner().invoke(main, ["results", str(campaign_dir / "tiny.yaml"), "--format", "csv", "--model", "schnet"])
    assert csv.output.splitlines()[0].startswith("model,kind,material,force_mae_eV_A")
    assert len(csv.output.splitlines()) == 3


@pytest.mark.slow
def test_result_documents_carry_provenance_and_point_at_files(campaign_dir):
    with EmbeddedStore(campaign_dir / "store.json").read() as launchpad:
        docs = list(results_collection(launchpad).find({"campaign": "tiny"}))
    kinds = [d["kind"] for d in docs]
    # 2 trainings; 2 models x 2 materials predictions; runs: (2 models + reference) x 2 materials x 2 T.
    assert (kinds.count("training"), kinds.count("prediction"), kinds.count("run")) == (2, 4, 12)
    assert (kinds.count("temperature"), kinds.count("material")) == (12, 6)
    runs = [d for d in docs if d["kind"] == "run" and d["source"] != "reference"]
    assert len({d["provenance"]["seed"] for d in runs}) == len(runs)
    for doc in runs:
        assert doc["provenance"]["engine"] == "ase" and doc["provenance"]["device"] == "cpu"
        assert doc["provenance"]["package_versions"]["torch"].startswith("2.13.0")
        assert sha256_file(campaign_dir / doc["trajectory_path"]) == doc["trajectory_sha256"]
        assert doc["stability"] in ("consistent", "lattice_mismatch", "atom_fusion")
        assert "positions" not in json.dumps(doc)
    training = next(d for d in docs if d["kind"] == "training" and d["source"] == "schnet")
    assert sha256_file(campaign_dir / training["checkpoint_path"]) == training["provenance"]["checkpoint_sha256"]
    assert len(training["provenance"]["dataset_hash"]) == 64


@pytest.mark.slow
def test_md_follows_the_protocol_and_keeps_only_production_frames(campaign_dir):
    spec = load_spec(campaign_dir / "tiny.yaml")
    trajectory = read_trajectory(next((campaign_dir / "runs" / "md" / "schnet" / "LGPS" / "800K" / "rep0").rglob("*.frames")))
    n_production = round(spec.md.production_ps * 1000 / spec.md.timestep_fs)
    assert trajectory.n_frames <= n_production
    np.testing.assert_allclose(np.diff(trajectory.time_fs), spec.md.timestep_fs)
    assert trajectory.metadata["seed"] > 0 and trajectory.n_atoms == 50


@pytest.mark.slow
def test_resubmitting_adds_and_runs_nothing(campaign_dir):
    result = CliRunner().invoke(main, ["submit", str(campaign_dir / "tiny.yaml")])
    assert result.exit_code == 0, result.output
    assert "0 new task(s), 24 already stored" in result.output
    assert "done: 0 completed, 0 failed" in result.output


@pytest.mark.slow
def test_a_copied_campaign_adds_nothing_and_reports_from_its_own_files(campaign_dir, tmp_path):
    copy = tmp_path / "elsewhere"
    shutil.copytree(campaign_dir, copy, ignore=shutil.ignore_patterns("*.lock"))
    result = CliRunner().invoke(main, ["submit", str(copy / "tiny.yaml")])
    assert result.exit_code == 0, result.output
    assert "0 new task(s), 24 already stored" in result.output and "migrated" not in result.output
    report = CliRunner().invoke(main, ["report", str(copy / "tiny.yaml")])
    assert report.exit_code == 0, report.output
    page = (copy / "runs" / "report" / "index.html").read_text()
    assert "rdf_LGPS.png" in page and "Not drawn" not in page  # the copy's own files, found by relative paths


@pytest.mark.slow
def test_analyses_that_predate_the_noise_aware_verdict_run_again(campaign_dir, tmp_path):
    """A store whose run documents have no paper's verdict (written before the noise-aware one): the next submit
    puts those analyses back to READY and runs them, and their documents carry both verdicts again."""
    copy = tmp_path / "older"
    shutil.copytree(campaign_dir, copy, ignore=shutil.ignore_patterns("*.lock"))
    with EmbeddedStore(copy / "store.json").write() as launchpad:
        results_collection(launchpad).update_many({"campaign": "tiny", "kind": "run", "source": "schnet"},
                                                  {"$unset": {"paper_stable": "", "rdf_mae_resolution": ""}})
    result = CliRunner().invoke(main, ["submit", str(copy / "tiny.yaml")])
    assert result.exit_code == 0, result.output
    assert "2 analysis task(s) predate the noise-aware stability verdict" in result.output
    assert "0 new task(s), 24 already stored" in result.output and "done: 2 completed, 0 failed" in result.output
    with EmbeddedStore(copy / "store.json").read() as launchpad:
        runs = list(results_collection(launchpad).find({"campaign": "tiny", "kind": "run", "source": "schnet"}))
    assert len(runs) == 4 and all("paper_stable" in run and run["rdf_mae_resolution"] > 0 for run in runs)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["reference", "schnet"])
def test_analyze_command_gives_the_stored_run_document(campaign_dir, source):
    """`campaign analyze` on a run file of a finished campaign, with the spec's settings, prints that run's stored
    document field for field: one analysis path."""
    with EmbeddedStore(campaign_dir / "store.json").read() as launchpad:
        stored = results_collection(launchpad).find_one(
            {"campaign": "tiny", "kind": "run", "source": source, "material": "LGPS", "temperature_K": 800.0})
    references = sorted((campaign_dir / "runs" / "reference" / "LGPS" / "800K").rglob("*.frames"))
    assert references and stored is not None
    run = campaign_dir / stored["trajectory_path"]  # stored relative to the campaign's folder
    arguments = ["analyze", str(run), "--spec", str(campaign_dir / "tiny.yaml"), "--temperature-K", "800",
                 "--source", source, "--material", "LGPS", "--summary", str(run.with_suffix(".summary.json")), "--json"]
    for reference in references:
        arguments += ["--reference", str(reference)]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["rdf_mae"] is not None and printed["stability"] is not None
    assert Path(printed["trajectory_path"]) == run.resolve()
    identity = {"provenance", "repetition", "label", "trajectory_path"}
    assert {key: printed[key] for key in printed if key not in identity} == {
        key: stored[key] for key in printed if key not in identity}


@pytest.mark.slow
def test_analyze_command_on_our_file_and_on_extxyz(campaign_dir, tmp_path):
    reference = next((campaign_dir / "runs" / "reference" / "LGPS" / "800K").rglob("*.frames"))
    result = CliRunner().invoke(main, ["analyze", str(reference), "--temperature-K", "800", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["min_distance_A"] > 1.0
    # 80 fs of analysed frames: the Li have not hopped, so no D, only a labelled upper bound.
    assert report["diffusive"] is False and report["diffusivity_cm2_s"] is None and report["conductivity_mS_cm"] is None
    assert report["diffusion_verdict"].startswith("not diffusive") and report["diffusivity_upper_bound_cm2_s"] > 0
    assert report["stability"] == "unknown"  # no reference given: nothing says it is stable

    frames = read_trajectory(reference)
    images = []
    for i in range(frames.n_frames):
        atoms = ase.Atoms(numbers=frames.numbers, positions=frames.positions_A[i], cell=frames.cell_A, pbc=True)
        images.append(atoms)
    extxyz = tmp_path / "run.extxyz"
    ase.io.write(extxyz, images)
    (tmp_path / "run.json").write_text("")  # what `--json > run.json` leaves beside it: never read
    timestep_fs = float(np.diff(frames.time_fs)[0])
    again = CliRunner().invoke(
        main, ["analyze", str(extxyz), "--temperature-K", "800", "--timestep-fs", str(timestep_fs), "--json"]
    )
    assert again.exit_code == 0, again.output
    same = json.loads(again.output)
    assert same["diffusivity_upper_bound_cm2_s"] == pytest.approx(report["diffusivity_upper_bound_cm2_s"], rel=1e-9)
    assert same["stability"] == "unknown"
    other = next((campaign_dir / "runs" / "reference" / "Li2S" / "800K").rglob("*.frames"))
    refused = CliRunner().invoke(main, ["analyze", str(reference), "--reference", str(other), "--temperature-K", "800"])
    assert refused.exit_code == 1 and "composition differs" in refused.output
    missing = CliRunner().invoke(main, ["analyze", str(extxyz), "--temperature-K", "800"])
    assert missing.exit_code != 0 and "--timestep-fs is needed" in missing.output


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["ase", "torch", pytest.param("lammps", marks=pytest.mark.lammps)])
def test_every_md_engine_runs_the_md_stage_with_a_trained_checkpoint(campaign_dir, tmp_path, engine):
    from records.summaries import read_run_summary, summary_path
    from workflows.inputs import MDRunInputs
    from workflows.stages.md import md

    checkpoint = next((campaign_dir / "runs" / "train" / "schnet").rglob("best.pt"))
    protocol = {"temperature_K": 600.0, "timestep_fs": 2.0, "ramp_start_K": 100.0, "ramp_ps": 0.01,
                "production_ps": 0.02, "save_every_steps": 1}
    out_path = tmp_path / "trajectory.frames"
    outcome = md(MDRunInputs(
        model="schnet", material="Li2S", checkpoint=str(checkpoint), structure="Li2S", protocol=protocol,
        engine=engine, tabulate_filters=True, fusion_distance_A=0.5, seed=3, device="cpu", out_path=str(out_path),
    ))
    summary = read_run_summary(summary_path(out_path))
    assert summary.engine == engine == outcome["summary"]["runs"][0]["engine"]
    trajectory = read_trajectory(out_path)
    assert trajectory.n_frames == summary.n_frames_written
    if summary.completed:
        assert trajectory.n_frames == 10
