"""The campaign report: the paper's tables and figures from the result documents, as PNGs and one HTML page.

Everything comes from the campaign's result documents (records/results.py) and the files they name:
the analyze stage has already computed every number, interval and density (analysis/), so the report
only draws and formats. Figures: RDF overlays against the reference (paper Fig. 3), force and RDF MAE
bars (Fig. 4), Arrhenius plots with the extrapolation to the target temperature, force parity plots,
and Li density projections (Figs. S23–S25). Tables: Table 2 (−log10 σ(300 K) with bootstrap
intervals), Tables S1–S3 (energy and force MAE and R², RDF MAE), stability with Wilson intervals, and
the diffusion-path checks. Figures use matplotlib's object API (``Figure``), not pyplot.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from analysis.stability import RDF_MAE_STABLE
from analysis.transport import ArrheniusFit, extrapolate_arrhenius
from campaign import paper
from campaign.tables import ALL_MATERIALS
from records.results import REFERENCE_SOURCE, absolute_paths

DPI = 120
KILO = 1000.0  # the Arrhenius axis is 1000 / T
# Parity plots show at most this many force components per panel (chosen evenly).
MAX_PARITY_POINTS = 20_000


def _sources(docs: list[dict]) -> list[str]:
    """Reference first, then models alphabetically."""
    names = {doc["source"] for doc in docs}
    return sorted(names, key=lambda name: (name != REFERENCE_SOURCE, name))


def _colors(sources: list[str]) -> dict[str, str]:
    """The same colour for a source in every figure: black for the reference, then matplotlib's cycle."""
    models = [s for s in _sources([{"source": s} for s in sources]) if s != REFERENCE_SOURCE]
    return {REFERENCE_SOURCE: "black", **{model: f"C{k % 10}" for k, model in enumerate(models)}}


def _named(docs: list[dict], tables: dict[str, list[dict]]) -> tuple[list[dict], dict[str, list[dict]]]:
    """Documents and table rows with each pretrained source named with its label, ``chgnet-zs (chgnet
    zero-shot)``, as every figure and table of the report shows it."""
    labels = {doc["source"]: doc["label"] for doc in docs if doc.get("label")}

    def name(source: str) -> str:
        return f"{source} ({labels[source]})" if source in labels else source

    return ([{**doc, "source": name(doc["source"])} for doc in docs],
            {table: [{**row, "model": name(row["model"])} for row in rows] for table, rows in tables.items()})


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


def _figure(n_rows: int = 1, n_cols: int = 1, **options) -> tuple[Figure, np.ndarray]:
    """A figure of ``n_rows`` x ``n_cols`` axes [n_rows, n_cols]; ``options`` go to ``Figure.subplots``."""
    figure = Figure(figsize=options.pop("figsize"))
    return figure, figure.subplots(n_rows, n_cols, squeeze=False, **options)


def _save(figure: Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)


def plot_rdf_overlays(rdf_files: dict[str, Path], material: str, colors: dict[str, str], path: Path) -> bool:
    """Fig. 3 style: each source's mean RDF over the reference's, one row per temperature, one column per label."""
    curves = {source: dict(np.load(file)) for source, file in rdf_files.items() if file.exists()}
    reference = next((c for c in curves.values() if any(k.startswith("reference|") for k in c)), None)
    if reference is None:
        return False
    keys = sorted(k for k in reference if k.startswith("reference|"))
    temperatures = sorted({k.split("|")[1] for k in keys}, key=lambda t: float(t.rstrip("K")))
    labels = sorted({k.split("|")[2] for k in keys}, key=lambda label: (label != "total", label))
    fig, axes = _figure(len(temperatures), len(labels), figsize=(3.6 * len(labels), 2.8 * len(temperatures)), sharex=True)
    for row, temperature in enumerate(temperatures):
        for col, label in enumerate(labels):
            ax = axes[row, col]
            ax.plot(reference["r_A"], reference[f"reference|{temperature}|{label}"], color="black", lw=2.2,
                    label="reference")
            for source, arrays in curves.items():
                key = f"source|{temperature}|{label}"
                if source != REFERENCE_SOURCE and key in arrays:
                    ax.plot(arrays["r_A"], arrays[key], lw=1.2, label=source, color=colors[source])
            ax.set_title(f"{material} {label}, {temperature}", fontsize=9)
            ax.set_ylabel("g(r)")
            if row == len(temperatures) - 1:
                ax.set_xlabel("r (Å)")
    axes[0, 0].legend(fontsize=7)
    _save(fig, path)
    return True


