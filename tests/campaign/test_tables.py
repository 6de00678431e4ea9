"""The paper's tables as aggregation pipelines: against means computed here from typed documents."""

import csv
import io
import json
import os
import re
import uuid

import mongomock
import numpy as np
import pymongo
import pytest
import yaml
from click.testing import CliRunner

from campaign.cli import main
from campaign.tables import TABLES, ResultFilter, format_rows, run_table
from records.results import (
    MaterialResult,
    PredictionResult,
    Provenance,
    RunResult,
    result_id,
)
from records.store import (
    DATABASE,
    RESULTS_COLLECTION,
    EmbeddedStore,
    results_collection,
)
from repo_paths import ROOT

SOURCES = ("reference", "schnet", "dimenet++", "chgnet-zs")
LABELS = {"chgnet-zs": "chgnet zero-shot"}  # a pretrained source's documents carry its label
KINDS = {"reference": "reference", "schnet": "trained", "dimenet++": "trained", "chgnet-zs": "chgnet zero-shot"}
MATERIALS = ("LGPS", "Li2S")
TEMPERATURES_K = (600.0, 1000.0)
N_REPETITIONS = 3


def _documents(campaign: str, seed: int) -> list[dict]:
    """Typed result documents of a campaign with random numbers, as store_results writes them."""
    rng = np.random.default_rng(seed)
    provenance = Provenance(package_versions={"numpy": np.__version__})
    docs = []
    for source in SOURCES:
        for material in MATERIALS:
            if source != "reference":
                docs.append(PredictionResult(
                    source=source, material=material, n_frames=10, energy_mae_eV_atom=rng.uniform(0.001, 0.05),
                    energy_r2=rng.uniform(0.5, 1), force_mae_eV_A=rng.uniform(0.02, 0.3), force_r2=rng.uniform(0.5, 1),
                    parity_path="parity.npz", parity_sha256="0" * 64, provenance=provenance,
                ))
            for temperature_K in TEMPERATURES_K:
                for repetition in range(N_REPETITIONS):
                    docs.append(RunResult(
                        source=source, material=material, temperature_K=temperature_K, repetition=repetition,
                        trajectory_path="t.frames", trajectory_sha256="0" * 64, completed=True, analysed_ps=35.0,
                        n_nonfinite_frames=0, rdf_mae=rng.uniform(0, 0.05), rdf_mae_noise_floor=rng.uniform(0, 0.01),
                        rdf_mae_resolution=rng.uniform(0, 0.01), threshold_resolvable=bool(rng.uniform() < 0.9),
                        min_distance_A=1.7, stability=str(rng.choice(["consistent", "lattice_mismatch", "atom_fusion"])),
                        paper_stable=[True, False, None][int(rng.integers(3))],
                        diffusivity_cm2_s=rng.uniform(1e-6, 1e-5), conductivity_mS_cm=rng.uniform(10, 500),
                        provenance=provenance,
                    ))
            sigma_mS_cm = rng.uniform(0.1, 20)
            docs.append(MaterialResult(
                source=source, material=material, temperatures_K=list(TEMPERATURES_K), consistent_fraction=0.5,
                rdf_mae_mean=0.01, activation_energy_eV=rng.uniform(0.1, 0.4), target_temperature_K=300.0,
                conductivity_target_mS_cm=sigma_mS_cm, neg_log10_conductivity_target=-np.log10(sigma_mS_cm),
                stability_score=rng.uniform(0, 1), arrhenius_reason=None if source == "reference" else "2 of 3",
                provenance=provenance,
            ))
    for doc in docs:
        doc.label = LABELS.get(doc.source)
    dumped = [doc.model_dump(mode="json") for doc in docs]
    return [{"_id": result_id(campaign, doc), "campaign": campaign, **doc} for doc in dumped]


DOCS = _documents("quickstart", seed=1) + _documents("other", seed=2)


