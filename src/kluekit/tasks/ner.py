"""Named entity recognition on the KLUE-NER character-level format: one BIO tag per character.

Sentences are tokenized into subwords with character offsets (a fast tokenizer is needed); with
``--char-slots 0`` each token learns the tag of its first character. Predictions go back to characters: a
character takes the probabilities of the token that covers it (B- turned into I- after the token's first
character; its own slot's with ``--char-slots``), and a
character no token covers (a space, or one the tokenizer drops) continues an entity only where the next
token does, so every input character, [UNK] ones included, gets exactly one tag.

``--char-slots P`` (default 4) gives each token P tag predictions, one per character (the last shared by its
later characters): a token that joins a name's last syllable with its particle ("신은") can tag them apart,
which the first-character labels cannot (they cap entity F1 on KLUE-NER well below 100 even with gold tags;
on KLUE-NER dev 4 slots gave 80.05 entity F1 against 75.06, docs/benchmarks.md). The head
is a token-classification head of P x tags outputs, so such runs save, load, export and serve as any other.

Scores (KLUE): entity-level macro F1 (strict IOB2 spans) and character-level macro F1 without O, x100.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..batching import ragged
from ..config import opt
from ..data.ner import NER_LABELS, char_probs, ner_label_set, read_ner, token_labels, token_slot_labels, write_ner
from ..errors import DataError, KluekitError
from ..metrics import ner_metrics
from .base import Task, TaskOptions, label_config, softmax

log = logging.getLogger("kluekit")


@dataclass
class NEROptions(TaskOptions):
    char_slots: int = opt(4, "tag predictions per token, one per character (the last shared by later characters), "
                             "so one token can hold an entity's end and the particle after it (4 chosen on a split of "
                             "KLUE-NER train: +5.0 entity F1 over 0; docs/benchmarks.md); 0: one per token, learned "
                             "from its first character", minimum=0)


class SlotCollator:
    """Pads a batch as ``PadCollator`` and the ``(T, P)`` per-character labels to ``(B, T_max, P)``."""

    def __init__(self, tokenizer, pad_to_multiple_of=None):
        from ..batching import PadCollator

        self.pad = PadCollator(tokenizer, pad_to_multiple_of)

    def __call__(self, items):
        labels = [np.asarray(item["labels"]) for item in items] if "labels" in items[0] else None
        batch = self.pad([{k: v for k, v in item.items() if k != "labels"} for item in items])
        if labels is not None:
            padded = np.full((len(items), batch["input_ids"].shape[1], labels[0].shape[1]), -100, dtype=np.int64)
            for row, label in zip(padded, labels):
                row[:len(label)] = label
            batch["labels"] = torch.from_numpy(padded)
        return batch


class NERTask(Task):
    """Named entity recognition (KLUE-NER, character-level BIO tags): entity and character macro F1 x100."""

    name = "ner"
    primary_metric = "entity_f1"
    formats = ("auto", "klue", "text")
    Options = NEROptions
    fills_sample_submission = False

    def __init__(self, options=None, labels=None):
        super().__init__(options, labels)
        if self.options.char_slots == 1:
            raise KluekitError("--char-slots 1 would tag every character of a token alike: use 0 (one tag per token, "
                               "B- only on its first character) or 2 and more (gold tags through 4 slots give "
                               "entity F1 99.99 on KLUE-NER dev with e5-small-ko, tests/test_ner_data.py)")

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
            slots, tags = self.options.char_slots, self.tag_ids(examples)
            features["labels"] = ([token_slot_labels(spans, ids, slots) for spans, ids in zip(offsets, tags)] if slots
                                  else [token_labels(spans, ids) for spans, ids in zip(offsets, tags)])
        return features

    def model_class(self):
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    def model_config(self):
        slots = self.options.char_slots
        if not slots:
            return super().model_config()
        return label_config(f"{label}@{k}" for k in range(slots) for label in self.labels)  # slot-major, as slot_logits reads

    def collator(self, tokenizer, pad_to_multiple_of=None):
        if self.options.char_slots:
            return SlotCollator(tokenizer, pad_to_multiple_of)
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    def slot_logits(self, logits):
        """``(..., T, P x C)`` logits as ``(..., T, P, C)`` with ``--char-slots P``; unchanged without."""
        slots = self.options.char_slots
        return logits.reshape(*logits.shape[:-1], slots, -1) if slots else logits

    def loss(self, outputs, batch):
        logits = self.slot_logits(outputs.logits.float())
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].flatten(), ignore_index=-100)

    def consistency(self, first, second, batch):
        """R-Drop's term over each character slot's tag distribution (``--char-slots``), else the base one."""
        slots = self.options.char_slots
        if not slots:
            return super().consistency(first, second, batch)
        from types import SimpleNamespace

        def per_slot(outputs):  # (B, T, P*C) -> (B, T*P, C), each slot a position of its own
            logits = self.slot_logits(outputs.logits)
            return SimpleNamespace(logits=logits.flatten(1, 2))

        mask = batch["attention_mask"].repeat_interleave(slots, dim=1)
        return super().consistency(per_slot(first), per_slot(second), {**batch, "attention_mask": mask})

    def outputs(self, raw, features=None):
        """Per-character probabilities: an object array of (characters, C) arrays, one per sentence."""
        if features is None:
            raise KluekitError("ner outputs need the encoded features (character offsets)")
        probs = [char_probs(softmax(self.slot_logits(np.asarray(row))), spans, chars, self.labels)
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
