"""Named entity recognition on the KLUE-NER character-level format: one BIO tag per character.

Sentences are tokenized into subwords with character offsets (a fast tokenizer is needed); each token
learns the tag of its first character. Predictions go back to characters: a character takes the
probabilities of the token that covers it (B- turned into I- after the token's first character), and a
character no token covers (a space, or one the tokenizer drops) continues an entity only where the next
token does, so every input character, [UNK] ones included, gets exactly one tag. Scores (KLUE): entity-level
macro F1 (strict IOB2 spans) and character-level macro F1 without O, x100.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch.nn.functional as F

from ..batching import ragged
from ..data.ner import NER_LABELS, char_probs, ner_label_set, read_ner, token_labels, write_ner
from ..errors import DataError, KluekitError
from ..metrics import ner_metrics
from .base import Task, TaskOptions, softmax

log = logging.getLogger("kluekit")


@dataclass
class NEROptions(TaskOptions):
    pass


class NERTask(Task):
    """Named entity recognition (KLUE-NER, character-level BIO tags): entity and character macro F1 x100."""

    name = "ner"
    primary_metric = "entity_f1"
    formats = ("auto", "klue", "text")
    Options = NEROptions
    fills_sample_submission = False

    def default_labels(self):
        return []  # the official tag set, or the training file's own (see ``fit``)

    def read(self, path, fmt="auto", require_labels=True):
        frame = read_ner(path, fmt, require_labels)
        if self.labels and frame.attrs.get("has_tags"):
            self.tag_ids(frame)  # unknown tags fail here, before any model is loaded
        return frame

    def texts(self, examples):
        return examples["sentence"].tolist()

    def fit(self, train_examples):
        if not self.labels:
            self.labels = ner_label_set(train_examples["tags"])
            if self.labels != list(NER_LABELS):
                log.info("tag set (from the training file): %s", ", ".join(self.labels))

    def tag_ids(self, examples) -> list[np.ndarray]:
        """Each sentence's tags as label ids; an unknown tag is a DataError on its sentence."""
        index = {tag: i for i, tag in enumerate(self.labels)}
        ids = []
        for tags, row in zip(examples["tags"], examples["_row"]):
            unknown = [tag for tag in tags if tag not in index]
            if unknown:
                raise DataError(examples.attrs.get("path", "input"), int(row), None,
                                f"tag {unknown[0]!r} is not one of the model's tags ({', '.join(self.labels)})")
            ids.append(np.fromiter((index[tag] for tag in tags), dtype=np.int64, count=len(tags)))
        return ids

    def encode(self, examples, tokenizer, max_length):
        if not tokenizer.is_fast:
            raise KluekitError("ner needs a fast tokenizer (character offsets); this model has a slow one")
        sentences = examples["sentence"].tolist()
        features = dict(tokenizer(sentences, truncation=True, max_length=max_length, return_offsets_mapping=True))
        offsets = features.pop("offset_mapping")
        cut = sum(1 for spans, text in zip(offsets, sentences) if max(end for _, end in spans) < len(text.rstrip()))
        if cut:
            log.warning("%d of %d sentences are longer than --max-length %d tokens: their last characters are "
                        "tagged O; raise --max-length", cut, len(sentences), max_length)
        features["_offsets"] = offsets
        features["_chars"] = [len(text) for text in sentences]
        if examples.attrs.get("has_tags"):
            features["labels"] = [token_labels(spans, ids) for spans, ids in zip(offsets, self.tag_ids(examples))]
        return features

    def model_class(self):
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    def collator(self, tokenizer, pad_to_multiple_of=None):
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    def loss(self, outputs, batch):
        return F.cross_entropy(outputs.logits.float().flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)

    def outputs(self, raw, features=None):
        """Per-character probabilities: an object array of (characters, C) arrays, one per sentence."""
        if features is None:
            raise KluekitError("ner outputs need the encoded features (character offsets)")
        probs = [char_probs(softmax(row), spans, chars, self.labels)
                 for row, spans, chars in zip(raw, features["_offsets"], features["_chars"])]
        return ragged(probs)

    def gold(self, examples):
        return ragged(self.tag_ids(examples))

    def metrics(self, preds, gold):
        return ner_metrics([p.argmax(axis=1) for p in preds], list(gold), self.labels)

    def pred_tags(self, preds) -> list[list[str]]:
        names = np.asarray(self.labels, dtype=object)
        return [names[p.argmax(axis=1)].tolist() for p in preds]

    def prediction_columns(self, preds):
        return {"pred_tags": [" ".join(tags) for tags in self.pred_tags(preds)]}

    def serve_spec(self, limits):
        """``POST /entities``: a sentence -> its entity spans with types and character offsets."""
        from pydantic import BaseModel, Field

        from ..data.ner import entity_spans
        from .base import ServeSpec
        from .serve_fields import request_frame, text_field

        Sentence = text_field(limits.max_text_chars, "the sentence", "특히 영동고속도로 강릉 방향 문막휴게소에서 만종분기점까지 5㎞ 구간에는")

        class NERItem(BaseModel):
            sentence: Sentence

        class NamedEntity(BaseModel):
            text: str = Field(description="the entity as written: sentence[start:end]")
            type: str = Field(description="entity type (e.g. PS, LC, OG, DT, TI, QT)")
            start: int = Field(description="first character (0-based)")
            end: int = Field(description="one past the last character (exclusive)")

        class NERResult(BaseModel):
            entities: list[NamedEntity] = Field(description="entity spans in sentence order")

        def results(preds, frame):
            return [{"entities": [{"text": sentence[s:e], "type": kind, "start": s, "end": e}
                                  for s, e, kind in entity_spans(tags)]}
                    for sentence, tags in zip(frame["sentence"], self.pred_tags(preds))]

        def examples(items):
            sentences = [i.sentence for i in items]
            return request_frame({"sentence": sentences, "tags": [[""] * len(s) for s in sentences]}, has_tags=False)

        return ServeSpec("/entities", "Named entities of a sentence, with character offsets", NERItem, NERResult,
                         examples, results)

    def write_predictions(self, preds, examples, path, sample_submission=None):
        if sample_submission:
            raise KluekitError("--sample-submission is not supported for ner")
        write_ner(path, examples["id"].tolist(), examples["sentence"].tolist(), self.pred_tags(preds))

    def report(self, preds, examples, out_dir, worst=30):
        from ..report import class_report

        gold = np.concatenate(list(self.gold(examples)))
        pred = np.concatenate([p.argmax(axis=1) for p in preds])
        self.write_predictions(preds, examples, Path(out_dir) / "predictions.tsv")
        return class_report(gold, pred, self.labels, out_dir,
                            f"NER character tags ({Path(examples.attrs.get('path', '')).name})")
