"""Relation extraction (KLUE-RE): one of 30 relations between a subject and an object entity of a sentence.

The entities reach the model through the input text (``--entity-style``): the competition baseline
``subject [SEP] object [SEP] sentence``, ``[E1]``/``[E2]`` markers, or typed punctuation markers
(``@ * PER * 조지 해리슨 @ ... # ^ ORG ^ 비틀즈 #``). Scores: micro-F1 x100 without ``no_relation``
(primary) and AUPRC x100 over all classes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import opt
from ..data.entity_inputs import MARKER_TOKENS, STYLES, encode_relations, entity_positions
from ..data.io import write_csv_atomic
from ..data.re import COMPETITION_LABELS, FORMATS, load_label_map, read_re
from ..errors import KluekitError
from ..labelshift import focal_posteriors, unweighted_posteriors
from .base import Task, TaskOptions, label_columns, softmax

LOSSES = ("ce", "weighted_ce", "focal")
POOLINGS = ("auto", "cls", "entity")
log = logging.getLogger("kluekit")


@dataclass
class REOptions(TaskOptions):
    LEGACY: ClassVar[dict] = {"pooling": "cls"}  # runs from before --pooling read [CLS] only
    entity_style: str = opt("typed", "how entities are shown to the model: baseline ('subject [SEP] object' + "
                                     "sentence), marker ([E1] [/E1] [E2] [/E2]) or typed (@ * PER * ... @, # ^ ORG ^ ... #)",
                            choices=list(STYLES))
    label_map: str | None = opt(None, "JSON file of label name -> id (default: the competition's dict_label_to_num)")
    pooling: str = opt("auto", "what the classifier reads: the [CLS] state (cls), or the [CLS] state with the "
                               "states at the subject's and object's opening markers (entity; needs marker or typed); "
                               "auto: entity where the style has markers, else cls", choices=list(POOLINGS))
    loss: str = opt("ce", "cross-entropy, class-weighted cross-entropy (balanced weights) or focal loss",
                    choices=list(LOSSES))
    focal_gamma: float = opt(2.0, "focusing parameter of the focal loss", minimum=0)
    skip_bad_rows: bool = opt(False, "report and skip bad training/dev rows instead of stopping at the first")


class RETask(Task):
    """KLUE-RE: micro-F1 x100 without no_relation (primary) and AUPRC x100."""

    name = "re"
    teachable = True
    label_shift = True
    primary_metric = "micro_f1"
    Options = REOptions
    formats = FORMATS
    fills_sample_submission = False

    def __init__(self, options=None, labels=None):
        super().__init__(options, labels)
        self.class_weights: np.ndarray | None = None
        if self.options.pooling == "auto":  # resolved here, so the run records what was used
            pooling = "cls" if self.options.entity_style == "baseline" else "entity"
            self.options = dataclasses.replace(self.options, pooling=pooling)
        if self.options.pooling == "entity" and self.options.entity_style == "baseline":
            raise KluekitError("--pooling entity reads the entity markers: use --entity-style typed or marker "
                               "(the baseline style has none)")

    def model_class(self):
        from ..heads import EntityPairClassifier

        return EntityPairClassifier if self.options.pooling == "entity" else super().model_class()

    def default_labels(self):
        return load_label_map(self.options.label_map) if self.options.label_map else list(COMPETITION_LABELS)

    @property
    def special_tokens(self):
        return MARKER_TOKENS if self.options.entity_style == "marker" else ()

    def read(self, path, fmt="auto", require_labels=True):
        # rows are skipped only where labels are needed (train, evaluate): a submission keeps every row
        frame = read_re(path, self.labels, fmt, require_labels, self.options.skip_bad_rows and require_labels)
        for message in frame.attrs.get("skipped", []):
            log.warning("skipped %s", message)
        return frame

    def texts(self, examples):
        return examples["sentence"].tolist()

    def fit(self, train_examples):
        """Balanced class weights n / (C * count), as scikit-learn's 'balanced' (absent classes: 1)."""
        counts = np.bincount(train_examples["label_id"].to_numpy(), minlength=len(self.labels)).astype(np.float64)
        weights = np.where(counts > 0, counts.sum() / (len(self.labels) * np.maximum(counts, 1)), 1.0)
        self.class_weights = weights

    def encode(self, examples, tokenizer, max_length):
        features = encode_relations(examples, tokenizer, max_length, self.options.entity_style)
        if self.options.pooling == "entity":
            if tokenizer.padding_side != "right":
                raise KluekitError("--pooling entity needs a tokenizer that pads on the right")
            features["entity_positions"] = entity_positions(features["input_ids"], tokenizer,
                                                            self.options.entity_style)
        if (examples["label_id"] >= 0).all():
            features["labels"] = examples["label_id"].astype(int).tolist()
        return features

    def sample_inputs(self, tokenizer):
        import torch

        inputs = super().sample_inputs(tokenizer)
        if self.options.pooling == "entity":
            inputs["entity_positions"] = torch.tensor([[1, 2], [2, 1]])
        return inputs

    def loss(self, outputs, batch):
        import torch
        import torch.nn.functional as F

        logits, labels = outputs.logits.float(), batch["labels"]
        weight = None
        if self.options.loss == "weighted_ce" and self.class_weights is not None:
            weight = torch.as_tensor(self.class_weights, dtype=logits.dtype, device=logits.device)
        if self.options.loss != "focal":
            return F.cross_entropy(logits, labels, weight=weight)
        log_p = F.log_softmax(logits, dim=-1).gather(1, labels[:, None]).squeeze(1)
        return (-(1 - log_p.exp()) ** self.options.focal_gamma * log_p).mean()

    def outputs(self, raw, features=None):
        return softmax(raw)

    def posteriors(self, probs):
        if self.options.loss == "focal":
            return focal_posteriors(probs, self.options.focal_gamma)
        if self.options.loss == "weighted_ce":  # balanced weights are proportional to 1 / training share
            return unweighted_posteriors(probs, 1.0 / np.maximum(self.train_prior, 1e-12))
        return probs

    def strata(self, examples):
        return self.gold(examples)

    def gold(self, examples):
        return examples["label_id"].to_numpy(dtype=np.int64)

    def metrics(self, preds, gold):
        from ..metrics import re_metrics

        return re_metrics(preds, gold, self.labels)

    def prediction_columns(self, preds):
        return label_columns(self.labels, preds)

    def serve_spec(self, limits):
        """``POST /relation``: a sentence with subject and object spans (character offsets, end exclusive) ->
        the relation label and every label's probability."""
        from pydantic import BaseModel, Field, model_validator

        from .base import ServeSpec
        from .serve_fields import LabelResult, label_results, request_frame, text_field

        class EntitySpan(BaseModel):
            start: int = Field(ge=0, lt=limits.max_text_chars, description="first character (0-based)")
            end: int = Field(ge=1, le=limits.max_text_chars, description="one past the last character (exclusive)")
            type: str = Field("", max_length=32, description="entity type as in KLUE-RE (PER, ORG, LOC, DAT, POH, "
                                                             "NOH); shown to models trained with typed markers")

        Sentence = text_field(limits.max_text_chars, "the sentence", "조지 해리슨이 쓰고 비틀즈가 1969년 앨범 《Abbey Road》에 담은 노래다.")

        class RelationItem(BaseModel):
            sentence: Sentence
            subject: EntitySpan = Field(description="the subject entity's span in the sentence",
                                        examples=[{"start": 0, "end": 6, "type": "PER"}])
            object: EntitySpan = Field(description="the object entity's span in the sentence",
                                       examples=[{"start": 11, "end": 14, "type": "ORG"}])

            @model_validator(mode="after")
            def spans_inside(self):
                for role in ("subject", "object"):
                    span = getattr(self, role)
                    if not span.start < span.end <= len(self.sentence):
                        raise ValueError(f"{role}: span {span.start}-{span.end} is not inside the sentence "
                                         f"({len(self.sentence)} characters; start < end <= length)")
                return self

        def examples(items):
            columns = {"sentence": [i.sentence for i in items]}
            for short, role in (("subj", "subject"), ("obj", "object")):
                spans = [getattr(i, role) for i in items]
                columns.update({f"{short}_word": [i.sentence[s.start:s.end] for i, s in zip(items, spans)],
                                f"{short}_start": [s.start for s in spans], f"{short}_end": [s.end - 1 for s in spans],
                                f"{short}_type": [s.type for s in spans]})
            return request_frame({**columns, "label": [""] * len(items), "label_id": [-1] * len(items),
                                  "source": [""] * len(items)})

        return ServeSpec("/relation", "Relation between a subject and an object entity of a sentence", RelationItem,
                         LabelResult, examples, lambda preds, frame: label_results(self.labels, preds))

    def write_predictions(self, preds, examples, path, sample_submission=None):
        if sample_submission:
            raise KluekitError("--sample-submission is not supported for re")
        frame = pd.DataFrame({"id": examples["id"].to_numpy(),
                              "pred_label": self.prediction_columns(preds)["pred_label"],
                              "probs": [json.dumps(row) for row in preds.tolist()]})
        write_csv_atomic(frame, path)

    def report(self, preds, examples, out_dir, worst=30):
        from ..report import class_report

        return class_report(self.gold(examples), preds.argmax(axis=1), self.labels, out_dir,
                            f"RE confusion matrix ({Path(examples.attrs.get('path', '')).name})")