def _expected(campaign: str = "quickstart", temperature_K: float | None = None) -> dict[tuple[str, str], dict]:
    """Every column per (source, material), computed directly from DOCS."""
    expected = {}
    for source in SOURCES:
        for material in MATERIALS:
            mine = [d for d in DOCS if (d["campaign"], d["source"], d.get("material")) == (campaign, source, material)]
            runs = [d for d in mine if d["kind"] == "run" and temperature_K in (None, d["temperature_K"])]
            prediction = next((d for d in mine if d["kind"] == "prediction"), {})
            fit = next(d for d in mine if d["kind"] == "material")
            expected[(source, material)] = {
                "kind": KINDS[source],
                **{name: prediction.get(name) for name in ("energy_mae_eV_atom", "energy_r2", "force_mae_eV_A", "force_r2")},
                "rdf_mae": np.mean([d["rdf_mae"] for d in runs]),
                "rdf_mae_noise_floor": np.mean([d["rdf_mae_noise_floor"] for d in runs]),
                "stability_score": fit["stability_score"],
                "arrhenius_reason": fit["arrhenius_reason"],
                "rdf_mae_resolution": np.mean([d["rdf_mae_resolution"] for d in runs]),
                "consistent_fraction": np.mean([d["stability"] == "consistent" for d in runs]),
                "paper_stable_fraction": np.mean([d["paper_stable"] for d in runs if d["paper_stable"] is not None]),
                "threshold_resolvable": all(d["threshold_resolvable"] for d in runs),
                "n_runs": len(runs),
                "neg_log10_sigma_target": fit["neg_log10_conductivity_target"],
                "activation_energy_eV": fit["activation_energy_eV"],
                "target_temperature_K": fit["target_temperature_K"],
            }
    return expected


def _collection(docs=DOCS):
    collection = mongomock.MongoClient()[DATABASE][RESULTS_COLLECTION]
    collection.insert_many([dict(doc) for doc in docs])
    return collection


def _check(rows: list[dict], expected: dict, name: str) -> None:
    columns = TABLES[name][1]
    for row in rows:
        assert sorted(row) == sorted(columns)
        want = expected[(row["model"], row["material"])]
        for column in columns[1:]:
            if column == "material":
                continue
            where = (name, row["model"], row["material"], column)
            if want[column] is None or isinstance(want[column], str):
                assert row[column] == want[column], where
            else:
                assert row[column] == pytest.approx(want[column], rel=1e-12), where


def _order(rows: list[dict]) -> list[tuple[str, str]]:
    return [(row["model"], row["material"]) for row in rows]


@pytest.mark.parametrize("name", [name for name in TABLES if name != "errors"])  # errors: its own test below
def test_every_table_gives_the_means_of_the_documents(name):
    rows = run_table(_collection(), name, ResultFilter("quickstart"))
    models = sorted(s for s in SOURCES if s != "reference")
    sources = models if name == "fig4" else ["reference", *models]
    assert _order(rows) == [(s, m) for s in sources for m in MATERIALS]
    _check(rows, _expected(), name)


def test_filters_select_campaign_models_materials_and_temperature():
    collection = _collection()
    other = run_table(collection, "summary", ResultFilter("other"))
    _check(other, _expected("other"), "summary")
    hot = run_table(collection, "s1-s3", ResultFilter("quickstart", temperature_K=1000.0))
    _check(hot, _expected(temperature_K=1000.0), "s1-s3")
    assert hot[0]["rdf_mae"] != pytest.approx(_expected()[("reference", "LGPS")]["rdf_mae"])
    one = run_table(collection, "summary", ResultFilter("quickstart", ("schnet",), ("Li2S",), 600.0))
    assert _order(one) == [("schnet", "Li2S")] and one[0]["n_runs"] == N_REPETITIONS
    _check(one, _expected(temperature_K=600.0), "summary")
    assert run_table(collection, "table2", ResultFilter("nonexistent")) == []
    with pytest.raises(ValueError, match="unknown table 'table9'"):
        run_table(collection, "table9", ResultFilter("quickstart"))


