"""KLUE-RE metrics: hand-computed values, agreement with KLUE-baseline's own code, no_relation, edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sklearn.metrics

from kluekit.metrics import ABSENT_CLASS_AUPRC, re_auprc_per_class, re_metrics

KLUE_RE_LABELS = [
    "no_relation", "org:top_members/employees", "org:members", "org:product", "per:title",
    "org:alternate_names", "per:employee_of", "org:place_of_headquarters", "per:product",
    "org:number_of_employees/members", "per:children", "per:place_of_residence", "per:alternate_names",
    "per:other_family", "per:colleagues", "per:origin", "per:siblings", "per:spouse", "org:founded",
    "org:political/religious_affiliation", "org:member_of", "per:parents", "org:dissolved",
    "per:schools_attended", "per:date_of_death", "per:date_of_birth", "per:place_of_birth",
    "per:place_of_death", "org:founded_by", "per:religion",
]


def klue_reference(probs, labels, label_list):
    """KLUE-baseline's klue_re_micro_f1 / klue_re_auprc (metrics/functional.py), with 30 generalised to C."""
    no_relation_label_idx = label_list.index("no_relation")
    label_indices = list(range(len(label_list)))
    label_indices.remove(no_relation_label_idx)
    preds = probs.argmax(-1)
    micro_f1 = sklearn.metrics.f1_score(labels, preds, average="micro", labels=label_indices) * 100.0

    num_classes = len(label_list)
    onehot = np.eye(num_classes)[labels]
    score = np.zeros((num_classes,))
    for c in range(num_classes):
        targets_c = onehot.take([c], axis=1).ravel()
        preds_c = probs.take([c], axis=1).ravel()
        precision, recall, _ = sklearn.metrics.precision_recall_curve(targets_c, preds_c)
        score[c] = sklearn.metrics.auc(recall, precision)
    return micro_f1, np.average(score) * 100.0, sklearn.metrics.accuracy_score(labels, preds) * 100.0


def softmax(logits):
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


# A 3-class example computed by hand. Labels: 0 = no_relation, 1 = org:a, 2 = per:b.
#   row  probs            gold  argmax
#    0   [.6, .3, .1]      0     0
#    1   [.2, .7, .1]      1     1
#    2   [.5, .4, .1]      1     0     a relation missed (predicted no_relation): FN for class 1
#    3   [.1, .2, .7]      0     2     a relation invented: FP for class 2
#    4   [.3, .1, .6]      2     2
# micro F1 over classes {1, 2} only: TP = rows 1, 4 -> 2; FP = row 3 -> 1; FN = row 2 -> 1
#   F1 = 2TP / (2TP + FP + FN) = 4 / 6 -> 66.667. Row 0 (no_relation right) is no TP; counting
#   no_relation as a class would give accuracy, 3/5 = 60.
# accuracy: rows 0, 1, 4 right -> 60.
# AUPRC: per class, thresholds at each distinct score from high to low; precision = TP / predicted,
#   recall = TP / positives; sklearn adds the point (recall 0, precision 1); area by trapezoids.
#   class 0, scores .6+ .5 .3 .2 .1+ (+ = gold positive, 2 positives):
#     points (R, P): (.5, 1) (.5, 1/2) (.5, 1/3) (.5, 1/4) (1, 2/5), plus (0, 1)
#     area = (0 -> .5 at P 1) .5  +  (.5 -> 1, from P 1/4 to 2/5) .5 * (.25 + .4) / 2 = .1625  -> .6625
#   class 1, scores .7+ .4+ .3 .2 .1 (2 positives): (.5, 1) (1, 1) plus (0, 1) -> area 1
#   class 2, scores .7 .6+ .1 .1 .1 (1 positive): (0, 0) (1, 1/2) [(1, 1/5)] plus (0, 1)
#     area = (0 -> 1, from P 0 to 1/2) .25; (0, 0) -> (0, 1) has no width               -> .25
#     (average_precision_score would give 1 * 1/2 = .5 here: KLUE's trapezoids differ from AP)
#   AUPRC = (.6625 + 1 + .25) / 3 = .6375 -> 63.75
HAND_LABELS = ["no_relation", "org:a", "per:b"]
HAND_PROBS = np.array([[.6, .3, .1], [.2, .7, .1], [.5, .4, .1], [.1, .2, .7], [.3, .1, .6]])
HAND_GOLD = np.array([0, 1, 1, 0, 2])


