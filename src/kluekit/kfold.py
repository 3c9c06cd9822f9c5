"""K-fold training: K runs, each trained on K-1 folds and scored on the one it did not see, and the
out-of-fold (OOF) score over the whole training file.

    kluekit train classify --preset ynat --train train.tsv --folds 5 --output-dir runs/ynat-5fold
    # -> runs/ynat-5fold/fold-0 ... fold-4 (normal run directories), runs/ynat-5fold/oof/ (metrics.json,
    #    predictions.csv and the task's report over all training examples)
    kluekit ensemble --model runs/ynat-5fold/fold-* --input test.tsv --output submission.csv

With ``--dev-split R`` a share R of the training file is set apart before folding (as ``--dev-split`` does for one
run: stratified, the same for the same ``--seed``); the fold models' mean is scored on it, beside each fold
model alone, in ``<output-dir>/held-out/`` (metrics.json, predictions and report): what the ensemble gains.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

from .config import TrainConfig
from .errors import KluekitError
from .report import write_report
from .rundir import RunDir
from .training import check_split_seed, read_files, split_off, train_run
from .tasks import Task

log = logging.getLogger("kluekit")


def fold_indices(task: Task, examples, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, held-out) row indices of each fold: whole groups where the task gives groups, else stratified where
    it gives class ids."""
    if folds < 2:
        raise KluekitError(f"--folds: {folds} must be at least 2")
    if folds > len(examples):
        raise KluekitError(f"--folds: {folds} folds need at least {folds} training examples, the file has {len(examples)}")
    groups = task.groups(examples)
    if groups is not None:  # whole groups (e.g. MRC articles) to one fold
        codes = np.unique(groups, return_inverse=True)[1]
        if folds > codes.max() + 1:
            raise KluekitError(f"--folds: {folds} folds need at least {folds} groups (articles), the file has "
                               f"{codes.max() + 1}")
        # GroupKFold balances fold sizes deterministically; groups relabelled by the seed break its ties
        order = np.random.default_rng(seed).permutation(codes.max() + 1)
        return list(GroupKFold(folds).split(np.zeros(len(examples)), groups=order[codes]))
    strata = task.strata(examples)
    if strata is None:
        return list(KFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(examples))))
    counts = np.bincount(strata)
    rare = [task.labels[i] for i in np.flatnonzero((counts > 0) & (counts < folds))]
    if rare:
        log.warning("label(s) with fewer examples than folds, missing from some held-out folds: %s", ", ".join(rare))
    return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(examples)), strata))


def train_folds(task: Task, cfg: TrainConfig) -> dict:
    """Train ``cfg.folds`` runs into ``<output_dir>/fold-<k>`` and write the out-of-fold metrics and predictions."""
    if cfg.dev:
        raise KluekitError("--folds scores each run on its held-out fold: drop --dev (score the fold runs on a dev "
                           "file with 'kluekit ensemble --evaluate' or 'kluekit evaluate')")
    if cfg.resume:
        raise KluekitError("--resume is not supported with --folds")
    check_split_seed(cfg)
    root = RunDir.create(cfg.output_dir or f"runs/{task.name}-{cfg.folds}fold-{time.strftime('%Y%m%d-%H%M%S')}",
                         task.name, False, cfg.overwrite).path
    examples = read_files(task, cfg.train, cfg.format)
    task.fit(examples)  # the label set of the whole file, so every fold's model has the same classes
    held_out = None
    if cfg.dev_split:  # set apart before folding: no fold model sees it; the ensemble is scored on it
        examples, held_out = split_off(task, examples, cfg, False)
    splits = fold_indices(task, examples, cfg.folds, cfg.seed)
    parts, results = [], []
    for k, (train_rows, held_rows) in enumerate(splits):
        log.info("fold %d/%d: %d training, %d held-out examples", k + 1, cfg.folds, len(train_rows), len(held_rows))
        fold_cfg = dataclasses.replace(cfg, output_dir=str(root / f"fold-{k}"), folds=0, overwrite=True, dev_split=0.0)
        held = examples.iloc[held_rows].reset_index(drop=True)
        held.attrs = dict(examples.attrs)
        train_part = examples.iloc[train_rows].reset_index(drop=True)
        train_part.attrs = dict(examples.attrs)
        result = train_run(task, fold_cfg, examples=(train_part, held), extra={"fold": k, "folds": cfg.folds})
        parts.append(result["best_outputs"])  # the saved model's predictions for its held-out fold
        results.append({"fold": k, "run_dir": result["run_dir"], "steps": result["steps"],
                        "train_seconds": result["train_seconds"], **result["best"]})
    oof = np.empty((len(examples),) + parts[0].shape[1:], dtype=parts[0].dtype)
    for preds, (_, held_rows) in zip(parts, splits):
        oof[held_rows] = preds
    metrics = task.metrics(oof, task.gold(examples))
    record = {"folds": results, "oof": metrics, "train": cfg.train[0] if len(cfg.train) == 1 else cfg.train, "rows": len(examples)}
    summary = write_report(task, oof, examples, root / "oof", 30, record)
    log.info("out-of-fold: %s", " ".join(f"{k}={v:.2f}" for k, v in metrics.items()))
    result = {"oof": metrics, "folds": results, "report": summary, "run_dir": str(root)}
    if held_out is not None:
        result["held_out"] = score_held_out(task, [r["run_dir"] for r in results], held_out, root / "held-out", cfg)
    return result


def score_held_out(task: Task, runs: list[str], held_out, out_dir, cfg: TrainConfig) -> dict:
    """``--folds`` with ``--dev-split``: each fold model's and their mean's (soft voting, as ``kluekit ensemble``)
    metrics on the held-out part; the report of the ensemble in ``out_dir``."""
    from .predictor import Predictor, soft_vote

    gold = task.gold(held_out)
    predictors = [Predictor(run, task.name, "ensemble", cfg.precision, batch_size=cfg.eval_batch_size) for run in runs]
    preds, members = soft_vote(predictors, [held_out] * len(runs), np.ones(len(runs)), gold)
    metrics = task.metrics(preds, gold)
    record = {"rows": len(held_out), "dev_split": cfg.dev_split, "ensemble": metrics, "members": members,
              "members_mean": {key: float(np.mean([m[key] for m in members])) for key in metrics}}
    write_report(task, preds, held_out, out_dir, 30, record)
    log.info("held-out %g: ensemble of %d folds %s (single folds on average: %s)", cfg.dev_split, len(runs),
             " ".join(f"{k}={v:.2f}" for k, v in metrics.items()),
             " ".join(f"{k}={v:.2f}" for k, v in record["members_mean"].items()))
    return record
