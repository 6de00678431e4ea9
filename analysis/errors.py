"""Point-wise error metrics between predictions and reference values.

Used for energy / force / stress parity checks of force fields against the
reference (e.g. AIMD) data. Pure numpy; both arrays are flattened, so any
shape is accepted as long as the two shapes agree exactly.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mae", "r2_score"]


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
