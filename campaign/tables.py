"""The paper's tables as MongoDB aggregation pipelines over the results collection.

Every table has one row per (source, material), the reference first, then models alphabetically.
A pipeline is a plain list of stages using only ``$match``, ``$group``, ``$project`` and ``$sort``
with ``$avg``, ``$max``, ``$sum``, ``$cond`` and ``$eq``, so the same list runs on the embedded
mongomock store and on a MongoDB server (``collection.aggregate(pipeline)``).

Where the numbers come from (records/results.py documents of one campaign):

* prediction documents (one per model and material): energy and force MAE and R²;
* run documents (one per MD run, or reference run): RDF MAE and stable fraction are means over the
  runs, at one temperature when a temperature is given, over all temperatures otherwise;
* material documents (one per source and material): the Arrhenius fit over all temperatures,
  Ea and −log10 σ(target), so a temperature filter does not change them;
* the conductivity error (table ``errors``): a model's σ against the reference's on the same material,
  in decades with its 95 % interval (``analysis.errors.log10_error``), at the target temperature
  (the Arrhenius σ(target)) and at every simulated temperature where both have a pooled D; joined in
  Python from the material and temperature documents, as it pairs two sources. One more row per model,
  material ``all``: the mean absolute error of log10 σ(target) over the materials that have one, beside
  the mean force MAE and RDF MAE (the paper's Fig. 4 with σ added).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from typing import Literal

from tabulate import tabulate

from analysis.errors import log10_error
from records.results import REFERENCE_SOURCE

TRAINED_KIND = "trained"  # the kind of a model of the zoo, trained from scratch on the campaign's frames

# Column name -> header in the text table.
COLUMN_TITLES = {
    "model": "model",
    "kind": "kind",
    "material": "material",
    "energy_mae_eV_atom": "energy MAE (eV/atom)",
    "energy_r2": "energy R²",
    "force_mae_eV_A": "force MAE (eV/Å)",
    "force_r2": "force R²",
    "rdf_mae": "RDF MAE",
    "consistent_fraction": "consistent",
    "rdf_mae_resolution": "resolution",
    "paper_stable_fraction": "MAE < thr (paper)",
    "threshold_resolvable": "resolvable",
    "n_runs": "runs",
    "target_temperature_K": "target T (K)",
    "neg_log10_sigma_target": "−log10 σ(target) [mS/cm]",
    "activation_energy_eV": "Ea (eV)",
    "arrhenius_reason": "why no σ",
    "rdf_mae_noise_floor": "RDF MAE floor",
    "stability_score": "survival",
    "paper_neg_log10_sigma": "paper −log10 σ(300 K)",
    "delta_log10_sigma_target": "Δlog10 σ(target)",
    "delta_log10_sigma_target_interval": "95 % interval",
    "significant": "significant",
    "delta_log10_sigma_by_temperature": "Δlog10 σ(T) [95 %] (* significant)",
    "mae_log10_sigma": "MAE log10 σ",
    "error_reason": "why missing",
}
ALL_MATERIALS = "all"  # the material of an errors row that averages a model over the materials


@dataclass(frozen=True)
class ResultFilter:
    """Which documents a table summarises: one campaign, optionally some models, materials, one temperature."""

    campaign: str
    models: tuple[str, ...] = ()
    materials: tuple[str, ...] = ()
    temperature_K: float | None = None

    def match(self) -> dict:
        """The ``$match`` query: prediction and material documents, and the run documents at the temperature."""
        runs = {"kind": "run"} if self.temperature_K is None else {"kind": "run", "temperature_K": float(self.temperature_K)}
        query = {"campaign": self.campaign, "$or": [{"kind": {"$in": ["prediction", "material"]}}, runs]}
        if self.models:
            query["source"] = {"$in": list(self.models)}
        if self.materials:
            query["material"] = {"$in": list(self.materials)}
        return query


def _if_kind(kind: str, value) -> dict:
    """``value`` for documents of this kind, null (ignored by $avg and $max) for the others."""
    return {"$cond": [{"$eq": ["$kind", kind]}, value, None]}


def _per_source_material(filters: ResultFilter) -> list[dict]:
    """Stages grouping the matched documents into one document per (source, material) with every column."""
    group = {
        "_id": {"source": "$source", "material": "$material"},
        "kind": {"$max": "$label"},  # a pretrained source's label; null for the zoo and the reference (_rows)
        # One prediction and one material document per (campaign, source, material): $max picks it.
        **{name: {"$max": _if_kind("prediction", f"${name}")}
           for name in ("energy_mae_eV_atom", "energy_r2", "force_mae_eV_A", "force_r2")},
        "target_temperature_K": {"$max": _if_kind("material", "$target_temperature_K")},
        "neg_log10_sigma_target": {"$max": _if_kind("material", "$neg_log10_conductivity_target")},
        "activation_energy_eV": {"$max": _if_kind("material", "$activation_energy_eV")},
        "arrhenius_reason": {"$max": _if_kind("material", "$arrhenius_reason")},
        "stability_score": {"$max": _if_kind("material", "$stability_score")},
        "rdf_mae_noise_floor": {"$avg": _if_kind("run", "$rdf_mae_noise_floor")},
        # Means over the runs.
        "rdf_mae": {"$avg": _if_kind("run", "$rdf_mae")},
        # The noise-aware verdict (analysis/rdf_noise.py), and its resolution at the runs' lengths.
        "consistent_fraction": {"$avg": _if_kind("run", {"$cond": [{"$eq": ["$stability", "consistent"]}, 1, 0]})},
        "rdf_mae_resolution": {"$avg": _if_kind("run", "$rdf_mae_resolution")},
        # The paper's verdict, RDF MAE below its threshold (runs without one are left out).
        "paper_stable_fraction": {"$avg": _if_kind("run", {"$cond": [{"$eq": ["$paper_stable", True]}, 1, {
            "$cond": [{"$eq": ["$paper_stable", False]}, 0, None]}]})},
        # False when the noise floor reaches half the paper's threshold at any temperature: its verdict then says
        # little.
        "threshold_resolvable": {"$min": _if_kind("run", "$threshold_resolvable")},
        "n_runs": {"$sum": {"$cond": [{"$eq": ["$kind", "run"]}, 1, 0]}},
    }
    return [{"$match": filters.match()}, {"$group": group}]


def _rows(columns: tuple[str, ...], models_only: bool = False) -> list[dict]:
    """Stages turning grouped documents into rows with these columns, the reference first."""
    stages = [{"$match": {"_id.source": {"$ne": REFERENCE_SOURCE}}}] if models_only else []
    kind = {"$ifNull": ["$kind", {"$cond": [{"$eq": ["$_id.source", REFERENCE_SOURCE]}, REFERENCE_SOURCE, TRAINED_KIND]}]}
    fields = {name: f"$_id.{name}" if name == "material" else kind if name == "kind" else 1
              for name in columns if name != "model"}
    return stages + [
        {"$project": {
            "_id": 0, "model": "$_id.source", **fields,
            "_order": {"$cond": [{"$eq": ["$_id.source", REFERENCE_SOURCE]}, 0, 1]},
        }},
        {"$sort": {"_order": 1, "model": 1, "material": 1}},
        {"$project": {"_order": 0}},
    ]


SUMMARY_COLUMNS = ("model", "kind", "material", "force_mae_eV_A", "force_r2", "rdf_mae", "rdf_mae_noise_floor",
                   "rdf_mae_resolution", "consistent_fraction", "paper_stable_fraction", "threshold_resolvable",
                   "stability_score", "n_runs", "neg_log10_sigma_target", "activation_energy_eV",
                   "arrhenius_reason")
TABLE_2_COLUMNS = ("model", "kind", "material", "target_temperature_K", "neg_log10_sigma_target", "activation_energy_eV",
                   "arrhenius_reason")
TABLES_S1_S3_COLUMNS = ("model", "kind", "material", "energy_mae_eV_atom", "energy_r2", "force_mae_eV_A", "force_r2", "rdf_mae")
FIGURE_4_COLUMNS = ("model", "kind", "material", "force_mae_eV_A", "rdf_mae")


def summary_pipeline(filters: ResultFilter) -> list[dict]:
    """Errors, stability and extrapolated conductivity side by side: `campaign results`' default table."""
    return _per_source_material(filters) + _rows(SUMMARY_COLUMNS)


