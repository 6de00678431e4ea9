"""The ``campaign`` command line."""

from __future__ import annotations

import json
import math
import signal
import sys
from pathlib import Path

import click

from analysis.settings import AnalysisSettings
from campaign.spec import CampaignSpec, SpecError, check_reference_data, load_spec
from campaign.tables import TABLES
from campaign.tasks import count_by_stage, expand
from mlff import host_memory, preemption
from records.errors import CampaignError
from records.results import REFERENCE_SOURCE
from records.store import (
    MongoStore,
    StoreError,
    active_fireworks,
    campaign_fireworks,
    failed_fireworks,
    open_store,
    stage_states,
)
from workflows.build import STAGES

STATES = ("WAITING", "READY", "RESERVED", "RUNNING", "COMPLETED", "FIZZLED", "DEFUSED", "PAUSED")


def _load(spec_path: str) -> tuple[CampaignSpec, Path]:
    return load_spec(spec_path), Path(spec_path).resolve().parent


def _launch_root(spec: CampaignSpec, base_dir: Path) -> Path:
    return (base_dir / spec.campaign.workdir / "launches").resolve()


USAGE_EXIT = 2  # a bad spec or option, as click exits for a bad option
INTERRUPT_EXIT = 128 + signal.SIGINT


class _Commands(click.Group):
    """``campaign``'s commands. An error the user can cause and fix (``records.errors.CampaignError``:
    a bad spec or file, an unreadable store, a busy launcher, Slurm refusing a job) ends in its
    message, exit 1 (2 for a bad spec); an interrupt outside the launcher's own handling exits 130."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CampaignError as err:
            failure = click.ClickException(str(err))
            failure.exit_code = USAGE_EXIT if isinstance(err, SpecError) else 1
            raise failure from None
        except (KeyboardInterrupt, preemption.Preempted):
            click.echo("\ninterrupted: what finished is kept, nothing half-written was saved; "
                       "run the same command again to continue", err=True)
            sys.exit(INTERRUPT_EXIT)


@click.group(cls=_Commands)
def main() -> None:
    """Benchmark machine-learning force fields: spec -> FireWorks -> train -> MD -> analysis -> results."""
    host_memory.retain_freed_memory()


@main.command()
@click.argument("spec_path", type=click.Path(dir_okay=False))
def validate(spec_path: str) -> None:
    """Check SPEC, the files it names and the MongoDB server of its store, and print the tasks it expands to;
    writes nothing."""
    spec, base_dir = _load(spec_path)
    check_reference_data(spec, spec_path)
    store = open_store(spec.campaign.store, base_dir)
    if isinstance(store, MongoStore):
        try:
            store.check_server()
        except StoreError as err:
            raise SpecError(f"{spec_path}: campaign.store: {err}") from None
    tasks = expand(spec, base_dir)
    click.echo(f"{spec_path}: valid campaign {spec.campaign.name!r} ({spec.spec_hash()[:12]})")
    for stage, count in count_by_stage(tasks).items():
        click.echo(f"  {stage:<10} {count:>6}")
    click.echo(f"  {'total':<10} {len(tasks):>6}")


@main.command()
@click.argument("spec_path", type=click.Path(dir_okay=False))
@click.option("--no-run", is_flag=True, help="Only add the work to the store; do not launch rockets.")
def submit(spec_path: str, no_run: bool) -> None:
    """Add SPEC's new work to the store; run it to the end (local launcher) or submit job arrays and return (slurm)."""
    from campaign.submission import add_tasks

    spec, base_dir = _load(spec_path)
    check_reference_data(spec, spec_path)
    tasks = expand(spec, base_dir)
    with open_store(spec.campaign.store, base_dir).write() as launchpad:
        _migrate(launchpad, spec, base_dir, tasks)
        added = add_tasks(launchpad, tasks, spec.campaign.name, spec.spec_hash())
    click.echo(f"campaign {spec.campaign.name!r}: {len(added)} new task(s), {len(tasks) - len(added)} already stored")
    if no_run:
        return
    if spec.campaign.launcher == "slurm":
        _sync(spec, base_dir, submit=True)
    else:
        _run(spec, spec_path, base_dir)


