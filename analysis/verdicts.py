"""From a run's frames to its verdict: the one home of the rules that decide it.

* **What a run is compared with** (``Reference``): the reference runs at its temperature, their mean RDF
  and the RDF MAE's own noise among them (``analysis.rdf_noise``). A reference run is never compared with
  itself: with the other reference runs, or, when it is the only one, its second half with its first.
* **Stability**: the noise-aware test at the run's length (``consistent`` or ``lattice_mismatch``, with
  its floor and resolution), fusion and early stops first (``analysis.stability.run_stability``); and
  beside it the paper's verdict, RDF MAE below ``rdf_mae_threshold``, **resolvable** where the floor is
  below half that threshold.
* **Collapse**: the earliest of the engine's early stop, fused atoms, and a window whose RDF MAE fails the
  test at the window's length, the false-alarm rate shared among the run's windows; and **diffusion**
  (``analysis.runs``).

``assess_run`` applies them to one run; the analyze stage (workflows/stages/analyze.py) and ``campaign
analyze`` both call it through ``workflows.stages.analyze.run_document``, so they cannot disagree.

To add a per-run metric, touch three files: compute it here (in ``assess_run``, or in
``analysis.runs.analyse_run``) and name it in ``RunAssessment.document_fields``; add its field to
``records.results.RunResult``; show it in campaign/tables.py or campaign/report.py. The stage and ``campaign
analyze`` then store and print it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis.aggregation import RunVerdict
from analysis.rdf import RDF, block_rdfs, mean_rdf
from analysis.rdf import rdf_mae as rdf_mae_between
from analysis.rdf_noise import BLOCKS_PER_RUN, FALSE_ALARM_RATE, RDFNoise, rdf_noise
from analysis.runs import RunAnalysis, analyse_run, present_pairs
from analysis.settings import AnalysisSettings
from analysis.stability import run_stability
from records.summaries import MDRunSummary
from records.units import FS_PER_PS

@dataclass(frozen=True)
class RunFrames:
    """One run's frames as the analysis reads them: every finite frame from the start of production, and the
    analysed ones (after the discard); wrapped positions in a fixed cell."""

    path: str  # identifies the run: a reference run is never compared with itself
    finite_A: np.ndarray  # [n_finite, n_atoms, 3]
    finite_time_fs: np.ndarray  # [n_finite]
    production_A: np.ndarray  # [n_production, n_atoms, 3]
    production_time_fs: np.ndarray  # [n_production]
    cell_A: np.ndarray  # [3, 3]
    numbers: np.ndarray  # [n_atoms]
    n_nonfinite: int  # frames with non-finite positions, left out
    length_ps: float | None  # the production the run was meant to cover; None: unknown

    @property
    def analysed_ps(self) -> float:
        time_fs = self.production_time_fs
        return float(time_fs[-1] - time_fs[0]) / FS_PER_PS if len(time_fs) else 0.0

    @property
    def sampled_ps(self) -> float:
        """The time the analysed frames sample: one frame interval per frame (the length of the RDF noise)."""
        time_fs = self.production_time_fs
        return len(time_fs) * float(np.median(np.diff(time_fs))) / FS_PER_PS if len(time_fs) >= 2 else 0.0


@dataclass(frozen=True)
class Reference:
    """The reference runs at one temperature: their production RDFs and lengths, their mean, and the RDF MAE's
    own noise among them (``analysis.rdf_noise``), which decides what counts as consistent with them."""

    paths: list[str]
    curves: list[RDF]  # each run's production RDF
    lengths_ps: list[float]  # each run's analysed length
    mean: RDF  # of all their frames
    noise: RDFNoise | None  # None: too few frames to measure it
    halves: tuple[RDF, RDF] | None  # of the only run: its own comparison (None with two runs or more)

    @property
    def total_ps(self) -> float:
        return float(sum(self.lengths_ps))

    def compared_with(self, path: str, length_ps: float) -> tuple[RDF | None, float]:
        """What the run at ``path`` (``length_ps`` long) is compared with, and that reference data's length: the
        mean of all runs, or for a reference run the others' mean (None when it is the only one)."""
        if path not in self.paths:
            return self.mean, self.total_ps
        others = [(c, ell) for p, c, ell in zip(self.paths, self.curves, self.lengths_ps, strict=True) if p != path]
        if not others:
            return None, length_ps
        return mean_rdf(*zip(*others, strict=True)), self.total_ps - length_ps