def table_2_pipeline(filters: ResultFilter) -> list[dict]:
    """Table 2: −log10 σ(target) with σ in mS/cm (Arrhenius-extrapolated) and Ea, reference row first."""
    return _per_source_material(filters) + _rows(TABLE_2_COLUMNS)


def tables_s1_s3_pipeline(filters: ResultFilter) -> list[dict]:
    """Tables S1–S3: energy MAE (eV/atom) and R², force MAE (eV/Å) and R², mean RDF MAE over runs."""
    return _per_source_material(filters) + _rows(TABLES_S1_S3_COLUMNS)


def figure_4_pipeline(filters: ResultFilter) -> list[dict]:
    """Fig. 4: force MAE (eV/Å) and mean RDF MAE per model and material (models only)."""
    return _per_source_material(filters) + _rows(FIGURE_4_COLUMNS, models_only=True)


ERRORS_COLUMNS = ("model", "kind", "material", "force_mae_eV_A", "rdf_mae", "delta_log10_sigma_target",
                  "delta_log10_sigma_target_interval", "significant", "delta_log10_sigma_by_temperature",
                  "mae_log10_sigma", "error_reason")


def errors_pipeline(filters: ResultFilter) -> list[dict]:
    """The force and RDF MAE of every source and material; ``run_table`` adds the conductivity errors."""
    return _per_source_material(filters) + _rows(("model", "kind", "material", "force_mae_eV_A", "rdf_mae"))


