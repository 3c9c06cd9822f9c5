"""The optimizer and learning-rate schedule every model kind trains with."""

from __future__ import annotations

import torch
from transformers import get_scheduler

SCHEDULE_NAMES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


def warmup_steps(warmup: float, total_steps: int) -> int:
    """``--warmup`` as steps: a ratio of ``total_steps`` if < 1, else a number of steps."""
    return int(warmup * total_steps) if warmup < 1 else int(warmup)


def make_optimizer(model, learning_rate: float, weight_decay: float, fused: bool) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and normalisation weights (parameters with fewer than 2 dimensions)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=learning_rate, fused=fused)


def make_scheduler(optimizer, name: str, warmup: int, total_steps: int):
    """Warmup for ``warmup`` steps, then ``name`` (linear | cosine | constant) down to step ``total_steps``."""
    return get_scheduler(SCHEDULE_NAMES[name], optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
