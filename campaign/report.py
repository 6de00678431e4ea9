"""The campaign report: the paper's tables and figures from the result documents, as PNGs and one HTML page.

Inputs are the campaign's result documents (campaign/results.py) and the inputs of its analyze tasks
(campaign/tasks.py; they name the trajectories and the directory holding each ``rdf.npz``). Figures:
RDF overlays against the reference (paper Fig. 3), force and RDF MAE bars (Fig. 4), Arrhenius plots
with the extrapolation to the target temperature, force parity plots, and Li density projections
(Figs. S23–S25). Tables: Table 2 (−log10 σ(300 K) with bootstrap intervals), Tables S1–S3 (energy and
force MAE and R², RDF MAE), stability with Wilson intervals, and the diffusion-path checks.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from analysis.diffusion_paths import (  # noqa: E402
    WRONG_CHANNEL_FRACTION,
    bhattacharyya_overlap,
    framework_drift,
    grid_shape,
    occupancy_density,
    wrong_channel_fraction,
)
from analysis.rdf import CHEMICAL_SYMBOLS  # noqa: E402
from analysis.stability import RDF_MAE_STABLE  # noqa: E402
from analysis.statistics import bootstrap_arrhenius, bootstrap_mean, wilson_interval  # noqa: E402
from analysis.transport import extrapolate_arrhenius, fit_arrhenius  # noqa: E402
from campaign.tables import REFERENCE  # noqa: E402
from mlff.trajectory import read_system, read_trajectory  # noqa: E402
from workflows.stages import RDF_FILE, production_frames  # noqa: E402

DPI = 120
KILO = 1000.0  # the Arrhenius axis is 1000 / T
# Parity plots show at most this many force components per panel (chosen evenly).
MAX_PARITY_POINTS = 20_000


def _sources(docs: list[dict]) -> list[str]:
    """Reference first, then models alphabetically."""
    names = {doc["source"] for doc in docs}
    return sorted(names, key=lambda name: (name != REFERENCE, name))


def _colors(sources: list[str]) -> dict[str, str]:
    """The same colour for a source in every figure: black for the reference, then matplotlib's cycle."""
    models = [s for s in _sources([{"source": s} for s in sources]) if s != REFERENCE]
    return {REFERENCE: "black", **{model: f"C{k % 10}" for k, model in enumerate(models)}}