def _interval(doc: dict | None, value: str, low: str, high: str) -> tuple[float, float, float] | None:
    """(value, low, high) of a document's fields when all three are there and the interval is finite."""
    if doc is None or any(doc.get(key) is None for key in (value, low, high)):
        return None
    triple = (doc[value], doc[low], doc[high])
    return triple if triple[0] > 0 and triple[1] > 0 and math.isfinite(triple[2]) else None


def _target_error(model: dict | None, reference: dict | None) -> tuple[object, str | None]:
    """The LogError at the target temperature, or None and why not."""
    fields = ("conductivity_target_mS_cm", "conductivity_target_mS_cm_low", "conductivity_target_mS_cm_high")
    for name, doc in (("model", model), (REFERENCE_SOURCE, reference)):
        if doc is None:
            return None, f"no {name} analysis"
        if _interval(doc, *fields) is None:
            why = doc.get("arrhenius_reason") or "σ(target) has no interval"
            return None, f"{name}: {why}"
    return log10_error(_interval(model, *fields), _interval(reference, *fields)), None


def _by_temperature(model: list[dict], reference: list[dict]) -> str:
    """Δlog10 σ [low, high] at every temperature where both have a pooled σ; * marks a significant one."""
    fields = ("conductivity_mS_cm_pooled", "conductivity_mS_cm_pooled_low", "conductivity_mS_cm_pooled_high")
    theirs = {doc["temperature_K"]: _interval(doc, *fields) for doc in reference}
    parts = []
    for doc in sorted(model, key=lambda d: d["temperature_K"]):
        ours, ref = _interval(doc, *fields), theirs.get(doc["temperature_K"])
        if ours is not None and ref is not None:
            e = log10_error(ours, ref)
            parts.append(f"{doc['temperature_K']:g} K: {e.delta_log10:+.2f} [{e.low:+.2f}, {e.high:+.2f}]"
                         f"{'*' if e.significant else ''}")
    return "; ".join(parts) or None


