"""KLUE-STS metrics: hand-computed values, agreement with scipy/sklearn, and the edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from kluekit.metrics import STS_THRESHOLD, sts_metrics

# A 5-pair example computed by hand.
#   preds p = [1, 3, 2, 4, 10]      mean 4, deviations [-3, -1, -2, 0, 6], sum of squares 50
#   gold  g = [2, 1, 4, 3, 5]       mean 3, deviations [-1, -2, 1, 0, 2],  sum of squares 10
#   sum of products = 3 + 2 - 2 + 0 + 12 = 15
#   Pearson r = 15 / sqrt(50 * 10) = 15 / (10 * sqrt 5) = 0.3 * sqrt 5 = 0.670820...  -> x100 = 67.082...
#   Spearman: ranks(p) = [1, 3, 2, 4, 5], ranks(g) = [2, 1, 4, 3, 5], d = [-1, 2, -2, 1, 0], sum d^2 = 10
#             rho = 1 - 6 * 10 / (5 * (25 - 1)) = 1 - 60/120 = 0.5  -> x100 = 50
#   F1 at 3.0 (>= 3.0 is positive, for both):
#             p >= 3 -> [F, T, F, T, T]  (p = 3.0 exactly counts positive)
#             g >= 3 -> [F, F, T, T, T]  (g = 3.0 exactly counts positive)
#             TP = 2 (items 4, 5), FP = 1 (item 2), FN = 1 (item 3)
#             F1 = 2TP / (2TP + FP + FN) = 4 / 6 = 0.6667 -> x100 = 66.667
#             (with a strict > 3.0 it would be TP 1, FP 1, FN 1 -> 50: the test can tell them apart)
#   MSE: p - g = [-1, 2, -2, 1, 5], squares 1 + 4 + 4 + 1 + 25 = 35, / 5 = 7.0 (not scaled)
HAND_PREDS = [1.0, 3.0, 2.0, 4.0, 10.0]
HAND_GOLD = [2.0, 1.0, 4.0, 3.0, 5.0]


def test_hand_computed_example():
    result = sts_metrics(HAND_PREDS, HAND_GOLD)
    assert set(result) == {"pearson", "f1", "spearman", "mse"}
    assert all(type(value) is float for value in result.values())
    assert result["pearson"] == pytest.approx(30 * math.sqrt(5), abs=1e-9)
    assert result["pearson"] == pytest.approx(67.0820393, abs=1e-6)
    assert result["spearman"] == pytest.approx(50.0, abs=1e-9)
    assert result["f1"] == pytest.approx(200 / 3, abs=1e-9)
    assert result["mse"] == pytest.approx(7.0, abs=1e-12)


def test_threshold_is_inclusive_at_3():
    assert STS_THRESHOLD == 3.0
    # gold positives: items 1, 2 (3.0 exactly); predictions positive: item 1 and 3 (3.0 exactly)
    # TP 1, FP 1, FN 1 -> F1 = 2 / 4 = 50
    assert sts_metrics([4.0, 2.999, 3.0, 0.0], [3.5, 3.0, 1.0, 0.5])["f1"] == pytest.approx(50.0)
    # all exactly 3.0 on both sides: every pair is a true positive
    assert sts_metrics([3.0, 3.0, 3.0], [3.0, 3.0, 3.0])["f1"] == pytest.approx(100.0)


def test_values_are_scaled_by_100():
    perfect = sts_metrics([0.0, 1.0, 4.0, 5.0], [0.0, 1.0, 4.0, 5.0])
    assert perfect["pearson"] == pytest.approx(100.0)
    assert perfect["spearman"] == pytest.approx(100.0)
    assert perfect["f1"] == pytest.approx(100.0)
    assert perfect["mse"] == 0.0
    reversed_ = sts_metrics([5.0, 4.0, 1.0, 0.0], [0.0, 1.0, 4.0, 5.0])
    assert reversed_["pearson"] == pytest.approx(-100.0)
    assert reversed_["spearman"] == pytest.approx(-100.0)
    assert reversed_["f1"] == 0.0
    assert reversed_["mse"] == pytest.approx((25 + 9 + 9 + 25) / 4)


@pytest.mark.parametrize("size", [2, 7, 519])
def test_agrees_with_scipy_and_sklearn_on_random_scores(size):
    rng = np.random.default_rng(0)
    gold = rng.uniform(0.0, 5.0, size)
    preds = np.clip(gold + rng.normal(0.0, 1.2, size), 0.0, 5.0)
    result = sts_metrics(preds, gold)
    assert result["pearson"] == pytest.approx(stats.pearsonr(preds, gold)[0] * 100, abs=1e-9)
    assert result["spearman"] == pytest.approx(stats.spearmanr(preds, gold)[0] * 100, abs=1e-9)
    assert result["f1"] == pytest.approx(f1_score(gold >= 3.0, preds >= 3.0) * 100, abs=1e-9)
    assert result["mse"] == pytest.approx(float(np.mean((preds - gold) ** 2)), abs=1e-12)
    if size > 2:
        assert -100.0 < result["pearson"] < 100.0 and 0.0 < result["f1"] <= 100.0


def test_lists_columns_and_float32_give_the_same_result():
    expected = sts_metrics(HAND_PREDS, HAND_GOLD)
    as_column = sts_metrics(np.array(HAND_PREDS).reshape(-1, 1), np.array(HAND_GOLD))
    as_float32 = sts_metrics(np.array(HAND_PREDS, dtype=np.float32), tuple(int(g) for g in HAND_GOLD))
    for other in (as_column, as_float32):
        assert other == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("preds, gold", [
    ([2.5, 2.5, 2.5, 2.5], [0.0, 1.0, 4.0, 5.0]),  # constant predictions
    ([0.0, 1.0, 4.0, 5.0], [3.0, 3.0, 3.0, 3.0]),  # constant gold
])
def test_constant_scores_give_zero_correlation_not_nan(preds, gold):
    result = sts_metrics(preds, gold)
    assert result["pearson"] == 0.0 and result["spearman"] == 0.0
    assert not any(math.isnan(value) for value in result.values())
    assert result["mse"] == pytest.approx(float(np.mean((np.array(preds) - np.array(gold)) ** 2)))


def test_no_positives_anywhere_gives_f1_zero():
    assert sts_metrics([0.0, 1.0, 2.0], [2.9, 1.0, 0.0])["f1"] == 0.0


@pytest.mark.parametrize("preds, gold", [
    ([1.0, 2.0, 3.0], [1.0, 2.0]),
    ([[1.0, 2.0], [3.0, 4.0]], [1.0, 2.0, 3.0]),
    ([1.0], [1.0]),
    ([], []),
])
def test_shape_mismatch_or_fewer_than_two_values_raise(preds, gold):
    with pytest.raises(ValueError, match="at least 2 scores"):
        sts_metrics(preds, gold)