def plot_error_bars(figure_4: list[dict], colors: dict[str, str], rdf_mae_threshold: float, path: Path) -> None:
    """Fig. 4: force MAE and RDF MAE per model (bars) and material (groups), rows of the ``fig4``
    table, with the campaign's stability threshold on the RDF MAE."""
    models = sorted({row["model"] for row in figure_4})
    names = sorted({row["material"] for row in figure_4})
    force = {(row["model"], row["material"]): row["force_mae_eV_A"] for row in figure_4}
    rdf = {(row["model"], row["material"]): row["rdf_mae"] for row in figure_4}
    fig, ((force_ax, rdf_ax),) = _figure(1, 2, figsize=(10, 3.8))
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(names))
    for ax, values, title in ((force_ax, force, "force MAE (eV/Å)"), (rdf_ax, rdf, "RDF MAE")):
        for k, model in enumerate(models):
            heights = [values.get((model, name)) or 0.0 for name in names]
            ax.bar(x + (k - (len(models) - 1) / 2) * width, heights, width, label=model, color=colors[model])
        ax.set_xticks(x, names)
        ax.set_title(title)
    rdf_ax.axhline(rdf_mae_threshold, color="grey", ls="--", lw=1, label=f"stable (< {rdf_mae_threshold:g})")
    rdf_ax.legend(fontsize=8)
    _save(fig, path)


def plot_conductivity_errors(errors: list[dict], colors: dict[str, str], path: Path) -> bool:
    """log10 σ_model − log10 σ_reference at the target temperature per model (bars) and material (groups), with
    95 % intervals (rows of the ``errors`` table); hatched where the gap is significant. False when no model
    has one."""
    rows = [row for row in errors if row["delta_log10_sigma_target"] is not None and row["material"] != ALL_MATERIALS]
    if not rows:
        return False
    models = sorted({row["model"] for row in rows})
    names = sorted({row["material"] for row in rows})
    width = 0.8 / len(models)
    fig, ((ax,),) = _figure(figsize=(6.5, 3.8))
    for k, model in enumerate(models):
        for i, name in enumerate(names):
            row = next((r for r in rows if (r["model"], r["material"]) == (model, name)), None)
            if row is None:
                continue
            low, high = (float(v) for v in row["delta_log10_sigma_target_interval"].strip("[]").split(","))
            delta = row["delta_log10_sigma_target"]
            ax.bar(i + (k - (len(models) - 1) / 2) * width, delta, width, color=colors[model],
                   yerr=[[delta - low], [high - delta]], capsize=3, hatch="//" if row["significant"] else None,
                   label=model if i == 0 else None)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel("log10 σ_model − log10 σ_reference")
    ax.set_title("Conductivity error at the target temperature (95 %; hatched: significant)")
    ax.legend(fontsize=8)
    _save(fig, path)
    return True


def _upper_bounds(run_docs: list[dict], source: str, material: str, diffusive_K: set[float]) -> list[tuple]:
    """(T, median upper bound on D) of a source's runs at the temperatures where none diffused."""
    bounds: dict[float, list[float]] = {}
    for d in run_docs:
        if (d["source"], d["material"]) == (source, material) and d["temperature_K"] not in diffusive_K \
                and (d.get("diffusivity_upper_bound_cm2_s") or 0) > 0:
            bounds.setdefault(d["temperature_K"], []).append(d["diffusivity_upper_bound_cm2_s"])
    return sorted((t, float(np.median(values))) for t, values in bounds.items())


