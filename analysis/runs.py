"""What one MD run measures: its RDF and RDF MAE, when it collapsed, its smallest interatomic distance,
and the diffusing element's MSD -> diffusive window -> whether it diffused -> D -> σ. Pure numpy over a
run's arrays.

**Diffusion that is really diffusion.** D is the slope of a generalised least-squares line through the MSD
(``transport.diffusivity_interval``), with its 95 % interval. The fit window is the most diffusive one (log-log
slope closest to 1, ``statistics.diffusive_window``) among those whose MSD reaches one hop squared; when the MSD
never does, it is the check window below. A run has diffused when both hold:

* its carriers hopped: N·6D·t / hop² >= ``MIN_HOPS`` (2), the number of hops of one hop length that D implies
  among the N carriers over the analysed time t. The hop is the median distance from an atom of the diffusing
  element to its nearest neighbour of the same element in the first analysed frame (the distance between
  neighbouring sites). Two hops among the carriers are enough: their D then has a wide interval (a Poisson
  count's), not none. A vibrating crystal's MSD is flat, so its D implies a small fraction of a hop;
* the MSD is not ballistic: its log-log slope over a window fixed in advance, lags from 1/8 to 1/2 of the
  analysed time (``CHECK_WINDOW``), is at most 1 + ``DIFFUSIVE_SLOPE_TOLERANCE`` (1.3).

A run that has not diffused gets no D or σ, only an upper bound D ≤ MSD(t) / 6t at the longest lag of
the check window, and its reason.

**Collapse in time** (as MDsim, "Forces are not enough", and MLIP Arena measure it): the production
frames are cut into consecutive windows of ``window_fs``; the run collapsed at the end of the first
window whose RDF MAE against the reference exceeds the threshold, or at the first frame with atoms
closer than the fusion distance, whichever is first (the MD engine's own early stop comes on top,
in the stage).

``analysis.verdicts.assess_run`` calls ``analyse_run`` for the analyze stage and ``campaign analyze`` alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.rdf import CHEMICAL_SYMBOLS, RDF, image_shifts, rdf, rdf_mae, validated_cell
from analysis.settings import RDFSettings
from analysis.stability import min_distance_A
from analysis.statistics import DiffusiveWindow, diffusive_window
from analysis.transport import (
    DiffusivityInterval,
    carrier_positions_A,
    conductivity_mS_cm,
    diffusivity_interval,
    fit_loglog_slope,
    msd_of_positions_A2,
)
from records.units import A2_PER_FS_TO_CM2_PER_S, FS_PER_PS

CHECK_WINDOW = (1 / 8, 1 / 2)  # lags of the diffusion check, as fractions of the analysed time
DIFFUSIVE_SLOPE_TOLERANCE = 0.3  # a log-log slope above 1 + this over the check window is ballistic, not diffusive
MIN_HOPS = 2.0  # hops among the carriers over the analysed time that D must imply
HOP_REACH_A = 8.0  # neighbours of the same element are looked for this far
EINSTEIN_DIMENSIONS = 3  # MSD = 2 d D t
MIN_MSD_FRAMES = 3  # analysed frames an MSD needs


@dataclass(frozen=True)
class Collapse:
    """When a run's frames stopped resembling the reference, or fused, and why (None: they never did)."""

    time_fs: float | None
    reason: str | None  # "rdf_mismatch" or "atom_fusion"
    window_maes: list[float]  # RDF MAE of each window, in order


@dataclass(frozen=True)
class DiffusionVerdict:
    """Whether the diffusing element's MSD reached the diffusive regime (see the module docstring)."""

    diffusive: bool
    reason: str  # "diffusive", or why not, in words with its numbers
    hop_A: float | None
    msd_at_fit_end_A2: float | None
    check_slope: float | None
    upper_bound_cm2_s: float | None  # for a run that did not diffuse: D <= this
    hops: float | None = None  # N·6D·t / hop²: the hops among the carriers that D implies over the analysed time


@dataclass(frozen=True)
class RunAnalysis:
    """What ``analyse_run`` measures of one MD run (None where it cannot be measured)."""

    rdf: RDF | None  # of the production frames, when there is a reference to compare with
    rdf_mae: float | None
    min_distance_A: float | None  # over every finite frame, the ramp included
    window: DiffusiveWindow | None  # where the MSD is fitted
    verdict: DiffusionVerdict | None
    diffusivity_cm2_s: float | None  # only for a run that diffused
    conductivity_mS_cm: float | None
    collapse: Collapse | None  # None without a reference RDF
    diffusivity_fit: DiffusivityInterval | None = None  # the GLS fit, also of a run that did not diffuse
    conductivity_interval_mS_cm: tuple[float, float] | None = None  # σ's 95 % interval, of a run that diffused


