"""Label shift: class probabilities re-weighted for a set whose label shares differ from the training file's.

A classifier's probabilities carry the training file's label shares (its prior). When a test set has other
shares (KLUE-RE's labelled test: 60% ``no_relation``, its training file 30%) and the classes look the same
otherwise, the EM procedure of Saerens, Latinne and Decaestecker (2002, "Adjusting the outputs of a classifier
to new a priori probabilities") estimates the new shares from the unlabelled predictions alone and re-weights
every probability by new share / training share. Its fixed point is the maximum-likelihood estimate of the
shares under that model (tests check it against scipy's optimiser). It uses no labels of the set it adapts to.

EM over every label's share needs probabilities that estimate p(label | text) under the training shares.
Cross-entropy's minimiser is that posterior; a loss with another minimiser is inverted first (``Task.posteriors``): focal loss by the map of
Charoenphakdee et al. (2021, "On Focal Loss for Class-Posterior Probability Estimation"), class-weighted
cross-entropy by dividing out the weights, label smoothing by undoing its mixing with the uniform distribution.

Even so a fine-tuned model's posteriors are not calibrated, and EM over 30 labels followed them astray on KLUE-RE
(docs/benchmarks.md, "Label shift"). So ``--adapt-prior`` estimates one share, that of the training file's most
frequent label (KLUE-RE's ``no_relation``), from its probability calibrated on the run's dev set (Platt scaling,
fitted when training ends: ``fit_calibration``), by the same EM in two classes (``adapt_share``); the other labels
keep their training shares relative to each other.
"""

from __future__ import annotations

import logging

import numpy as np

from .errors import KluekitError

log = logging.getLogger("kluekit")
PRIOR_KEY = "train_label_shares"  # the run record's (kluekit.json) training label shares, in label order
CALIBRATION_KEY = "share_calibration"  # the run record's Platt scaling of its most frequent label (fit_calibration)
EPS = 1e-9


def prior_record(task) -> dict:
    """What the run record keeps of the task's training label shares (nothing where it has none)."""
    return {} if task.train_prior is None else {PRIOR_KEY: [round(float(v), 8) for v in task.train_prior]}


def class_shares(gold: np.ndarray, classes: int) -> np.ndarray:
    """The share of each class id in ``gold`` (length ``classes``)."""
    counts = np.bincount(np.asarray(gold, dtype=np.int64), minlength=classes).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def focal_posteriors(probs: np.ndarray, gamma: float) -> np.ndarray:
    """The class posteriors p for which ``probs`` q minimise the expected focal loss -(1 - q)^gamma log q:
    p_i proportional to q_i / ((1 - q_i)^gamma - gamma q_i (1 - q_i)^(gamma - 1) log q_i) (Charoenphakdee et al.
    2021), row-normalised. The map keeps each row's order of classes; gamma 0 (cross-entropy) is the identity."""
    q = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1 - 1e-9)
    h = q / ((1 - q) ** gamma - gamma * q * (1 - q) ** (gamma - 1) * np.log(q))
    return h / h.sum(axis=-1, keepdims=True)


