"""Official KLUE metrics as pure functions ``(preds, labels) -> dict[str, float]``, scaled x100.

KLUE-STS (KLUE paper, KLUE-baseline ``klue_sts_pearsonr`` / ``klue_sts_f1``):
  pearson  = Pearson r x100 between predicted and gold real-valued scores;
  f1       = binary F1 x100 after thresholding both prediction and gold at ``>= 3.0``;
  spearman = Spearman rho x100 (KorSTS reports it); mse = mean squared error (not scaled).

KLUE-RE (KLUE-baseline ``klue_re_micro_f1`` / ``klue_re_auprc``, given softmax probabilities):
  micro_f1 = micro F1 x100 over every class except ``no_relation``;
  auprc    = mean over ALL classes of ``auc(recall, precision)`` on the one-vs-rest
             ``precision_recall_curve`` of that class's probability column, x100 (trapezoidal area,
             not ``average_precision_score``); accuracy = accuracy x100 (KLUE logs it, unranked).
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import auc, f1_score, precision_recall_curve

STS_THRESHOLD = 3.0


def sts_metrics(preds, labels) -> dict[str, float]:
    """Pearson, F1 at 3.0, Spearman (all x100) and MSE of similarity scores."""
    preds = np.asarray(preds, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=np.float64).ravel()
    if preds.shape != labels.shape or preds.size < 2:
        raise ValueError(f"need two equal-length arrays of at least 2 scores, got {preds.shape} and {labels.shape}")
    constant = np.ptp(preds) == 0 or np.ptp(labels) == 0  # correlation undefined: report 0, not NaN
    pearson = 0.0 if constant else float(stats.pearsonr(preds, labels)[0]) * 100
    spearman = 0.0 if constant else float(stats.spearmanr(preds, labels)[0]) * 100
    f1 = f1_score(labels >= STS_THRESHOLD, preds >= STS_THRESHOLD, average="binary", zero_division=0.0) * 100
    return {"pearson": pearson, "f1": float(f1), "spearman": spearman, "mse": float(np.mean((preds - labels) ** 2))}


# The AUPRC a class absent from gold gets. KLUE's code calls precision_recall_curve with an all-zero
# target: scikit-learn >= 1.1 warns "No positive class found in y_true", sets recall to 1 for every
# threshold and precision to 0, then appends (recall 0, precision 1), so auc() is the one triangle
# from (1, 0) to (0, 1): exactly 0.5, whatever the probabilities. With the scikit-learn KLUE-baseline
# pinned (0.23.2) recall was 0 / 0 = NaN and the whole AUPRC came out NaN. We give the 0.5 of current
# scikit-learn (what KLUE's code returns today), set directly without calling it: no warning, and the
# same value on every scikit-learn version. The official dev set holds all 30 classes, so this only
# matters on subsets; each absent class moves the mean towards 50.
ABSENT_CLASS_AUPRC = 0.5


def check_class_ids(ids, num_classes: int, name: str = "gold") -> np.ndarray:
    """``ids`` as a 1-D int64 array of class ids in ``[0, num_classes)``; ValueError naming ``name`` otherwise."""
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class ids, got shape {ids.shape}")
    if ids.dtype.kind == "f" and np.all(np.isfinite(ids)) and np.all(ids == np.round(ids)):
        ids = ids.astype(np.int64)  # e.g. Trainer label_ids stored as floats
    if ids.size and ids.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer class ids, got dtype {ids.dtype}")
    ids = ids.astype(np.int64)
    bad = (ids < 0) | (ids >= num_classes)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{first}] = {ids[first]} is not a class id in [0, {num_classes})")
    return ids


def re_auprc_per_class(probs: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Area under each class's one-vs-rest PR curve (0..1), as KLUE computes it; absent classes get 0.5."""
    num_classes = probs.shape[1]
    targets = gold[:, None] == np.arange(num_classes)  # one-hot, as np.eye(C)[gold]
    scores = np.full(num_classes, ABSENT_CLASS_AUPRC)
    for c in np.flatnonzero(targets.any(axis=0)):
        precision, recall, _ = precision_recall_curve(targets[:, c], probs[:, c])
        scores[c] = auc(recall, precision)
    return scores


def re_metrics(probs: np.ndarray, gold: np.ndarray, labels: list[str],
               no_relation: str = "no_relation") -> dict[str, float]:
    """KLUE-RE micro F1 (without ``no_relation``), AUPRC (all classes) and accuracy, all x100.

    ``probs`` is (n, C) softmax probabilities in the order of ``labels``; ``gold`` holds n class ids.
    >>> r = re_metrics(np.array([[.8, .2], [.3, .7]]), np.array([0, 1]), ["no_relation", "per:title"])
    >>> r["micro_f1"], r["auprc"], r["accuracy"]
    (100.0, 100.0, 100.0)
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(labels):
        raise ValueError(f"probs must be (n, {len(labels)}) for {len(labels)} labels, got shape {probs.shape}")
    if probs.shape[0] == 0:
        raise ValueError("need at least one example, got 0")
    if not np.all(np.isfinite(probs)):
        raise ValueError("probs contains NaN or infinite values")
    if no_relation not in labels:
        raise ValueError(f"no_relation label {no_relation!r} is not among the {len(labels)} labels")
    gold = check_class_ids(gold, len(labels))
    if gold.shape[0] != probs.shape[0]:
        raise ValueError(f"probs has {probs.shape[0]} rows but gold has {gold.shape[0]} ids")
    preds = probs.argmax(axis=1)
    relation_ids = [i for i, name in enumerate(labels) if name != no_relation]
    # zero_division=0 is the value KLUE's default ("warn") returns when nothing is predicted or gold, minus the warning
    micro_f1 = f1_score(gold, preds, average="micro", labels=relation_ids, zero_division=0.0) * 100
    return {"micro_f1": float(micro_f1),
            "auprc": float(re_auprc_per_class(probs, gold).mean() * 100),
            "accuracy": float(np.mean(preds == gold) * 100)}