def present_pairs(numbers, settings: RDFSettings) -> list[tuple[str, str]]:
    """The requested partials whose elements the structure ``numbers`` has."""
    present = {CHEMICAL_SYMBOLS[z] for z in np.unique(numbers)}
    return [tuple(pair) for pair in settings.pairs if set(pair) <= present]


def material_rdf(positions_A, cell_A, numbers, settings: RDFSettings) -> RDF:
    """Total RDF plus the requested partials whose elements the structure has."""
    return rdf(positions_A, cell_A, numbers, settings.r_max_A, settings.n_bins, pairs=present_pairs(numbers, settings),
               frame_stride=settings.frame_stride, kernel_width_A=settings.kernel_width_A)


def hop_distance_A(positions_A: np.ndarray, cell_A, reach_A: float = HOP_REACH_A) -> float:
    """The median over atoms [n_atoms, 3] of the distance to the nearest other atom or periodic image."""
    cell = validated_cell(cell_A)
    fractional = positions_A @ np.linalg.inv(cell)
    difference = fractional[:, None, :] - fractional[None, :, :]  # [n, n, 3]
    difference -= np.round(difference)
    shifts = image_shifts(cell, reach_A)  # [n_images, 3]
    distances_A = np.linalg.norm((difference[:, :, None, :] + shifts) @ cell, axis=-1)  # [n, n, n_images]
    own = np.arange(len(positions_A))
    distances_A[own, own, np.flatnonzero(~shifts.any(axis=1))] = np.inf  # an atom is not its own neighbour
    return float(np.median(distances_A.min(axis=(1, 2))))


def diffusion(positions_A: np.ndarray, msd_A2: np.ndarray, time_fs: np.ndarray, hop_A: float
              ) -> tuple[DiffusiveWindow | None, DiffusionVerdict, DiffusivityInterval | None]:
    """Where the MSD [n_lags] at lags ``time_fs`` [n_lags] (from 0) of the carriers' continuous positions
    ``positions_A`` [n_lags, n_carriers, 3] is fitted, whether it reached the diffusive regime (see the module
    docstring; ``hop_A`` is the distance between neighbouring sites) and the GLS fit of D with its interval."""
    analysed_fs = float(time_fs[-1])
    lags = (time_fs >= CHECK_WINDOW[0] * analysed_fs) & (time_fs <= CHECK_WINDOW[1] * analysed_fs) & (time_fs > 0)
    last = np.flatnonzero(lags)[-1] if lags.any() else len(time_fs) - 1
    upper_bound = float(msd_A2[last] / (2 * EINSTEIN_DIMENSIONS * time_fs[last]) * A2_PER_FS_TO_CM2_PER_S) \
        if time_fs[last] > 0 else None
    usable = np.count_nonzero(lags) >= 3 and bool(np.all(msd_A2[lags] > 0))
    check_slope = fit_loglog_slope(msd_A2[lags], time_fs[lags]) if usable else None
    ps = f"{analysed_fs / FS_PER_PS:.3g} ps"
    try:
        window = diffusive_window(msd_A2, time_fs, min_end_msd_A2=hop_A**2)
    except ValueError:  # the MSD stays below one hop: the window fixed in advance
        window = None if check_slope is None else DiffusiveWindow(
            float(time_fs[lags][0]), float(time_fs[last]), check_slope)
    if window is None:
        reason = f"not diffusive at {ps}: too short an MSD for its checks"
        return None, DiffusionVerdict(False, reason, hop_A, None, check_slope, upper_bound), None
    at_end = float(np.interp(window.end_fs, time_fs, msd_A2))
    fit = diffusivity_interval(positions_A, msd_A2, time_fs, window.start_fs, window.end_fs,
                               dimensions=EINSTEIN_DIMENSIONS)
    n_carriers = positions_A.shape[1]
    hops = n_carriers * 2 * EINSTEIN_DIMENSIONS * fit.diffusivity_cm2_s / A2_PER_FS_TO_CM2_PER_S * analysed_fs / hop_A**2
    span = f"[{CHECK_WINDOW[0] * analysed_fs / FS_PER_PS:.3g}, {CHECK_WINDOW[1] * analysed_fs / FS_PER_PS:.3g}] ps"
    if hops < MIN_HOPS:
        reason = (f"not diffusive at {ps}: D = {fit.diffusivity_cm2_s:.3g} cm²/s implies {hops:.2g} hops of "
                  f"{hop_A:.3g} Å among {n_carriers} carriers, {MIN_HOPS:g} needed")
    elif check_slope > 1.0 + DIFFUSIVE_SLOPE_TOLERANCE:
        reason = f"not diffusive at {ps}: log-log slope {check_slope:.2f} over {span} is ballistic, not 1"
    else:
        return window, DiffusionVerdict(True, "diffusive", hop_A, at_end, check_slope, None, hops), fit
    return window, DiffusionVerdict(False, reason, hop_A, at_end, check_slope, upper_bound, hops), fit


