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

MRC (KorQuAD 1.0 exact match / character F1, KLUE-MRC exact match / ROUGE-W): ``mrc_metrics.py``,
re-exported here as ``mrc_metrics``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import auc, f1_score, precision_recall_curve

from .mrc_metrics import mrc_metrics  # noqa: F401 (re-exported: the one metrics module)

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


def check_probs(probs, gold, labels) -> tuple[np.ndarray, np.ndarray]:
    """(n, C) finite float64 scores for the C ``labels`` and n gold class ids, n >= 1; ValueError otherwise."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(labels):
        raise ValueError(f"probs must be (n, {len(labels)}) for {len(labels)} labels, got shape {probs.shape}")
    if probs.shape[0] == 0:
        raise ValueError("need at least one example, got 0")
    if not np.all(np.isfinite(probs)):
        raise ValueError("probs contains NaN or infinite values")
    gold = check_class_ids(gold, len(labels))
    if gold.shape[0] != probs.shape[0]:
        raise ValueError(f"probs has {probs.shape[0]} rows but gold has {gold.shape[0]} ids")
    return probs, gold


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
    if no_relation not in labels:
        raise ValueError(f"no_relation label {no_relation!r} is not among the {len(labels)} labels")
    probs, gold = check_probs(probs, gold, labels)
    preds = probs.argmax(axis=1)
    relation_ids = [i for i, name in enumerate(labels) if name != no_relation]
    # zero_division=0 is the value KLUE's default ("warn") returns when nothing is predicted or gold, minus the warning
    micro_f1 = f1_score(gold, preds, average="micro", labels=relation_ids, zero_division=0.0) * 100
    return {"micro_f1": float(micro_f1),
            "auprc": float(re_auprc_per_class(probs, gold).mean() * 100),
            "accuracy": float(np.mean(preds == gold) * 100)}


# KLUE-YNAT / NLI (KLUE-baseline ``ynat_macro_f1`` / ``klue_nli_acc``, given (n, C) probabilities):
#   macro_f1 = ``f1_score(gold, argmax, average="macro")`` x100 with no ``labels=``, as KLUE calls it: the
#              mean over the classes that occur in gold or in the predictions (a class absent from both
#              does not count; one absent from gold but predicted counts with F1 0);
#   accuracy = accuracy x100.
#
# KLUE-NER (KLUE-baseline ``klue_ner_entity_macro_f1`` / ``klue_ner_char_macro_f1``), on character tag ids,
# with ALL sentences' tags concatenated into ONE sequence, as KLUE does (so an I-X opening a sentence
# continues an X entity closing the sentence before it):
#   entity_f1 = seqeval ``f1_score([gold], [pred], average="macro", mode="strict", scheme=IOB2)`` x100:
#               an entity is B-X followed by zero or more I-X; an I-X that does not continue a B-X/I-X of
#               its type belongs to no entity. An entity counts as found when start, end and type all
#               match. Per type F1 = 2PR / (P + R), 0 when it has no gold or no predicted entity; the mean
#               runs over the types with an entity in gold or predictions. With no entity at all seqeval
#               returns NaN (mean of nothing); we return 0.0.
#   char_f1   = per-character macro F1 x100 over every label except O, F1 = 1 for a label neither gold
#               nor predicted (``f1_score(labels=..., average="macro", zero_division=1)``): the KLUE paper's
#               definition ("excluding O"), which DESIGN.md adopts;
#   char_f1_with_o = the same over every label, O included: what KLUE-baseline's code computes (it
#               passes ``labels=range(C)`` despite its docstring "except O tag").


def classification_metrics(probs: np.ndarray, gold: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Accuracy and macro F1 (classes present in gold or predictions), x100, as KLUE scores YNAT / NLI.

    ``probs`` is (n, C) scores in the order of ``labels`` (the argmax is the prediction); ``gold`` holds n ids.
    >>> classification_metrics(np.array([[.9, .1], [.2, .8], [.6, .4]]), np.array([0, 1, 1]), ["a", "b"])
    {'accuracy': 66.66666666666666, 'macro_f1': 66.66666666666666}
    """
    probs, gold = check_probs(probs, gold, labels)
    preds = probs.argmax(axis=1)
    return {"accuracy": float(np.mean(preds == gold) * 100),
            "macro_f1": float(f1_score(gold, preds, average="macro") * 100)}


def _sentences(tag_ids) -> tuple[list[np.ndarray], bool]:
    """Tag ids as a list of per-sentence arrays, and whether they came as one flat sequence."""
    if isinstance(tag_ids, np.ndarray) and tag_ids.dtype != object:
        return ([tag_ids.ravel()], True) if tag_ids.ndim <= 1 else (list(tag_ids), False)
    items = list(tag_ids)
    if all(np.ndim(item) == 0 for item in items):
        return [np.asarray(items)], True
    return [np.asarray(item).ravel() for item in items], False


