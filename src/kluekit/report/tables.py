"""Tables written as CSV (and returned as printable lines)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.io import atomic_path, write_text_atomic


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
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
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
