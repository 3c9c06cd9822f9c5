"""The optimizer and learning-rate schedule every model kind trains with.

With ``layer_decay`` < 1 the encoder's parameters train at lower rates the deeper they sit (layer-wise
learning-rate decay, as ELECTRA and BEiT fine-tune): the embeddings are depth 0, layer ``i`` is depth ``i + 1``,
everything else (heads, pooler, final norms) depth ``num_layers + 1``, and a parameter at depth ``d`` gets
``learning_rate * layer_decay ** (num_layers + 1 - d)``. The layers are found from parameter names and the
layer count from the model's config, so any transformers encoder (or a wrapper holding one) works.
"""

from __future__ import annotations

import re

import torch
from transformers import get_scheduler

from ..errors import KluekitError

SCHEDULE_NAMES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}
LAYER_INDEX = re.compile(r"(?:^|\.)(?:layer|layers|h|block)\.(\d+)\.")  # encoder.layer.3. / transformer.h.3. / ...
EMBEDDING_NAME = re.compile(r"embeddings|(?:^|\.)(?:wte|wpe)(?:\.|$)")


def warmup_steps(warmup: float, total_steps: int) -> int:
    """``--warmup`` as steps: a ratio of ``total_steps`` if < 1, else a number of steps."""
    return int(warmup * total_steps) if warmup < 1 else int(warmup)


def check_layer_decay(layer_decay: float) -> None:
    """KluekitError unless 0 < ``layer_decay`` <= 1 (1: every parameter at the same rate)."""
    if not 0 < layer_decay <= 1:
        raise KluekitError(f"--layer-decay: {layer_decay} must be in (0, 1] (1: off; usual values 0.8 to 0.95)")


def layer_count(model) -> int:
    """The number of encoder layers, from the first config among the model's modules that names it
    (``num_hidden_layers`` or ``n_layer``): the model's own, or that of the encoder a wrapper holds."""
    for module in model.modules():
        config = getattr(module, "config", None)
        count = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
        if isinstance(count, int) and count > 0:
            return count
    raise KluekitError("--layer-decay: the model's config gives no layer count (num_hidden_layers or n_layer); "
                       "train it with --layer-decay 1")


def depth(name: str, num_layers: int) -> int:
    """A parameter's depth from its name: 0 for embeddings, ``i + 1`` for layer ``i``, ``num_layers + 1`` else."""
    found = LAYER_INDEX.search(name)
    if found:
        return min(int(found.group(1)) + 1, num_layers)
    return 0 if EMBEDDING_NAME.search(name) else num_layers + 1


def decay_groups(model, learning_rate: float, weight_decay: float, layer_decay: float) -> list[dict]:
    """Parameter groups by (depth, decay or not), shallowest first, each with its scaled ``lr`` (and ``lr_scale``)."""
    num_layers = layer_count(model)
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        level, no_decay = depth(name, num_layers), param.ndim < 2
        scale = layer_decay ** (num_layers + 1 - level)
        group = groups.setdefault((level, no_decay), {"params": [], "weight_decay": 0.0 if no_decay else weight_decay,
                                                      "lr": learning_rate * scale, "lr_scale": scale})
        group["params"].append(param)
    if not any(0 < level <= num_layers for level, _ in groups):
        raise KluekitError("--layer-decay: no parameter name shows an encoder layer (...layer.<i>. / layers.<i>. / "
                           "h.<i>. / block.<i>.); train this model with --layer-decay 1")
    return [groups[key] for key in sorted(groups)]


def make_optimizer(model, learning_rate: float, weight_decay: float, fused: bool,
                   layer_decay: float = 1.0) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and normalisation weights (parameters with fewer than 2 dimensions).
    ``layer_decay`` < 1: layer-wise rates (module docstring); each group's ``lr`` is its scaled rate, which the
    schedule (``make_scheduler``, created after) multiplies, so the ratios hold through training."""
    check_layer_decay(layer_decay)
    if layer_decay < 1:
        return torch.optim.AdamW(decay_groups(model, learning_rate, weight_decay, layer_decay), lr=learning_rate,
                                 fused=fused)
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=learning_rate, fused=fused)


def make_scheduler(optimizer, name: str, warmup: int, total_steps: int):
    """Warmup for ``warmup`` steps, then ``name`` (linear | cosine | constant) down to step ``total_steps``."""
    return get_scheduler(SCHEDULE_NAMES[name], optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
