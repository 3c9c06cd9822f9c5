"""Topic / NLI classification metrics: hand-computed values, agreement with KLUE-baseline's calls, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.metrics

from kluekit.metrics import classification_metrics

# A hand-computed example. Labels a, b, c, d (d never occurs, neither gold nor predicted).
#   row  argmax  gold
#    0     a      a
#    1     b      a     a missed (FN a), b invented (FP b)
#    2     b      b
#    3     b      b
#    4     a      c     c missed (FN c), a invented (FP a)
# F1 = 2TP / (2TP + FP + FN):  a: TP 1, FP 1, FN 1 -> 2/4 = 0.5
#                              b: TP 2, FP 1, FN 0 -> 4/5 = 0.8
#                              c: TP 0, FN 1       -> 0
#                              d: absent from gold and predictions: not averaged (KLUE calls f1_score
#                                 without labels=); averaging it as 0 would give 1.3 / 4 = 32.5
# macro F1 = (0.5 + 0.8 + 0) / 3 = 43.333; accuracy = 3 / 5 = 60
PROBS = np.array([[.7, .1, .1, .1], [.2, .5, .2, .1], [.1, .6, .2, .1], [.3, .4, .2, .1], [.4, .3, .2, .1]])
GOLD = np.array([0, 0, 1, 1, 2])
LABELS = ["a", "b", "c", "d"]


def test_hand_computed_example():
    scores = classification_metrics(PROBS, GOLD, LABELS)
    assert scores["accuracy"] == pytest.approx(60.0)
    assert scores["macro_f1"] == pytest.approx(130 / 3)


def klue_reference(probs, gold):
    """KLUE-baseline's ynat_macro_f1 / klue_nli_acc on the argmax."""
    preds = probs.argmax(-1)
    return (sklearn.metrics.accuracy_score(gold, preds) * 100.0,
            sklearn.metrics.f1_score(gold, preds, average="macro") * 100.0)


def test_random_inputs_match_klue_baseline():
    rng = np.random.default_rng(0)
    for trial in range(100):
        num_classes = int(rng.integers(2, 10))
        n = int(rng.integers(1, 80))
        probs = rng.dirichlet(np.ones(num_classes), size=n)
        gold = rng.integers(0, max(2, num_classes - 2), size=n)  # some classes never gold
        scores = classification_metrics(probs, gold, [str(c) for c in range(num_classes)])
        accuracy, macro_f1 = klue_reference(probs, gold)
        assert scores["accuracy"] == pytest.approx(accuracy)
        assert scores["macro_f1"] == pytest.approx(macro_f1)


def test_float_ids_and_logits_are_accepted():
    logits = np.log(PROBS) * 3.0  # any scores: only the argmax matters
    assert classification_metrics(logits, GOLD.astype(float), LABELS) == classification_metrics(PROBS, GOLD, LABELS)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"probs must be \(n, 3\)"):
        classification_metrics(PROBS, GOLD, LABELS[:3])
    with pytest.raises(ValueError, match="at least one example"):
        classification_metrics(np.zeros((0, 4)), [], LABELS)
    with pytest.raises(ValueError, match="NaN"):
        classification_metrics(np.where(PROBS > .6, np.nan, PROBS), GOLD, LABELS)
    with pytest.raises(ValueError, match="5 rows but gold has 4"):
        classification_metrics(PROBS, GOLD[:4], LABELS)
    with pytest.raises(ValueError, match=r"gold\[1\] = 4 is not a class id"):
        classification_metrics(PROBS, [0, 4, 1, 1, 2], LABELS)