def test_json_and_csv_round_trip():
    name = "s1-s3"
    rows = run_table(_collection(), name, ResultFilter("quickstart"))
    columns = TABLES[name][1]
    assert json.loads(format_rows(rows, columns, "json")) == rows
    read = list(csv.DictReader(io.StringIO(format_rows(rows, columns, "csv"))))
    assert len(read) == len(rows)
    for row, back in zip(rows, read, strict=True):
        for column in columns:
            value = row[column]
            assert back[column] == ("" if value is None else str(value))
            if isinstance(value, float):
                assert float(back[column]) == value
    table = format_rows(rows, columns, "table")
    assert "energy MAE (eV/atom)" in table and len(table.splitlines()) == len(rows) + 2


def test_cli_results_filters_and_exports(tmp_path):
    spec = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    spec["campaign"]["store"] = {"embedded": "store.json"}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    with EmbeddedStore(tmp_path / "store.json").write() as launchpad:
        results_collection(launchpad).insert_many([dict(doc) for doc in DOCS])
    campaign = spec["campaign"]["name"]
    other = "other" if campaign != "other" else "quickstart"
    args = ["results", str(tmp_path / "spec.yaml"), "--table", "fig4", "--format", "json", "--campaign", other,
            "--model", "schnet", "--temperature-K", "1000"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert _order(rows) == [("schnet", m) for m in MATERIALS]
    _check(rows, _expected(other, 1000.0), "fig4")
    result = CliRunner().invoke(main, ["results", str(tmp_path / "spec.yaml"), "--format", "csv", "--campaign", other,
                                       "--material", "LGPS"])
    assert result.exit_code == 0, result.output
    read = list(csv.DictReader(io.StringIO(result.output)))
    assert [(r["model"], r["material"]) for r in read] == [(s, "LGPS") for s in ("reference", "chgnet-zs", "dimenet++", "schnet")]
    assert [float(r["rdf_mae"]) for r in read] == pytest.approx(
        [_expected(other)[(s, "LGPS")]["rdf_mae"] for s in ("reference", "chgnet-zs", "dimenet++", "schnet")], rel=1e-12)


def test_the_documented_pymongo_example_runs(monkeypatch):
    text = (ROOT / "docs" / "results.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 2
    client = mongomock.MongoClient()
    client[DATABASE][RESULTS_COLLECTION].insert_many([dict(doc) for doc in DOCS])
    monkeypatch.setattr(pymongo, "MongoClient", lambda uri: client)
    namespace = {}
    for block in blocks:
        exec(compile(block, "docs/results.md", "exec"), namespace)  # noqa: S102
    expected = _expected(temperature_K=1000.0)
    per_model = {(r["_id"]["model"], r["_id"]["material"]): r for r in namespace["per_model"]}
    assert set(per_model) == set(expected)
    for key, row in per_model.items():
        assert row["rdf_mae"] == pytest.approx(expected[key]["rdf_mae"], rel=1e-12)
        assert row["consistent_fraction"] == pytest.approx(expected[key]["consistent_fraction"], rel=1e-12)
        assert row["n_runs"] == expected[key]["n_runs"]
    unstable = [d for d in DOCS if d["campaign"] == "quickstart" and d["kind"] == "run" and d["stability"] != "consistent"]
    assert sorted((u["source"], u["material"], u["temperature_K"], u["repetition"]) for u in namespace["unstable"]) == sorted(
        (u["source"], u["material"], u["temperature_K"], u["repetition"]) for u in unstable)
    _check(namespace["rows"], _expected(temperature_K=1000.0), "table2")


@pytest.mark.mongodb
@pytest.mark.skipif(not os.environ.get("CAMPAIGN_TEST_MONGODB_URI"), reason="CAMPAIGN_TEST_MONGODB_URI is not set")
def test_the_pipelines_on_a_real_mongodb():
    client = pymongo.MongoClient(os.environ["CAMPAIGN_TEST_MONGODB_URI"])
    database = f"mlff_campaign_test_{uuid.uuid4().hex[:8]}"
    try:
        collection = client[database][RESULTS_COLLECTION]
        collection.insert_many([dict(doc) for doc in DOCS])
        for name in TABLES:
            _check(run_table(collection, name, ResultFilter("quickstart")), _expected(), name)
            _check(run_table(collection, name, ResultFilter("other", temperature_K=600.0)), _expected("other", 600.0), name)
        assert len(run_table(collection, "summary", ResultFilter("quickstart"))) == len(SOURCES) * len(MATERIALS)
    finally:
        client.drop_database(database)
        client.close()


def _sigma_documents() -> list[dict]:
    """A reference and two models on LGPS: σ(target) and pooled σ(T) with known 95 % intervals; only the fields
    the errors table reads (records/results.py names them), as the store holds them."""
    docs = []
    # (source, σ(target), its interval or None, σ at 800 K and its interval)
    for source, sigma, interval, hot, hot_interval in (
        ("reference", 1.0, (0.5, 2.0), 100.0, (80.0, 125.0)),
        ("schnet", 10.0, (5.0, 20.0), 110.0, (88.0, 137.5)),
        ("cgcnn", None, None, 1000.0, (800.0, 1250.0)),
    ):
        docs.append({"kind": "material", "source": source, "label": None, "material": "LGPS",
                     "target_temperature_K": 300.0, "conductivity_target_mS_cm": sigma,
                     "conductivity_target_mS_cm_low": interval and interval[0],
                     "conductivity_target_mS_cm_high": interval and interval[1],
                     "arrhenius_reason": None if sigma else "1 of 1 temperatures diffusive, 3 needed"})
        docs.append({"kind": "temperature", "source": source, "label": None, "material": "LGPS",
                     "temperature_K": 800.0, "conductivity_mS_cm_pooled": hot,
                     "conductivity_mS_cm_pooled_low": hot_interval[0], "conductivity_mS_cm_pooled_high": hot_interval[1]})
        if source != "reference":
            docs.append({"kind": "prediction", "source": source, "label": None, "material": "LGPS",
                         "force_mae_eV_A": 0.1})
    return [{"_id": result_id("sigma", doc), "campaign": "sigma", **doc} for doc in docs]


def test_the_conductivity_error_is_the_gap_in_decades_with_its_interval(tmp_path):
    from campaign.report import plot_conductivity_errors

    rows = run_table(_collection(_sigma_documents()), "errors", ResultFilter("sigma"))
    assert plot_conductivity_errors(rows, {"schnet": "C0", "cgcnn": "C1"}, tmp_path / "errors.png")
    assert (tmp_path / "errors.png").read_bytes()[:4] == b"\x89PNG"
    by = {(row["model"], row["material"]): row for row in rows}
    assert set(by) == {("schnet", "LGPS"), ("cgcnn", "LGPS"), ("schnet", "all"), ("cgcnn", "all")}
    schnet = by[("schnet", "LGPS")]
    # Both intervals span a factor 4, so each side's log10 standard error is log10(4) / (2 · 1.96).
    sd = np.hypot(*2 * [np.log10(4.0) / (2 * 1.959964)])
    assert schnet["delta_log10_sigma_target"] == pytest.approx(1.0)
    low, high = (float(x) for x in re.findall(r"[-+][\d.]+", schnet["delta_log10_sigma_target_interval"]))
    assert (low, high) == pytest.approx((1.0 - 1.959964 * sd, 1.0 + 1.959964 * sd), abs=0.005)  # printed to 3 digits
    assert schnet["significant"] is True and schnet["error_reason"] is None
    assert schnet["delta_log10_sigma_by_temperature"].startswith("800 K: +0.04") and "*" not in \
        schnet["delta_log10_sigma_by_temperature"]  # 110 against 100 mS/cm: within the intervals
    cgcnn = by[("cgcnn", "LGPS")]
    assert cgcnn["delta_log10_sigma_target"] is None and "3 needed" in cgcnn["error_reason"]
    assert cgcnn["delta_log10_sigma_by_temperature"].startswith("800 K: +1.00") and "*" in \
        cgcnn["delta_log10_sigma_by_temperature"]
    assert by[("schnet", "all")]["mae_log10_sigma"] == pytest.approx(1.0)
    assert by[("schnet", "all")]["force_mae_eV_A"] == pytest.approx(0.1)
    assert by[("cgcnn", "all")]["mae_log10_sigma"] is None and by[("cgcnn", "all")]["error_reason"]
