"""The Task contract: everything generic code (engine, runner, predictor, k-fold, ensembles, ONNX, serving)
needs to know about one kind of model. Generic code never branches on a task's name.

Adding a task = one module defining a ``Task`` subclass + one line in ``tasks/__init__.py`` (see
docs/architecture.md). What a task says, in the order a run uses it (``model_dir``: any local encoder)::

    >>> import pandas as pd, torch
    >>> from kluekit.batching import Features
    >>> from kluekit.tasks import get_task_class
    >>> task = get_task_class("sts")()                             # options and labels: defaults
    >>> examples = pd.DataFrame({"sentence1": ["오늘 날씨가 좋다", "배가 고프다"],
    ...                          "sentence2": ["날씨가 맑다", "밥을 먹고 싶다"], "label": [4.2, 1.5]})
    >>> tokenizer, model = task.build_model(model_dir)             # a pretrained encoder + a fresh head
    >>> features = task.encode(examples, tokenizer, max_length=32)  # dict of lists, "labels" included
    >>> batch = task.collator(tokenizer)([Features(features)[i] for i in range(2)])  # padded tensors
    >>> outputs = task.forward(model, batch)                       # the model's outputs (any fields)
    >>> loss = task.loss(outputs, batch)                           # a scalar to backpropagate
    >>> loss.backward()
    >>> raw = task.batch_outputs(outputs, batch)                   # numpy, one row per example
    >>> preds = task.outputs(raw, features)                        # predictions ensembles can average
    >>> sorted(task.metrics(preds, task.gold(examples)))
    ['f1', 'mse', 'pearson', 'spearman']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np
import pandas as pd
import torch


def label_config(names) -> dict:
    """A head's config overrides for output names ``names``: their count, id2label and label2id."""
    names = list(names)
    return {"num_labels": len(names), "id2label": dict(enumerate(names)),
            "label2id": {name: i for i, name in enumerate(names)}}


@dataclass
class TaskOptions:
    """Options of one task (subclasses add fields declared with ``config.opt``)."""

    # values for options that runs saved before the option existed did not record (their old behaviour)
    LEGACY: ClassVar[dict] = {}


@dataclass(frozen=True)
class ServeLimits:
    """The request limits a task's serve spec puts into its request schema (from ``kluekit serve`` options)."""

    max_text_chars: int = 1000     # a sentence, a question
    max_context_chars: int = 5000  # an MRC passage


@dataclass
class ServeSpec:
    """How a task is served over HTTP (``Task.serve_spec``): ``POST path`` takes one ``item`` (a pydantic
    model) or ``{"items": [...]}``; ``examples(items)`` turns items into the examples DataFrame ``read`` would
    make (no labels); ``results(preds, examples)`` turns ``outputs`` for those rows into one ``result`` dict each."""

    path: str                                            # e.g. "/classify"
    summary: str                                         # one line for /docs
    item: type                                           # pydantic model of one request item
    result: type                                         # pydantic model of one answer
    examples: Callable[[list], pd.DataFrame]
    results: Callable[[np.ndarray, pd.DataFrame], list[dict]]
    description: str = ""


