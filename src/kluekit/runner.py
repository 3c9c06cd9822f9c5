"""Plain functions behind the CLI verbs (tests call them directly): train, evaluate, predict."""

from __future__ import annotations

import logging
from pathlib import Path

from .config import EvaluateConfig, PredictConfig, TrainConfig
from .data.io import check_output_path
from .errors import KluekitError
from .predictor import Predictor
from .report import write_report

log = logging.getLogger("kluekit")


def train(task, cfg: TrainConfig) -> dict:
    """Fine-tune a model for ``task`` (K models with ``--folds K``); see ``kluekit train --help``."""
    if cfg.folds:
        from .kfold import train_folds

        return train_folds(task, cfg)
    from .training import train_run

    return train_run(task, cfg)


def check_output(cfg) -> None:
    """``--output`` (of ``predict``, ``ensemble``) must be writable and must not overwrite ``--input``;
    checked before anything is predicted."""
    if Path(cfg.output).resolve() == Path(cfg.input).resolve():
        raise KluekitError("--output must not be the --input file")
    check_output_path(cfg.output)


def check_sample_submission(cfg, task, examples=None) -> None:
    """``--sample-submission`` (of ``predict``, ``ensemble``): only for a task that can fill one, and (with
    ``examples``) a file whose ids the input has; checked before anything is predicted."""
    if not cfg.sample_submission:
        return
    if not task.fills_sample_submission:
        raise KluekitError(f"--sample-submission is not supported for {task.name}: "
                           "its submission is written in the input's order")
    if examples is not None:
        from .data.submission import check_sample_submission as check_file

        check_file(cfg.sample_submission, examples["id"].to_numpy(), examples.attrs.get("has_ids", True))


def predict(cfg: PredictConfig, task_name: str | None = None, task_options: dict | None = None) -> Path:
    """Write the submission for ``cfg.input`` (ids and order of the input or of the sample submission);
    ``task_options``: the task's ``inference_options`` set anew for this run."""
    check_output(cfg)
    predictor = Predictor(cfg.model, task_name, "predict", cfg.precision, cfg.runtime, cfg.batch_size,
                          task_options=task_options, adapt_prior=cfg.adapt_prior)
    task = predictor.task
    check_sample_submission(cfg, task)
    examples = predictor.read(cfg.input, cfg.format, require_labels=False)
    check_sample_submission(cfg, task, examples)
    preds = predictor.predict(examples)
    task.write_predictions(preds, examples, cfg.output, cfg.sample_submission)
    log.info("wrote %s (%s)", cfg.output, "the rows of the sample submission" if cfg.sample_submission
             else f"{len(examples)} rows")
    return Path(cfg.output)


def evaluate(cfg: EvaluateConfig, task_name: str | None = None, task_options: dict | None = None) -> dict:
    """Official metrics on a labelled file, plus the task's report files; returns the metrics."""
    predictor = Predictor(cfg.model, task_name, "evaluate", cfg.precision, cfg.runtime, cfg.batch_size,
                          task_options=task_options, adapt_prior=cfg.adapt_prior)
    task = predictor.task
    examples = predictor.read(cfg.input, cfg.format, require_labels=True)
    preds = predictor.predict(examples)
    metrics = task.metrics(preds, task.gold(examples))
    out_dir = Path(cfg.output_dir or Path(cfg.model) / f"eval-{Path(cfg.input).stem}")
    summary = write_report(task, preds, examples, out_dir, cfg.worst,
                           {"input": str(cfg.input), "rows": len(examples),
                            "predict_seconds": round(predictor.seconds, 3), **(task_options or {}), **metrics,
                            **shares_record(predictor.estimated_shares)})
    return {"metrics": metrics, "report": summary, "output_dir": str(out_dir)}


def shares_record(shares: dict | None) -> dict:
    """What a report's metrics.json says of ``--adapt-prior`` (nothing without it)."""
    return {} if shares is None else {"adapt_prior": True, "estimated_label_shares": shares}