def _tag_arrays(pred_tag_ids, gold_tag_ids, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and gold tag ids as two flat int arrays, checking that each sentence has as many of both."""
    (pred, pred_flat), (gold, gold_flat) = _sentences(pred_tag_ids), _sentences(gold_tag_ids)
    if pred_flat != gold_flat:  # one flat, the other per sentence: compare the whole sequences
        pred, gold = [np.concatenate(pred)], [np.concatenate(gold)]
    elif len(pred) != len(gold):
        raise ValueError(f"got {len(pred)} predicted sentences but {len(gold)} gold ones")
    lengths = np.array([[len(p), len(g)] for p, g in zip(pred, gold)])
    differ = np.flatnonzero(lengths[:, 0] != lengths[:, 1])
    if differ.size:
        i = int(differ[0])
        where = "" if len(pred) == 1 and (pred_flat or gold_flat) else f"sentence {i}: "
        raise ValueError(f"{where}{lengths[i, 0]} predicted tags but {lengths[i, 1]} gold tags")
    pred, gold = np.concatenate(pred), np.concatenate(gold)
    if gold.size == 0:
        raise ValueError("need at least one tag, got 0")
    return check_class_ids(pred, num_labels, "pred"), check_class_ids(gold, num_labels)


def _tag_kinds(labels: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per label: 1 for B-, 2 for I-, 0 for O; its entity type index; the type names."""
    bad = [name for name in labels if name != "O" and not (name[:2] in ("B-", "I-") and len(name) > 2)]
    if bad:
        raise ValueError(f"label {bad[0]!r} is not O, B-<type> or I-<type>")
    types = sorted({name[2:] for name in labels if name != "O"})
    kind = np.array([0 if name == "O" else 1 if name[0] == "B" else 2 for name in labels])
    kind_type = np.array([types.index(name[2:]) if name != "O" else -1 for name in labels])
    return kind, kind_type, types


def iob2_entities(tag_ids: np.ndarray, labels: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Strict IOB2 entities of a flat tag-id sequence as arrays ``(starts, ends, type ids)``, end exclusive.

    Type ids index ``sorted`` entity types of ``labels``. A B-X opens an entity that runs over the I-X
    after it; an I-X that does not follow B-X/I-X opens nothing (seqeval's strict IOB2).
    """
    kind, kind_type, _ = _tag_kinds(list(labels))
    tag_ids = np.asarray(tag_ids, dtype=np.int64)
    kinds, types = kind[tag_ids], kind_type[tag_ids]
    # a position continues the one before it when it is I-X after B-X or I-X of the same type
    link = np.zeros(tag_ids.size, dtype=bool)
    link[1:] = (kinds[1:] == 2) & (kinds[:-1] > 0) & (types[1:] == types[:-1])
    chains = np.flatnonzero(~link)
    ends = np.append(chains[1:], tag_ids.size)
    keep = kinds[chains] == 1
    return chains[keep], ends[keep], types[chains[keep]]


def ner_entity_f1(pred_tag_ids, gold_tag_ids, labels: list[str]) -> float:
    """KLUE-NER entity-level macro F1 x100 (strict IOB2, sentences concatenated; see the module notes)."""
    pred, gold = _tag_arrays(pred_tag_ids, gold_tag_ids, len(labels))
    num_types = len(_tag_kinds(list(labels))[2])
    gold_starts, gold_ends, gold_types = iob2_entities(gold, labels)
    pred_starts, pred_ends, pred_types = iob2_entities(pred, labels)
    # entities of one sequence never overlap, so a start position holds at most one gold entity
    end_at = np.full(gold.size, -1)
    type_at = np.full(gold.size, -1)
    end_at[gold_starts], type_at[gold_starts] = gold_ends, gold_types
    found = (end_at[pred_starts] == pred_ends) & (type_at[pred_starts] == pred_types)
    true_positive = np.bincount(pred_types[found], minlength=num_types)
    gold_count = np.bincount(gold_types, minlength=num_types)
    pred_count = np.bincount(pred_types, minlength=num_types)
    present = (gold_count + pred_count) > 0
    if not present.any():
        return 0.0
    f1 = 2 * true_positive[present] / (gold_count[present] + pred_count[present])
    return float(f1.mean() * 100)


def ner_char_f1(pred_tag_ids, gold_tag_ids, labels: list[str], include_o: bool = False) -> float:
    """Character-level macro F1 x100 over every label but O (over all with ``include_o``); see the notes."""
    pred, gold = _tag_arrays(pred_tag_ids, gold_tag_ids, len(labels))
    counts = dict(minlength=len(labels))
    true_positive = np.bincount(gold[pred == gold], **counts)
    total = np.bincount(gold, **counts) + np.bincount(pred, **counts)
    f1 = np.where(total > 0, 2 * true_positive / np.maximum(total, 1), 1.0)  # zero_division=1
    scored = [i for i, name in enumerate(labels) if include_o or name != "O"]
    if not scored:
        raise ValueError("no label other than O to score")
    return float(f1[scored].mean() * 100)


def ner_metrics(pred_tag_ids, gold_tag_ids, labels: list[str]) -> dict[str, float]:
    """KLUE-NER entity macro F1, character macro F1 without O, and with O (KLUE-baseline's code), x100.

    Tag ids index ``labels``; give one array per sentence (ragged lists) or flat arrays.
    >>> labels = ["B-PS", "I-PS", "O"]
    >>> ner_metrics([[0, 1, 2]], [[0, 1, 2]], labels)
    {'entity_f1': 100.0, 'char_f1': 100.0, 'char_f1_with_o': 100.0}
    """
    if "O" not in labels:
        raise ValueError("labels must include 'O'")
    return {"entity_f1": ner_entity_f1(pred_tag_ids, gold_tag_ids, labels),
            "char_f1": ner_char_f1(pred_tag_ids, gold_tag_ids, labels),
            "char_f1_with_o": ner_char_f1(pred_tag_ids, gold_tag_ids, labels, include_o=True)}
