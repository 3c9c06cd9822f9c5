"""``kluekit ensemble``: soft voting over several runs of one task on the same input.

Each run predicts the input (probabilities for classification, RE and NER characters; scores for STS),
the predictions are averaged with optional weights, and the result is written as that task's normal
submission::

    kluekit ensemble --model runs/ynat-a runs/ynat-b runs/ynat-c --input test.tsv --output submission.csv
    kluekit ensemble --model runs/sts-5fold/fold-* --weights 1 1 1 1 2 --input dev.json --output out.csv --evaluate
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .commands import Command
from .config import PredictConfig, opt
from .errors import KluekitError

log = logging.getLogger("kluekit")


@dataclass
class EnsembleConfig(PredictConfig):
    """Options of ``kluekit ensemble``: those of ``predict``, with several runs and their weights."""

    model: list[str] = opt([], "run directories written by 'kluekit train' for the same task and labels", required=True)
    weights: list[str] = opt([], "one weight per run, in --model order (default: equal weights)")
    evaluate: bool = opt(False, "the input carries labels: print each run's metrics and the ensemble's, and write "
                                "the report next to --output")


def parse_weights(values: list[str], runs: int) -> np.ndarray:
    if not values:
        return np.ones(runs)
    if len(values) != runs:
        raise KluekitError(f"--weights: {len(values)} weight(s) for {runs} run(s)")
    try:
        weights = np.array([float(v) for v in values])
    except ValueError:
        raise KluekitError(f"--weights: {' '.join(values)!r} are not all numbers") from None
    if (weights < 0).any() or not np.isfinite(weights).all() or weights.sum() <= 0:
        raise KluekitError("--weights must be finite, >= 0, and not all 0")
    return weights


def open_runs(cfg: EnsembleConfig) -> list:
    """A predictor per run, checked to be the same task with the same labels."""
    from .predictor import Predictor

    runs = [Predictor(path, None, "ensemble", cfg.precision, cfg.runtime, cfg.batch_size) for path in cfg.model]
    first, paths = runs[0].task, cfg.model
    for path, run in zip(paths, runs):
        if run.task.name != first.name:
            raise KluekitError(f"--model: {path} is a {run.task.name} run, {paths[0]} a {first.name} run")
        if run.task.labels != first.labels:
            raise KluekitError(f"--model: {path} was trained with other labels (or another label order) than {paths[0]}")
    return runs


def ensemble(cfg: EnsembleConfig) -> dict:
    """Average the runs' predictions for ``cfg.input`` and write the submission; returns metrics if evaluated."""
    from .predictor import adapted_vote, check_prior, soft_vote
    from .report import write_report
    from .runner import check_output, check_sample_submission, shares_record

    if len(cfg.model) < 2:
        raise KluekitError("--model: give two or more run directories to ensemble")
    check_output(cfg)
    weights = parse_weights(cfg.weights, len(cfg.model))
    runs = open_runs(cfg)
    task = runs[0].task
    if cfg.adapt_prior:  # once, on the mean (adapted_vote)
        for path, run in zip(cfg.model, runs):
            check_prior(run.task, path)
    check_sample_submission(cfg, task)
    readings = []
    for path, run in zip(cfg.model, runs):  # every input check before any model runs
        rows = run.read(cfg.input, cfg.format, require_labels=cfg.evaluate)  # each run's own reading options
        if readings and (len(rows) != len(readings[0]) or (rows["id"].to_numpy() != readings[0]["id"].to_numpy()).any()):
            raise KluekitError(f"--model: {path} reads {cfg.input} into other rows than {cfg.model[0]} "
                               "(different column options?)")
        readings.append(rows)
    examples = readings[0]
    check_sample_submission(cfg, task, examples)
    gold = task.gold(examples) if cfg.evaluate else None
    shares = None
    if cfg.adapt_prior:
        preds, shares, scores = adapted_vote(runs, readings, weights, gold)
    else:
        preds, scores = soft_vote(runs, readings, weights, gold)
    members = dict(zip(cfg.model, scores))
    for path, metrics in members.items():
        log.info("%s: %s", path, " ".join(f"{k}={v:.2f}" for k, v in metrics.items()))
    task.write_predictions(preds, examples, cfg.output, cfg.sample_submission)
    log.info("wrote %s (%d rows, %d runs)", cfg.output, len(examples), len(cfg.model))
    if gold is None:
        return {"output": cfg.output}
    metrics = task.metrics(preds, gold)
    out_dir = Path(cfg.output).with_suffix("").with_name(Path(cfg.output).stem + "-report")
    write_report(task, preds, examples, out_dir, 30, {"input": str(cfg.input), "runs": cfg.model,
                                                      "weights": weights.tolist(), "members": members, **metrics,
                                                      **shares_record(shares)})
    for path, scores in members.items():
        print(f"{path}: " + " ".join(f"{k}={v:.2f}" for k, v in scores.items()))
    print("ensemble: " + " ".join(f"{k}={v:.2f}" for k, v in metrics.items()) + f"  (report: {out_dir})")
    return {"output": cfg.output, "metrics": metrics, "members": members}


ENSEMBLE = Command(EnsembleConfig, "average several runs' predictions (soft voting) into one submission",
                   "kluekit.ensemble:ensemble")