def _migrate(launchpad, spec: CampaignSpec, base_dir: Path, tasks: list | None = None) -> None:
    """Bring a store of an earlier release up to date (campaign/migration.py): paths relative to the campaign's
    folder, and analyses that predate the noise-aware verdict made again."""
    from campaign.migration import migrate_absolute_paths, rerun_outdated_analyses

    migrated = migrate_absolute_paths(launchpad, spec, base_dir, tasks or expand(spec, base_dir))
    if migrated:
        click.echo(f"migrated {len(migrated)} task(s) stored with absolute paths (release 0.1.0) to paths relative "
                   f"to {base_dir}")
    outdated = rerun_outdated_analyses(launchpad, spec.campaign.name)
    if outdated:
        click.echo(f"{len(outdated)} analysis task(s) predate the noise-aware stability verdict and will run again: "
                   f"{', '.join(outdated)}")


def _sync(spec: CampaignSpec, base_dir: Path, submit: bool) -> None:
    """Fold finished Slurm array tasks back, requeue lost ones and, with ``submit``, submit ready work."""
    from launchers.slurm import DispatchError, dispatch, sync

    store_spec = spec.campaign.store
    if store_spec.launchpad:  # array tasks of online rockets read it from anywhere
        store_spec = store_spec.model_copy(update={"launchpad": str(base_dir / store_spec.launchpad)})
    jobs, failure = [], None
    with open_store(spec.campaign.store, base_dir).write() as launchpad:
        _migrate(launchpad, spec, base_dir)
        report = sync(launchpad, spec.campaign.name)
        if submit:
            try:
                jobs = dispatch(launchpad, spec.campaign.name, spec.resources, _launch_root(spec, base_dir), store_spec,
                                base_dir)
            except DispatchError as err:  # keep what was submitted: the store must know those arrays
                jobs, failure = err.submitted, err
    for name, state in report.folded.items():
        click.echo(f"  {state:<9} {name}")
    for name in report.lost:
        click.echo(f"  LOST      {name}: its Slurm task ended without an outcome; requeued, resumes from its checkpoint")
    for job in jobs:
        click.echo(f"submitted Slurm array job {job['job_id']} ({job['category']}, {job['n_tasks']} task(s)): {job['job_dir']}")
    if failure is not None:
        raise failure
    if submit and not jobs:
        click.echo("no ready work to submit")


def _run(spec: CampaignSpec, spec_path: str, base_dir: Path) -> None:
    """Run the ready work with the local launcher; an interrupt exits 128 + its signal, failed work exits 1."""
    from launchers.local import run_local

    store = open_store(spec.campaign.store, base_dir)
    _check_submitted(store, spec, spec_path)
    with store.write() as launchpad:
        _migrate(launchpad, spec, base_dir)
    report = run_local(store, spec.campaign.name, _launch_root(spec, base_dir), echo=click.echo, root=base_dir)
    if report.stopped_by is not None:
        name = signal.Signals(report.stopped_by).name
        stopped = [f"{fw} is back to READY and resumes from {checkpoint}" if checkpoint else
                   f"{fw} is back to READY and starts again" for fw, checkpoint in report.interrupted.items()]
        click.echo(f"\ninterrupted ({name}): {len(report.completed)} firework(s) finished in this run and are kept; "
                   f"{'; '.join(stopped) or 'no firework was running'}; continue with `campaign run {spec_path}`",
                   err=True)
        sys.exit(128 + report.stopped_by)
    click.echo(f"done: {len(report.completed)} completed, {len(report.fizzled)} failed")
    with store.read() as launchpad:
        failed = failed_fireworks(launchpad, spec.campaign.name)
    if failed:
        lines = "".join(f"\n  {doc['name']}: {doc['launch_dir'] or '?'}" for doc in failed)
        raise click.ClickException(
            f"{len(failed)} firework(s) FIZZLED (their errors are in error.json and FW_offline.json of these "
            f"launch directories):{lines}\nfix the cause, then `campaign run --retry-failed {spec_path}`"
        )


def _check_submitted(store, spec: CampaignSpec, spec_path: str) -> None:
    """A ClickException saying how to submit, when ``store`` holds no firework of ``spec``'s campaign (or is no
    file yet); reads, and creates nothing."""
    if store.exists():
        with store.read() as launchpad:
            if launchpad.fireworks.count_documents(campaign_fireworks(spec.campaign.name), limit=1):
                return
    raise click.ClickException(f"nothing to run: campaign {spec.campaign.name!r} has not been submitted to the "
                               f"{store.describe()}; submit it first: `campaign submit {spec_path}`")


