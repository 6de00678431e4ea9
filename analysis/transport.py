"""Ion transport from MD trajectories: unwrapping, MSD, diffusivity, conductivity, Arrhenius.

Pure numpy. Chain used by the project (as in the paper, which used pymatgen's
``DiffusionAnalyzer``): Li MSD -> tracer diffusivity D (Einstein relation; a generalised
least-squares line with the MSD's covariance, which gives D its interval, as kinisi does) ->
ionic conductivity σ (Nernst–Einstein) -> Arrhenius fit of D(T) (weighted in ln D) ->
extrapolation to 300 K.

Units are in every name: positions in Å, times in fs, D in cm²/s, σ in mS/cm, energies in eV.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.fft
import scipy.stats

from analysis.rdf import validated_cell, validated_positions
from records.units import A2_PER_FS_TO_CM2_PER_S, A3_TO_CM3, BOLTZMANN_EV_K, ELEMENTARY_CHARGE_C, S_TO_MS

__all__ = [
    "WRAPPED_TOLERANCE",
    "unwrap",
    "mean_square_displacement",
    "carrier_positions_A",
    "msd_of_positions_A2",
    "DiffusivityInterval",
    "diffusivity_interval",
    "squared_displacement_variance_A4",
    "diffusivity_like_diffusion_analyzer_cm2_s",
    "conductivity_mS_cm",
    "ArrheniusFit",
    "fit_arrhenius",
    "extrapolate_arrhenius",
    "WeightedArrheniusFit",
    "fit_arrhenius_weighted",
    "conductivity_at_mS_cm",
]

# Fractional coordinates of a wrapped trajectory must lie in [-tol, 1 + tol).
WRAPPED_TOLERANCE = 1e-6
# Wrapped trajectories are unwrapped this many frames at a time (temporaries of ~n_atoms * 12 kB).
STEP_CHUNK_FRAMES = 512


# --------------------------------------------------------------------------- validation helpers


def _mask(mask, n_atoms: int, name: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.dtype == bool:
        if m.shape != (n_atoms,):
            raise ValueError(f"{name} must be a boolean [n_atoms={n_atoms}] array, got {m.shape}")
        idx = np.flatnonzero(m)
    else:
        idx = np.asarray(m, dtype=int).ravel()
        if idx.size and (idx.min() < -n_atoms or idx.max() >= n_atoms):
            raise ValueError(f"{name} has indices out of range for {n_atoms} atoms")
    if idx.size == 0:
        raise ValueError(f"{name} selects no atoms")
    return idx


# --------------------------------------------------------------------------- unwrap / MSD


def _image_steps(positions_A: np.ndarray, cell_A: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """Minimum-image frame-to-frame steps in fractional coordinates, ``STEP_CHUNK_FRAMES`` frames at a time.

    Yields (first, step): step [n, n_atoms, 3] holds frame(t) − frame(t − 1) for t = first .. first + n − 1
    (first >= 1), each component mapped into [-0.5, 0.5]. Chunks keep the temporaries small and in
    cache. positions_A must be wrapped into the cell (fractional coordinates in [0, 1) within
    ``WRAPPED_TOLERANCE``); otherwise ValueError.
    """
    inverse = np.linalg.inv(cell_A)
    previous = positions_A[0] @ inverse  # [n_atoms, 3]
    for first in range(0, len(positions_A), STEP_CHUNK_FRAMES):
        frac = positions_A[first : first + STEP_CHUNK_FRAMES] @ inverse  # [n, n_atoms, 3]
        low, high = frac.min(), frac.max()
        if low < -WRAPPED_TOLERANCE or high >= 1.0 + WRAPPED_TOLERANCE:
            outside = (frac < -WRAPPED_TOLERANCE) | (frac >= 1.0 + WRAPPED_TOLERANCE)
            raise ValueError(
                f"positions are not wrapped: {int(np.count_nonzero(outside))} fractional coordinate(s) outside "
                f"[0, 1) in frames {first}..{first + len(frac) - 1} (range {low:.3f} .. {high:.3f}); "
                "pass coordinates='unwrapped'?"
            )
        step = np.empty_like(frac)
        step[0] = frac[0] - previous
        np.subtract(frac[1:], frac[:-1], out=step[1:])
        previous = frac[-1].copy()
        step -= np.rint(step, out=frac)  # frac's buffer is free now: no new array
        if first == 0:
            step = step[1:]  # frame 0 has no step
        if len(step):
            yield max(first, 1), step


def unwrap(positions_A, cell_A) -> np.ndarray:
    """Unwrap a wrapped fixed-cell trajectory.

    positions_A: [n_frames, n_atoms, 3] Cartesian positions WRAPPED into the cell (fractional
    coordinates in [0, 1), tolerance ``WRAPPED_TOLERANCE``; otherwise ValueError).
    cell_A: [3, 3], rows are lattice vectors.

    Frame-to-frame displacements are taken in fractional coordinates, mapped to the minimum
    image (each component into [-0.5, 0.5]) and accumulated from frame 0, whose positions are
    kept. Valid only while no atom moves more than half a cell (along any fractional axis)
    between two saved frames; a faster atom is silently unwrapped to the wrong image, so
    save frames often enough. Same procedure as pymatgen's ``DiffusionAnalyzer.from_structures``.
    Returns unwrapped Cartesian positions [n_frames, n_atoms, 3].
    """
    pos = validated_positions(positions_A)
    cell = validated_cell(cell_A)
    unwrapped = np.empty_like(pos)  # fractional until the last line
    unwrapped[0] = pos[0] @ np.linalg.inv(cell)
    for first, step in _image_steps(pos, cell):
        chunk = unwrapped[first : first + len(step)]
        np.cumsum(step, axis=0, out=chunk)
        chunk += unwrapped[first - 1]
    return unwrapped @ cell


def _msd_fft(x: np.ndarray) -> np.ndarray:
    """Time-origin averaged MSD of x [n_frames, n_atoms, 3], mean over atoms, sum over axes.

    MSD(m) = 1/(F-m) Σ_{t=0}^{F-m-1} <|x(t+m) − x(t)|²>_atoms for every lag m = 0..F-1, via
    MSD = S1 − 2·S2 where S2(m) = Σ_t x(t)·x(t+m) / (F-m) is an autocorrelation computed by
    FFT zero-padded to a fast length >= 2F − 1 (Wiener–Khinchin, no wrap-around) and
    S1(m) = Σ_t (|x(t)|² + |x(t+m)|²) / (F-m) from prefix sums. O(F log F) per atom.
    """
    n_frames, n_atoms, _ = x.shape
    # Remove each atom's mean position: MSD is invariant, and it keeps FFT round-off small.
    series = (x - x.mean(axis=0, keepdims=True)).reshape(n_frames, -1).T  # [n_atoms * 3, n_frames]
    n_fft = scipy.fft.next_fast_len(2 * n_frames - 1, real=True)
    spectrum = scipy.fft.rfft(series, n=n_fft, axis=1)  # [n_atoms * 3, n_fft // 2 + 1]
    power = (spectrum.real**2 + spectrum.imag**2).sum(axis=0)  # summed over atoms, axes
    s2 = scipy.fft.irfft(power, n=n_fft)[:n_frames]

    sq = np.einsum("cf,cf->f", series, series)  # Σ_atoms |x(t)|²
    prefix = np.concatenate([[0.0], np.cumsum(sq)])
    lags = np.arange(n_frames)
    s1 = prefix[n_frames - lags] + (prefix[-1] - prefix[lags])
    msd = (s1 - 2.0 * s2) / (n_frames - lags) / n_atoms
    msd[0] = 0.0
    return np.maximum(msd, 0.0)


def mean_square_displacement(
    positions_A,
    cell_A,
    coordinates: Literal["wrapped", "unwrapped"],
    atom_mask=None,
    framework_mask=None,
) -> np.ndarray:
    """Time-origin averaged mean square displacement, msd_A2 [n_frames] (index = lag in frames).

    msd(m) = mean over the selected atoms and over all time origins t = 0..F-1-m of
    |r(t+m) − r(t)|², computed with the FFT algorithm (O(F log F)), msd(0) = 0. The arguments are
    those of :func:`carrier_positions_A`.
    """
    return msd_of_positions_A2(carrier_positions_A(positions_A, cell_A, coordinates, atom_mask, framework_mask))


def msd_of_positions_A2(positions_A: np.ndarray) -> np.ndarray:
    """The MSD [n_frames] of continuous positions [n_frames, n_atoms, 3] (from :func:`carrier_positions_A`)."""
    return _msd_fft(np.asarray(positions_A, dtype=float))


def carrier_positions_A(
    positions_A,
    cell_A,
    coordinates: Literal["wrapped", "unwrapped"],
    atom_mask=None,
    framework_mask=None,
) -> np.ndarray:
    """Continuous positions [n_frames, n_selected, 3] of the selected atoms, framework drift removed: what an MSD
    and its covariance (:func:`diffusivity_interval`) are computed from. Wrapped positions start at the origin.

    coordinates: "wrapped" (positions wrapped into the cell; unwrapped as :func:`unwrap` does)
        or "unwrapped" (continuous positions). Anything else raises. Unwrapped input with a
        frame-to-frame jump of more than half a cell raises too (it is almost certainly wrapped
        data).
    atom_mask: boolean [n_atoms] mask or index array of the diffusing atoms (default: all).
    framework_mask: optional boolean mask / indices of the framework atoms. If given, the
        framework drift — the mean displacement of those atoms from frame 0, per frame
        (unweighted, as pymatgen's DiffusionAnalyzer does) — is subtracted from every
        position before computing the MSD, removing centre-of-mass drift of the lattice.
    """
    if coordinates not in ("wrapped", "unwrapped"):
        raise ValueError(f"coordinates must be 'wrapped' or 'unwrapped', got {coordinates!r}")
    pos = validated_positions(positions_A)
    cell = validated_cell(cell_A)
    n_frames, n_atoms, _ = pos.shape
    atoms = np.arange(n_atoms) if atom_mask is None else _mask(atom_mask, n_atoms, "atom_mask")
    framework = None if framework_mask is None else _mask(framework_mask, n_atoms, "framework_mask")
    if coordinates == "wrapped":
        # Displacements from frame 0 in fractional coordinates; the MSD does not need the start positions.
        x = np.zeros((n_frames, len(atoms), 3))
        drift = np.zeros((n_frames, 3))
        weights = np.zeros(n_atoms)  # mean over the framework atoms as one matrix product
        if framework is not None:
            weights[framework] = 1.0 / len(framework)
        for first, step in _image_steps(pos, cell):
            frames = slice(first, first + len(step))
            np.cumsum(np.take(step, atoms, axis=1), axis=0, out=x[frames])
            x[frames] += x[first - 1]
            np.cumsum(weights @ step, axis=0, out=drift[frames])  # [n, 3]
            drift[frames] += drift[first - 1]
        x -= drift[:, None, :]
        return x @ cell
    jumps = np.abs(np.diff(pos @ np.linalg.inv(cell), axis=0))
    n_jumps = int(np.count_nonzero(jumps > 0.5))
    if n_jumps:
        raise ValueError(
            f"'unwrapped' positions jump by more than half a cell {n_jumps} time(s) between "
            "frames; are they wrapped? pass coordinates='wrapped'"
        )
    x = pos[:, atoms, :]
    if framework is not None:
        drift = (pos[:, framework, :] - pos[:1, framework, :]).mean(axis=1)  # [n_frames, 3]
        x = x - drift[:, None, :]
    return x


# --------------------------------------------------------------------------- diffusivity


def _fit_line(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None):
    """(Weighted) least squares y = slope·x + intercept; returns (slope, intercept, stderr_slope).

    With weights w_i (∝ 1/variance) the slope variance is σ̂² / Σw(x − x̄_w)² with
    σ̂² = Σw·residual² / (n − 2); stderr is NaN for n == 2.
    """
    w = np.ones_like(x) if weights is None else weights
    sw = w.sum()
    x_mean = (w * x).sum() / sw
    y_mean = (w * y).sum() / sw
    sxx = (w * (x - x_mean) ** 2).sum()
    if sxx <= 0:
        raise ValueError("need at least two distinct x values to fit a line")
    slope = (w * (x - x_mean) * (y - y_mean)).sum() / sxx
    intercept = y_mean - slope * x_mean
    n = len(x)
    if n > 2:
        resid = y - (slope * x + intercept)
        stderr = float(np.sqrt((w * resid**2).sum() / (n - 2) / sxx))
    else:
        stderr = float("nan")
    return float(slope), float(intercept), stderr


def fit_loglog_slope(msd_A2, time_fs) -> float:
    """The least-squares slope of ln MSD against ln t (1 diffusive, 2 ballistic, 0 caged); every MSD and
    time must be positive."""
    msd, t = np.asarray(msd_A2, dtype=float), np.asarray(time_fs, dtype=float)
    if np.any(msd <= 0) or np.any(t <= 0):
        raise ValueError("a log-log slope needs positive MSDs and times")
    slope, _, _ = _fit_line(np.log(t), np.log(msd))
    return float(slope)


GLS_LAGS = 48  # lags of the generalised least-squares fit, evenly spaced over the fit window
VARIANCE_LAGS = 12  # of those, where the variance of the squared displacements is measured
GLS_ITERATIONS = 4  # slope -> covariance -> slope: the covariance depends on the slope it weights


@dataclass(frozen=True)
class DiffusivityInterval:
    """D from a generalised least-squares line through the MSD, with its interval (:func:`diffusivity_interval`)."""

    diffusivity_cm2_s: float
    low_cm2_s: float  # the interval at ``confidence``; low is 0 and high may be inf when the data bound D little
    high_cm2_s: float
    confidence: float
    intercept_A2: float  # the line's MSD at lag 0: vibrations and the ballistic start
    hop_variance_A2: float  # h² = (rate of the squared displacements' variance) / (rate of the MSD), see below
    chi2_per_dof: float  # of the line against the MSD's covariance: ~1 when the line describes the MSD


def _overlap_integrals(lag_fs: np.ndarray, total_fs: float) -> tuple[np.ndarray, np.ndarray]:
    """The covariance kernels [n_lags, n_lags] of origin-averaged squared displacements of one atom whose
    increments are independent, for a variance of |r(t+L) − r(t)|² of C(L) = L (first) and C(L) = L² (second).

    Two intervals [t, t + τ1] and [s, s + τ2] (τ1 <= τ2) share only the increment over their overlap L, so the
    covariance of their squared displacements is C(L). Averaging over origins t in [0, T − τ1] and s in
    [0, T − τ2] and integrating over d = s − t in closed form:

        ∫∫ C = 2 ∫_0^τ1 (T − τ1 − τ2 + L) C(L) dL + (τ2 − τ1)(T − τ2) C(τ1),

    divided by (T − τ1)(T − τ2). Needs τ1 + τ2 <= T (lags up to half the run).
    """
    tau_1 = np.minimum.outer(lag_fs, lag_fs)
    tau_2 = np.maximum.outer(lag_fs, lag_fs)
    offset = total_fs - tau_1 - tau_2
    inside = (tau_2 - tau_1) * (total_fs - tau_2)
    norm = np.outer(total_fs - lag_fs, total_fs - lag_fs)
    linear = (2 * (offset * tau_1**2 / 2 + tau_1**3 / 3) + inside * tau_1) / norm
    quadratic = (2 * (offset * tau_1**3 / 3 + tau_1**4 / 4) + inside * tau_1**2) / norm
    return linear, quadratic


def squared_displacement_variance_A4(positions_A: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Variance [n_lags] of |r(t + lag) − r(t)|² over every atom and time origin, at ``lags`` (frames, >= 1) of
    continuous positions [n_frames, n_atoms, 3]."""
    variances = np.empty(len(lags))
    for k, lag in enumerate(lags):
        step = positions_A[lag:] - positions_A[:-lag]  # [n_frames - lag, n_atoms, 3]
        variances[k] = np.einsum("fac,fac->fa", step, step).var()
    return variances


def _score_interval(slope: float, linear: float, quadratic: float, z: float) -> tuple[float, float]:
    """The slopes m with (slope − m)² <= z² (linear·m + quadratic·m²), m >= 0 (a Wilson-type interval)."""
    a = 1.0 - z * z * quadratic
    b = -(2.0 * slope + z * z * linear)
    discriminant = b * b - 4.0 * a * slope * slope
    if a <= 0:  # the relative error alone exceeds 1/z: no upper end
        return (max(0.0, slope * slope / -b) if b < 0 else 0.0), np.inf
    root = np.sqrt(max(discriminant, 0.0))
    low, high = (-b - root) / (2 * a), (-b + root) / (2 * a)
    return (max(low, 0.0) if slope > 0 else 0.0), max(high, 0.0)


def diffusivity_interval(
    positions_A,
    msd_A2,
    time_fs,
    fit_start_fs: float,
    fit_end_fs: float,
    confidence: float = 0.95,
    dimensions: int = 3,
) -> DiffusivityInterval:
    """D and its interval by generalised least squares (GLS) of MSD = 2d·D·t + c (d = dimensions) with the MSD's covariance.

    positions_A: continuous positions [n_frames, n_atoms, 3] (:func:`carrier_positions_A`) whose MSD is msd_A2
    [n_frames] at lags time_fs [n_frames] (from 0, evenly spaced). The line is fitted at ``GLS_LAGS`` lags evenly
    spaced over [fit_start_fs, fit_end_fs] (fit_end_fs at most half the run).

    The covariance is that of origin-averaged squared displacements of n_atoms independent atoms whose
    increments are independent (a random walk, hops or Gaussian steps): the squared displacements of two
    intervals covary by the variance of |Δr|² over their overlap L, C(L) = K·L + (2/d)·m²·L², where m = 2dD
    is the MSD's slope and K the rate at which the variance of |Δr|² grows beyond a Gaussian's (for hops of
    length a, K = m·a²). K comes from the measured variance of |Δr|² at ``VARIANCE_LAGS`` lags of the window,
    V(t) = α + K·t + (2/d)·m²·t² (α: vibrations). The kernels are :func:`_overlap_integrals`; the slope and
    the covariance are iterated ``GLS_ITERATIONS`` times.

    The interval: the GLS slope's variance under the covariance of a true slope m is h²·m·A + m²·B, with
    h² = K / m fixed at its estimate (hops: h² = a²) and A, B the kernels' quadratic forms of the GLS weights;
    the interval is every m whose variance puts the measured slope within z of it (z the quantile of
    ``confidence``; Student's t with n_atoms − 1 degrees of freedom, as the covariance's scale is estimated from
    the same atoms). With few hops the variance is that of a Poisson count and the interval is Wilson's for it:
    asymmetric, never below 0; with many it is the usual ±z standard errors.
    """
    x = np.asarray(positions_A, dtype=float)
    msd = np.asarray(msd_A2, dtype=float)
    t = np.asarray(time_fs, dtype=float)
    if dimensions not in (1, 2, 3):
        raise ValueError("dimensions must be 1, 2 or 3")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if x.ndim != 3 or msd.shape != (len(x),) or t.shape != msd.shape:
        raise ValueError(f"positions_A [n_frames, n_atoms, 3], msd_A2 and time_fs [n_frames] expected, got "
                         f"{x.shape}, {msd.shape}, {t.shape}")
    frame_fs = float(t[1] - t[0])
    total_fs = len(t) * frame_fs
    first = max(int(np.ceil(fit_start_fs / frame_fs - 1e-9)), 1)
    last = int(np.floor(fit_end_fs / frame_fs + 1e-9))
    if last - first < 2 or 2 * last > len(t):
        raise ValueError(f"a GLS fit needs >= 3 lags in [{fit_start_fs}, {fit_end_fs}] fs, within half the run")
    lags = np.unique(np.linspace(first, last, GLS_LAGS).round().astype(int))  # [n_lags] frames
    lag_fs, y = lags * frame_fs, msd[lags]
    sampled = lags[np.unique(np.linspace(0, len(lags) - 1, VARIANCE_LAGS).round().astype(int))]
    variance_A4 = squared_displacement_variance_A4(x, sampled)
    linear, quadratic = _overlap_integrals(lag_fs, total_fs)
    n_atoms = x.shape[1]
    design = np.stack([lag_fs, np.ones_like(lag_fs)], axis=1)  # [n_lags, 2]
    sampled_fs = sampled * frame_fs
    slope, intercept = np.polyfit(lag_fs, y, 1)
    k_rate = max(float(variance_A4 @ sampled_fs / (sampled_fs @ sampled_fs)), 0.0)  # a start: all of V is K·t
    for _ in range(GLS_ITERATIONS):
        gaussian = 2.0 / dimensions * slope**2
        excess = variance_A4 - gaussian * sampled_fs**2
        # A line K·t through the origin (α = 0 makes K, if anything, too big), weighted by the inverse of each
        # measured variance's own variance, ~ t·V(t)²: the short lags, where K·t is not swamped by m²t², count most.
        precision = 1.0 / (sampled_fs * (k_rate * sampled_fs + gaussian * sampled_fs**2 + 1e-300) ** 2)
        k_rate = max(float((precision * excess) @ sampled_fs / ((precision * sampled_fs) @ sampled_fs)), 0.0)
        covariance = (k_rate * linear + gaussian * quadratic) / n_atoms
        covariance += np.eye(len(lags)) * 1e-9 * max(np.trace(covariance) / len(lags), 1e-300)
        factor = np.linalg.cholesky(covariance)
        whitened = np.linalg.solve(factor, design)  # L⁻¹ X
        (slope, intercept), *_ = np.linalg.lstsq(whitened, np.linalg.solve(factor, y), rcond=None)
    weights = np.linalg.solve(whitened.T @ whitened, np.linalg.solve(factor.T, whitened).T)[0]  # slope = w·y
    residual = np.linalg.solve(factor, y - design @ np.array([slope, intercept]))
    hop_variance_A2 = k_rate / slope if slope > 0 else 0.0
    linear_term = hop_variance_A2 * weights @ linear @ weights / n_atoms
    quadratic_term = 2.0 / dimensions * weights @ quadratic @ weights / n_atoms
    # The covariance's scale is estimated from the same n_atoms independent atoms: Student's t, n_atoms − 1 dof.
    quantile = float(scipy.stats.t.ppf(0.5 + confidence / 2, max(n_atoms - 1, 1)))
    low, high = _score_interval(float(slope), float(linear_term), float(quadratic_term), quantile)
    factor_cm2_s = A2_PER_FS_TO_CM2_PER_S / (2 * dimensions)
    return DiffusivityInterval(
        diffusivity_cm2_s=float(slope) * factor_cm2_s, low_cm2_s=low * factor_cm2_s, high_cm2_s=high * factor_cm2_s,
        confidence=confidence, intercept_A2=float(intercept), hop_variance_A2=float(hop_variance_A2),
        chi2_per_dof=float(residual @ residual / max(len(lags) - 2, 1)),
    )


def diffusivity_like_diffusion_analyzer_cm2_s(
    msd_A2,
    frame_interval_fs: float,
    n_diffusing_atoms: int,
    *,
    min_obs: int = 30,
    min_lag_fs: float = 1000.0,
    max_fit_points: int = 200,
) -> tuple[float, float]:
    """D as pymatgen's ``DiffusionAnalyzer(..., smoothed="max")`` computes it, from our MSD.

    Input: msd_A2 [n_frames] from :func:`mean_square_displacement` of the diffusing species
    with ``framework_mask`` = all other atoms (DiffusionAnalyzer removes the mean framework
    displacement the same way, and its "max" MSD is the same all-time-origin average at every
    lag); frame_interval_fs = time between saved frames (= DiffusionAnalyzer's
    ``time_step * step_skip``); n_diffusing_atoms = number of atoms of the diffusing species.

    What "max" mode does (pymatgen-analysis-diffusion 2026.9.23, ``DiffusionAnalyzer.__init__``
    and ``get_diffusivity_from_msd``):

    1. lags (in frames) ``min_dt = int(min_lag_fs / frame_interval_fs)`` (pymatgen hard-codes
       1000 fs, discarding the ballistic first picosecond) up to, excluding,
       ``max_dt = min(n_diffusing_atoms * n_frames // min_obs, n_frames)`` — so every lag
       has >= ``min_obs`` atom-origin observations — with stride
       ``max(int((max_dt − min_dt) / 200), 1)`` (at most ~200 points). ValueError if
       ``min_dt >= max_dt`` (pymatgen: "Not enough data").
    2. weighted least squares of MSD vs t = lag·frame_interval with weights 1/t (the variance
       of an MSD estimate grows ~ linearly with t), slope floored at 1e-15 Å²/fs as in
       pymatgen; D = slope / 6, converted to cm²/s (3-D only).

    Returns (D, standard error of D) in cm²/s. D matches ``DiffusionAnalyzer.diffusivity`` to
    round-off. The error is the proper weighted-least-squares slope standard error; it is NOT
    pymatgen's ``diffusivity_std_dev`` (which mixes the weighted residuals with the unweighted
    spread of t, and which pymatgen itself says is meaningful only without smoothing).
    """
    msd = np.asarray(msd_A2, dtype=float)
    if msd.ndim != 1:
        raise ValueError(f"msd_A2 must be 1-D, got {msd.shape}")
    if frame_interval_fs <= 0 or n_diffusing_atoms < 1 or min_obs < 1:
        raise ValueError("frame_interval_fs, n_diffusing_atoms and min_obs must be positive")
    n_frames = len(msd)
    min_dt = int(min_lag_fs / frame_interval_fs)
    max_dt = min(n_diffusing_atoms * n_frames // min_obs, n_frames)
    if min_dt >= max_dt:
        raise ValueError(
            f"not enough data: first lag {min_dt} frames >= last lag {max_dt} frames "
            f"({n_frames} frames, {n_diffusing_atoms} diffusing atoms, min_obs={min_obs})"
        )
    lags = np.arange(min_dt, max_dt, max(int((max_dt - min_dt) / max_fit_points), 1))
    if len(lags) < 2:
        raise ValueError("fewer than 2 lags in the DiffusionAnalyzer window")
    t = lags * float(frame_interval_fs)
    y = msd[lags]
    n_bad = int(np.count_nonzero(~np.isfinite(y)))
    if n_bad:
        raise ValueError(f"msd_A2 has {n_bad} non-finite value(s) in the fit window")
    if t[0] <= 0:
        # lag 0 would get infinite weight 1/t; pymatgen has the same singularity.
        raise ValueError("min_lag_fs must be >= frame_interval_fs (lag 0 cannot be weighted 1/t)")
    slope, _, stderr = _fit_line(t, y, weights=1.0 / t)
    slope = max(slope, 1e-15)
    factor = A2_PER_FS_TO_CM2_PER_S / 6.0
    return slope * factor, stderr * factor


# --------------------------------------------------------------------------- conductivity


def conductivity_mS_cm(
    diffusivity_cm2_s: float,
    n_carriers: int,
    volume_A3: float,
    temperature_K: float,
    charge: int = 1,
) -> float:
    """Nernst–Einstein conductivity σ = n q² D / (V k_B T), in mS/cm.

    With q = z e and k_B in eV/K (k_B[J/K] = k_B[eV/K] e), q² / k_B = z² e / k_B[eV/K] in SI.

    n_carriers mobile ions of charge ``charge``·e in a cell of volume_A3, tracer diffusivity in
    cm²/s (Haven ratio taken as 1, as in the paper and pymatgen's ``conductivity``).
    """
    if volume_A3 <= 0 or temperature_K <= 0 or n_carriers < 0:
        raise ValueError("volume_A3 and temperature_K must be > 0 and n_carriers >= 0")
    volume_cm3 = volume_A3 * A3_TO_CM3
    sigma_S_cm = (n_carriers * charge**2 * ELEMENTARY_CHARGE_C * diffusivity_cm2_s
                  / (volume_cm3 * BOLTZMANN_EV_K * temperature_K))
    return float(sigma_S_cm * S_TO_MS)


# --------------------------------------------------------------------------- Arrhenius


@dataclass(frozen=True)
class ArrheniusFit:
    """values(T) = prefactor · exp(−activation_energy_eV / (k_B T)); prefactor in the values' unit."""

    activation_energy_eV: float
    prefactor: float
    activation_energy_stderr_eV: float


def fit_arrhenius(temperatures_K, values) -> ArrheniusFit:
    """Fit values = prefactor·exp(−Ea/(k_B T)) by linear least squares of ln(values) vs 1/T.

    Needs >= 2 distinct temperatures and positive, finite values (ValueError otherwise).
    Ea's standard error comes from the slope's OLS standard error (NaN with 2 points);
    this is the same fit as pymatgen's ``fit_arrhenius(mode="linear")``.
    """
    t = np.asarray(temperatures_K, dtype=float).ravel()
    v = np.asarray(values, dtype=float).ravel()
    if t.shape != v.shape:
        raise ValueError(f"temperatures_K and values differ in length: {t.size} vs {v.size}")
    if t.size < 2:
        raise ValueError(f"need at least 2 points for an Arrhenius fit, got {t.size}")
    if not (np.all(np.isfinite(t)) and np.all(t > 0)):
        raise ValueError("temperatures_K must be finite and > 0")
    n_bad = int(np.count_nonzero(~np.isfinite(v) | (v <= 0)))
    if n_bad:
        raise ValueError(f"values must be finite and > 0 (log is taken); {n_bad} are not")
    if np.unique(t).size < 2:
        raise ValueError("need at least 2 distinct temperatures")
    slope, intercept, stderr = _fit_line(1.0 / t, np.log(v))
    return ArrheniusFit(
        activation_energy_eV=-slope * BOLTZMANN_EV_K,
        prefactor=float(np.exp(intercept)),
        activation_energy_stderr_eV=stderr * BOLTZMANN_EV_K,
    )


@dataclass(frozen=True)
class WeightedArrheniusFit:
    """ln v(T) = intercept + slope / T fitted with weights, and the covariance of (slope, intercept)."""

    slope_K: float  # −Ea / k_B
    intercept: float  # ln prefactor
    covariance: tuple[tuple[float, float], tuple[float, float]]  # of (slope_K, intercept)
    chi2_per_dof: float | None  # None with 2 points
    widened: bool  # the covariance was scaled by χ²/dof: the points scatter more than their errors say

    @property
    def activation_energy_eV(self) -> float:
        return -self.slope_K * BOLTZMANN_EV_K

    @property
    def activation_energy_sd_eV(self) -> float:
        return float(np.sqrt(self.covariance[0][0])) * BOLTZMANN_EV_K

    def ln_value_at(self, temperature_K: float) -> tuple[float, float]:
        """ln v at ``temperature_K`` and its standard error, from the fit's covariance."""
        gradient = np.array([1.0 / temperature_K, 1.0])
        return (self.intercept + self.slope_K / temperature_K,
                float(np.sqrt(gradient @ np.array(self.covariance) @ gradient)))


def fit_arrhenius_weighted(temperatures_K, values, ln_errors, p_threshold: float = 0.05) -> WeightedArrheniusFit:
    """Weighted least squares of ln(values) [n] against 1/T with standard errors ``ln_errors`` [n] of ln(values).

    The covariance of (slope, intercept) is (XᵀWX)⁻¹ with W = 1/ln_errors², so intervals come from the points'
    own errors. When χ² of the fit is improbable (p below ``p_threshold``, n − 2 degrees of freedom) the
    covariance is multiplied by χ²/(n − 2) (the Birge ratio squared) and ``widened`` says so.
    """
    t, v, e = (np.asarray(a, dtype=float).ravel() for a in (temperatures_K, values, ln_errors))
    if not t.shape == v.shape == e.shape or t.size < 2 or np.unique(t).size < 2:
        raise ValueError("need >= 2 distinct temperatures with one value and one error each")
    if np.any(v <= 0) or np.any(~np.isfinite(e)) or np.any(e <= 0):
        raise ValueError("values must be > 0 and their errors finite and > 0")
    design = np.stack([1.0 / t, np.ones_like(t)], axis=1)  # [n, 2]
    weight = 1.0 / e**2
    covariance = np.linalg.inv(design.T @ (weight[:, None] * design))
    slope, intercept = covariance @ design.T @ (weight * np.log(v))
    chi2_per_dof, widened = None, False
    if t.size > 2:
        chi2 = float((weight * (np.log(v) - design @ np.array([slope, intercept])) ** 2).sum())
        chi2_per_dof = chi2 / (t.size - 2)
        if scipy.stats.chi2.sf(chi2, t.size - 2) < p_threshold:
            covariance, widened = covariance * chi2_per_dof, True
    return WeightedArrheniusFit(float(slope), float(intercept), tuple(map(tuple, covariance.tolist())),
                                chi2_per_dof, widened)


def extrapolate_arrhenius(fit: ArrheniusFit, temperature_K: float) -> float:
    """prefactor · exp(−Ea / (k_B · temperature_K))."""
    if temperature_K <= 0:
        raise ValueError("temperature_K must be > 0")
    return float(fit.prefactor * np.exp(-fit.activation_energy_eV / (BOLTZMANN_EV_K * temperature_K)))


def conductivity_at_mS_cm(
    temperatures_K,
    diffusivities_cm2_s,
    target_temperature_K: float,
    n_carriers: int,
    volume_A3: float,
    charge: int = 1,
) -> tuple[float, ArrheniusFit]:
    """σ at a target temperature (e.g. 300 K) by Arrhenius extrapolation, in mS/cm.

    The paper / pymatgen (``get_extrapolated_conductivity``) convention: fit Arrhenius to the
    diffusivities D(T) (not to σ or σT), extrapolate D to target_temperature_K, then apply
    Nernst–Einstein at target_temperature_K. Returns (σ, the fit of D(T)).
    """
    fit = fit_arrhenius(temperatures_K, diffusivities_cm2_s)
    d_target = extrapolate_arrhenius(fit, target_temperature_K)
    sigma = conductivity_mS_cm(d_target, n_carriers, volume_A3, target_temperature_K, charge)
    return sigma, fit