def _with_conductivity_errors(rows: list[dict], collection, filters: ResultFilter) -> list[dict]:
    """``errors_pipeline``'s rows of the models with their conductivity errors, and one row per model over the
    materials (see the module docstring)."""
    query = {"campaign": filters.campaign, "kind": {"$in": ["material", "temperature"]}}
    if filters.materials:
        query["material"] = {"$in": list(filters.materials)}
    docs = list(collection.find(query))
    materials = {(d["source"], d["material"]): d for d in docs if d["kind"] == "material"}
    temperatures: dict[tuple[str, str], list[dict]] = {}
    for doc in docs:
        if doc["kind"] == "temperature":
            temperatures.setdefault((doc["source"], doc["material"]), []).append(doc)
    out, per_model = [], {}
    for row in rows:
        if row["model"] == REFERENCE_SOURCE:
            continue
        key, reference_key = (row["model"], row["material"]), (REFERENCE_SOURCE, row["material"])
        error, why = _target_error(materials.get(key), materials.get(reference_key))
        by_t = _by_temperature(temperatures.get(key, []), temperatures.get(reference_key, []))
        out.append({**row, "delta_log10_sigma_target": error and error.delta_log10,
                    "delta_log10_sigma_target_interval": error and f"[{error.low:+.3g}, {error.high:+.3g}]",
                    "significant": error and error.significant, "delta_log10_sigma_by_temperature": by_t,
                    "mae_log10_sigma": None,
                    "error_reason": why if by_t is None else why and f"{why} (at the target temperature)"})
        per_model.setdefault(row["model"], []).append(out[-1])
    for model, model_rows in per_model.items():
        errors = [abs(r["delta_log10_sigma_target"]) for r in model_rows if r["delta_log10_sigma_target"] is not None]
        mean = {name: _mean_of([r[name] for r in model_rows]) for name in ("force_mae_eV_A", "rdf_mae")}
        out.append({"model": model, "kind": model_rows[0]["kind"], "material": ALL_MATERIALS, **mean,
                    "delta_log10_sigma_target": None, "delta_log10_sigma_target_interval": None, "significant": None,
                    "delta_log10_sigma_by_temperature": None,
                    "mae_log10_sigma": sum(errors) / len(errors) if errors else None,
                    "error_reason": None if errors else "no material has Δlog10 σ(target)"})
    return out


def _mean_of(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


TABLES = {
    "summary": (summary_pipeline, SUMMARY_COLUMNS),
    "table2": (table_2_pipeline, TABLE_2_COLUMNS),
    "s1-s3": (tables_s1_s3_pipeline, TABLES_S1_S3_COLUMNS),
    "fig4": (figure_4_pipeline, FIGURE_4_COLUMNS),
    "errors": (errors_pipeline, ERRORS_COLUMNS),
}


def run_table(collection, name: str, filters: ResultFilter) -> list[dict]:
    """Rows of table ``name`` (a key of TABLES) from a pymongo or mongomock collection, every column present."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; expected one of {', '.join(TABLES)}")
    pipeline, columns = TABLES[name]
    rows = list(collection.aggregate(pipeline(filters)))
    if name == "errors":
        rows = _with_conductivity_errors(rows, collection, filters)
    return [{column: row.get(column) for column in columns} for row in rows]


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_rows(rows: list[dict], columns: tuple[str, ...], fmt: Literal["table", "json", "csv"]) -> str:
    """Rows as a text table, a JSON list of objects or CSV with a header of column names."""
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue().removesuffix("\n")
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; expected table, json or csv")
    return tabulate([[_cell(row[name]) for name in columns] for row in rows], headers=[COLUMN_TITLES[c] for c in columns])