@main.command()
@click.argument("spec_path", type=click.Path(dir_okay=False))
@click.option("--retry-failed", is_flag=True, help="First put failed fireworks back to READY.")
def run(spec_path: str, retry_failed: bool) -> None:
    """Run SPEC's ready work with the local launcher (continues an interrupted run)."""
    from campaign.submission import retry_failed as requeue_failed

    spec, base_dir = _load(spec_path)
    if retry_failed:
        _check_submitted(open_store(spec.campaign.store, base_dir), spec, spec_path)
        with open_store(spec.campaign.store, base_dir).write() as launchpad:
            names = requeue_failed(launchpad, spec.campaign.name)
        click.echo(f"retrying {len(names)} failed firework(s)")
    _run(spec, spec_path, base_dir)


@main.command(name="sync")
@click.argument("spec_path", type=click.Path(dir_okay=False))
def sync_command(spec_path: str) -> None:
    """Fold finished Slurm array tasks back, requeue lost ones and submit the work that became ready."""
    spec, base_dir = _load(spec_path)
    if spec.campaign.launcher != "slurm":
        raise click.ClickException(f"{spec_path}: `sync` is for campaign.launcher: slurm; use `campaign run`")
    _sync(spec, base_dir, submit=True)


@main.command()
@click.argument("spec_path", type=click.Path(dir_okay=False))
def status(spec_path: str) -> None:
    """Firework counts per stage and state, where failures are, whether work is still being run, and the Slurm
    array jobs."""
    from launchers.local import live_launcher
    from launchers.slurm import SlurmError, array_tasks

    spec, base_dir = _load(spec_path)
    store = open_store(spec.campaign.store, base_dir)
    if spec.campaign.launcher == "slurm" and store.exists():
        try:
            _sync(spec, base_dir, submit=False)
        except (SlurmError, StoreError) as err:
            click.echo(f"warning: could not sync with Slurm ({err}); showing the stored state", err=True)
    with store.read() as launchpad:
        counts, failed = stage_states(launchpad, spec.campaign.name), failed_fireworks(launchpad, spec.campaign.name)
        if not counts:
            raise click.ClickException(_not_in_store(launchpad, store, spec.campaign.name, spec_path))
        shown = [s for s in STATES if any(s in counts.get(stage, {}) for stage in STAGES)] or ["COMPLETED"]
        click.echo(f"campaign {spec.campaign.name!r}")
        click.echo(f"  {'stage':<10}" + "".join(f"{s:>11}" for s in shown))
        for stage in STAGES:
            click.echo(f"  {stage:<10}" + "".join(f"{counts.get(stage, {}).get(s, 0):>11}" for s in shown))
        for doc in failed:
            click.echo(f"  FIZZLED {doc['name']} (fw {doc['fw_id']}): {doc['launch_dir'] or '?'}")
        if spec.campaign.launcher == "local":
            active = active_fireworks(launchpad, spec.campaign.name)
            launcher = live_launcher(_launch_root(spec, base_dir))
            if launcher is not None:
                click.echo(f"  running: the local launcher, pid {launcher.get('pid', '?')} on {launcher.get('host', '?')}")
            for name in active if launcher is None else []:
                click.echo(f"  INTERRUPTED {name}: no local launcher runs it any more; "
                           f"`campaign run {spec_path}` resumes it from its checkpoint")
        if spec.campaign.launcher == "slurm":
            try:
                jobs = array_tasks(launchpad, spec.campaign.name)
            except SlurmError as err:
                click.echo(f"  Slurm array jobs unknown: {err}")
                jobs = []
            for job in jobs:
                click.echo(
                    f"  Slurm array job {job['job_id']} ({job['category']}, {job['n_tasks']} task(s)): "
                    f"{job['pending']} pending, {job['running']} running, "
                    f"{job['n_tasks'] - job['pending'] - job['running']} ended"
                )


def _positive(_ctx, parameter, value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"must be a finite number > 0, got {value}", param=parameter)
    return value


def _not_in_store(launchpad, store, campaign: str, spec_path: str) -> str:
    """The message for a store that holds no work of ``campaign``: which campaigns it holds, if any."""
    held = sorted(name for name in launchpad.workflows.distinct("metadata.campaign") if name)
    holds = f"it holds campaign(s) {', '.join(map(repr, held))}" if held else "it holds no campaign"
    return (f"the {store.describe()} holds no campaign {campaign!r} ({holds}); submit it with "
            f"`campaign submit {spec_path}`, or check campaign.name and campaign.store")


