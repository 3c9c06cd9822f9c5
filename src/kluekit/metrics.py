"""Official KLUE metrics as pure functions ``(preds, labels) -> dict[str, float]``, scaled x100.

KLUE-STS (KLUE paper, KLUE-baseline ``klue_sts_pearsonr`` / ``klue_sts_f1``):
  pearson  = Pearson r x100 between predicted and gold real-valued scores;
  f1       = binary F1 x100 after thresholding both prediction and gold at ``>= 3.0``;
  spearman = Spearman rho x100 (KorSTS reports it); mse = mean squared error (not scaled).
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import f1_score

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
