"""Plots written as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..data.io import atomic_path  # noqa: E402


def scatter_plot(preds, gold, groups, path, title: str, low: float = 0.0, high: float = 5.0) -> None:
    """Prediction (y) against gold (x), one colour per group, with the diagonal and the 3.0 thresholds."""
    preds, gold, groups = np.asarray(preds), np.asarray(gold), np.asarray(groups, dtype=str)
    fig, ax = plt.subplots(figsize=(7, 7), dpi=110)
    names = sorted(set(groups))
    for name in names:
        mask = groups == name
        ax.scatter(gold[mask], preds[mask], s=10, alpha=0.6, label=f"{name or 'all'} ({mask.sum()})")
    ax.plot([low, high], [low, high], color="black", linewidth=1, linestyle="--")
    ax.axhline(3.0, color="grey", linewidth=0.7, linestyle=":")
    ax.axvline(3.0, color="grey", linewidth=0.7, linestyle=":")
    ax.set(xlim=(low - 0.1, high + 0.1), ylim=(low - 0.1, high + 0.1), xlabel="gold score",
           ylabel="predicted score", title=title)
    if len(names) > 1:
        ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