@main.command()
@click.argument("spec_path", type=click.Path(dir_okay=False))
@click.option("--table", "table", type=click.Choice(list(TABLES)), default="summary",
              show_default=True, help="summary: errors, stability and σ side by side; table2: −log10 σ(target) and Ea; "
              "s1-s3: energy/force MAE and R², RDF MAE; fig4: force and RDF MAE of the models; errors: each model's "
              "log10 σ against the reference's with 95 % intervals, and its MAE over materials beside force and RDF MAE.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--campaign", "campaign_name", help="Campaign name in the store [default: the spec's campaign.name].")
@click.option("--model", "models", multiple=True, help="Only this model (repeatable); `reference` for the reference row.")
@click.option("--material", "materials", multiple=True, help="Only this material (repeatable).")
@click.option("--temperature-K", "temperature_K", type=float, callback=_positive,
              help="RDF MAE and stability from the runs at this temperature only (Ea and σ(target) use all).")
@click.option("--paper", is_flag=True, help="Add the paper's published −log10 σ(300 K) (Table 2) as a column; with "
              "table2, also the conductivity error against the reference (the errors table's Δlog10 σ(target)).")
def results(spec_path: str, table: str, fmt: str, campaign_name: str | None, models: tuple[str, ...],
            materials: tuple[str, ...], temperature_K: float | None, paper: bool) -> None:
    """One of the paper's tables, one row per model x material, the reference first."""
    from campaign.paper import CITATION, PAPER_COLUMN, with_paper_values
    from campaign.tables import ResultFilter, format_rows, run_table
    from records.store import results_collection

    spec, base_dir = _load(spec_path)
    filters = ResultFilter(campaign_name or spec.campaign.name, models, materials, temperature_K)
    store = open_store(spec.campaign.store, base_dir)
    with store.read() as launchpad:
        collection = results_collection(launchpad)
        unmatched = _unmatched(collection, launchpad, store, filters, spec_path)
        rows = [] if unmatched else run_table(collection, table, filters)
        if unmatched or not rows:
            raise click.ClickException(unmatched or f"no results of campaign {filters.campaign!r} match these "
                                       "filters together")
        stale = _stale_runs(collection, spec) if filters.campaign == spec.campaign.name else []
        errors = run_table(results_collection(launchpad), "errors", filters) if paper and table == "table2" else []
    columns = TABLES[table][1]
    if paper:
        rows, columns = with_paper_values(rows), (*columns, PAPER_COLUMN)
    if errors:
        gap = ("delta_log10_sigma_target", "delta_log10_sigma_target_interval", "significant")
        by = {(row["model"], row["material"]): row for row in errors}
        rows = [{**row, **{name: by.get((row["model"], row["material"]), {}).get(name) for name in gap}} for row in rows]
        columns = (*columns, *gap)
    click.echo(format_rows(rows, columns, fmt))
    if paper and fmt == "table":
        click.echo(f"paper: {CITATION}")
    if stale:
        click.echo(f"warning: the table includes {len(stale)} run(s) that {spec_path} no longer plans (e.g. "
                   f"{stale[0]}), stored by an earlier version of the spec; restore the spec, or give campaign.name a "
                   "new name to start clean", err=True)


def _unmatched(collection, launchpad, store, filters, spec_path: str) -> str | None:
    """Why a results table would be empty or blank, or None: no such campaign in the store, no results yet, or
    a filter (--model, --material, --temperature-K) that matches no stored document."""
    campaign = filters.campaign
    if not collection.count_documents({"campaign": campaign}, limit=1):
        if not launchpad.fireworks.count_documents(campaign_fireworks(campaign), limit=1):
            return _not_in_store(launchpad, store, campaign, spec_path)
        return f"campaign {campaign!r} has no results yet; run it first (`campaign status {spec_path}` shows its work)"
    stored = {"source": set(), "material": set(), "temperature_K": set()}
    for doc in collection.find({"campaign": campaign, "kind": "run"}, {"source": 1, "material": 1, "temperature_K": 1}):
        for key, values in stored.items():
            values.add(doc.get(key))
    asked = {"--model": (filters.models, "source"), "--material": (filters.materials, "material"),
             "--temperature-K": (() if filters.temperature_K is None else (filters.temperature_K,), "temperature_K")}
    unmatched = [f"{option} {', '.join(map(str, wanted))} (its runs have: "
                 f"{', '.join(sorted(map(str, stored[key] - {None}))) or 'none'})"
                 for option, (wanted, key) in asked.items() if wanted and not set(wanted) & stored[key]]
    return f"no results of campaign {campaign!r} match " + "; ".join(unmatched) if unmatched else None


