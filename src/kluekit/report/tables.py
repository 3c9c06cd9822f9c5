"""Tables written as CSV (and returned as printable lines)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support

from ..data.io import write_csv_atomic, write_text_atomic
from ..metrics import check_class_ids


def group_metrics_table(preds, gold, groups, metric_fn, path) -> list[str]:
    """Metrics per group (e.g. per source) plus an 'all' row; writes CSV, returns aligned text lines."""
    preds, gold, groups = np.asarray(preds), np.asarray(gold), pd.Series(np.asarray(groups, dtype=str))
    rows = []
    names = [n for n in sorted(groups.unique()) if n] if (groups != "").any() else []
    for name in names + ["all"]:
        mask = np.ones(len(groups), bool) if name == "all" else (groups == name).to_numpy()
        if mask.sum() >= 2:
            rows.append({"group": name, "n": int(mask.sum()), **metric_fn(preds[mask], gold[mask])})
    table = pd.DataFrame(rows)
    write_csv_atomic(table, path, float_format="%.4f")
    return table.to_string(index=False, float_format=lambda v: f"{v:.2f}").splitlines()


def worst_examples(frame: pd.DataFrame, text_columns, count: int, path) -> None:
    """The ``count`` examples with the largest ``error``, with their texts, as a readable text file."""
    worst = frame.sort_values("error", ascending=False).head(count)
    lines = [f"{len(worst)} worst of {len(frame)} (by |prediction - gold|)", ""]
    for rank, (_, row) in enumerate(worst.iterrows(), 1):
        lines.append(f"#{rank} id={row['id']} gold={row['label']:.2f} pred={row['pred']:.2f} "
                     f"error={row['error']:.2f}" + (f" source={row['source']}" if row.get("source") else ""))
        lines += [f"  {c}: {row[c]}" for c in text_columns] + [""]
    write_text_atomic(path, "\n".join(lines))


def per_class_table(gold_ids, pred_ids, labels, path) -> list[str]:
    """Precision, recall, F1 (x100) and support per class in label order, plus micro and macro rows.

    The micro and macro rows average over ALL classes (no_relation included, so micro F1 here is
    accuracy, not KLUE's micro F1); undefined precision/recall (no prediction/no gold) count as 0.
    Writes CSV, returns aligned text lines.
    """
    labels = [str(name) for name in labels]
    gold = check_class_ids(gold_ids, len(labels), "gold_ids")
    pred = check_class_ids(pred_ids, len(labels), "pred_ids")
    if gold.shape != pred.shape or gold.size == 0:
        raise ValueError(f"need equally many gold and predicted ids (at least 1), got {gold.size} and {pred.size}")
    ids = np.arange(len(labels))
    columns = ["precision", "recall", "f1"]
    per_class = precision_recall_fscore_support(gold, pred, labels=ids, zero_division=0)
    table = pd.DataFrame({"label": labels, **{c: per_class[i] * 100 for i, c in enumerate(columns)},
                          "support": per_class[3].astype(int)})
    for average in ("micro", "macro"):
        scores = precision_recall_fscore_support(gold, pred, labels=ids, average=average, zero_division=0)
        table.loc[len(table)] = [f"{average} avg", *(float(v) * 100 for v in scores[:3]), int(gold.size)]
    write_csv_atomic(table, path, float_format="%.4f")
    return table.to_string(index=False, float_format=lambda v: f"{v:.2f}").splitlines()
