"""The ``campaign`` command line."""

from __future__ import annotations

import json
import math
import signal
import sys
from pathlib import Path

import click

from analysis.rdf import DEFAULT_N_BINS, DEFAULT_R_MAX_A, MAX_N_BINS, MAX_R_MAX_A, MIN_N_BINS
from campaign.spec import CampaignSpec, SpecError, load_spec
from campaign.tables import TABLES
from campaign.tasks import count_by_stage, expand
from mlff import host_memory, preemption
from records.errors import CampaignError
from records.store import StoreError, active_fireworks, failed_fireworks, open_store, stage_states
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
    """Check SPEC and print the tasks it expands to; writes nothing."""
    spec, base_dir = _load(spec_path)
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
    """Make a store written by release 0.1.0, with absolute paths, relative to the campaign's folder."""
    from campaign.migration import migrate_absolute_paths

    migrated = migrate_absolute_paths(launchpad, spec, base_dir, tasks or expand(spec, base_dir))
    if migrated:
        click.echo(f"migrated {len(migrated)} task(s) stored with absolute paths (release 0.1.0) to paths relative "
                   f"to {base_dir}")


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
    with store.write() as launchpad:
        _migrate(launchpad, spec, base_dir)
    report = run_local(store, spec.campaign.name, _launch_root(spec, base_dir), echo=click.echo, root=base_dir)
    if report.stopped_by is not None:
        name = signal.Signals(report.stopped_by).name
        click.echo(f"interrupted ({name}): {len(report.completed)} firework(s) finished and are kept; interrupted work "
                   f"is READY again and resumes from its checkpoint: `campaign run {spec_path}`", err=True)
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


@main.command()
@click.argument("spec_path", type=click.Path(dir_okay=False))
@click.option("--retry-failed", is_flag=True, help="First put failed fireworks back to READY.")
def run(spec_path: str, retry_failed: bool) -> None:
    """Run SPEC's ready work with the local launcher (continues an interrupted run)."""
    from campaign.submission import retry_failed as requeue_failed

    spec, base_dir = _load(spec_path)
    if retry_failed:
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


@main.command()
@click.argument("spec_path", type=click.Path(dir_okay=False))
@click.option("--table", "table", type=click.Choice(list(TABLES)), default="summary",
              show_default=True, help="summary: errors, stability and σ side by side; table2: −log10 σ(target) and Ea; "
              "s1-s3: energy/force MAE and R², RDF MAE; fig4: force and RDF MAE of the models.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--campaign", "campaign_name", help="Campaign name in the store [default: the spec's campaign.name].")
@click.option("--model", "models", multiple=True, help="Only this model (repeatable); `reference` for the reference row.")
@click.option("--material", "materials", multiple=True, help="Only this material (repeatable).")
@click.option("--temperature-K", "temperature_K", type=float,
              help="RDF MAE and stability from the runs at this temperature only (Ea and σ(target) use all).")
@click.option("--paper", is_flag=True, help="Add the paper's published −log10 σ(300 K) (Table 2) as a column.")
def results(spec_path: str, table: str, fmt: str, campaign_name: str | None, models: tuple[str, ...],
            materials: tuple[str, ...], temperature_K: float | None, paper: bool) -> None:
    """One of the paper's tables, one row per model x material, the reference first."""
    from campaign.paper import CITATION, PAPER_COLUMN, with_paper_values
    from campaign.tables import ResultFilter, format_rows, run_table
    from records.store import results_collection

    spec, base_dir = _load(spec_path)
    filters = ResultFilter(campaign_name or spec.campaign.name, models, materials, temperature_K)
    with open_store(spec.campaign.store, base_dir).read() as launchpad:
        rows = run_table(results_collection(launchpad), table, filters)
    columns = TABLES[table][1]
    if paper:
        rows, columns = with_paper_values(rows), (*columns, PAPER_COLUMN)
    click.echo(format_rows(rows, columns, fmt))
    if paper and fmt == "table":
        click.echo(f"paper: {CITATION}")


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
    click.echo(f"report: {write_report(spec.campaign.name, docs, tables, out, spec.analysis.rdf_mae_threshold, base_dir)}")


