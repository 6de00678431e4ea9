import numpy as np
import pytest

from analysis.errors import mae, r2_score


def test_mae_matches_definition_on_random_arrays():
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(7, 5, 3))
    ref = rng.normal(size=(7, 5, 3))
    expected = sum(abs(p - r) for p, r in zip(pred.ravel(), ref.ravel())) / pred.size
    assert mae(pred, ref) == pytest.approx(expected, rel=1e-12)
    assert mae(ref, ref) == 0.0


def test_r2_score_definition_and_limits():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=200)
    noise = rng.normal(scale=0.3, size=200)
    pred = ref + noise
    expected = 1 - np.sum(noise**2) / np.sum((ref - ref.mean()) ** 2)
    assert r2_score(pred, ref) == pytest.approx(expected, rel=1e-12)
    assert r2_score(ref, ref) == 1.0
    # predicting the mean gives exactly 0; anti-correlated predictions are negative
    assert r2_score(np.full_like(ref, ref.mean()), ref) == pytest.approx(0.0, abs=1e-12)
    assert r2_score(-ref, ref) < 0


def test_r2_score_constant_reference():
    ref = np.ones(4)
    assert r2_score(ref, ref) == 1.0
    assert r2_score(ref + 0.1, ref) == 0.0


@pytest.mark.parametrize("metric", [mae, r2_score])
def test_shape_mismatch_raises(metric):
    with pytest.raises(ValueError, match="shape"):
        metric(np.zeros((3, 2)), np.zeros(6))


@pytest.mark.parametrize("metric", [mae, r2_score])
def test_non_finite_raises_with_count(metric):
    pred = np.array([1.0, np.nan, np.inf, 2.0])
    with pytest.raises(ValueError, match="2 non-finite"):
        metric(pred, np.zeros(4))
    with pytest.raises(ValueError, match="1 non-finite"):
        metric(np.zeros(4), np.array([0.0, 0.0, -np.inf, 0.0]))