def _stale_runs(collection, spec: CampaignSpec) -> list[str]:
    """The stored MD runs of ``spec``'s campaign that it no longer plans (model/material/temperature/repetition):
    left by an earlier spec with more repetitions, temperatures, models or materials."""
    from campaign.tasks import temperature_label

    planned = {(model, material, temperature_K, repetition) for model in spec.models for material in spec.materials
               for temperature_K in spec.md.temperatures_K for repetition in range(spec.md.repetitions)}
    query = {"campaign": spec.campaign.name, "kind": "run", "source": {"$ne": REFERENCE_SOURCE}}
    runs = {(doc.get("source"), doc.get("material"), doc.get("temperature_K"), doc.get("repetition"))
            for doc in collection.find(query, {"source": 1, "material": 1, "temperature_K": 1, "repetition": 1})}
    return sorted(f"{model}/{material}/{temperature_label(temperature_K)}/rep{repetition}"
                  for model, material, temperature_K, repetition in runs - planned)


@main.command()
@click.argument("spec_path", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Output directory [default: <workdir>/report].")
def report(spec_path: str, out_dir: str | None) -> None:
    """Write the paper's tables and figures (PNGs) and one HTML page linking them."""
    from campaign.report import REPORT_TABLES, write_report
    from campaign.tables import ResultFilter, run_table
    from records.store import results_collection

    spec, base_dir = _load(spec_path)
    out = Path(out_dir) if out_dir else base_dir / spec.campaign.workdir / "report"
    with open_store(spec.campaign.store, base_dir).read() as launchpad:
        collection = results_collection(launchpad)
        docs = list(collection.find({"campaign": spec.campaign.name}))
        tables = {name: run_table(collection, name, ResultFilter(spec.campaign.name)) for name in REPORT_TABLES}
    if not docs:
        raise click.ClickException(f"campaign {spec.campaign.name!r} has no results yet; run it first")
    for doc in docs:
        rdf_path = doc.get("rdf_path")
        if rdf_path and not (base_dir / rdf_path).exists():
            click.echo(f"warning: the RDF of {doc['source']} on {doc['material']} is missing ({base_dir / rdf_path}); "
                       f"the RDF figure of {doc['material']} is drawn without its curve", err=True)
    try:
        page = write_report(spec.campaign.name, docs, tables, out, spec.analysis.rdf_mae_threshold, base_dir)
    except OSError as err:
        raise click.ClickException(f"{err.filename or out}: cannot write the report ({err.strerror}); give a "
                                   "writable folder with --out") from None
    click.echo(f"report: {page}")


@main.command()
@click.argument("spec_path", type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any but loopback needs credentials.")
@click.option("--port", type=click.IntRange(0, 65535), default=5000, show_default=True,
              help="Port to listen on, 1 to 65535; 0 picks a free one (the address it prints says which).")
@click.option("--credentials", "credentials_path", type=click.Path(dir_okay=False),
              help="YAML file (mode 600) with `username` and `password` for the login [default: "
              "$CAMPAIGN_GUI_CREDENTIALS, or $CAMPAIGN_GUI_USERNAME and $CAMPAIGN_GUI_PASSWORD; none: no login].")
def gui(spec_path: str, host: str, port: int, credentials_path: str | None) -> None:
    """Serve FireWorks' web GUI for SPEC's campaign only: live and read-only."""
    from campaign.gui import load_credentials, open_app, serve

    spec, base_dir = _load(spec_path)
    credentials = load_credentials(credentials_path)
    with open_app(spec.campaign.name, open_store(spec.campaign.store, base_dir), credentials) as app:
        serve(app, host, port, echo=click.echo)


STRUCTURE_FORMATS = {"cif": "cif", "poscar": "vasp", "extxyz": "extxyz"}  # --format -> ASE's format name


@main.command()
@click.argument("name")
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False),
              help="Look NAME up among this spec's materials first (their structure: a built-in or a file).")
