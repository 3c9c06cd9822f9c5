"""The files of an MRC evaluation: the submission JSON, a per-question-type table, the answer-length
histogram and the worst answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .data.io import write_csv_atomic, write_text_atomic
from .mrc_metrics import mrc_scores

SCORES = ("exact_match", "f1", "klue_exact_match", "rouge_w")


def mrc_report(spans: pd.DataFrame, examples: pd.DataFrame, out_dir: Path, worst: int) -> list[str]:
    """Write ``predictions.json`` ({id: answer}), ``per_type.csv`` (where the data has question types),
    ``answer_lengths.png`` and ``worst.txt``; return the per-type table's lines."""
    ids = examples["id"].astype(str).tolist()
    write_text_atomic(out_dir / "predictions.json",
                      json.dumps(dict(zip(ids, spans["answer"])), ensure_ascii=False, indent=1) + "\n")
    scores = pd.DataFrame(mrc_scores(spans["answer"].tolist(), examples["answers"].tolist()))
    lines = []
    if examples.attrs.get("has_types", (examples["question_type"] != "").any()):
        lines = type_table(scores, examples["question_type"].to_numpy(), out_dir / "per_type.csv")
    length_histogram(examples["answers"], spans["answer"], out_dir / "answer_lengths.png")
    worst_answers(scores, spans, examples, worst, out_dir / "worst.txt")
    return lines


def type_table(scores: pd.DataFrame, types, path) -> list[str]:
    """Mean scores x100 per question type, plus an ``all`` row; written as CSV, returned as text lines."""
    rows = []
    for name in sorted(set(types) - {""}) + ["all"]:
        mask = np.ones(len(types), bool) if name == "all" else types == name
        rows.append({"question_type": name, "n": int(mask.sum()), **(scores[mask].mean() * 100).to_dict()})
    table = pd.DataFrame(rows)
    write_csv_atomic(table, path, float_format="%.4f")
    return ["per question type:"] + table.to_string(index=False, float_format=lambda v: f"{v:.2f}").splitlines()


def length_histogram(gold_answers, predicted, path) -> None:
    """Characters per answer: the first gold answer against the prediction."""
    from .report.plots import korean_labels, save_png

    @korean_labels
    def draw():
        import matplotlib.pyplot as plt

        gold = np.array([len(a[0]) if len(a) else 0 for a in gold_answers])
        pred = np.array([len(a) for a in predicted])
        high = int(max(gold.max(initial=1), pred.max(initial=1)))
        bins = np.arange(0, min(high, 80) + 2) - 0.5
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
        ax.hist(np.minimum(gold, bins[-1] - 0.5), bins=bins, alpha=0.6, label=f"gold (mean {gold.mean():.1f})")
        ax.hist(np.minimum(pred, bins[-1] - 0.5), bins=bins, alpha=0.6, label=f"predicted (mean {pred.mean():.1f})")
        ax.set(xlabel="answer length (characters; the last bin holds longer ones, 0: no answer)",
               ylabel="questions", title=f"Answer lengths ({len(gold)} questions)")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        save_png(fig, path)

    draw()


def worst_answers(scores: pd.DataFrame, spans: pd.DataFrame, examples: pd.DataFrame, count: int, path) -> None:
    """The ``count`` questions with the lowest character F1 (then exact match), with question, gold and
    predicted answer."""
    order = np.lexsort((scores["exact_match"].to_numpy(), scores["f1"].to_numpy()))[:count]
    lines = [f"{len(order)} worst of {len(scores)} (by KorQuAD character F1)", ""]
    for rank, i in enumerate(order, 1):
        row = examples.iloc[i]
        f1, rouge = scores["f1"].iloc[i] * 100, scores["rouge_w"].iloc[i] * 100
        lines += [f"#{rank} id={row['id']} f1={f1:.1f} rouge_w={rouge:.1f}"
                  + (f" type={row['question_type']}" if row["question_type"] else ""),
                  f"  question:  {row['question']}",
                  f"  gold:      {' | '.join(row['answers']) if len(row['answers']) else '(no answer)'}",
                  f"  predicted: {spans['answer'].iloc[i] or '(no answer)'}", ""]
    write_text_atomic(path, "\n".join(lines))
