"""The teachers' predictions for ``--teacher`` (knowledge distillation, ``engine/distill.py``).

Each teacher run predicts the training items (as ``kluekit predict`` would, with its own tokenizer and options);
their mean is each item's soft target: log-probabilities where the task predicts class probabilities, the score
where it predicts one score. Teachers are loaded one at a time and freed before the next.
"""

from __future__ import annotations

import gc
import logging

import numpy as np
import pandas as pd
import torch

from .errors import KluekitError
from .rundir import RunDir

log = logging.getLogger("kluekit")


def check_teachers(task, paths: list[str]) -> None:
    """A KluekitError unless ``task`` can be taught and every path is a run of it with the same labels (checked
    before the model is built, so that a wrong --teacher costs no time)."""
    if not task.teachable:
        from .tasks import TASKS

        able = ", ".join(name for name, task_class in TASKS.items() if task_class.teachable)
        raise KluekitError(f"--teacher: {task.name} models cannot learn from teachers (one prediction per "
                           f"example is needed: {able})")
    for path in paths:
        try:
            run = RunDir.open(path)
        except KluekitError as error:
            raise KluekitError(str(error).replace("--model: ", "--teacher: ", 1)) from None
        if run.task_name != task.name:
            raise KluekitError(f"--teacher: {path} was trained for {run.task_name}, not {task.name}")
        labels = run.info.get("labels") or []
        if list(labels) != list(task.labels):
            raise KluekitError(f"--teacher: {path} has other labels ({shown(list(labels))}) than this run's training "
                               f"file ({shown(list(task.labels))}); distil from runs trained on the same labels")


def shown(names: list) -> str:
    """The first five of ``names``, for an error message."""
    return ", ".join(map(str, names[:5])) + (", ..." if len(names) > 5 else "")


def teacher_targets(task, paths: list[str], examples: pd.DataFrame, precision: str,
                    progress: bool = True) -> list[np.ndarray]:
    """One float32 row per example of ``examples`` (the training items, in order): the teachers' mean
    prediction as log-probabilities (C values) or as a score (1 value). ``check_teachers`` has vetted ``paths``."""
    from .predictor import Predictor

    total = None
    for path in paths:
        predictor = Predictor(path, expected=task.name, verb="train", precision=precision, progress=progress)
        preds = np.asarray(predictor.predict(examples), dtype=np.float64)
        del predictor
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if preds.ndim not in (1, 2) or len(preds) != len(examples):
            raise KluekitError(f"--teacher: {path} gave predictions of shape {preds.shape} for {len(examples)} "
                               "training items; one row per item is needed")
        total = preds if total is None else total + preds
        log.info("--teacher %s: predicted %d training items", path, len(examples))
    mean = total / len(paths)
    targets = np.log(np.clip(mean, 1e-12, 1.0)) if mean.ndim == 2 else mean[:, None]
    return list(targets.astype(np.float32))