def plot_arrhenius(
    temperature_docs: list[dict], material_docs: list[dict], run_docs: list[dict], material: str,
    colors: dict[str, str], path: Path,
) -> bool:
    """log10 D vs 1000/T per source with its Arrhenius line (the material document's) extended to the target
    temperature; where no run diffused, the runs' median upper bound on D (▽)."""
    fig, ((ax,),) = _figure(figsize=(5.5, 4.2))
    drawn = False
    for source in _sources(temperature_docs):
        points = sorted(
            (d["temperature_K"], d["diffusivity_cm2_s_mean"]) for d in temperature_docs
            if d["source"] == source and d["material"] == material and (d["diffusivity_cm2_s_mean"] or 0) > 0
        )
        color = colors[source]
        bounds = _upper_bounds(run_docs, source, material, {t for t, _ in points})
        if bounds:
            bound_K, bound_cm2_s = zip(*bounds, strict=True)
            ax.plot(KILO / np.array(bound_K), np.log10(bound_cm2_s), "v", mfc="none", color=color,
                    label=f"{source}: not diffusive, D ≤")
            drawn = True
        if not points:
            continue
        temperatures, diffusivities = (np.array(v) for v in zip(*points, strict=True))
        ax.plot(KILO / temperatures, np.log10(diffusivities), "o", label=source, color=color)
        drawn = True
        fitted = next((d for d in material_docs if (d["source"], d["material"]) == (source, material)), {})
        if fitted.get("arrhenius_prefactor_cm2_s") is not None:
            fit = ArrheniusFit(fitted["activation_energy_eV"], fitted["arrhenius_prefactor_cm2_s"], math.nan)
            t_line = np.linspace(KILO / temperatures.max(), KILO / fitted["target_temperature_K"], 50)
            d_line = [extrapolate_arrhenius(fit, KILO / t) for t in t_line]
            ax.plot(t_line, np.log10(d_line), "--", color=color, lw=1)
            ax.plot(t_line[-1], np.log10(d_line[-1]), "*", ms=11, color=color)
    if not drawn:
        return False
    ax.set_xlabel("1000 / T (1/K)")
    ax.set_ylabel("log10 D (cm²/s)")
    ax.set_title(f"{material}: Arrhenius, ★ = extrapolated to target T, ▽ = upper bound")
    ax.legend(fontsize=8)
    _save(fig, path)
    return True


def plot_parity(predictions: list[dict], path: Path) -> bool:
    """Predicted vs reference force components, one panel per (model, material)."""
    panels = [d for d in sorted(predictions, key=lambda d: (d["source"], d["material"])) if Path(d["parity_path"]).exists()]
    if not panels:
        return False
    n_cols = min(len(panels), 3)
    n_rows = math.ceil(len(panels) / n_cols)
    fig, axes = _figure(n_rows, n_cols, figsize=(3.8 * n_cols, 3.6 * n_rows))
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
    _save(fig, path)
    return True


def plot_survival(material_docs: list[dict], material: str, colors: dict[str, str], path: Path) -> bool:
    """The fraction of each source's runs still valid against time, with its stability score."""
    curves = [d for d in material_docs if d["material"] == material and d.get("survival_time_ps")]
    if not curves:
        return False
    fig, ((ax,),) = _figure(figsize=(5.5, 3.8))
    for doc in sorted(curves, key=lambda d: (d["source"] != REFERENCE_SOURCE, d["source"])):
        ax.step(doc["survival_time_ps"], doc["survival_fraction"], where="post", color=colors[doc["source"]],
                label=f"{doc['source']} ({doc['stability_score']:.2f})")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("production time (ps)")
    ax.set_ylabel("runs still valid")
    ax.set_title(f"{material}: survival (score = normalised area)")
    ax.legend(fontsize=8)
    _save(fig, path)
    return True


def plot_li_density(material_docs: list[dict], material: str, path: Path) -> bool:
    """The diffusing element's density projected along c (summed over the third lattice axis), one panel per
    source, from the density files of the material documents."""
    densities = {}
    for doc in material_docs:
        if doc["material"] == material and doc.get("density_path") and Path(doc["density_path"]).exists():
            with np.load(doc["density_path"]) as saved:
                densities[doc["source"]] = saved["density"]
                densities.setdefault(REFERENCE_SOURCE, saved["reference_density"])
    sources = _sources([{"source": s} for s in densities])
    if not sources:
        return False
    fig, axes = _figure(1, len(sources), figsize=(3.4 * len(sources), 3.4))
    for ax, source in zip(axes[0], sources, strict=True):
        ax.imshow(densities[source].sum(axis=2).T, origin="lower", extent=(0, 1, 0, 1), cmap="magma")
        ax.set_title(f"{material}: {source}", fontsize=9)
        ax.set_xlabel("fractional a")
        ax.set_ylabel("fractional b")
    _save(fig, path)
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


