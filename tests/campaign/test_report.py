"""`campaign report` on a tiny finished campaign: real analyze-stage documents from synthetic trajectories."""

import mongomock
import numpy as np

from campaign.report import table_1, write_report
from campaign.tables import TABLES, ResultFilter, run_table
from mlff.trajectory import TrajectoryWriter
from workflows.inputs import AnalyzeInputs
from workflows.stages.analyze import analyze

CELL_A = np.diag([6.0, 6.0, 6.0])
NUMBERS = np.array([3, 3, 3, 3, 16, 16, 16, 16])
SETTINGS = {
    "discard_ps": 0.01,
    "rdf": {"r_max_A": 4.0, "n_bins": 40, "pairs": [["Li", "S"]], "frame_stride": 1},
    "rdf_mae_threshold": 0.02,
    "fusion_distance_A": 0.02,  # the toy's random walkers pass through the S sublattice
    "diffusing_specie": "Li",
    "target_temperature_K": 300.0,
}


def _trajectory(path, seed, temperature_K, n_frames=400):
    """Li random walk (faster when hotter, far enough to diffuse) between S on a simple cubic sublattice."""
    rng = np.random.default_rng(seed)
    sites = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]) * 6.0
    li_start = sites + 1.5
    step_A = 0.05 * np.exp(-600.0 / temperature_K)
    with TrajectoryWriter(path, NUMBERS, CELL_A, fields=[]) as writer:
        li = li_start.copy()
        for frame in range(n_frames):
            li += rng.normal(0.0, step_A * 10, size=li.shape)
            s = sites + rng.normal(0.0, 0.05, size=sites.shape)
            writer.append(frame, frame * 2.0, np.concatenate([li, s]))
    return str(path)


def _campaign(tmp_path):
    analyses, docs = [], []
    references = [
        {"path": _trajectory(tmp_path / f"ref{t}.frames", 10 + i, t), "temperature_K": t, "run": 0}
        for i, t in enumerate((800.0, 1200.0))
    ]
    runs = [
        {"path": _trajectory(tmp_path / f"m{t}_{r}.frames", 20 + 2 * i + r, t), "temperature_K": t, "repetition": r}
        for i, t in enumerate((800.0, 1200.0)) for r in range(2)
    ]
    labels = {"toy-zs": "toy zero-shot"}  # a pretrained source's runs: the same trajectories, named by its label
    for source, entries in (("reference", references), ("toymodel", runs), ("toy-zs", runs)):
        inputs = {"source": source, "material": "toyLiS", "runs": entries, "references": references,
                  "out_dir": str(tmp_path / "analyze" / source), "label": labels.get(source), **SETTINGS}
        docs += analyze(AnalyzeInputs(**inputs))["results"]
        analyses.append(inputs)
    rng = np.random.default_rng(0)
    forces = rng.normal(size=(50, 3))
    np.savez(tmp_path / "parity.npz", predicted_forces_eV_A=forces + rng.normal(0, 0.1, forces.shape),
             reference_forces_eV_A=forces)
    docs.append({"kind": "prediction", "source": "toymodel", "material": "toyLiS", "n_frames": 5,
                 "energy_mae_eV_atom": 0.01, "energy_r2": 0.9, "force_mae_eV_A": 0.08, "force_r2": 0.95,
                 "parity_path": str(tmp_path / "parity.npz"), "parity_sha256": "x", "provenance": {}})
    return docs, analyses


def _tables(docs):
    """Every table of campaign/tables.py over the documents, as `campaign report` computes them from the store."""
    collection = mongomock.MongoClient()["fireworks"]["campaign_results"]
    collection.insert_many([{**doc, "campaign": "toy"} for doc in docs])
    return {name: run_table(collection, name, ResultFilter("toy")) for name in TABLES}


def test_report_writes_every_figure_and_table(tmp_path):
    docs, analyses = _campaign(tmp_path)
    index = write_report("toy", docs, _tables(docs), tmp_path / "report")
    expected = ["fig4_errors.png", "parity_forces.png", "rdf_toyLiS.png", "arrhenius_toyLiS.png", "li_density_toyLiS.png",
                "survival_toyLiS.png"]
    page = index.read_text()
    for name in expected:
        png = tmp_path / "report" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"src='{name}'" in page
    for title in ("Table 1", "Table 2", "Stability over time", "Table S1", "Table S2", "Table S3", "Stability", "Diffusion paths"):
        assert title in page
    assert "Not drawn" not in page
    assert page.count("<td>toy-zs (toy zero-shot)</td>") >= 4 and "<td>toy-zs</td>" not in page  # every table names it
    # The reference compared with itself: identical Li density, nothing in empty voxels.
    row = page.split("<td>reference</td><td>toyLiS</td><td>1200</td>")[-1].split("</tr>")[0]  # diffusion-path table
    assert row.startswith("<td>1</td><td>0</td><td>no</td>")


def test_table_1_sets_our_parameter_counts_and_md_speeds_beside_the_papers():
    docs = [{"kind": "training", "source": "schnet", "n_parameters": 1_234_000},
            *({"kind": "run", "source": "schnet", "ns_per_day": speed} for speed in (10.0, 40.0, 20.0)),
            {"kind": "run", "source": "reference", "ns_per_day": None},
            {"kind": "training", "source": "mymodel", "n_parameters": 5_000}]
    assert table_1(docs) == [
        ["reference", "n/a", "n/a", "n/a", "0.034"],  # no training; the paper's AIMD speed
        ["mymodel", "0.005", "n/a", "n/a", "n/a"],  # not in the paper
        ["schnet", "1.23", "20", "0.49", "22.5"],  # the median speed
    ]


def test_report_without_rdf_files_says_what_is_missing(tmp_path):
    docs, analyses = _campaign(tmp_path)
    for analysis in analyses:
        (tmp_path / "analyze" / analysis["source"] / "rdf.npz").unlink()
    page = write_report("toy", docs, _tables(docs), tmp_path / "report").read_text()
    assert "Not drawn" in page and "RDFs of toyLiS" in page.split("Not drawn")[1]
    assert not (tmp_path / "report" / "rdf_toyLiS.png").exists()
