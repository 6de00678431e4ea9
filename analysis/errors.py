"""Error metrics between predictions and reference values.

Point-wise: energy / force / stress parity checks of force fields against the reference (e.g. AIMD)
data; both arrays are flattened, so any shape is accepted as long as the two shapes agree exactly.
In decades: a model's conductivity against the reference's, log10 σ_model − log10 σ_reference with
its interval (``log10_error``). Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["mae", "r2_score", "LogError", "log10_error"]


def _validated_pair(predicted, reference) -> tuple[np.ndarray, np.ndarray]:
    """Return both inputs as flat float arrays after checking shape and finiteness."""
    predicted_arr = np.asarray(predicted, dtype=float)
    reference_arr = np.asarray(reference, dtype=float)
    if predicted_arr.shape != reference_arr.shape:
        raise ValueError(
            f"shape mismatch: predicted {predicted_arr.shape} vs reference {reference_arr.shape}"
        )
    if predicted_arr.size == 0:
        raise ValueError("cannot compute an error metric of empty arrays")
    for name, arr in (("predicted", predicted_arr), ("reference", reference_arr)):
        n_bad = int(np.count_nonzero(~np.isfinite(arr)))
        if n_bad:
            raise ValueError(f"{name} contains {n_bad} non-finite value(s) out of {arr.size}")
    return predicted_arr.ravel(), reference_arr.ravel()


def mae(predicted, reference) -> float:
    """Mean absolute error, mean(|predicted - reference|), over all elements.

    Raises ValueError if the shapes differ, the arrays are empty, or either
    contains NaN/inf (the message says how many non-finite values).
    """
    p, r = _validated_pair(predicted, reference)
    return float(np.mean(np.abs(p - r)))


def r2_score(predicted, reference) -> float:
    """Coefficient of determination R² = 1 - SS_res / SS_tot over all elements.

    SS_res = sum((reference - predicted)²), SS_tot = sum((reference - mean(reference))²),
    the same definition as ``sklearn.metrics.r2_score`` on flattened arrays.
    If the reference is constant (SS_tot == 0) R² is undefined; like sklearn's
    default (``force_finite=True``) the result is then 1.0 for a perfect
    prediction and 0.0 otherwise. Raises ValueError like :func:`mae`.
    """
    p, r = _validated_pair(predicted, reference)
    ss_res = float(np.sum((r - p) ** 2))
    ss_tot = float(np.sum((r - r.mean()) ** 2))
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot


Z_95 = 1.959963984540054  # the normal quantile of a 95 % interval


@dataclass(frozen=True)
class LogError:
    """log10 σ_model − log10 σ_reference with its 95 % interval; significant when the interval excludes 0."""

    delta_log10: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def log10_error(model: tuple[float, float, float], reference: tuple[float, float, float]) -> LogError:
    """The error of a positive quantity in decades: each side is (value, low, high) with a 95 % interval, whose
    log10 half-width over 1.96 is taken as that side's standard error; the two are independent, so the
    errors add in quadrature."""
    sides = []
    for value, low, high in (model, reference):
        if not (value > 0 and low > 0 and np.isfinite(high) and high >= low):
            raise ValueError(f"need a positive value with a finite positive interval, got {value}, [{low}, {high}]")
        sides.append((np.log10(value), (np.log10(high) - np.log10(low)) / (2 * Z_95)))
    (m, m_sd), (r, r_sd) = sides
    delta, sd = float(m - r), float(np.hypot(m_sd, r_sd))
    return LogError(delta, delta - Z_95 * sd, delta + Z_95 * sd)
