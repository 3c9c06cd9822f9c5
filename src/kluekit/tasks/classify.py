"""Text classification: one sentence (topic, sentiment) or a sentence pair (NLI) into one of C labels.

Columns are named by options, or by a preset for the shared sets (``--preset ynat|nsmc|klue-nli|kornli``).
The label set comes from ``--label-file``, else the preset's official order, else the sorted labels of
the training file; it is saved in the run (and as id2label in the model config). Scores: accuracy and
macro-F1 x100; the primary one is the preset's (YNAT macro-F1, NSMC and NLI accuracy) or ``--metric``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch.nn.functional as F

from ..config import opt
from ..data.classify import PRESETS, label_ids, label_set, read_classification, read_label_file
from ..data.io import clip_text, write_csv_atomic
from ..errors import KluekitError
from ..labelshift import unsmoothed_posteriors
from ..metrics import classification_metrics
from .base import Task, TaskOptions, label_columns, softmax
from .sts import CHARS_PER_TOKEN

log = logging.getLogger("kluekit")
METRICS = ("auto", "macro_f1", "accuracy")


@dataclass
class ClassifyOptions(TaskOptions):
    preset: str = opt("none", "column names, label order and metric of a shared set: "
                              + "; ".join(f"{name}: {p.description}" for name, p in PRESETS.items()),
                      choices=["none", *PRESETS])
    text_column: str | None = opt(None, "column holding the text (default: the preset's, else 'text')")
    text_pair_column: str | None = opt(None, "column holding the second text of a sentence pair (NLI); "
                                             "default: the preset's, else none (single sentence)")
    label_column: str | None = opt(None, "column holding the label (default: the preset's, else 'label')")
    id_column: str | None = opt(None, "column of ids kept in the predictions (default: the preset's, else 'id' "
                                      "when the file has it, else row numbers)")
    columns: list[str] = opt([], "names of the columns, in order, for inputs without a header row")
    label_file: str | None = opt(None, "label names in order: JSON list, JSON object name -> id, or one per line "
                                       "(default: the preset's order, else the training file's labels, sorted)")
    metric: str = opt("auto", "primary metric, used to keep the best checkpoint (auto: the preset's, else macro_f1)",
                      choices=list(METRICS))
    label_smoothing: float = opt(0.0, "label smoothing of the cross-entropy loss", minimum=0)


class ClassifyTask(Task):
    """Text classification (topic, sentiment, NLI): accuracy and macro-F1 x100."""

    name = "classify"
    teachable = True
    label_shift = True
    formats = ("auto", "csv", "tsv", "json")
    Options = ClassifyOptions
    train_defaults = {"group_by_length": False}  # as STS (tasks/sts.py): chosen on training splits

    def __init__(self, options=None, labels=None):
        options = resolve_options(options or ClassifyOptions())
        super().__init__(options, labels)
        self.primary_metric = options.metric

    def default_labels(self):
        if self.options.label_file:
            return read_label_file(self.options.label_file)
        preset = PRESETS.get(self.options.preset)
        return list(preset.labels) if preset and preset.labels else []

    def read(self, path, fmt="auto", require_labels=True):
        o = self.options
        frame = read_classification(path, o.text_column, o.label_column, o.text_pair_column, o.id_column, fmt,
                                    require_labels, o.columns or None)
        empty = frame.attrs.get("empty_text_rows", [])
        if len(empty):
            log.warning("%s: %d row(s) with empty text (kept; they are predicted from the empty input): "
                        "row %s", path, len(empty), ", ".join(map(str, list(empty)[:5])) + (", ..." if len(empty) > 5 else ""))
        if self.labels and require_labels:
            label_ids(frame, self.labels, path)  # unknown labels fail here, before any model is loaded
        return frame

    def texts(self, examples):
        return examples["text"].tolist() + (examples["text_pair"].tolist() if "text_pair" in examples else [])

    def fit(self, train_examples):
        if not self.labels:
            self.labels = label_set(train_examples["label"])
            log.info("labels (from the training file): %s", ", ".join(self.labels))
        if len(self.labels) < 2:
            raise KluekitError(f"classification needs at least 2 labels, the training file has {self.labels}")

    def encode(self, examples, tokenizer, max_length):
        limit = max_length * CHARS_PER_TOKEN  # a 50 MB cell is not tokenized whole
        pair = clip_text(examples["text_pair"].tolist(), limit) if "text_pair" in examples else None
        features = dict(tokenizer(clip_text(examples["text"].tolist(), limit), pair, truncation=True, max_length=max_length))
        if examples.attrs.get("has_labels", (examples["label"] != "").all()):
            features["labels"] = self.gold(examples).tolist()
        return features

    def loss(self, outputs, batch):
        return F.cross_entropy(outputs.logits.float(), batch["labels"], label_smoothing=self.options.label_smoothing)

    def outputs(self, raw, features=None):
        return softmax(raw)

    def posteriors(self, probs):
        return unsmoothed_posteriors(probs, self.options.label_smoothing) if self.options.label_smoothing else probs

    def strata(self, examples):
        return self.gold(examples)

    def gold(self, examples):
        return label_ids(examples, self.labels, examples.attrs.get("path", "input"))

    def metrics(self, preds, gold):
        return classification_metrics(preds, gold, self.labels)

    def prediction_columns(self, preds):
        return label_columns(self.labels, preds)

    def serve_spec(self, limits):
        """``POST /classify``: a text (and its pair for NLI-like runs) -> label and per-label probabilities."""
        from pydantic import BaseModel, create_model

        from .base import ServeSpec
        from .serve_fields import LabelResult, label_results, request_frame, text_field

        text = text_field(limits.max_text_chars, "the text to classify", "유튜브 내달 2일까지 크리에이터 지원 공간 운영")
        fields = {"text": (text, ...)}
        if self.options.text_pair_column:
            fields["text_pair"] = (text_field(limits.max_text_chars, "the second text of the pair (NLI: the hypothesis)"),
                                   ...)
        item = create_model("ClassifyPairItem" if len(fields) > 1 else "ClassifyItem", __base__=BaseModel, **fields)

        def examples(items):
            columns = {name: [getattr(i, name) for i in items] for name in fields}
            return request_frame({**columns, "label": [""] * len(items)}, has_labels=False)

        shown = ", ".join(self.labels[:8]) + (", ..." if len(self.labels) > 8 else "")
        return ServeSpec("/classify", f"Label of a text: {shown}", item, LabelResult, examples, lambda preds, frame: label_results(self.labels, preds))

    def write_predictions(self, preds, examples, path, sample_submission=None):
        if sample_submission:
            raise KluekitError("--sample-submission is not supported for classify")
        columns = {"id": examples["id"].to_numpy(), "pred_label": self.prediction_columns(preds)["pred_label"]}
        columns.update({f"prob_{name}": np.round(preds[:, i], 6) for i, name in enumerate(self.labels)})
        write_csv_atomic(pd.DataFrame(columns), path)

    def report(self, preds, examples, out_dir, worst=30):
        from ..report import class_report

        return class_report(self.gold(examples), preds.argmax(axis=1), self.labels, out_dir,
                            f"confusion matrix ({Path(examples.attrs.get('path', '')).name})")


def resolve_options(options: ClassifyOptions) -> ClassifyOptions:
    """Fill unset columns and the metric from the preset (or the generic defaults), so the run records them."""
    preset = PRESETS.get(options.preset)
    if options.preset != "none" and preset is None:
        raise KluekitError(f"--preset: {options.preset!r} is not one of none, {', '.join(PRESETS)}")
    defaults = dict(text_column=preset.text if preset else "text",
                    text_pair_column=preset.text_pair if preset else None,
                    label_column=preset.label if preset else "label",
                    id_column=preset.id if preset else "id",
                    columns=list(preset.columns or []) if preset else [],
                    metric=preset.metric if preset else "macro_f1")
    changes = {name: value for name, value in defaults.items() if getattr(options, name) in (None, [], "auto")}
    return dataclasses.replace(options, **changes)