def test_hand_computed_example():
    result = re_metrics(HAND_PROBS, HAND_GOLD, HAND_LABELS)
    assert set(result) == {"micro_f1", "auprc", "accuracy"}
    assert all(type(value) is float for value in result.values())
    assert result["micro_f1"] == pytest.approx(200 / 3, abs=1e-9)
    assert result["auprc"] == pytest.approx(63.75, abs=1e-9)
    assert result["accuracy"] == pytest.approx(60.0, abs=1e-9)
    np.testing.assert_allclose(re_auprc_per_class(HAND_PROBS, HAND_GOLD), [0.6625, 1.0, 0.25], atol=1e-12)


def test_auprc_is_klue_trapezoid_area_not_average_precision():
    targets = HAND_GOLD == 2
    assert sklearn.metrics.average_precision_score(targets, HAND_PROBS[:, 2]) == pytest.approx(0.5)
    assert re_auprc_per_class(HAND_PROBS, HAND_GOLD)[2] == pytest.approx(0.25)


def test_no_relation_is_excluded_from_micro_f1():
    labels = ["no_relation", "org:a", "per:b"]
    # 9 no_relation rows all right, one org:a row predicted no_relation: accuracy 90, but no relation
    # is found, so micro F1 = 0 (right no_relation predictions are not true positives)
    probs = np.tile([0.8, 0.1, 0.1], (10, 1))
    gold = np.array([0] * 9 + [1])
    result = re_metrics(probs, gold, labels)
    assert result["accuracy"] == pytest.approx(90.0)
    assert result["micro_f1"] == 0.0
    # relations predicted on no_relation rows are false positives: 1 TP, 2 FP, 0 FN -> 2 / 4 = 50
    probs = np.array([[.1, .8, .1], [.1, .1, .8], [.1, .8, .1], [.9, .05, .05]])
    result = re_metrics(probs, np.array([0, 0, 1, 0]), labels)
    assert result["micro_f1"] == pytest.approx(50.0)
    assert result["accuracy"] == pytest.approx(50.0)


def test_no_relation_found_by_name_wherever_it_sits():
    order = [2, 0, 1]  # no_relation moves to index 1
    labels = [HAND_LABELS[i] for i in order]
    gold = np.array([order.index(g) for g in HAND_GOLD])
    result = re_metrics(HAND_PROBS[:, order], gold, labels)
    assert result == pytest.approx(re_metrics(HAND_PROBS, HAND_GOLD, HAND_LABELS), abs=1e-9)
    renamed = re_metrics(HAND_PROBS, HAND_GOLD, ["NA", "org:a", "per:b"], no_relation="NA")
    assert renamed["micro_f1"] == pytest.approx(200 / 3)