def unweighted_posteriors(probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The class posteriors p for which ``probs`` q minimise cross-entropy with class weights w (q_i
    proportional to w_i p_i): p_i proportional to q_i / w_i, row-normalised."""
    p = np.asarray(probs, dtype=np.float64) / np.asarray(weights, dtype=np.float64)
    return p / p.sum(axis=-1, keepdims=True)


def unsmoothed_posteriors(probs: np.ndarray, smoothing: float) -> np.ndarray:
    """The class posteriors p for which ``probs`` q minimise cross-entropy against labels smoothed by ``smoothing``
    (q = (1 - smoothing) p + smoothing / C): p = (q - smoothing / C) / (1 - smoothing), clipped at 0 and
    row-normalised."""
    q = np.asarray(probs, dtype=np.float64)
    p = np.clip((q - smoothing / q.shape[-1]) / (1 - smoothing), 0.0, None)
    return p / np.maximum(p.sum(axis=-1, keepdims=True), 1e-300)


def reweight(posteriors: np.ndarray, prior: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """``posteriors`` under the class shares ``prior`` moved to ``shares`` (Bayes' rule: each class times
    share / prior, rows normalised); a class with no training share keeps its weight (1)."""
    seen = prior > 0
    adjusted = posteriors * np.where(seen, shares / np.where(seen, prior, 1.0), 1.0)
    return adjusted / np.maximum(adjusted.sum(axis=1, keepdims=True), 1e-300)


def adapt_prior(probs: np.ndarray, prior, max_iter: int = 1000, tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray, int]:
    """(the re-weighted probabilities, the estimated shares (their mean), the EM steps taken) for (n, C) class
    posteriors ``probs`` (``Task.posteriors`` of the outputs) from a model trained with class shares ``prior``.
    Each step re-weights ``probs`` by the last estimate / ``prior`` and takes the mean as the next estimate, until it moves less than ``tol``. A
    class with no training share keeps its weight (1) and is given share 0."""
    probs = np.asarray(probs, dtype=np.float64)
    prior = np.asarray(prior, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != prior.shape[0] or len(probs) == 0:
        raise KluekitError(f"--adapt-prior: {probs.shape} probabilities for {prior.shape[0]} training shares")
    seen = prior > 0
    estimate, moved = prior.copy(), np.inf
    for step in range(1, max_iter + 1):
        adjusted = reweight(probs, prior, estimate)
        estimate, last = np.where(seen, adjusted.mean(axis=0), 0.0), estimate
        moved = np.abs(estimate - last).max()
        if moved < tol:
            return adjusted, estimate, step
    log.warning("--adapt-prior: the label shares still moved by %.2g after %d EM steps; kept the last", moved,
                max_iter)
    return adjusted, estimate, max_iter


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def fit_calibration(posteriors: np.ndarray, gold: np.ndarray, label: int) -> dict | None:
    """Platt scaling (scikit-learn's logistic regression on the logit, nearly unregularised) of label ``label``'s
    posterior against the gold labels of a labelled set: {label, slope, intercept, share (the mean calibrated
    probability, the set's share of the label), rows}. None where the set has only that label or none of it."""
    from sklearn.linear_model import LogisticRegression

    hit = np.asarray(gold) == label
    if hit.all() or not hit.any():
        return None
    z = _logit(np.asarray(posteriors, dtype=np.float64)[:, label])[:, None]
    model = LogisticRegression(C=1e6, max_iter=1000).fit(z, hit)
    return {"label": int(label), "slope": float(model.coef_[0, 0]), "intercept": float(model.intercept_[0]),
            "share": float(model.predict_proba(z)[:, 1].mean()), "rows": int(len(hit))}


def calibrated(posteriors: np.ndarray, calibration: dict) -> np.ndarray:
    """The calibrated probability of ``calibration``'s label for each row of ``posteriors``."""
    z = _logit(np.asarray(posteriors, dtype=np.float64)[:, calibration["label"]])
    return 1.0 / (1.0 + np.exp(-(calibration["slope"] * z + calibration["intercept"])))


def adapt_share(posteriors: np.ndarray, prior, label: int, chance: np.ndarray, base: float, max_iter: int = 1000,
                tol: float = 1e-8) -> tuple[np.ndarray, np.ndarray, int]:
    """(the re-weighted posteriors, the estimated shares, the EM steps taken): EM in two classes on ``chance``,
    the calibrated probability of ``label`` (calibrated on a set where it had share ``base``), estimates the
    label's share s; ``posteriors`` (under the training shares ``prior``) are re-weighted by s / prior for the
    label and (1 - s) / (1 - prior) for every other, which keep their shares relative to each other."""
    posteriors, prior = np.asarray(posteriors, dtype=np.float64), np.asarray(prior, dtype=np.float64)
    if posteriors.ndim != 2 or posteriors.shape[1] != prior.shape[0] or len(posteriors) != len(chance):
        raise KluekitError(f"--adapt-prior: {posteriors.shape} probabilities for {prior.shape[0]} training shares")
    share, moved = base, np.inf
    for step in range(1, max_iter + 1):
        mine = chance * share / base
        new = float(np.mean(mine / (mine + (1 - chance) * (1 - share) / (1 - base))))
        share, moved = new, abs(new - share)
        if moved < tol:
            break
    else:
        log.warning("--adapt-prior: the label share still moved by %.2g after %d EM steps; kept the last", moved,
                    max_iter)
    shares = prior * (1 - share) / max(1 - prior[label], EPS)
    shares[label] = share
    return reweight(posteriors, prior, shares), shares, step


def adapt_mean(posteriors: list, priors: list, calibrations: list, weights) -> tuple[np.ndarray, np.ndarray, int]:
    """``adapt_share`` for an ensemble: the runs' posteriors, calibrated probabilities, training shares and
    calibration shares, each averaged with ``weights`` (as their predictions are), adapted once."""
    labels = {calibration["label"] for calibration in calibrations}
    if len(labels) > 1:
        raise KluekitError("--adapt-prior: the runs calibrated different labels (trained on other label mixes)")
    weights = np.asarray(weights, dtype=np.float64) / np.sum(weights)

    def mean(values):
        return sum(w * np.asarray(v, dtype=np.float64) for w, v in zip(weights, values))

    chance = mean([calibrated(p, c) for p, c in zip(posteriors, calibrations)])
    return adapt_share(mean(posteriors), mean(priors), labels.pop(), chance,
                       float(mean([c["share"] for c in calibrations])))