def reference_at(runs: Sequence[RunFrames], settings: AnalysisSettings) -> Reference | None:
    """The reference of one temperature from its runs (see ``Reference``); None when none has analysed frames."""
    kept = [run for run in runs if len(run.production_A[:: settings.rdf.frame_stride]) >= BLOCKS_PER_RUN]
    if not kept:
        return None
    rdf = settings.rdf
    blocks, block_ps = [], []
    for run in kept:
        used = len(run.production_A[:: rdf.frame_stride])
        blocks.append(block_rdfs(run.production_A, run.cell_A, run.numbers, rdf.r_max_A, rdf.n_bins, BLOCKS_PER_RUN,
                                 present_pairs(run.numbers, rdf), rdf.frame_stride, rdf.kernel_width_A))
        sizes = np.bincount(np.arange(used) * BLOCKS_PER_RUN // used, minlength=BLOCKS_PER_RUN)
        block_ps.append(list(sizes / used * run.sampled_ps))
    curves = [mean_rdf(curves, lengths) for curves, lengths in zip(blocks, block_ps, strict=True)]
    lengths = [float(sum(lengths)) for lengths in block_ps]
    halves = None
    if len(kept) == 1:
        half = BLOCKS_PER_RUN // 2
        halves = (mean_rdf(blocks[0][:half], block_ps[0][:half]),
                  mean_rdf(blocks[0][half:], block_ps[0][half:]))
    return Reference([run.path for run in kept], curves, lengths, mean_rdf(curves, lengths),
                     rdf_noise(blocks, block_ps), halves)


@dataclass(frozen=True)
class RunAssessment:
    """The verdict on one run and the measurements behind it."""

    measured: RunAnalysis
    rdf_mae: float | None
    rdf_mae_noise_floor: float | None  # the MAE the reference's own physics gives at this run's length
    rdf_mae_resolution: float | None  # the smallest excess over the floor the test detects at this length
    threshold_resolvable: bool | None
    stability: str  # analysis.stability.STABILITY_CLASSES: the noise-aware verdict
    paper_stable: bool | None  # the paper's verdict: RDF MAE < rdf_mae_threshold, no fusion, not stopped
    collapse_rdf_threshold: float | None  # a collapse window's RDF MAE above this is a collapse
    stopped_early_reason: str | None
    engine_collapse_ps: float | None  # when the engine stopped it, since production began
    collapse_ps: float | None  # when it stopped being valid; None: valid to its end
    collapse_reason: str | None
    analysed_ps: float
    length_ps: float
    n_nonfinite_frames: int

    def document_fields(self) -> dict:
        """The fields of the run's result document (``records.results.RunResult``) that the analysis decides."""
        measured = self.measured
        window, verdict = measured.window, measured.verdict
        fit, sigma_interval = measured.diffusivity_fit, measured.conductivity_interval_mS_cm
        return {
            "completed": self.stopped_early_reason is None,
            "stopped_early_reason": self.stopped_early_reason,
            "collapse_time_ps": self.engine_collapse_ps,
            "analysed_ps": self.analysed_ps,
            "n_nonfinite_frames": self.n_nonfinite_frames,
            "rdf_mae": self.rdf_mae,
            "rdf_mae_noise_floor": self.rdf_mae_noise_floor,
            "rdf_mae_resolution": self.rdf_mae_resolution,
            "threshold_resolvable": self.threshold_resolvable,
            "min_distance_A": measured.min_distance_A,
            "stability": self.stability,
            "paper_stable": self.paper_stable,
            "time_to_collapse_ps": self.collapse_ps,
            "collapse_reason": self.collapse_reason,
            "diffusive": verdict.diffusive if verdict else None,
            "diffusion_verdict": verdict.reason if verdict else None,
            "diffusivity_upper_bound_cm2_s": verdict.upper_bound_cm2_s if verdict else None,
            "diffusivity_cm2_s": measured.diffusivity_cm2_s,
            "diffusivity_cm2_s_low": fit.low_cm2_s if fit and measured.diffusivity_cm2_s is not None else None,
            "diffusivity_cm2_s_high": fit.high_cm2_s if fit and measured.diffusivity_cm2_s is not None else None,
            "diffusion_hops": verdict.hops if verdict else None,
            "msd_fit_start_ps": window.start_fs / FS_PER_PS if window else None,
            "msd_fit_end_ps": window.end_fs / FS_PER_PS if window else None,
            "msd_loglog_slope": window.loglog_slope if window else None,
            "conductivity_mS_cm": measured.conductivity_mS_cm,
            "conductivity_mS_cm_low": sigma_interval[0] if sigma_interval else None,
            "conductivity_mS_cm_high": sigma_interval[1] if sigma_interval else None,
        }

    def verdict(self, temperature_K: float) -> RunVerdict:
        """What the per-temperature and per-material summaries need of this run."""
        measured = self.measured
        fit = measured.diffusivity_fit
        return RunVerdict(temperature_K, self.stability, self.rdf_mae, bool(measured.verdict and measured.verdict.diffusive),
                          measured.diffusivity_cm2_s, measured.conductivity_mS_cm, self.analysed_ps, self.collapse_ps,
                          self.length_ps, *((fit.low_cm2_s, fit.high_cm2_s) if fit and measured.diffusivity_cm2_s
                                            is not None else (None, None)), paper_stable=self.paper_stable)


def assess_run(run: RunFrames, temperature_K: float, settings: AnalysisSettings, reference: Reference | None,
               summary: MDRunSummary | None, discard_ps: float) -> RunAssessment:
    """The verdict on one run at ``temperature_K`` against ``reference`` (None: nothing to compare with), with
    its MD summary (None: a trajectory with none, so not stopped by an engine); ``discard_ps`` was cut off."""
    length_ps = run.sampled_ps
    compared, against_ps = (None, 0.0) if reference is None else reference.compared_with(run.path, length_ps)
    window_ps = settings.collapse_window_ps
    collapse_threshold = np.inf  # without a measured noise no window counts as collapsed by its RDF
    if reference is not None and reference.noise is not None:  # a false alarm in 5 % of runs, over all windows
        n_windows = max(1, int(np.ceil(length_ps / window_ps)))
        collapse_threshold = reference.noise.threshold(window_ps, reference.total_ps, FALSE_ALARM_RATE / n_windows)
    measured = analyse_run(
        run.finite_A, run.finite_time_fs, run.production_A, run.production_time_fs, run.cell_A, run.numbers,
        temperature_K, settings.specie_number, compared, settings.rdf,
        collapse_reference=None if reference is None else reference.mean,
        collapse_window_fs=window_ps * FS_PER_PS,
        rdf_mae_threshold=collapse_threshold,
        fusion_distance_A=settings.fusion_distance_A,
    )
    rdf_mae = measured.rdf_mae
    if rdf_mae is None and reference is not None and reference.halves is not None:  # the one reference run
        rdf_mae = rdf_mae_between(*reference.halves)
        length_ps = against_ps = length_ps / 2
    noise = None if reference is None or rdf_mae is None or length_ps <= 0 else reference.noise
    floor = None if noise is None else noise.floor(length_ps, against_ps)
    stopped = summary.stopped_early_reason if summary is not None else None
    engine_collapse_ps = summary.collapse_time_ps if summary is not None else None
    times = []
    if stopped is not None:
        times.append((engine_collapse_ps, stopped))
    if measured.collapse is not None and measured.collapse.time_fs is not None:
        times.append((measured.collapse.time_fs / FS_PER_PS, measured.collapse.reason))
    collapse_ps, collapse_reason = min(times) if times else (None, None)
    return RunAssessment(
        measured=measured,
        rdf_mae=rdf_mae,
        rdf_mae_noise_floor=floor,
        rdf_mae_resolution=None if noise is None else noise.resolution(length_ps, against_ps),
        threshold_resolvable=None if floor is None else floor < settings.rdf_mae_threshold / 2,
        stability=run_stability(stopped, None if noise is None else rdf_mae, measured.min_distance_A,
                                None if noise is None else noise.threshold(length_ps, against_ps),
                                settings.fusion_distance_A),
        paper_stable=None if rdf_mae is None else run_stability(
            stopped, rdf_mae, measured.min_distance_A, settings.rdf_mae_threshold, settings.fusion_distance_A,
        ) == "consistent",
        collapse_rdf_threshold=collapse_threshold if np.isfinite(collapse_threshold) else None,
        stopped_early_reason=stopped,
        engine_collapse_ps=engine_collapse_ps,
        collapse_ps=collapse_ps,
        collapse_reason=collapse_reason,
        analysed_ps=run.analysed_ps,
        length_ps=run.length_ps or run.analysed_ps + discard_ps,
        n_nonfinite_frames=run.n_nonfinite,
    )
