"""Extractive question answering (MRC): KorQuAD 1.0 and KLUE-MRC.

The question and its context are encoded together, contexts longer than ``--max-length`` split into
windows with ``--doc-stride`` tokens of overlap (``mrc_spans``); a ``transformers``
``AutoModelForQuestionAnswering`` learns the answer's start and end token (a window without the answer: its
``[CLS]`` token). Predictions are per-character start/end scores of each question's context (ensembles and
k-fold average them), decoded into the best valid span over all windows and mapped back to exact
characters. KLUE-MRC's unanswerable questions: the null answer wins when its score beats the best span's by
more than ``--null-threshold``. Scores: KorQuAD exact match and character F1, KLUE-MRC exact match and
ROUGE-W (``mrc_metrics``), x100.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch.nn.functional as F

from ..config import opt
from ..data.io import write_csv_atomic, write_text_atomic
from ..data.mrc import FORMATS, read_mrc
from ..errors import KluekitError
from ..mrc_metrics import mrc_metrics
from ..mrc_spans import best_spans, char_scores, encode_windows, resolve_stride, span_texts, window_labels
from .base import Task, TaskOptions

log = logging.getLogger("kluekit")
METRICS = ("auto", "f1", "exact_match", "rouge_w", "klue_exact_match")


@dataclass
class MRCOptions(TaskOptions):
    doc_stride: int = opt(0, "tokens of overlap between the windows of a long context (0: a third of --max-length, "
                             "transformers' 128 of 384)", minimum=0)
    max_question_length: int = opt(64, "questions are cut after this many tokens", minimum=1)
    max_answer_length: int = opt(30, "longest answer predicted, in tokens", minimum=1)
    n_best: int = opt(20, "start and end candidates per question combined into spans", minimum=1)
    null_answers: str = opt("auto", "predict 'no answer' (KLUE-MRC unanswerable questions): on, off, or auto (on "
                                    "when the training file has unanswerable questions)", choices=["auto", "on", "off"])
    null_threshold: float = opt(0.0, "the null answer wins when its score beats the best span's by more than this")
    metric: str = opt("auto", "the metric that keeps the best checkpoint (auto: rouge_w for KLUE-MRC files, else "
                              "KorQuAD's f1)", choices=list(METRICS))
    skip_bad_rows: bool = opt(False, "report and skip bad training/dev questions (e.g. an answer not at its "
                                     "answer_start) instead of stopping at the first")


class MRCTask(Task):
    """Extractive QA (KorQuAD 1.0, KLUE-MRC): exact match, character F1 and ROUGE-W x100."""

    name = "mrc"
    formats = FORMATS
    Options = MRCOptions
    fills_sample_submission = False
    onnx_output = ("start_logits", "end_logits")
    train_defaults = {"max_length": 384}  # question + context windows (run_qa.py's 384, stride 128)

    @property
    def primary_metric(self):
        return "f1" if self.options.metric == "auto" else self.options.metric

    def read(self, path, fmt="auto", require_labels=True):
        # questions are skipped only where answers are needed (train, evaluate): a submission keeps every one
        frame = read_mrc(path, fmt, require_labels, self.options.skip_bad_rows and require_labels)
        for message in frame.attrs.get("skipped", []):
            log.warning("skipped %s", message)
        return frame

    def texts(self, examples):
        return list(dict.fromkeys(examples["context"])) + examples["question"].tolist()

    def fit(self, train_examples):
        changes = {}
        if self.options.null_answers == "auto":
            changes["null_answers"] = "on" if train_examples["is_impossible"].any() else "off"
        if self.options.metric == "auto":
            changes["metric"] = "rouge_w" if train_examples.attrs.get("format") == "klue" else "f1"
        if changes:
            self.options = dataclasses.replace(self.options, **changes)

    def groups(self, examples):
        return examples["group"].to_numpy()

    def encode(self, examples, tokenizer, max_length):
        stride = resolve_stride(self.options.doc_stride, max_length)
        features = encode_windows(examples["question"].tolist(), examples["context"].tolist(), tokenizer, max_length,
                                  stride, self.options.max_question_length)
        features["_chars"] = examples["context"].str.len().tolist()
        labelled = (examples["answers"].map(len) > 0) | examples["is_impossible"]
        if len(examples) and labelled.all():
            starts = [s[0] if s else None for s in examples["answer_starts"]]
            ends = [s[0] + len(t[0]) if s else None for s, t in zip(examples["answer_starts"], examples["answers"])]
            features["labels"] = window_labels(features["_offsets"], features["_cls"], features["_example"],
                                               starts, ends)
        return features

    def model_class(self):
        from transformers import AutoModelForQuestionAnswering

        return AutoModelForQuestionAnswering

    def model_config(self):
        return {"num_labels": 2}

    def forward(self, model, batch):
        return model(**{k: v for k, v in batch.items() if k != "labels"})

    def loss(self, outputs, batch):
        labels = batch["labels"]
        return (F.cross_entropy(outputs.start_logits.float(), labels[:, 0])
                + F.cross_entropy(outputs.end_logits.float(), labels[:, 1])) / 2

    def batch_outputs(self, outputs, batch):
        logits = np.stack([outputs.start_logits.detach().float().cpu().numpy(),
                           outputs.end_logits.detach().float().cpu().numpy()], axis=-1)
        masks = batch["attention_mask"].bool().cpu().numpy()
        return [row[mask] for row, mask in zip(logits, masks)]

    def outputs(self, raw, features=None):
        """Per question a (characters + 1, 3) array of span scores (``mrc_spans.char_scores``)."""
        if features is None:
            raise KluekitError("mrc outputs need the encoded features (windows and character offsets)")
        return char_scores(raw, features, features["_chars"])

    def gold(self, examples):
        gold = np.empty(len(examples), dtype=object)
        for i, (context, answers) in enumerate(zip(examples["context"], examples["answers"])):
            gold[i] = (context, list(answers))
        return gold

    def spans(self, preds, contexts) -> pd.DataFrame:
        """``answer, score, start, end`` per question (end exclusive; -1 for no answer; ``score`` the span's
        probability among the candidates). The last result is kept: evaluate asks for the same predictions'
        spans three times (metrics, predictions.csv, report), and decoding them is the slow part."""
        contexts = list(contexts)
        kept = getattr(self, "_last_spans", None)
        if kept is not None and kept[0] is preds and kept[1] == contexts:
            return kept[2].copy()
        found = best_spans(preds, self.options.n_best, self.options.max_answer_length,
                           self.options.null_answers == "on", self.options.null_threshold)
        texts, starts, ends = span_texts(contexts, found["start"], found["end"])
        spans = pd.DataFrame({"answer": texts, "score": np.round(found["prob"], 6), "start": starts, "end": ends})
        self._last_spans = (preds, contexts, spans)
        return spans.copy()

    def serve_spec(self, limits):
        """``POST /answer``: a question and its context -> the answer span (text, score, character offsets)."""
        from pydantic import BaseModel, Field

        from .base import ServeSpec
        from .serve_fields import request_frame, text_field

        Question = text_field(limits.max_text_chars, "the question", "바그너는 괴테의 파우스트를 읽고 무엇을 쓰고자 했는가?")
        Context = text_field(limits.max_context_chars, "the passage the answer is taken from",
                             "1839년 바그너는 괴테의 파우스트을 처음 읽고 그 내용에 마음이 끌려 이를 소재로 해서 하나의 교향곡을 쓰려는 뜻을 갖는다.")

        class MRCItem(BaseModel):
            question: Question
            context: Context

        class MRCResult(BaseModel):
            answer: str = Field(description="the answer: context[start:end] ('' when the model finds none)")
            score: float = Field(description="the span's probability among the candidate spans (0-1)")
            start: int = Field(description="first character in the context (0-based; -1: no answer)")
            end: int = Field(description="one past the last character (exclusive; -1: no answer)")

        def examples(items):
            n = len(items)
            return request_frame({"title": [""] * n, "context": [i.context for i in items],
                                  "question": [i.question for i in items], "answers": [[] for _ in range(n)],
                                  "answer_starts": [[] for _ in range(n)], "is_impossible": [False] * n,
                                  "question_type": [""] * n, "group": [""] * n})

        def results(preds, frame):
            spans = self.spans(preds, frame["context"])
            return [{"answer": a, "score": float(s), "start": int(b), "end": int(e)}
                    for a, s, b, e in zip(spans["answer"], spans["score"], spans["start"], spans["end"])]

        return ServeSpec("/answer", "Answer a question from a passage (extractive)", MRCItem, MRCResult, examples,
                         results)

    def metrics(self, preds, gold):
        answers = self.spans(preds, [context for context, _ in gold])["answer"].tolist()
        return mrc_metrics(answers, [golds for _, golds in gold])

    def prediction_table(self, preds, examples):
        columns = [c for c in examples.columns if not c.startswith("_") and c != "group"]
        table = examples[columns].copy()
        table["answers"] = [json.dumps(list(a), ensure_ascii=False) for a in table["answers"]]
        table["answer_starts"] = [json.dumps([int(s) for s in a]) for a in table["answer_starts"]]
        spans = self.spans(preds, examples["context"])
        return pd.concat([table.reset_index(drop=True), spans.rename(columns={"answer": "pred_answer"})], axis=1)

    def write_predictions(self, preds, examples, path, sample_submission=None):
        """The KorQuAD submission JSON ``{id: answer}`` (a ``.json`` path) or the CSV ``id, answer, score,
        start, end``; the other form is written beside it (same name, other suffix) unless that is the input."""
        if sample_submission:
            raise KluekitError("--sample-submission is not supported for mrc")
        spans = self.spans(preds, examples["context"])
        spans.insert(0, "id", examples["id"].astype(str).to_numpy())
        path = Path(path)
        other = path.with_suffix(".csv" if path.suffix.lower() == ".json" else ".json")
        for target in (path, other):
            if target is other and Path(examples.attrs.get("path", "")).resolve() == target.resolve():
                log.warning("not writing %s: it is the input file", target)
                continue
            if target.suffix.lower() == ".json":
                write_text_atomic(target, json.dumps(dict(zip(spans["id"], spans["answer"])), ensure_ascii=False,
                                                     indent=1) + "\n")
            else:
                write_csv_atomic(spans, target)
            if target is other:
                log.info("also wrote %s", other)

    def report(self, preds, examples, out_dir, worst=30):
        from ..mrc_report import mrc_report

        return mrc_report(self.spans(preds, examples["context"]), examples, Path(out_dir), worst)