@click.option("--format", "fmt", type=click.Choice(list(STRUCTURE_FORMATS)), default="cif", show_default=True)
def structure(name: str, spec_path: str | None, fmt: str) -> None:
    """Write the built-in structure NAME (LGPS, Li2S, Li3PS4, Li4GeS4), or a spec's material, to stdout: for
    VESTA, OVITO or any other viewer."""
    import tempfile

    import ase.io

    from mlff.structures import BUILTIN_STRUCTURES, load_structure

    source, base_dir = name, None
    if spec_path is not None:
        spec, base_dir = _load(spec_path)
        if name in spec.materials:
            source = spec.materials[name].structure
    if source not in BUILTIN_STRUCTURES and spec_path is None:
        raise click.BadParameter(f"{name!r} is no built-in ({', '.join(BUILTIN_STRUCTURES)}); give --spec for a "
                                 "spec's material", param_hint="NAME")
    try:
        atoms = load_structure(source, base_dir)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    with tempfile.TemporaryDirectory() as scratch:  # ASE's writers differ in writing text or bytes to a stream
        path = Path(scratch) / "structure"
        ase.io.write(path, atoms, format=STRUCTURE_FORMATS[fmt])
        click.echo(path.read_text().rstrip("\n"))


def _element(_ctx, parameter, symbol: str | None) -> str | None:
    from analysis.rdf import CHEMICAL_SYMBOLS

    if symbol is not None and symbol not in CHEMICAL_SYMBOLS[1:]:
        raise click.BadParameter(f"{symbol!r} is not an element symbol (e.g. Li)", param=parameter)
    return symbol


def _pairs(_ctx, parameter, pairs: tuple[str, ...]) -> list[tuple[str, str]] | None:
    """``--pair Li-S`` (repeatable) as [("Li", "S")]; None when not given."""
    parsed = [tuple(pair.split("-")) for pair in pairs]
    bad = [pair for pair, split in zip(pairs, parsed, strict=True) if len(split) != 2]
    if bad:
        raise click.BadParameter(f"{bad[0]!r} is not two element symbols joined by '-' (e.g. Li-S)", param=parameter)
    return parsed or None


def _analysis_settings(spec_path: str | None, options: dict) -> tuple[AnalysisSettings, float]:
    """The analysis settings and the discarded time: the spec's ``analysis`` and ``md.discard_ps`` (without a
    spec the defaults, and 0), with the ``options`` given on the command line on top."""
    from pydantic import ValidationError

    settings, discard_ps = AnalysisSettings(), 0.0
    if spec_path is not None:
        spec = load_spec(spec_path)
        settings, discard_ps = spec.analysis, spec.md.discard_ps
    rdf = {name: options.pop(name) for name in ("r_max_A", "n_bins", "pairs", "kernel_width_A") if name in options}
    discard_ps = options.pop("discard_ps", discard_ps)
    try:
        settings = AnalysisSettings.model_validate(
            {**settings.model_dump(), **options, "rdf": {**settings.rdf.model_dump(), **rdf}})
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e['input']!r})" for e in err.errors())
        raise click.UsageError(f"analysis settings: {problems}") from None
    return settings, discard_ps


@main.command()
@click.argument("trajectory", type=click.Path(exists=True, dir_okay=False))
@click.option("--temperature-K", "temperature_K", type=float, required=True, callback=_positive,
              help="Temperature of the run in K.")