def table_2(run_docs: list[dict], table: list[dict], material_docs: list[dict]) -> list[list[str]]:
    """Table 2 (rows of the ``table2`` table) with the material documents' bootstrap intervals: source,
    material, −log10 σ(target) [CI] or why there is none, Ea [CI], runs with a D, the paper's value."""
    fitted = {(d["source"], d["material"]): d for d in material_docs}
    rows = []
    for row in table:
        key = (row["model"], row["material"])
        n_runs = sum((r["source"], r["material"]) == key and r["diffusivity_cm2_s"] is not None for r in run_docs)
        sigma, ea = row["arrhenius_reason"] or "n/a", "n/a"
        if row["neg_log10_sigma_target"] is not None:
            sigma, ea = _number(row["neg_log10_sigma_target"], 3), _number(row["activation_energy_eV"], 3)
            doc = fitted.get(key, {})
            if (doc.get("conductivity_target_mS_cm_low") or 0) > 0:
                sigma = _interval(row["neg_log10_sigma_target"], -math.log10(doc["conductivity_target_mS_cm_high"]),
                                  -math.log10(doc["conductivity_target_mS_cm_low"]))
                ea = _interval(row["activation_energy_eV"], doc["activation_energy_eV_low"], doc["activation_energy_eV_high"])
        rows.append([row["model"], row["material"], sigma, ea, str(n_runs),
                     _number(paper.TABLE_2.get(row["model"], {}).get(row["material"]), 3)])
    return rows


def table_1(docs: list[dict]) -> list[list[str]]:
    """Table 1 beside the paper's: per source, parameters (millions; from its training document) and the
    median MD speed of its runs (ns/day per replica), then the paper's two numbers."""
    trainings = {d["source"]: d for d in _by(docs, "training")}
    speeds: dict[str, list[float]] = {}
    for run in _by(docs, "run"):
        if run.get("ns_per_day") is not None:
            speeds.setdefault(run["source"], []).append(run["ns_per_day"])
    rows = []
    for source in _sources(docs):
        parameters = trainings[source]["n_parameters"] / 1e6 if source in trainings else None
        paper_parameters, paper_speed = paper.TABLE_1.get(source, (None, None))
        rows.append([source, _number(parameters, 3), _number(np.median(speeds[source]) if source in speeds else None, 3),
                     _number(paper_parameters, 3), _number(paper_speed, 3)])
    return rows


def table_stability(temperature_docs: list[dict]) -> list[list[str]]:
    """Per (source, material, T): runs consistent with the reference with their Wilson interval and the test's
    resolution, the paper's stable fraction, D and σ means with bootstrap intervals."""
    rows = []
    for doc in sorted(temperature_docs, key=lambda d: (d["source"] != REFERENCE_SOURCE, d["source"], d["material"], d["temperature_K"])):
        consistent = "n/a"  # a document of an older release, before the noise-aware verdict
        if doc.get("consistent_fraction") is not None:
            consistent = (f"{round(doc['consistent_fraction'] * doc['n_runs'])}/{doc['n_runs']} "
                          f"[{_number(doc.get('consistent_fraction_low'), 2)}, "
                          f"{_number(doc.get('consistent_fraction_high'), 2)}]")
        resolvable = {True: "", False: " (not resolvable)", None: ""}[doc.get("threshold_resolvable")]
        cells = [doc["source"], doc["material"], f"{doc['temperature_K']:g}", consistent,
                 _number(doc.get("rdf_mae_noise_floor"), 3), _number(doc.get("rdf_mae_resolution"), 3),
                 _number(doc.get("paper_stable_fraction"), 2) + resolvable, str(doc.get("n_diffusive", "n/a"))]
        for name in ("diffusivity_cm2_s", "conductivity_mS_cm"):
            cells.append(_interval(doc[f"{name}_mean"], doc.get(f"{name}_low"), doc.get(f"{name}_high")))
        rows.append(cells)
    return rows