@main.command()
@click.argument("spec_path", type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any but loopback needs credentials.")
@click.option("--port", type=int, default=5000, show_default=True)
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


def _positive(_ctx, parameter, value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"must be a finite number > 0, got {value}", param=parameter)
    return value


def _element(_ctx, parameter, symbol: str) -> str:
    from analysis.rdf import CHEMICAL_SYMBOLS

    if symbol not in CHEMICAL_SYMBOLS[1:]:
        raise click.BadParameter(f"{symbol!r} is not an element symbol (e.g. Li)", param=parameter)
    return symbol


@main.command()
@click.argument("trajectory", type=click.Path(exists=True, dir_okay=False))
@click.option("--reference", type=click.Path(exists=True, dir_okay=False), help="Reference trajectory for the RDF MAE.")
@click.option("--temperature-K", "temperature_K", type=float, required=True, callback=_positive,
              help="Temperature of the run in K.")
@click.option("--timestep-fs", "timestep_fs", type=float, callback=_positive,
              help="Time between frames in fs (for files without times).")
@click.option("--specie", default="Li", show_default=True, callback=_element, help="Diffusing element.")
@click.option("--discard-ps", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Initial time to discard, ps.")
@click.option("--r-max-A", "r_max_A", type=click.FloatRange(0.0, MAX_R_MAX_A, min_open=True), default=DEFAULT_R_MAX_A,
              show_default=True, help="Largest pair distance of the RDF, Å.")
@click.option("--n-bins", type=click.IntRange(MIN_N_BINS, MAX_N_BINS), default=DEFAULT_N_BINS, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def analyze(trajectory, reference, temperature_K, timestep_fs, specie, discard_ps, r_max_A, n_bins, as_json) -> None:
    """Analyse one trajectory file: RDF (MAE), stability, MSD -> D -> sigma (the campaign's analysis functions)."""
    from analysis.rdf import CHEMICAL_SYMBOLS
    from analysis.runs import RDFSettings, analyse_run, material_rdf
    from analysis.stability import FUSION_DISTANCE_A, RDF_MAE_STABLE, run_stability
    from records.units import FS_PER_PS
    from mlff.reference import read_reference
    from mlff.trajectory import SUFFIX, read_trajectory
    from workflows.stages import md_summary_path

    def load(path: str):
        if path.endswith(SUFFIX):
            return read_trajectory(path)
        if timestep_fs is None:
            raise click.ClickException(f"{path}: --timestep-fs is needed for a file that carries no times")
        return read_reference(path, timestep_fs)

    settings = RDFSettings(r_max_A, n_bins)
    try:
        run = load(trajectory)
        production, n_nonfinite = run.production(discard_ps)
        reference_rdf = None
        if reference is not None:
            reference_frames, _ = load(reference).production(discard_ps)
            if sorted(reference_frames.numbers) != sorted(run.numbers):
                raise click.ClickException(f"{reference}: its composition differs from {trajectory}'s; an RDF "
                                           "can only be compared with a reference of the same material")
            if reference_frames.n_frames:
                reference_rdf = material_rdf(reference_frames.positions_A, reference_frames.cell_A,
                                             reference_frames.numbers, settings)
        finite = run.finite()
        measured = analyse_run(
            finite.positions_A, finite.time_fs, production.positions_A, production.time_fs, run.cell_A, run.numbers,
            temperature_K, CHEMICAL_SYMBOLS.index(specie), reference_rdf, settings,
        )
        summary_file = md_summary_path(trajectory)  # an MD stage's run summary, when this is one of its runs
        stopped = json.loads(summary_file.read_text()).get("stopped_early_reason") if summary_file.exists() else None
        stability = run_stability(stopped, measured.rdf_mae, measured.min_distance_A, RDF_MAE_STABLE, FUSION_DISTANCE_A)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    window, verdict = measured.window, measured.verdict
    report = {
        "diffusive": verdict.diffusive if verdict else None,
        "diffusion_verdict": verdict.reason if verdict else None,
        "diffusivity_cm2_s": measured.diffusivity_cm2_s,
        "diffusivity_upper_bound_cm2_s": verdict.upper_bound_cm2_s if verdict else None,
        "msd_fit_start_ps": window.start_fs / FS_PER_PS if window else None,
        "msd_fit_end_ps": window.end_fs / FS_PER_PS if window else None,
        "msd_loglog_slope": window.loglog_slope if window else None,
        "conductivity_mS_cm": measured.conductivity_mS_cm,
        "rdf_mae": measured.rdf_mae,
        "stability": stability,
        "min_distance_A": measured.min_distance_A,
        "analysed_ps": float(production.time_fs[-1] - production.time_fs[0]) / FS_PER_PS if production.n_frames else 0.0,
        "n_nonfinite_frames": n_nonfinite,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            click.echo(f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