def collapse(positions_A: np.ndarray, time_fs: np.ndarray, cell_A, numbers, reference: RDF, settings: RDFSettings,
             threshold: float, window_fs: float, frame_min_distance_A: np.ndarray, fusion_distance_A: float) -> Collapse:
    """When the production frames ``positions_A`` [n_frames, n_atoms, 3] at ``time_fs`` (from the start of
    production) first went wrong: a window of ``window_fs`` with an RDF MAE above ``threshold`` against
    ``reference``, or a frame whose smallest distance ``frame_min_distance_A`` [n_frames] is below
    ``fusion_distance_A``."""
    window_of = np.floor((time_fs - time_fs[0]) / window_fs).astype(int) if len(time_fs) else np.zeros(0, int)
    maes, mismatch_fs = [], None
    for window in range(int(window_of.max()) + 1 if len(window_of) else 0):
        frames = window_of == window
        if np.count_nonzero(frames) < max(2, settings.frame_stride):  # a last sliver of a window is no window
            continue
        maes.append(rdf_mae(material_rdf(positions_A[frames], cell_A, numbers, settings), reference))
        if mismatch_fs is None and maes[-1] > threshold:
            mismatch_fs = float(time_fs[frames][-1])
    fused = np.flatnonzero(frame_min_distance_A < fusion_distance_A)
    fusion_fs = float(time_fs[fused[0]]) if len(fused) else None
    times = [(t, why) for t, why in ((mismatch_fs, "rdf_mismatch"), (fusion_fs, "atom_fusion")) if t is not None]
    first = min(times) if times else (None, None)
    return Collapse(first[0], first[1], maes)


def analyse_run(
    frames_A: np.ndarray,
    frames_time_fs: np.ndarray,
    production_A: np.ndarray,
    production_time_fs: np.ndarray,
    cell_A: np.ndarray,
    numbers: np.ndarray,
    temperature_K: float,
    specie: int,
    reference: RDF | None,
    rdf_settings: RDFSettings,
    *,
    collapse_reference: RDF | None = None,
    collapse_window_fs: float | None = None,
    rdf_mae_threshold: float | None = None,
    fusion_distance_A: float | None = None,
) -> RunAnalysis:
    """Measure one run from its finite frames ``frames_A`` [n_frames, n_atoms, 3] at ``frames_time_fs``
    [n_frames] (from the start of production) and the analysed ones among them, ``production_A``
    [n_production, n_atoms, 3] at ``production_time_fs`` (wrapped positions, fixed ``cell_A``): the RDF
    and its MAE against ``reference``, the smallest interatomic distance, and the MSD of element
    ``specie`` (atomic number; the rest is the framework, whose drift is removed), whether it diffused
    and, if so, D and σ at ``temperature_K``. With ``collapse_reference`` (default ``reference``) and
    ``collapse_window_fs`` (and ``rdf_mae_threshold``, ``fusion_distance_A``), also when the frames collapsed.
    """
    frame_min_A = min_distance_A(frames_A, cell_A) if len(frames_A) else np.zeros(0)  # [n_frames]
    mask = numbers == specie
    window = verdict = d_cm2_s = sigma = fit = sigma_interval = None
    if len(production_A) >= MIN_MSD_FRAMES and mask.any():
        framework = ~mask
        carriers_A = carrier_positions_A(production_A, cell_A, coordinates="wrapped", atom_mask=mask,
                                         framework_mask=framework if framework.any() else None)
        msd = msd_of_positions_A2(carriers_A)
        time_fs = production_time_fs - production_time_fs[0]
        hop_A = hop_distance_A(production_A[0][mask], cell_A)
        window, verdict, fit = diffusion(carriers_A, msd, time_fs, hop_A)
        if verdict.diffusive:
            d_cm2_s = fit.diffusivity_cm2_s
            volume_A3 = abs(float(np.linalg.det(cell_A)))
            per_d = conductivity_mS_cm(1.0, int(mask.sum()), volume_A3, temperature_K)  # σ is linear in D
            sigma, sigma_interval = d_cm2_s * per_d, (fit.low_cm2_s * per_d, fit.high_cm2_s * per_d)
    curve = r_mae = collapsed = None
    if len(production_A) and reference is not None:
        curve = material_rdf(production_A, cell_A, numbers, rdf_settings)
        r_mae = rdf_mae(curve, reference)
    collapse_reference = reference if collapse_reference is None else collapse_reference
    if collapse_reference is not None and collapse_window_fs is not None and len(frames_A):
        collapsed = collapse(frames_A, frames_time_fs, cell_A, numbers, collapse_reference, rdf_settings,
                             rdf_mae_threshold, collapse_window_fs, frame_min_A, fusion_distance_A)
    smallest = float(frame_min_A.min()) if len(frame_min_A) else None
    return RunAnalysis(curve, r_mae, smallest, window, verdict, d_cm2_s, sigma, collapsed, fit, sigma_interval)
