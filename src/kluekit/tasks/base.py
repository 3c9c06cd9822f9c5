"""The Task contract: everything generic code needs to know about one task.

A task is one object; the runner, CLI and reports never branch on a task's name.
Adding a task = one module defining a ``Task`` subclass + one line in ``tasks/__init__.py``.

Example (what the runner does with any task)::

    task = get_task("sts")
    train = task.read("train.csv")                      # DataFrame, checked row by row
    features = task.encode(train, tokenizer, 128)       # dict of lists, incl. "labels"
    loss = task.loss(logits, labels)                    # scalar tensor
    preds = task.outputs(logits)                        # numpy predictions
    task.metrics(preds, train["label"])                 # {"pearson": ..., ...}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch


@dataclass
class TaskOptions:
    """Options of one task (subclasses add fields declared with ``config.opt``)."""

    # values for options that runs saved before the option existed did not record (their old behaviour)
    LEGACY: ClassVar[dict] = {}


class Task:
    """Base class; subclasses set the class attributes and implement the methods."""

    name: str = ""
    head: str = "sequence"  # regression | sequence | token
    primary_metric: str = ""
    greater_is_better: bool = True
    Options = TaskOptions
    special_tokens: tuple[str, ...] = ()
    fills_sample_submission: bool = True  # write_predictions can fill a sample submission's target column

    def __init__(self, options: TaskOptions | None = None, labels: list[str] | None = None):
        self.options = options or self.Options()
        self.labels = list(labels) if labels is not None else self.default_labels()

    def default_labels(self) -> list[str]:
        """Ordered label names (empty for regression)."""
        return []

    @property
    def num_labels(self) -> int:
        return 1 if self.head == "regression" else len(self.labels)

    def model_class(self):
        """A class with ``from_pretrained``/``save_pretrained`` for this task's model, or None for the
        transformers Auto class of ``head`` (e.g. RE's entity-pooling classifier)."""
        return None

    def read(self, path, fmt: str = "auto", require_labels: bool = True) -> pd.DataFrame:
        """Read and check a file into a DataFrame of examples (``_row`` kept for errors)."""
        raise NotImplementedError

    def fit(self, train_examples: pd.DataFrame) -> None:
        """Learn what training needs from the training set before the first step (e.g. class weights)."""

    def augment(self, examples: pd.DataFrame) -> pd.DataFrame:
        """Extra training examples made from the training set (default: none)."""
        return examples

    def encode(self, examples: pd.DataFrame, tokenizer, max_length: int) -> dict[str, list]:
        """Tokenize in one batched call; add ``labels`` when the examples carry them. Keys starting with
        ``_`` are for the task's own use in ``outputs`` and never reach the model."""
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Training loss of one batch."""
        raise NotImplementedError

    def outputs(self, logits: np.ndarray, features: dict[str, list] | None = None) -> np.ndarray:
        """Predictions from raw logits (scores for regression, probabilities for classification).

        ``features`` are what ``encode`` returned for these examples (NER maps token probabilities back
        to characters through the offsets it keeps there under a ``_``-prefixed key)."""
        raise NotImplementedError

    def strata(self, examples: pd.DataFrame) -> np.ndarray | None:
        """Class ids that k-fold splits keep in proportion (stratified), or None for plain k-fold."""
        return None

    def gold(self, examples: pd.DataFrame) -> np.ndarray:
        """Gold values of labelled examples, in the form ``metrics`` takes."""
        raise NotImplementedError

    def metrics(self, preds: np.ndarray, gold: np.ndarray) -> dict[str, float]:
        """Official metrics (x100 where KLUE scales them)."""
        raise NotImplementedError

    def prediction_columns(self, preds: np.ndarray) -> dict[str, np.ndarray]:
        """Columns added to the examples in evaluate's predictions.csv."""
        return {"pred": np.round(preds, 6)}

    def write_predictions(self, preds: np.ndarray, examples: pd.DataFrame, path, sample_submission=None) -> None:
        """Write the submission file atomically."""
        raise NotImplementedError

    def report(self, preds: np.ndarray, examples: pd.DataFrame, out_dir, worst: int = 30) -> list[str]:
        """Write analysis files (plots, tables) for a labelled set; return printable summary lines."""
        return []


def softmax(logits) -> np.ndarray:
    """Row-wise softmax of (n, C) logits as float64 probabilities."""
    logits = np.asarray(logits, dtype=np.float64)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def label_columns(labels: list[str], probs: np.ndarray) -> dict[str, np.ndarray]:
    """The predicted label's name and probability, per row of (n, C) class probabilities."""
    names = np.asarray(labels, dtype=object)
    return {"pred_label": names[probs.argmax(axis=1)], "pred_prob": np.round(probs.max(axis=1), 6)}