def _by(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def _number(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}"


def _interval(value, low, high, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{_number(value, digits)} [{_number(low, digits)}, {_number(high, digits)}]"


# --------------------------------------------------------------------------- figures


def plot_rdf_overlays(rdf_files: dict[str, Path], material: str, colors: dict[str, str], path: Path) -> bool:
    """Fig. 3 style: each source's mean RDF over the reference's, one row per temperature, one column per label."""
    curves = {source: dict(np.load(file)) for source, file in rdf_files.items() if file.exists()}
    reference = next((c for c in curves.values() if any(k.startswith("reference|") for k in c)), None)
    if reference is None:
        return False
    keys = sorted(k for k in reference if k.startswith("reference|"))
    temperatures = sorted({k.split("|")[1] for k in keys}, key=lambda t: float(t.rstrip("K")))
    labels = sorted({k.split("|")[2] for k in keys}, key=lambda label: (label != "total", label))
    fig, axes = plt.subplots(len(temperatures), len(labels), figsize=(3.6 * len(labels), 2.8 * len(temperatures)),
                             squeeze=False, sharex=True)
    for row, temperature in enumerate(temperatures):
        for col, label in enumerate(labels):
            ax = axes[row, col]
            ax.plot(reference["r_A"], reference[f"reference|{temperature}|{label}"], color="black", lw=2.2,
                    label="reference")
            for source, arrays in curves.items():
                key = f"source|{temperature}|{label}"
                if source != REFERENCE and key in arrays:
                    ax.plot(arrays["r_A"], arrays[key], lw=1.2, label=source, color=colors[source])
            ax.set_title(f"{material} {label}, {temperature}", fontsize=9)
            ax.set_ylabel("g(r)")
            if row == len(temperatures) - 1:
                ax.set_xlabel("r (Å)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def plot_error_bars(figure_4: list[dict], colors: dict[str, str], rdf_mae_threshold: float, path: Path) -> None:
    """Fig. 4: force MAE and RDF MAE per model (bars) and material (groups), rows of the ``fig4``
    table, with the campaign's stability threshold on the RDF MAE."""
    models = sorted({row["model"] for row in figure_4})
    names = sorted({row["material"] for row in figure_4})
    force = {(row["model"], row["material"]): row["force_mae_eV_A"] for row in figure_4}
    rdf = {(row["model"], row["material"]): row["rdf_mae"] for row in figure_4}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(names))
    for ax, values, title in ((axes[0], force, "force MAE (eV/Å)"), (axes[1], rdf, "RDF MAE")):
        for k, model in enumerate(models):
            heights = [values.get((model, name)) or 0.0 for name in names]
            ax.bar(x + (k - (len(models) - 1) / 2) * width, heights, width, label=model, color=colors[model])
        ax.set_xticks(x, names)
        ax.set_title(title)
    axes[1].axhline(rdf_mae_threshold, color="grey", ls="--", lw=1, label=f"stable (< {rdf_mae_threshold:g})")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_arrhenius(
    temperature_docs: list[dict], material_docs: list[dict], material: str, colors: dict[str, str], path: Path
) -> bool:
    """log10 D vs 1000/T per source with the Arrhenius line extended to the target temperature."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    drawn = False
    for source in _sources(temperature_docs):
        points = sorted(
            (d["temperature_K"], d["diffusivity_cm2_s_mean"]) for d in temperature_docs
            if d["source"] == source and d["material"] == material and (d["diffusivity_cm2_s_mean"] or 0) > 0
        )
        if not points:
            continue
        temperatures, diffusivities = (np.array(v) for v in zip(*points, strict=True))
        color = colors[source]
        ax.plot(KILO / temperatures, np.log10(diffusivities), "o", label=source, color=color)
        drawn = True
        target = next((d["target_temperature_K"] for d in material_docs if d["material"] == material), None)
        if len(points) >= 2 and target:
            fit = fit_arrhenius(temperatures, diffusivities)
            t_line = np.linspace(KILO / temperatures.max(), KILO / target, 50)
            d_line = [extrapolate_arrhenius(fit, KILO / t) for t in t_line]
            ax.plot(t_line, np.log10(d_line), "--", color=color, lw=1)
            ax.plot(KILO / target, np.log10(d_line[-1]), "*", ms=11, color=color)
    if not drawn:
        plt.close(fig)
        return False
    ax.set_xlabel("1000 / T (1/K)")
    ax.set_ylabel("log10 D (cm²/s)")
    ax.set_title(f"{material}: Arrhenius, ★ = extrapolated to target T")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def plot_parity(predictions: list[dict], path: Path) -> bool:
    """Predicted vs reference force components, one panel per (model, material)."""
    panels = [d for d in sorted(predictions, key=lambda d: (d["source"], d["material"])) if Path(d["parity_path"]).exists()]
    if not panels:
        return False
    n_cols = min(len(panels), 3)
    n_rows = math.ceil(len(panels) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.8 * n_cols, 3.6 * n_rows), squeeze=False)
    for ax, doc in zip(axes.ravel(), panels, strict=False):
        with np.load(doc["parity_path"]) as parity:
            predicted = parity["predicted_forces_eV_A"].ravel()
            reference = parity["reference_forces_eV_A"].ravel()
        pick = np.linspace(0, len(predicted) - 1, min(len(predicted), MAX_PARITY_POINTS)).astype(int)
        ax.scatter(reference[pick], predicted[pick], s=2, alpha=0.4)
        low, high = float(reference.min()), float(reference.max())
        ax.plot([low, high], [low, high], color="black", lw=1)
        ax.set_title(f"{doc['source']} on {doc['material']}: MAE {doc['force_mae_eV_A']:.3f} eV/Å, R² {doc['force_r2']:.3f}",
                     fontsize=8)
        ax.set_xlabel("reference force (eV/Å)")
        ax.set_ylabel("predicted force (eV/Å)")
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def _li_positions(entries: list[dict], discard_ps: float, specie: int):
    """Production-frame positions of the diffusing specie of runs [n_frames, n_li, 3], cell, all frames, numbers."""
    positions, whole = [], []
    cell = numbers = None
    for entry in entries:
        kept, _ = production_frames(read_trajectory(entry["path"]), discard_ps)
        if kept.n_frames == 0:
            continue
        cell, numbers = kept.cell_A, kept.numbers
        positions.append(kept.positions_A[:, numbers == specie])
        whole.append(kept.positions_A)
    return positions, whole, cell, numbers


def diffusion_paths(analyses: list[dict]) -> tuple[list[dict], dict]:
    """Li density overlap with the reference, wrong-channel fraction and framework drift per (source, material).

    Uses every run at each material's highest temperature. Returns (table rows, densities keyed by
    (material, source) with the reference under source ``reference``) for the projection plots.
    """
    rows, densities = [], {}
    references = {}  # (material, temperature_K, grid) -> the reference's Li occupancy density, or None

    def reference_density(analysis: dict, top_K: float, specie_number: int, grid: tuple):
        key = (analysis["material"], top_K, grid)
        if key not in references:
            refs = [e for e in analysis["references"] if e["temperature_K"] == top_K]
            ref_li, _, ref_cell, _ = _li_positions(refs, analysis["discard_ps"], specie_number)
            references[key] = occupancy_density(np.concatenate(ref_li), ref_cell, grid) if ref_li else None
        return references[key]

    for analysis in sorted(analyses, key=lambda a: (a["material"], a["source"] != REFERENCE, a["source"])):
        if not analysis["runs"]:
            continue
        specie_number = CHEMICAL_SYMBOLS.index(analysis["diffusing_specie"])
        top_K = max(entry["temperature_K"] for entry in analysis["runs"])
        runs = [e for e in analysis["runs"] if e["temperature_K"] == top_K]
        li, whole, cell, numbers = _li_positions(runs, analysis["discard_ps"], specie_number)
        if not li or li[0].shape[1] == 0:
            continue
        grid = grid_shape(cell)
        reference = reference_density(analysis, top_K, specie_number, grid)
        if reference is None:
            continue
        density = occupancy_density(np.concatenate(li), cell, grid)
        densities[(analysis["material"], analysis["source"])] = density
        densities.setdefault((analysis["material"], REFERENCE), reference)
        drifts = [framework_drift(p, cell, numbers, mobile_number=specie_number) for p in whole]
        wrong = wrong_channel_fraction(density, reference)
        rows.append({
            "source": analysis["source"], "material": analysis["material"], "temperature_K": top_K,
            "overlap": bhattacharyya_overlap(density, reference), "wrong_channel_fraction": wrong,
            "wrong_channels": wrong > WRONG_CHANNEL_FRACTION,
            "max_framework_drift_A": max(d.framework_A for d in drifts),
            "max_sublattice_drift_A": max(max(d.sublattice_A.values()) for d in drifts),
            "drifting_runs": sum(d.drifting for d in drifts), "n_runs": len(drifts),
        })
    return rows, densities


def plot_li_density(densities: dict, material: str, path: Path) -> bool:
    """Li density projected along c (summed over the third lattice axis), one panel per source."""
    sources = _sources([{"source": s} for m, s in densities if m == material])
    if not sources:
        return False
    fig, axes = plt.subplots(1, len(sources), figsize=(3.4 * len(sources), 3.4), squeeze=False)
    for ax, source in zip(axes[0], sources, strict=True):
        projection = densities[(material, source)].sum(axis=2)
        ax.imshow(projection.T, origin="lower", extent=(0, 1, 0, 1), cmap="magma")
        ax.set_title(f"{material}: {source}", fontsize=9)
        ax.set_xlabel("fractional a")
        ax.set_ylabel("fractional b")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------- tables


def _html_table(title: str, headers: list[str], rows: list[list[str]], note: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    note_html = f"<p class='note'>{html.escape(note)}</p>" if note else ""
    return f"<h2>{html.escape(title)}</h2>{note_html}<table><tr>{head}</tr>{body}</table>"


def _matrix(table: list[dict], field: str, digits: int = 4) -> tuple[list[str], list[list[str]]]:
    """Model rows x material columns of one column of a table (campaign/tables.py), models with a value only."""
    rows = [row for row in table if row[field] is not None]
    materials = sorted({row["material"] for row in rows})
    values = {(row["model"], row["material"]): row[field] for row in rows}
    models = list(dict.fromkeys(row["model"] for row in rows))  # the table's order: reference first
    return ["model"] + materials, [[model] + [_number(values.get((model, m)), digits) for m in materials] for model in models]


def table_2(run_docs: list[dict], table: list[dict], analyses: list[dict]) -> list[list[str]]:
    """Table 2 (rows of the ``table2`` table) with bootstrap intervals: source, material, −log10 σ(target) [CI], Ea [CI], n runs."""
    rows = []
    volume = {}  # (source, material) -> (n carriers, cell volume) from the first analysed trajectory
    for analysis in analyses:
        if analysis["runs"]:
            numbers, cell_A = read_system(analysis["runs"][0]["path"])
            n_li = int((numbers == CHEMICAL_SYMBOLS.index(analysis["diffusing_specie"])).sum())
            volume[(analysis["source"], analysis["material"])] = (n_li, abs(float(np.linalg.det(cell_A))))
    for row in table:
        key = (row["model"], row["material"])
        per_t = defaultdict(list)
        for run in run_docs:
            if (run["source"], run["material"]) == key and run["diffusivity_cm2_s"] is not None:
                per_t[run["temperature_K"]].append(run["diffusivity_cm2_s"])
        sigma = ea = "n/a"
        if row["neg_log10_sigma_target"] is not None:
            sigma, ea = _number(row["neg_log10_sigma_target"], 3), _number(row["activation_energy_eV"], 3)
            if len(per_t) >= 2 and key in volume:
                try:
                    estimate = bootstrap_arrhenius(per_t, row["target_temperature_K"], *volume[key])
                except ValueError:  # a resample with no positive mean D at some temperature
                    estimate = None
                if estimate is not None and estimate.conductivity_target_mS_cm.low > 0:
                    c = estimate.conductivity_target_mS_cm
                    sigma = _interval(-math.log10(c.value), -math.log10(c.high), -math.log10(c.low))
                    e = estimate.activation_energy_eV
                    ea = _interval(e.value, e.low, e.high)
        rows.append([row["model"], row["material"], sigma, ea, str(sum(len(v) for v in per_t.values()))])
    return rows


def table_stability(temperature_docs: list[dict], run_docs: list[dict]) -> list[list[str]]:
    """Per (source, material, T): stable runs with a Wilson interval, D and σ means with bootstrap intervals."""
    rows = []
    for doc in sorted(temperature_docs, key=lambda d: (d["source"] != REFERENCE, d["source"], d["material"], d["temperature_K"])):
        runs = [r for r in run_docs if (r["source"], r["material"], r["temperature_K"]) == (doc["source"], doc["material"], doc["temperature_K"])]
        n_stable = sum(r["stability"] == "stable" for r in runs)
        low, high = wilson_interval(n_stable, len(runs)) if runs else (None, None)
        cells = [doc["source"], doc["material"], f"{doc['temperature_K']:g}", f"{n_stable}/{len(runs)} [{_number(low, 2)}, {_number(high, 2)}]"]
        for field in ("diffusivity_cm2_s", "conductivity_mS_cm"):
            values = [r[field] for r in runs if r[field] is not None]
            estimate = bootstrap_mean(values) if values else None
            cells.append(_interval(estimate.value, estimate.low, estimate.high) if estimate else "n/a")
        rows.append(cells)
    return rows


# --------------------------------------------------------------------------- page


_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
    "table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #bbb;padding:3px 8px;font-size:13px}"
    "th{background:#eee}img{max-width:100%;border:1px solid #ddd;margin:4px 0}.note{color:#555;font-size:13px}"
)


REPORT_TABLES = ("fig4", "table2", "s1-s3")  # the tables of campaign/tables.py that write_report reads


def write_report(campaign: str, docs: list[dict], tables: dict[str, list[dict]], analyses: list[dict], out_dir: str | Path) -> Path:
    """Write every figure and ``index.html`` into out_dir; returns the HTML path.

    docs: the campaign's result documents; tables: name -> rows of each of ``REPORT_TABLES``
    (``campaign.tables.run_table``) over those documents; analyses: the inputs (with ``out_dir``) of its analyze tasks.
    A figure whose data is missing (e.g. no ``rdf.npz`` from an older analysis) is left out and said so.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    predictions, runs = _by(docs, "prediction"), _by(docs, "run")
    temperatures, materials = _by(docs, "temperature"), _by(docs, "material")
    material_names = sorted({d["material"] for d in docs if "material" in d})
    figures: list[tuple[str, str]] = []  # (caption, file name)
    missing: list[str] = []

    def figure(name: str, caption: str, made: bool) -> None:
        (figures if made else missing).append((caption, name) if made else caption)

    colors = _colors([d["source"] for d in docs])
    threshold = next((a["rdf_mae_threshold"] for a in analyses), RDF_MAE_STABLE)
    plot_error_bars(tables["fig4"], colors, threshold, out / "fig4_errors.png")
    figure("fig4_errors.png", "Fig. 4: force MAE and RDF MAE per model and material", True)
    figure("parity_forces.png", "Force parity plots", plot_parity(predictions, out / "parity_forces.png"))
    path_rows, densities = diffusion_paths(analyses)
    for material in material_names:
        rdf_files = {a["source"]: Path(a["out_dir"]) / RDF_FILE for a in analyses if a["material"] == material}
        figure(f"rdf_{material}.png", f"Fig. 3: RDFs of {material} against the reference",
               plot_rdf_overlays(rdf_files, material, colors, out / f"rdf_{material}.png"))
        figure(f"arrhenius_{material}.png", f"Arrhenius plot of {material}",
               plot_arrhenius(temperatures, materials, material, colors, out / f"arrhenius_{material}.png"))
        figure(f"li_density_{material}.png", f"Li density of {material} projected along c (highest temperature)",
               plot_li_density(densities, material, out / f"li_density_{material}.png"))

    target = next((d["target_temperature_K"] for d in materials), 300.0)
    sections = [
        _html_table(
            f"Table 2: −log10 σ({target:g} K) [mS/cm] and Ea", ["model", "material", f"−log10 σ({target:g} K) [95 % CI]", "Ea (eV) [95 % CI]", "runs"],
            table_2(runs, tables["table2"], analyses),
            "Intervals: bootstrap over repetitions (resampled per temperature, Arrhenius refitted each time).",
        ),
        _html_table("Table S1: energy MAE (eV/atom)", *_matrix(tables["s1-s3"], "energy_mae_eV_atom")),
        _html_table("Table S1: energy R²", *_matrix(tables["s1-s3"], "energy_r2")),
        _html_table("Table S2: force MAE (eV/Å)", *_matrix(tables["s1-s3"], "force_mae_eV_A")),
        _html_table("Table S2: force R²", *_matrix(tables["s1-s3"], "force_r2")),
        _html_table("Table S3: RDF MAE (mean over runs)", *_matrix(tables["s1-s3"], "rdf_mae")),
        _html_table(
            "Stability and transport per temperature",
            ["model", "material", "T (K)", "stable runs [Wilson 95 %]", "D (cm²/s) [95 % CI]", "σ (mS/cm) [95 % CI]"],
            table_stability(temperatures, runs),
        ),
        _html_table(
            "Diffusion paths (highest temperature)",
            ["model", "material", "T (K)", "Li density overlap (Bhattacharyya)", "in reference-empty voxels", "wrong channels",
             "max drift: framework / sublattice (Å)", "drifting runs"],
            [[r["source"], r["material"], f"{r['temperature_K']:g}", _number(r["overlap"], 3), _number(r["wrong_channel_fraction"], 3),
              "yes" if r["wrong_channels"] else "no", f"{_number(r['max_framework_drift_A'], 3)} / {_number(r['max_sublattice_drift_A'], 3)}",
              f"{r['drifting_runs']}/{r['n_runs']}"]
             for r in path_rows],
        ),
    ]
    images = "".join(f"<h2>{html.escape(caption)}</h2><a href='{name}'><img src='{name}' alt='{html.escape(caption)}'></a>"
                     for caption, name in figures)
    gaps = "".join(f"<li>{html.escape(caption)}: no data</li>" for caption in missing)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(campaign)} report</title>"
        f"<style>{_STYLE}</style></head><body><h1>Campaign {html.escape(campaign)}</h1>"
        + "".join(sections) + images + (f"<h2>Not drawn</h2><ul>{gaps}</ul>" if gaps else "") + "</body></html>"
    )
    index = out / "index.html"
    index.write_text(page)
    return index