@pytest.mark.parametrize("size, decimals", [(1000, None), (300, 2), (5000, 1)])
def test_matches_klue_baseline_code_on_random_data(size, decimals):
    rng = np.random.default_rng(0)
    gold = np.concatenate([np.arange(30), rng.choice(30, size - 30, p=np.r_[0.3, np.full(29, 0.7 / 29)])])
    logits = rng.normal(0.0, 1.0, (size, 30)) + 2.5 * np.eye(30)[gold] * (rng.random(size) < 0.6)[:, None]
    probs = softmax(logits)
    if decimals is not None:
        probs = np.round(probs, decimals)  # many tied scores: the PR curve's thresholds merge them
    micro_f1, auprc, accuracy = klue_reference(probs, gold, KLUE_RE_LABELS)
    result = re_metrics(probs, gold, KLUE_RE_LABELS)
    assert result["micro_f1"] == pytest.approx(micro_f1, abs=1e-9)
    assert result["auprc"] == pytest.approx(auprc, abs=1e-9)
    assert result["accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert 0.0 < result["micro_f1"] < 100.0 and 0.0 < result["auprc"] < 100.0


def test_class_absent_from_gold_gets_half_as_current_klue_code_does_without_warning():
    rng = np.random.default_rng(0)
    gold = rng.choice([0, 1, 3, 7], 200)  # 26 of 30 classes absent
    probs = softmax(rng.normal(0.0, 1.0, (200, 30)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        micro_f1, auprc, _ = klue_reference(probs, gold, KLUE_RE_LABELS)
    # KLUE's code on scikit-learn >= 1.1: one "No positive class found" warning and 0.5 per absent class
    # (with its pinned 0.23.2 it gave NaN instead)
    assert sum("No positive class" in str(w.message) for w in caught) == 26
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # re_metrics itself must not warn
        result = re_metrics(probs, gold, KLUE_RE_LABELS)
        per_class = re_auprc_per_class(probs, gold)
    assert result["auprc"] == pytest.approx(auprc, abs=1e-9)
    assert result["micro_f1"] == pytest.approx(micro_f1, abs=1e-9)
    absent = np.setdiff1d(np.arange(30), [0, 1, 3, 7])
    assert ABSENT_CLASS_AUPRC == 0.5
    np.testing.assert_array_equal(per_class[absent], 0.5)
    assert not np.isnan(result["auprc"])
    # whatever the probabilities of an absent class, it scores 0.5
    probs[:, absent] = rng.random((200, absent.size))
    np.testing.assert_array_equal(re_auprc_per_class(probs, gold)[absent], 0.5)


def test_perfect_and_nothing_to_find():
    probs = np.eye(3)[[0, 1, 2, 2, 1]] * 0.9 + 0.05
    perfect = re_metrics(probs, np.array([0, 1, 2, 2, 1]), HAND_LABELS)
    assert perfect == pytest.approx({"micro_f1": 100.0, "auprc": 100.0, "accuracy": 100.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # only no_relation in gold and predictions: no relation to find or predict -> micro F1 0, no warning
        empty = re_metrics(np.tile([0.9, 0.05, 0.05], (4, 1)), np.zeros(4, int), HAND_LABELS)
    assert empty["micro_f1"] == 0.0 and empty["accuracy"] == 100.0
    # classes 1 and 2 absent: (1 + 0.5 + 0.5) / 3
    assert empty["auprc"] == pytest.approx(200 / 3)


def test_lists_and_float_ids_give_the_same_result():
    expected = re_metrics(HAND_PROBS, HAND_GOLD, HAND_LABELS)
    assert re_metrics(HAND_PROBS.tolist(), HAND_GOLD.tolist(), HAND_LABELS) == expected
    assert re_metrics(HAND_PROBS.astype(np.float32), HAND_GOLD.astype(np.float64), HAND_LABELS) == \
        pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("probs, gold, message", [
    (HAND_PROBS[:, 0], HAND_GOLD, r"probs must be \(n, 3\)"),
    (HAND_PROBS[:, :2], HAND_GOLD, r"probs must be \(n, 3\) for 3 labels, got shape \(5, 2\)"),
    (np.zeros((0, 3)), np.zeros(0, int), "at least one example"),
    (np.where(HAND_PROBS > .6, np.nan, HAND_PROBS), HAND_GOLD, "NaN"),
    (HAND_PROBS, HAND_GOLD[:4], "5 rows but gold has 4"),
    (HAND_PROBS, np.array([0, 1, 3, 0, 2]), r"gold\[2\] = 3 is not a class id in \[0, 3\)"),
    (HAND_PROBS, np.array([0, 1, -1, 0, 2]), r"gold\[2\] = -1"),
    (HAND_PROBS, np.array([0, 1, 1.5, 0, 2]), "integer class ids"),
    (HAND_PROBS, HAND_GOLD.reshape(5, 1), "1-D"),
])
def test_bad_shapes_and_ids_raise(probs, gold, message):
    with pytest.raises(ValueError, match=message):
        re_metrics(probs, gold, HAND_LABELS)


def test_missing_no_relation_label_raises():
    with pytest.raises(ValueError, match="'no_relation' is not among"):
        re_metrics(HAND_PROBS, HAND_GOLD, ["a", "b", "c"])
