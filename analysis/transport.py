"""Ion transport from MD trajectories: unwrapping, MSD, diffusivity, conductivity, Arrhenius.

Pure numpy. Chain used by the project (as in the paper, which used pymatgen's
``DiffusionAnalyzer``): Li MSD -> tracer diffusivity D (Einstein relation) -> ionic
conductivity σ (Nernst–Einstein) -> Arrhenius fit of D(T) -> extrapolation to 300 K.

Units are in every name: positions in Å, times in fs, D in cm²/s, σ in mS/cm, energies in eV.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.fft

from analysis.rdf import validated_cell, validated_positions
from records.units import A2_PER_FS_TO_CM2_PER_S, A3_TO_CM3, BOLTZMANN_EV_K, BOLTZMANN_J_K, ELEMENTARY_CHARGE_C, S_TO_MS

__all__ = [
    "WRAPPED_TOLERANCE",
    "unwrap",
    "mean_square_displacement",
    "diffusivity_cm2_s",
    "diffusivity_like_diffusion_analyzer_cm2_s",
    "conductivity_mS_cm",
    "ArrheniusFit",
    "fit_arrhenius",
    "extrapolate_arrhenius",
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
    |r(t+m) − r(t)|², computed with the FFT algorithm (O(F log F)), msd(0) = 0.

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
        return _msd_fft(x @ cell)
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
    return _msd_fft(x)


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


def diffusivity_cm2_s(
    msd_A2,
    time_fs,
    fit_start_fs: float,
    fit_end_fs: float | None = None,
    dimensions: int = 3,
) -> tuple[float, float]:
    """Tracer diffusivity from the Einstein relation, MSD = 2·d·D·t.

    Ordinary least-squares line through (time_fs, msd_A2) for fit_start_fs <= t <= fit_end_fs
    (default: to the end); D = slope / (2·dimensions), converted Å²/fs -> cm²/s.
    Returns (D, standard error of D) in cm²/s; the standard error is that of the OLS slope
    (it ignores the correlation between MSD points at different lags, so it is optimistic),
    NaN with only 2 points. D is not clipped: a negative slope gives a negative D.
    Needs >= 2 points in the window.
    """
    msd = np.asarray(msd_A2, dtype=float)
    t = np.asarray(time_fs, dtype=float)
    if msd.ndim != 1 or t.shape != msd.shape:
        raise ValueError(f"msd_A2 and time_fs must be 1-D of equal length, got {msd.shape}, {t.shape}")
    if dimensions not in (1, 2, 3):
        raise ValueError("dimensions must be 1, 2 or 3")
    if np.any(np.diff(t) <= 0):
        raise ValueError("time_fs must be strictly increasing")
    end = np.inf if fit_end_fs is None else fit_end_fs
    window = (t >= fit_start_fs) & (t <= end)
    if np.count_nonzero(window) < 2:
        raise ValueError(
            f"only {np.count_nonzero(window)} point(s) in the fit window [{fit_start_fs}, {end}] fs"
        )
    n_bad = int(np.count_nonzero(~np.isfinite(msd[window])))
    if n_bad:
        raise ValueError(f"msd_A2 has {n_bad} non-finite value(s) in the fit window")
    slope, _, stderr = _fit_line(t[window], msd[window])
    factor = A2_PER_FS_TO_CM2_PER_S / (2 * dimensions)
    return slope * factor, stderr * factor


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

    n_carriers mobile ions of charge ``charge``·e in a cell of volume_A3, tracer diffusivity in
    cm²/s (Haven ratio taken as 1, as in the paper and pymatgen's ``conductivity``).
    """
    if volume_A3 <= 0 or temperature_K <= 0 or n_carriers < 0:
        raise ValueError("volume_A3 and temperature_K must be > 0 and n_carriers >= 0")
    q_C = charge * ELEMENTARY_CHARGE_C
    volume_cm3 = volume_A3 * A3_TO_CM3
    sigma_S_cm = n_carriers * q_C**2 * diffusivity_cm2_s / (volume_cm3 * BOLTZMANN_J_K * temperature_K)
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