class Task:
    """Base class. Subclasses set the class attributes and implement ``read``, ``encode``, ``loss``,
    ``outputs``, ``gold``, ``metrics`` and ``write_predictions``; the other methods have defaults that suit a
    transformers sequence-classification model (one output row per example)."""

    name: str = ""
    primary_metric: str = ""
    greater_is_better: bool = True
    Options = TaskOptions
    formats: tuple[str, ...] = ("auto",)  # values of --format that ``read`` accepts
    special_tokens: tuple[str, ...] = ()  # added to the tokenizer (embeddings resized)
    fills_sample_submission: bool = True  # write_predictions can fill a sample submission's target column
    onnx_output: str | tuple[str, ...] = "logits"  # the model output(s) an ONNX export returns
    verbs: tuple[str, ...] = ("train", "evaluate", "predict")  # the CLI verbs the task is offered under
    inference_options: tuple[str, ...] = ()  # Options fields evaluate/predict may set anew for a trained run
    cuda_graphs: bool = True              # False where a step has data-dependent shapes (graphs cannot capture)
    train_defaults: dict = {}             # training options this task uses unless given (e.g. max_length)
    teachable: bool = False               # --teacher works: outputs are one row per training item (probs or a score)
    label_shift: bool = False             # outputs are one row of class probabilities per example: --adapt-prior

    def __init__(self, options: TaskOptions | None = None, labels: list[str] | None = None):
        self.options = options or self.Options()
        self.labels = list(labels) if labels is not None else self.default_labels()
        self.train_prior: np.ndarray | None = None  # label_shift tasks: the training file's label shares
        self.calibration: dict | None = None  # label_shift tasks: labelshift.fit_calibration on the dev set

    def posteriors(self, probs: np.ndarray) -> np.ndarray:
        """label_shift tasks: ``outputs`` as estimates of p(label | text) under the training shares, what
        --adapt-prior re-weights. Cross-entropy's outputs are that; a task whose loss has another minimiser maps
        them back (``labelshift``)."""
        return probs

    def default_labels(self) -> list[str]:
        """Ordered label names (empty for regression)."""
        return []

    # ---- data -------------------------------------------------------------------------------------------
    def read(self, path, fmt: str = "auto", require_labels: bool = True) -> pd.DataFrame:
        """Read and check a file into a DataFrame of examples (``_row`` kept for errors)."""
        raise NotImplementedError

    def fit(self, train_examples: pd.DataFrame) -> None:
        """Learn what training needs from the training set before the first step (labels, class weights)."""

    def augment(self, examples: pd.DataFrame) -> pd.DataFrame:
        """Extra training examples made from the training set (default: none)."""
        return examples

    def encode(self, examples: pd.DataFrame, tokenizer, max_length: int) -> dict[str, list]:
        """Tokenize in one batched call; add ``labels`` when the examples carry them. Keys starting with
        ``_`` are for the task's own use in ``outputs`` and never reach the model."""
        raise NotImplementedError

    def inference_features(self, examples: pd.DataFrame, tokenizer, max_length: int) -> dict[str, list]:
        """The features dev scoring, ``evaluate`` and ``predict`` run the model on (default: ``encode``'s); a task
        may add more views of each example here and fold them back in ``outputs``."""
        return self.encode(examples, tokenizer, max_length)

    def texts(self, examples: pd.DataFrame) -> list[str]:
        """The input texts of the examples, labels left out (language-model pre-training on a task's files)."""
        from ..errors import KluekitError

        raise KluekitError(f"--from-task: {self.name} files hold no text to pre-train on")

    def strata(self, examples: pd.DataFrame) -> np.ndarray | None:
        """Class ids that k-fold splits keep in proportion (stratified), or None for plain k-fold."""
        return None

    def groups(self, examples: pd.DataFrame) -> np.ndarray | None:
        """Group keys that k-fold and ``--dev-split`` never split (e.g. MRC's articles), or None: rows are free."""
        return None

    def gold(self, examples: pd.DataFrame) -> np.ndarray:
        """Gold values of labelled examples, in the form ``metrics`` takes."""
        raise NotImplementedError

    # ---- model ------------------------------------------------------------------------------------------
    def model_class(self):
        """A class with ``from_pretrained``/``save_pretrained`` for this task's model (any head)."""
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def model_config(self) -> dict:
        """Config overrides for a fresh head: the label count and names (saved as id2label/label2id)."""
        return label_config(self.labels)

    def build_model(self, name: str):
        """(tokenizer, model): the pretrained ``name`` with this task's fresh head and special tokens."""
        from ..modeling import load_pretrained

        return load_pretrained(name, self.model_class(), self.model_config(), self.special_tokens)

    def init_head(self, model, train_examples: pd.DataFrame) -> None:
        """Set the fresh head from the training examples (after any ``--dev-split``) before the first step
        (default: as built)."""

    def load_model(self, run_dir, device):
        """(tokenizer, model in eval mode on ``device``) saved in a run directory by ``save_model``."""
        from ..modeling import load_saved

        return load_saved(run_dir, self.model_class(), device)

    def save_model(self, model, tokenizer, folder) -> None:
        """Write the trained model and tokenizer into ``folder`` (``load_model`` reads them back)."""
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    def max_length(self, model, max_length: int) -> int:
        """The token limit inputs are encoded with (``--max-length``, never past the model's positions)."""
        return max_length

    def stages(self, cfg, tokenizer, model, max_length: int) -> list:
        """Training stages (``engine.Stage``) run before the main one, e.g. the bi-encoder's NLI stage."""
        return []

    def data_record(self) -> dict:
        """What the run record (kluekit.json) should add about inputs the task read itself (e.g. NLI files)."""
        return {}

    # ---- batches ----------------------------------------------------------------------------------------
    def collator(self, tokenizer, pad_to_multiple_of: int | None = None):
        """A function from a list of ``encode`` items to a batch of padded tensors."""
        from ..batching import PadCollator

        return PadCollator(tokenizer, pad_to_multiple_of)

    def forward(self, model, batch: dict):
        """The model's outputs for a batch (everything but the labels goes in)."""
        return model(**{k: v for k, v in batch.items() if k != "labels"})

    def loss(self, outputs, batch: dict) -> torch.Tensor:
        """Training loss of one batch, from the model's outputs and the batch (labels included)."""
        raise NotImplementedError

    def consistency(self, first, second, batch: dict) -> torch.Tensor:
        """R-Drop's term (``--rdrop``): how far two dropout passes' outputs for the same batch are apart. For
        ``logits``: the symmetric KL divergence of the class distributions (per example, or per token where
        the logits are per token, padding left out), or the mean squared difference of a single output."""
        from ..engine.distill import distance
        from ..errors import KluekitError

        a, b = getattr(first, "logits", None), getattr(second, "logits", None)
        if a is None:
            raise KluekitError(f"--rdrop: {self.name} models have no logits to compare; train without --rdrop")
        if a.ndim == 3:  # per token: the positions that are not padding
            keep = batch["attention_mask"].bool()
            a, b = a[keep], b[keep]
        if a.shape[-1] == 1:
            return distance(a, b, 1.0)  # the mean squared difference
        return (distance(a, b, 1.0) + distance(b, a, 1.0)) / 2  # KL(b || a) and KL(a || b)

    def batch_outputs(self, outputs, batch: dict):
        """Raw per-example outputs of a batch as float32 numpy: an (n, C) array of logits, or for a
        per-token output a list of n (tokens, C) arrays with the padding cut off."""
        logits = getattr(outputs, self.onnx_output).detach().float().cpu().numpy()
        if logits.ndim == 3:
            masks = batch["attention_mask"].bool().cpu().numpy()
            return [row[mask] for row, mask in zip(logits, masks)]
        return logits

    # ---- predictions ------------------------------------------------------------------------------------
    def outputs(self, raw, features: dict[str, list] | None = None) -> np.ndarray:
        """Predictions from the raw outputs of every example (in input order): what k-fold and ensembles
        average (scores for regression, probabilities for classification). ``features`` are what
        ``encode`` returned (NER maps token probabilities back to characters through them)."""
        raise NotImplementedError

    def metrics(self, preds: np.ndarray, gold: np.ndarray) -> dict[str, float]:
        """Official metrics (x100 where KLUE scales them)."""
        raise NotImplementedError

    def collapse(self, preds: np.ndarray, gold: np.ndarray) -> str | None:
        """What shows that training collapsed (e.g. one constant predicted for every dev example), or None."""
        return None

    def prediction_columns(self, preds: np.ndarray) -> dict[str, np.ndarray]:
        """Columns added to the examples in evaluate's predictions.csv."""
        return {"pred": np.round(preds, 6)}

    def prediction_table(self, preds: np.ndarray, examples: pd.DataFrame) -> pd.DataFrame:
        """Evaluate's predictions.csv: the examples' columns (``_``-columns left out) and ``prediction_columns``."""
        columns = [c for c in examples.columns if not c.startswith("_")]
        return examples[columns].assign(**self.prediction_columns(preds))

    def write_predictions(self, preds: np.ndarray, examples: pd.DataFrame, path, sample_submission=None) -> None:
        """Write the submission file atomically."""
        raise NotImplementedError

    def report(self, preds: np.ndarray, examples: pd.DataFrame, out_dir, worst: int = 30) -> list[str]:
        """Write analysis files (plots, tables) for a labelled set; return printable summary lines."""
        return []

    # ---- serving ----------------------------------------------------------------------------------------
    def serve_spec(self, limits: ServeLimits) -> ServeSpec | None:
        """How ``kluekit serve`` answers requests for this task (route, schemas, rows in, answers out), or
        None: not served as a task model (e.g. the bi-encoder, served by its own routes)."""
        return None

    # ---- export -----------------------------------------------------------------------------------------
    def sample_inputs(self, tokenizer) -> dict[str, torch.Tensor]:
        """A small padded batch of the model's inputs, for the ONNX exporter to trace (inputs named in
        ``tokenizer.model_input_names`` get dynamic batch and sequence axes, others a dynamic batch axis)."""
        return dict(tokenizer(["예시 문장입니다", "짧은"], ["두 번째 문장도 있습니다", "쌍"], padding=True,
                              return_tensors="pt"))


def softmax(logits) -> np.ndarray:
    """Row-wise softmax of (n, C) logits as float64 probabilities."""
    logits = np.asarray(logits, dtype=np.float64)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def label_columns(labels: list[str], probs: np.ndarray) -> dict[str, np.ndarray]:
    """The predicted label's name and probability, per row of (n, C) class probabilities."""
    names = np.asarray(labels, dtype=object)
    return {"pred_label": names[probs.argmax(axis=1)], "pred_prob": np.round(probs.max(axis=1), 6)}