@click.option("--reference", "references", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A reference run at the same temperature (repeatable: the run is compared with their mean, and "
              "blocks of them, and pairs of them, measure the noise the stability test allows; one file: its blocks).")
@click.option("--summary", "summary_path", type=click.Path(exists=True, dir_okay=False),
              help="The run's MD summary (X.summary.json next to a campaign's X.frames): whether and when the engine "
              "stopped it. Only this file is read: no file beside TRAJECTORY is.")
@click.option("--spec", "spec_path", type=click.Path(exists=True, dir_okay=False),
              help="Take the analysis settings and md.discard_ps of this campaign spec [default: the built-in ones].")
@click.option("--timestep-fs", "timestep_fs", type=float, callback=_positive,
              help="Time between frames in fs (for files without times).")
@click.option("--specie", "diffusing_specie", callback=_element, help="Diffusing element [default: Li].")
@click.option("--discard-ps", type=click.FloatRange(min=0.0), help="Initial production time to discard, ps [default: 0, "
              "or the spec's md.discard_ps].")
@click.option("--r-max-A", "r_max_A", type=float, help="Largest pair distance of the RDF, Å [default: 6].")
@click.option("--n-bins", type=int, help="RDF bins [default: 120].")
@click.option("--pair", "pairs", multiple=True, callback=_pairs,
              help="A partial RDF as two element symbols, e.g. Li-S (repeatable) [default: the total RDF only].")
@click.option("--kernel-width-A", "kernel_width_A", type=float, help="Gaussian kernel of the RDF, Å (0: histogram).")
@click.option("--rdf-mae-threshold", type=float, help="The paper's stability threshold of the RDF MAE [default: 0.02].")
@click.option("--fusion-distance-A", "fusion_distance_A", type=float,
              help="A minimum interatomic distance below this is atom fusion, Å [default: 1].")
@click.option("--collapse-window-ps", type=float, help="Window of the RDF MAE over time that dates a collapse, ps.")
@click.option("--source", default="file", show_default=True, help="The source named in the document.")
@click.option("--material", help="The material named in the document [default: the file's formula].")
@click.option("--json", "as_json", is_flag=True, help="Print the document as JSON.")
def analyze(trajectory, temperature_K, references, summary_path, spec_path, timestep_fs, source, material, as_json,
            **options) -> None:
    """Analyse one trajectory file as the campaign's analyze stage does (the same function): RDF MAE against the
    reference, stability, collapse, MSD -> D -> sigma. Prints the fields of the run document the campaign stores."""
    from ase import Atoms

    from analysis.verdicts import reference_at
    from mlff.reference import read_reference
    from mlff.trajectory import SUFFIX, read_trajectory
    from records.summaries import MDRunSummary, read_run_summary
    from workflows.stages.analyze import run_document, run_frames

    settings, discard_ps = _analysis_settings(spec_path, {k: v for k, v in options.items() if v is not None})

    def load(path: str):
        if path.endswith(SUFFIX):
            return read_trajectory(path)
        if timestep_fs is None:
            raise click.ClickException(f"{path}: --timestep-fs is needed for a file that carries no times")
        return read_reference(path, timestep_fs)

    try:
        path = str(Path(trajectory).resolve())
        run = load(trajectory)
        _check_analysable(trajectory, run, settings, discard_ps)
        frames = run_frames(run, path, discard_ps)
        reference_runs = []
        for reference in references:
            loaded = load(reference)
            if sorted(loaded.numbers) != sorted(run.numbers):
                raise click.ClickException(f"{reference}: its composition differs from {trajectory}'s; an RDF "
                                           "can only be compared with a reference of the same material")
            if loaded.n_frames:
                reference_runs.append(run_frames(loaded, str(Path(reference).resolve()), discard_ps))
        summary = read_run_summary(summary_path) if summary_path else None
        if summary is not None and not isinstance(summary, MDRunSummary):
            summary = None  # an imported reference's summary: nothing about stopping
        document, _ = run_document(
            frames, summary, settings, discard_ps, reference_at(reference_runs, settings) if references else None,
            source=source, label=None, material=material or Atoms(numbers=run.numbers).get_chemical_formula(),
            temperature_K=temperature_K, repetition=0,
        )
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    fields = document.model_dump()
    if as_json:
        click.echo(json.dumps(fields, indent=2))
    else:
        for key, value in fields.items():
            if key != "provenance":
                click.echo(f"{key:>30}: {value}")


def _check_analysable(path: str, run, settings: AnalysisSettings, discard_ps: float) -> None:
    """Refuse, naming the file, a trajectory whose verdict would say nothing for a reason the user can fix."""
    from analysis.runs import MIN_MSD_FRAMES
    from records.units import FS_PER_PS

    if run.n_frames == 0:
        raise click.ClickException(f"{path}: holds no frames")
    if settings.specie_number not in run.numbers:
        raise click.ClickException(f"{path}: has no {settings.diffusing_specie} (the diffusing element; --specie)")
    length_ps = float(run.time_fs[-1]) / FS_PER_PS
    if discard_ps > length_ps:  # production keeps the frames from discard_ps on
        raise click.ClickException(f"{path}: --discard-ps {discard_ps:g} ps leaves no frames: the run ends at "
                                   f"{length_ps:g} ps")
    production, _ = run.production(discard_ps)
    if production.n_frames < MIN_MSD_FRAMES:
        raise click.ClickException(f"{path}: {production.n_frames} analysed frame(s) after the first {discard_ps:g} ps; "
                                   f"an MSD needs at least {MIN_MSD_FRAMES}")


if __name__ == "__main__":
    main()