def table_diffusion_paths(material_docs: list[dict]) -> list[list[str]]:
    """Per (source, material), the material documents' diffusion-path checks at the highest temperature."""
    rows = []
    for doc in sorted(material_docs, key=lambda d: (d["material"], d["source"] != REFERENCE_SOURCE, d["source"])):
        paths = doc.get("diffusion_paths")
        if paths is None:
            continue
        rows.append([
            doc["source"], doc["material"], f"{paths['temperature_K']:g}", _number(paths["overlap"], 3),
            _number(paths["wrong_channel_fraction"], 3), "yes" if paths["wrong_channels"] else "no",
            f"{_number(paths['max_framework_drift_A'], 3)} / {_number(paths['max_sublattice_drift_A'], 3)}",
            f"{paths['drifting_runs']}/{paths['n_runs']}",
        ])
    return rows


# --------------------------------------------------------------------------- page


_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
    "table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #bbb;padding:3px 8px;font-size:13px}"
    "th{background:#eee}img{max-width:100%;border:1px solid #ddd;margin:4px 0}.note{color:#555;font-size:13px}"
)


REPORT_TABLES = ("fig4", "table2", "s1-s3", "errors")  # the tables of campaign/tables.py that write_report reads


def write_report(campaign: str, docs: list[dict], tables: dict[str, list[dict]], out_dir: str | Path,
                 rdf_mae_threshold: float = RDF_MAE_STABLE, root: str | Path = ".") -> Path:
    """Write every figure and ``index.html`` into out_dir; returns the HTML path.

    docs: the campaign's result documents; tables: name -> rows of each of ``REPORT_TABLES``
    (``campaign.tables.run_table``) over those documents; ``rdf_mae_threshold``: the campaign's
    stability threshold, drawn in Fig. 4; ``root``: the campaign's folder, which the documents' files
    are relative to. A figure whose data is missing (e.g. a file a document names is gone) is left
    out and said so.
    """
    docs, tables = _named(docs, tables)
    docs = [absolute_paths(doc, root) for doc in docs]
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
    plot_error_bars(tables["fig4"], colors, rdf_mae_threshold, out / "fig4_errors.png")
    figure("fig4_errors.png", "Fig. 4: force MAE and RDF MAE per model and material", True)
    if plot_conductivity_errors(tables["errors"], colors, out / "fig4_conductivity_errors.png"):  # else: the table's reasons
        figure("fig4_conductivity_errors.png", "Fig. 4 with σ: the conductivity error of each model at the target "
               "temperature", True)
    figure("parity_forces.png", "Force parity plots", plot_parity(predictions, out / "parity_forces.png"))
    for material in material_names:
        rdf_files = {d["source"]: Path(d["rdf_path"]) for d in materials if d["material"] == material and d.get("rdf_path")}
        figure(f"rdf_{material}.png", f"Fig. 3: RDFs of {material} against the reference",
               plot_rdf_overlays(rdf_files, material, colors, out / f"rdf_{material}.png"))
        figure(f"arrhenius_{material}.png", f"Arrhenius plot of {material}",
               plot_arrhenius(temperatures, materials, runs, material, colors, out / f"arrhenius_{material}.png"))
        figure(f"li_density_{material}.png", f"Li density of {material} projected along c (highest temperature)",
               plot_li_density(materials, material, out / f"li_density_{material}.png"))
        figure(f"survival_{material}.png", f"Survival of the runs on {material} (fraction still valid)",
               plot_survival(materials, material, colors, out / f"survival_{material}.png"))

    target = next((d["target_temperature_K"] for d in materials), 300.0)
    sections = [
        _html_table(
            "Table 1: model size and MD speed", ["model", "parameters (M)", "MD ns/day per replica (median)",
                                                 "paper parameters (M)", "paper ns/day"],
            table_1(docs),
            "Ours: on this campaign's hardware, replicas batched as the spec says. Paper: one replica on an "
            "RTX 4090. " + paper.CITATION,
        ),
        _html_table(
            f"Table 2: −log10 σ({target:g} K) [mS/cm] and Ea",
            ["model", "material", f"−log10 σ({target:g} K) [95 % CI]", "Ea (eV) [95 % CI]", "runs with a D",
             "paper −log10 σ(300 K)"],
            table_2(runs, tables["table2"], materials),
            "Intervals: from the covariance of the Arrhenius fit weighted in ln D (each run's D has its own GLS "
            "interval; runs pooled per temperature by inverse variance); without per-run intervals, a bootstrap over "
            "repetitions. σ only from at least 3 temperatures with diffusive runs and a positive Ea. Paper: "
            + paper.CITATION,
        ),
        _html_table(
            "Conductivity error: log10 σ_model − log10 σ_reference",
            ["model", "material", "force MAE (eV/Å)", "RDF MAE", f"Δlog10 σ({target:g} K)", "95 % interval",
             "significant", "Δlog10 σ(T) [95 %] (* significant)", "MAE log10 σ", "why missing"],
            [[row["model"], row["material"], _number(row["force_mae_eV_A"], 3), _number(row["rdf_mae"], 3),
              _number(row["delta_log10_sigma_target"], 3), row["delta_log10_sigma_target_interval"] or "n/a",
              _number(row["significant"]), row["delta_log10_sigma_by_temperature"] or "n/a",
              _number(row["mae_log10_sigma"], 3), row["error_reason"] or ""] for row in tables["errors"]],
            "Each side's interval: σ(target) from the Arrhenius fit weighted in ln D (its covariance), σ(T) from the "
            "runs pooled by their own intervals; the two sides are independent. Significant: the interval excludes 0. "
            f"Material {ALL_MATERIALS}: the model's mean over materials, the MAE of log10 σ({target:g} K) beside its "
            "force and RDF MAE.",
        ),
        _html_table(
            "Stability over time", ["model", "material", "survival score (0–1)", "RDF MAE noise floor"],
            [[d["source"], d["material"], _number(d.get("stability_score"), 3), _number(d.get("rdf_mae_noise_floor"), 3)]
             for d in sorted(materials, key=lambda d: (d["material"], d["source"] != REFERENCE_SOURCE, d["source"]))],
            "Survival: the fraction of runs still valid (no windowed RDF MAE over the threshold, no fused atoms, no "
            "early stop) against time; its normalised area. Noise floor: the RDF MAE of the reference's own physics "
            "at the runs' length.",
        ),
        _html_table("Table S1: energy MAE (eV/atom)", *_matrix(tables["s1-s3"], "energy_mae_eV_atom")),
        _html_table("Table S1: energy R²", *_matrix(tables["s1-s3"], "energy_r2")),
        _html_table("Table S2: force MAE (eV/Å)", *_matrix(tables["s1-s3"], "force_mae_eV_A")),
        _html_table("Table S2: force R²", *_matrix(tables["s1-s3"], "force_r2")),
        _html_table("Table S3: RDF MAE (mean over runs)", *_matrix(tables["s1-s3"], "rdf_mae")),
        _html_table(
            "Stability and transport per temperature",
            ["model", "material", "T (K)", "consistent runs [Wilson 95 %]", "RDF MAE floor", "resolution",
             "paper: MAE < threshold", "diffusive runs",
             "D (cm²/s) [95 % CI]", "σ (mS/cm) [95 % CI]"],
            table_stability(temperatures),
            "Consistent: the run's RDF MAE against the reference is within the reference's own noise at the run's "
            "length (a 5 % false-alarm rate); resolution: the smallest excess over the floor that test detects. The "
            "paper's verdict, MAE below its threshold, says little where the floor reaches half the threshold "
            "(not resolvable). D and σ: means over the runs that diffused (D implies at least 2 hops among the carriers, the MSD not "
            "ballistic) and neither fused nor stopped early; an interval needs two of them.",
        ),
        _html_table(
            "Diffusion paths (highest temperature)",
            ["model", "material", "T (K)", "Li density overlap (Bhattacharyya)", "in reference-empty voxels", "wrong channels",
             "max drift: framework / sublattice (Å)", "drifting runs"],
            table_diffusion_paths(materials),
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
