"""One predictor: a trained run loaded once, predicting examples or files for any task.

Used by ``predict``, ``evaluate``, ``ensemble`` and the API's reranker::

    predictor = Predictor("runs/sts1", expected="sts")          # refuses a run trained for another task
    examples = predictor.read("test.csv", require_labels=False)  # the task's reader and checks
    preds = predictor.predict(examples)                          # task.outputs, in input order
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import pandas as pd

from .errors import KluekitError
from .inference import default_batch_size, predict_raw, resolve_device, resolve_precision
from .labelshift import adapt_mean
from .onnxrun import check_runtime
from .rundir import RunDir

log = logging.getLogger("kluekit")


class Predictor:
    """A run directory's task and model. ``runtime``: torch, or ONNX Runtime on the CPU (``onnx``,
    ``onnx-int8``); ``batch_size`` 0: ``default_batch_size``; ``task_options``: values of the task's
    ``inference_options`` to use instead of the trained run's. The model is loaded on first use, so input
    checks come first; ``seconds`` adds up the time spent predicting."""

    def __init__(self, run_dir, expected: str | None = None, verb: str = "predict", precision: str = "auto",
                 runtime: str = "torch", batch_size: int = 0, progress: bool = True, task_options: dict | None = None,
                 adapt_prior: bool = False):
        check_runtime(runtime, precision)
        self.run = RunDir.open(run_dir)
        self.task = self.run.task(expected, verb)
        if adapt_prior:
            check_prior(self.task, run_dir)
        self.adapt_prior, self.estimated_shares = adapt_prior, None
        if task_options:  # the task's inference_options, set anew for this run (e.g. --no-swap-average)
            self.task.options = dataclasses.replace(self.task.options, **task_options)
        self.precision, self.runtime, self.batch_size, self.progress = precision, runtime, batch_size, progress
        self.max_length = self.run.max_length
        self.seconds = 0.0
        self._loaded = None

    def load(self):
        """(tokenizer, model, device, precision), loaded once."""
        if self._loaded is None:
            if self.runtime != "torch":
                import torch

                from .onnxrun import load_onnx_run_model

                tokenizer, model = load_onnx_run_model(self.run.path, self.task, self.runtime)
                self._loaded = (tokenizer, model, torch.device("cpu"), "fp32")
            else:
                device = resolve_device()
                tokenizer, model = self.task.load_model(self.run.path, device)
                self._loaded = (tokenizer, model, device, resolve_precision(self.precision, device))
        return self._loaded

    def read(self, path, fmt: str = "auto", require_labels: bool = False) -> pd.DataFrame:
        return self.task.read(path, fmt, require_labels=require_labels)

    def predict(self, examples: pd.DataFrame):
        """The task's predictions for ``examples`` (read by this task), in their order."""
        tokenizer, model, device, precision = self.load()
        features = self.task.inference_features(examples, tokenizer, self.max_length)
        started = time.perf_counter()
        raw = predict_raw(self.task, model, tokenizer, features, self.batch_size or default_batch_size(device), device,
                          precision, progress=self.progress)
        seconds = time.perf_counter() - started
        self.seconds += seconds
        (log.info if self.progress else log.debug)("predicted %d examples in %.1fs (%.0f/s) on %s, %s", len(examples), seconds,
                 len(examples) / max(seconds, 1e-9), device, precision if self.runtime == "torch" else self.runtime)
        preds = self.task.outputs(raw, features)
        if self.adapt_prior:  # the whole input at once: its label shares are estimated from all its rows
            preds, self.estimated_shares = adapt_to(self.task, adapt_mean(
                [self.task.posteriors(preds)], [self.task.train_prior], [self.task.calibration], [1.0]))
        return preds


def check_prior(task, run_dir) -> None:
    """KluekitError unless ``--adapt-prior`` can re-weight this run's predictions."""
    if not task.label_shift:
        raise KluekitError(f"--adapt-prior: {task.name} predictions are not class probabilities")
    if task.train_prior is None:
        raise KluekitError(f"--adapt-prior: {run_dir} records no training label shares (runs saved before "
                           "2026-12-03 do not); train it again, or leave out --adapt-prior")
    if task.calibration is None:
        raise KluekitError(f"--adapt-prior: {run_dir} records no calibration of its probabilities (it is fitted on "
                           "the dev set when training ends): train it with --dev or --dev-split, or leave out "
                           "--adapt-prior")


def adapt_to(task, adapted: tuple) -> tuple[np.ndarray, dict]:
    """``labelshift.adapt_mean``'s (posteriors, shares, EM steps) logged: the posteriors and the shares by label."""
    posteriors, shares, steps = adapted
    label = task.calibration["label"]  # the same for every run of an ensemble (adapt_mean checks)
    log.info("--adapt-prior: the share of %s estimated in %d EM steps: %.3f in training, %.3f here", task.labels[label],
             steps, task.train_prior[label], shares[label])
    return posteriors, {name: round(float(share), 6) for name, share in zip(task.labels, shares)}


def adapted_vote(runs: list[Predictor], readings: list, weights: np.ndarray, gold=None) -> tuple[np.ndarray, dict, list[dict]]:
    """``soft_vote`` for ``--adapt-prior``: (the runs' posteriors adapted once by ``labelshift.adapt_mean``; the
    estimated shares; each run's metrics, unadapted, where ``gold`` is given)."""
    posteriors, members = [], []
    for run, rows in zip(runs, readings):
        preds = run.predict(rows)
        posteriors.append(run.task.posteriors(preds))
        if gold is not None:
            members.append(run.task.metrics(preds, gold))
    adapted = adapt_mean(posteriors, [run.task.train_prior for run in runs], [run.task.calibration for run in runs],
                         weights)
    return (*adapt_to(runs[0].task, adapted), members)


def soft_vote(runs: list[Predictor], readings: list, weights: np.ndarray, gold=None) -> tuple[np.ndarray, list[dict]]:
    """(the weighted mean of the runs' predictions, each for its own reading of the input: soft voting; each
    run's metrics where ``gold`` is given, else [])."""
    total, members = None, []
    for weight, run, rows in zip(weights, runs, readings):
        preds = run.predict(rows)
        total = weight * preds if total is None else total + weight * preds
        if gold is not None:
            members.append(run.task.metrics(preds, gold))
    return total / weights.sum(), members
