"""Plain functions behind the CLI verbs (tests call them directly): train, evaluate, predict."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from .config import EvaluateConfig, PredictConfig, TrainConfig
from .data.io import write_csv_atomic
from .errors import KluekitError
from .inference import default_batch_size, load_predictor, predict_logits
from .modeling import read_run_info, run_task
from .onnxrun import check_runtime
from .rundir import write_json
from .tasks import Task
from .training import train as _train

log = logging.getLogger("kluekit")


def train(task: Task, cfg: TrainConfig) -> dict:
    """Fine-tune a model for ``task`` (K models with ``--folds K``); see ``kluekit train --help``."""
    if cfg.folds:
        from .kfold import train_folds

        return train_folds(task, cfg)
    return _train(task, cfg)


def _open_run(cfg) -> tuple[Task, dict]:
    """The run's task and record (``kluekit.json``), read once per command."""
    check_runtime(cfg.runtime, cfg.precision)
    info = read_run_info(cfg.model)
    return run_task(info), info


def predict_examples(task: Task, run_dir, info: dict, examples, batch_size: int, precision: str = "auto",
                     progress: bool = True, runtime: str = "torch"):
    """The run's predictions for examples read by ``task`` (``task.outputs``), and the seconds they took;
    ``info`` is the run's record (``kluekit.json``); ``runtime``: torch, or ONNX Runtime on the CPU
    (``onnx``, ``onnx-int8``); ``batch_size`` 0: ``default_batch_size``."""
    tokenizer, model, device, precision = load_predictor(task, run_dir, precision, runtime)
    batch_size = batch_size or default_batch_size(device)
    features = task.encode(examples, tokenizer, info["train_config"]["max_length"])
    started = time.perf_counter()
    logits = predict_logits(model, tokenizer, features, batch_size, device, precision, progress=progress)
    seconds = time.perf_counter() - started
    log.info("predicted %d examples in %.1fs (%.0f/s) on %s, %s", len(examples), seconds,
             len(examples) / max(seconds, 1e-9), device, precision if runtime == "torch" else runtime)
    return task.outputs(logits, features), seconds


def _run_predictions(cfg, task: Task, info: dict, require_labels: bool):
    examples = task.read(cfg.input, cfg.format, require_labels=require_labels)
    preds, seconds = predict_examples(task, cfg.model, info, examples, cfg.batch_size, cfg.precision,
                                      runtime=cfg.runtime)
    return examples, preds, seconds


def check_output(cfg) -> None:
    """``--output`` (of ``predict``, ``ensemble``) must not overwrite ``--input``."""
    if Path(cfg.output).resolve() == Path(cfg.input).resolve():
        raise KluekitError("--output must not be the --input file")


def check_sample_submission(cfg, task: Task) -> None:
    """``--sample-submission`` (of ``predict``, ``ensemble``) only for a task that can fill one."""
    if cfg.sample_submission and not task.fills_sample_submission:
        raise KluekitError(f"--sample-submission is not supported for {task.name}: "
                           "its submission is written in the input's order")


def predict(cfg: PredictConfig) -> Path:
    """Write the submission for ``cfg.input`` (ids and order of the input or of the sample submission)."""
    check_output(cfg)
    task, info = _open_run(cfg)
    check_sample_submission(cfg, task)
    examples, preds, _ = _run_predictions(cfg, task, info, require_labels=False)
    task.write_predictions(preds, examples, cfg.output, cfg.sample_submission)
    log.info("wrote %s (%d rows)", cfg.output, len(examples))
    return Path(cfg.output)


def evaluate(cfg: EvaluateConfig) -> dict:
    """Official metrics on a labelled file, plus the task's report files; returns the metrics."""
    task, info = _open_run(cfg)
    examples, preds, seconds = _run_predictions(cfg, task, info, require_labels=True)
    metrics = task.metrics(preds, task.gold(examples))
    out_dir = Path(cfg.output_dir or Path(cfg.model) / f"eval-{Path(cfg.input).stem}")
    summary = write_report(task, preds, examples, out_dir, cfg.worst,
                           {"input": str(cfg.input), "rows": len(examples), "predict_seconds": round(seconds, 3), **metrics})
    return {"metrics": metrics, "report": summary, "output_dir": str(out_dir)}


def write_report(task: Task, preds, examples, out_dir: Path, worst: int, record: dict) -> list[str]:
    """The task's report files, ``predictions.csv`` (the examples with their predictions) and
    ``metrics.json`` (``record``) in ``out_dir``; returns the report's printable lines."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = task.report(preds, examples, out_dir, worst)
    columns = [c for c in examples.columns if not c.startswith("_")]
    write_csv_atomic(examples[columns].assign(**task.prediction_columns(preds)), out_dir / "predictions.csv")
    write_json(out_dir / "metrics.json", record)
    return summary
