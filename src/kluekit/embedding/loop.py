"""The bi-encoder's training loop, shared by its stages (NLI triplets, then STS pairs).

A ``Stage`` is a sentence-transformers loss, the batches of each epoch and a function that turns a batch
into the loss's inputs; ``run_stage`` trains through one with its own AdamW and linear warmup/decay.
"""

from __future__ import annotations

import dataclasses
import time
from types import SimpleNamespace
from typing import Callable

import torch
from tqdm.auto import tqdm

from ..inference import autocast
from ..training import make_optimizer

MAX_GRAD_NORM = 1.0


def make_loss(model, name: str):
    """A sentence-transformers loss on ``model``: ``cosent`` (ranks STS pairs within a batch), ``cosine``
    (MSE of cosine vs label) or ``mnrl`` (MultipleNegativesRankingLoss: in-batch and hard negatives)."""
    try:
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # sentence-transformers < 5.4
        from sentence_transformers import losses
    return {"cosent": losses.CoSENTLoss, "cosine": losses.CosineSimilarityLoss,
            "mnrl": losses.MultipleNegativesRankingLoss}[name](model)


def features(model, texts: list[str], device: torch.device) -> dict:
    """Tokenized, padded features of ``texts`` on ``device`` (``tokenize`` was renamed ``preprocess``)."""
    prepare = getattr(model, "preprocess", None) or model.tokenize
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in prepare(texts).items()}


@dataclasses.dataclass
class Stage:
    """One stage of training: ``loss`` over the batches of ``plan`` (per epoch, lists of row indices),
    ``inputs(batch)`` giving the loss's (features per text column, labels or None)."""

    name: str
    loss: torch.nn.Module
    plan: list[list[list[int]]]
    inputs: Callable[[list[int]], tuple[list[dict], torch.Tensor | None]]
    learning_rate: float

    @property
    def total_steps(self) -> int:
        return sum(len(batches) for batches in self.plan)


def warmup_steps(warmup: float, total_steps: int) -> int:
    """``--warmup`` as steps: a ratio of ``total_steps`` if < 1, else a number of steps."""
    return int(warmup * total_steps) if warmup < 1 else int(warmup)


def run_stage(model, stage: Stage, cfg, device: torch.device, precision: str, on_epoch: Callable[[int, int], None],
              writer=None, step0: int = 0) -> dict:
    """Train ``model`` through ``stage``: AdamW (``training.make_optimizer``, at the stage's learning rate),
    linear warmup (``cfg.warmup``) then decay, autocast, gradient clipping, a progress bar, the loss and
    learning rate to TensorBoard (``<stage>/loss`` at global step ``step0 + step``).

    ``on_epoch(epoch, step)`` runs after each epoch (evaluation, saving), outside the timed training.
    Returns the stage's steps, training seconds and rows seen.
    """
    from transformers import get_linear_schedule_with_warmup

    total = stage.total_steps
    rates = SimpleNamespace(learning_rate=stage.learning_rate, weight_decay=cfg.weight_decay)
    optimizer = make_optimizer(model, rates, fused=device.type == "cuda")
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup_steps(cfg.warmup, total), total)
    seconds, seen, step = 0.0, 0, 0
    progress = tqdm(total=total, unit="step", desc=stage.name, dynamic_ncols=True)
    model.train()
    for epoch, batches in enumerate(stage.plan, 1):
        started = time.perf_counter()
        for batch in batches:
            inputs, labels = stage.inputs(batch)
            with autocast(device, precision):
                loss = stage.loss(inputs, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step, seen = step + 1, seen + len(batch)
            progress.update(1)
            if step % 10 == 0:
                progress.set_postfix(loss=f"{loss.item():.4f}", epoch=epoch)
                if writer:
                    writer.add_scalar(f"{stage.name}/loss", loss.item(), step0 + step)
                    writer.add_scalar(f"{stage.name}/lr", scheduler.get_last_lr()[0], step0 + step)
        if device.type == "cuda":
            torch.cuda.synchronize()  # count the queued GPU work of this epoch as training time
        seconds += time.perf_counter() - started
        on_epoch(epoch, step)
        model.train()
    progress.close()
    return {"steps": step, "train_seconds": round(seconds, 3), "examples_seen": seen,
            "examples_per_s": round(seen / max(seconds, 1e-9), 2)}
