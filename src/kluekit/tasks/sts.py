"""Semantic textual similarity: a cross-encoder regressing a 0-5 score for a sentence pair."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..config import opt
from ..data.io import clip_text, write_csv_atomic
from ..data.sts import FORMATS, check_labeled, read_sts
from ..data.submission import fill_sample_submission
from ..metrics import sts_metrics
from ..report import group_metrics_table, scatter_plot, worst_examples
from .base import Task, TaskOptions

CHARS_PER_TOKEN = 32  # texts are cut to max_length x this many characters before tokenizing: never fewer tokens
LOSSES = {"mse": F.mse_loss, "l1": F.l1_loss, "smooth_l1": F.smooth_l1_loss}
# dev scores spread less than this share of the labels' spread: collapsed (a KorSTS run that predicted about one
# constant, split Pearson 1.38, had a dev MSE of 2.09, about the labels' variance; quality_select_sts.json)
COLLAPSED_SPREAD = 0.05


def swap_augment_option(default: bool = False):
    """``--swap-augment``, declared once for every pair task."""
    return opt(default, "also train on every pair with its sentences swapped")


@dataclass
class STSOptions(TaskOptions):
    # runs saved before these were defaults
    LEGACY: ClassVar[dict] = {"swap_average": False, "init_mean": False, "swap_augment": False}
    loss: str = opt("mse", "regression loss", choices=list(LOSSES))
    # on by default, with 3 epochs (train_defaults): chosen on 10% splits of KorSTS and KLUE-STS training data
    # (3 seeds, benchmarks/results/quality_select_swap3.json, `swap_augment_epochs_3`)
    swap_augment: bool = swap_augment_option(True)
    # both on by default: chosen together on 10% splits of KorSTS and KLUE-STS training data (3 seeds,
    # benchmarks/results/quality_select_init.json, `init_mean_swap_average`)
    swap_average: bool = opt(True, "score every pair in both orders and average the two scores (dev scoring, "
                                   "evaluate, predict and serving; twice the prediction work)")
    init_mean: bool = opt(True, "start the regression head's output at the training labels' mean (its bias) "
                                 "instead of 0, so the first steps fit the spread, not the offset")


def with_swapped(examples: pd.DataFrame) -> pd.DataFrame:
    """``examples`` followed by the same pairs with their sentences swapped."""
    swapped = examples.rename(columns={"sentence1": "sentence2", "sentence2": "sentence1"})
    return pd.concat([examples, swapped[examples.columns]], ignore_index=True)


class STSTask(Task):
    """KLUE-STS: Pearson x100 (primary) and F1 x100 at 3.0."""

    name = "sts"
    teachable = True
    primary_metric = "pearson"
    Options = STSOptions
    formats = FORMATS
    # plain random batches: grouping by length cost quality on a 10% split of KLUE-STS and NSMC training data
    # (benchmarks/results/quality_select.json, `no_grouping`); --group-by-length turns it back on. 3 epochs of
    # both orders of every pair (--swap-augment): 1.5x the steps of 4 epochs of one order (quality_select_swap3.json).
    # Batches of 64 at lr 1e-4: the best split mean of the candidates that train KorSTS at >= 2.5x the Trainer
    # recipe's speed (batch 32 at 5e-5 did not: 2.14-2.39x; quality_select_batch64.json, `batch_64_lr_1e-4`:
    # -0.55 on the KorSTS split, +0.05 on KLUE-STS's; docs/benchmarks.md). --batch-size 32 --learning-rate 5e-5
    # gives the defaults before
    train_defaults = {"group_by_length": False, "epochs": 3.0, "batch_size": 64, "learning_rate": 1e-4}
    inference_options = ("swap_average",)  # e.g. `predict --no-swap-average`: one order, half the work

    def read(self, path, fmt="auto", require_labels=True):
        frame = read_sts(path, fmt, require_labels)
        if require_labels:
            check_labeled(frame)
        return frame

    def texts(self, examples):
        return examples["sentence1"].tolist() + examples["sentence2"].tolist()

    def augment(self, examples):
        return with_swapped(examples) if self.options.swap_augment else examples

    def inference_features(self, examples, tokenizer, max_length):
        if not self.options.swap_average:
            return self.encode(examples, tokenizer, max_length)
        features = self.encode(with_swapped(examples), tokenizer, max_length)
        features["_order"] = [0] * len(examples) + [1] * len(examples)  # outputs averages the two orders
        return features

    def encode(self, examples, tokenizer, max_length):
        first, second = (clip_text(examples[c].tolist(), max_length * CHARS_PER_TOKEN) for c in ("sentence1", "sentence2"))
        features = dict(tokenizer(first, second, truncation=True, max_length=max_length))
        if examples["label"].notna().all():
            features["labels"] = examples["label"].astype(np.float32).tolist()
        return features

    def model_config(self):
        return {"num_labels": 1, "problem_type": "regression"}

    def init_head(self, model, train_examples):
        """``--init-mean``: the output layer's bias becomes the labels' mean, if the head is fresh (transformers
        starts a new head's bias at exactly 0; a head trained before, e.g. ``--model <an STS run>``, is kept)."""
        if not self.options.init_mean:
            return
        out = next((m for m in reversed(list(model.modules())) if isinstance(m, torch.nn.Linear)
                    and m.out_features == 1 and m.bias is not None), None)
        if out is not None and not out.bias.detach().any():
            with torch.no_grad():
                out.bias.fill_(float(train_examples["label"].mean()))

    def loss(self, outputs, batch):
        return LOSSES[self.options.loss](outputs.logits.squeeze(-1).float(), batch["labels"].float())

    def outputs(self, raw, features=None):
        return np.clip(self.unclipped(raw, features), 0.0, 5.0)

    def unclipped(self, raw, features=None):
        """The model's scores before ``outputs`` clips them to the 0-5 scale (both orders' mean with swap_average)."""
        scores = np.asarray(raw, dtype=np.float64).reshape(len(raw), -1)[:, 0]
        if features is not None and "_order" in features:  # both orders of each pair (swap_average): their mean
            scores = scores.reshape(2, -1).mean(axis=0)
        return scores

    def gold(self, examples):
        return examples["label"].to_numpy(dtype=np.float64)

    def metrics(self, preds, gold):
        return sts_metrics(preds, gold)

    def collapse(self, preds, gold):
        spread, labels = float(np.std(preds)), float(np.std(gold))
        if len(preds) > 1 and spread < COLLAPSED_SPREAD * labels:
            return f"the scores are nearly one constant (standard deviation {spread:.3f}, the labels' {labels:.3f})"
        return None

    def serve_spec(self, limits):
        """``POST /similarity``: a sentence pair -> the cross-encoder's 0-5 STS score."""
        from pydantic import BaseModel, Field

        from .base import ServeSpec
        from .serve_fields import request_frame, text_field

        First = text_field(limits.max_text_chars, "first sentence", "오늘 날씨가 정말 좋네요.")
        Second = text_field(limits.max_text_chars, "second sentence", "날씨가 아주 맑고 좋습니다.")

        class STSItem(BaseModel):
            sentence1: First
            sentence2: Second

        class STSResult(BaseModel):
            score: float = Field(description="the cross-encoder's STS score, 0 (unrelated) to 5 (same meaning)")

        def examples(items):
            return request_frame({"source": [""] * len(items), "sentence1": [i.sentence1 for i in items],
                                  "sentence2": [i.sentence2 for i in items], "label": np.nan})

        return ServeSpec("/similarity", "STS score of a sentence pair (cross-encoder)", STSItem, STSResult, examples,
                         lambda preds, frame: [{"score": round(float(p), 6)} for p in preds])

    def write_predictions(self, preds, examples, path, sample_submission=None):
        frame = pd.DataFrame({"id": examples["id"].to_numpy(), "target": np.round(preds, 6)})
        if sample_submission:
            frame = fill_sample_submission(sample_submission, frame, examples.attrs.get("has_ids", True))
        write_csv_atomic(frame, path)

    def report(self, preds, examples, out_dir, worst=30):
        out_dir = Path(out_dir)
        gold = self.gold(examples)
        table = group_metrics_table(preds, gold, examples["source"], self.metrics, out_dir / "per_source.csv")
        scatter_plot(preds, gold, examples["source"], out_dir / "scatter.png",
                     title=f"STS: prediction vs gold ({Path(examples.attrs.get('path', '')).name})")
        worst_examples(examples.assign(pred=preds, error=np.abs(preds - gold)), ["sentence1", "sentence2"],
                       worst, out_dir / "worst.txt")
        return table
