"""Batched prediction for any task: length-sorted batches, dynamic padding, mixed precision, no per-row model calls."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import torch
from tqdm.auto import tqdm

from .batching import Features, ragged, sorted_batches
from .errors import KluekitError


def resolve_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_precision(precision: str, device: torch.device) -> str:
    """'bf16' | 'fp16' | 'fp32' for this device ('auto': bf16 where supported, fp32 on CPU)."""
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and device.type != "cuda":
        raise KluekitError("--precision fp16 needs a GPU; use fp32 or bf16 on CPU")
    return precision


def autocast(device: torch.device, precision: str):
    """Autocast context for the resolved precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


@contextlib.contextmanager
def matmul_tf32(enabled: bool):
    """fp32 matrix products on TensorFloat-32 tensor cores inside the block (``enabled``), as they were after it."""
    before = torch.get_float32_matmul_precision()
    if enabled:
        torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def head_modules(model) -> list[torch.nn.Module]:
    """The model's heads: its children with weights other than its encoder (``base_model`` in transformers,
    ``encoder`` in kluekit's own heads); none for a model without such an encoder (a sentence-transformers
    bi-encoder, a bare encoder)."""
    body = getattr(model, "base_model", None) or getattr(model, "encoder", None)
    if body is None or body is model:
        return []
    return [child for child in model.children() if child is not body and next(child.parameters(), None) is not None]


@contextlib.contextmanager
def fp32_heads(model, device: torch.device, precision: str):
    """Under bf16/fp16 autocast, the model's heads run in fp32 (on the encoder's half-precision states), so that
    scores are not rounded to 8 bits of mantissa (a regression score near 5 came out of bf16 in steps of 1/32)."""
    heads = head_modules(model) if precision != "fp32" else []
    kind, saved = device.type, []

    def before(module, args, kwargs):
        saved.append(torch.is_autocast_enabled(kind))
        torch.set_autocast_enabled(kind, False)
        cast = lambda x: x.float() if torch.is_tensor(x) and x.is_floating_point() else x  # noqa: E731
        return tuple(map(cast, args)), {name: cast(value) for name, value in kwargs.items()}

    def after(module, args, kwargs, output):
        torch.set_autocast_enabled(kind, saved.pop())

    handles = [hook for head in heads for hook in (head.register_forward_pre_hook(before, with_kwargs=True),
                                                   head.register_forward_hook(after, with_kwargs=True))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def default_batch_size(device: torch.device) -> int:
    """Prediction batch size when none is given: 128 on a GPU; 16 on the CPU, where smaller length-sorted
    batches were faster on 2 cores, with torch and with ONNX Runtime (less padding, activations that stay
    in cache; docs/benchmarks.md, CPU inference)."""
    return 128 if device.type == "cuda" else 16


def model_inputs(features: dict[str, list], labels: bool = False) -> dict[str, list]:
    """The features the model takes: without task-side keys (named ``_...``, e.g. NER's character
    offsets) and, unless ``labels``, without the labels."""
    return {k: v for k, v in features.items() if not k.startswith("_") and (labels or k != "labels")}


def pad_multiple(device: torch.device) -> int | None:
    """Pad batches to multiples of 8 tokens on a GPU (tensor cores), not at all on the CPU."""
    return 8 if device.type == "cuda" else None


def bars_off(wanted: bool = True) -> bool:
    """Whether a progress bar stays off: not ``wanted``, or ``TQDM_DISABLE`` set (tqdm's own switch, which an explicit
    ``disable=`` would otherwise override), e.g. for runs logged to a file."""
    return not wanted or os.environ.get("TQDM_DISABLE", "").lower() in {"1", "true", "yes"}


@torch.inference_mode()
def predict_raw(task, model, tokenizer, features: dict[str, list], batch_size: int, device: torch.device,
                precision: str = "fp32", progress: bool = True, desc: str = "predict"):
    """``task.batch_outputs`` of every example, in input order: an (n, ...) float32 array, or a ragged object
    array of per-example arrays (per-token outputs). Batches are length-sorted and padded to their longest."""
    dataset = Features(model_inputs(features))
    batches = sorted_batches(dataset.lengths, batch_size)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, generator=torch.Generator(),
                                         collate_fn=task.collator(tokenizer, pad_multiple(device)))
    was_training = model.training
    model.eval()
    parts = []
    with fp32_heads(model, device, precision):
        for batch in tqdm(loader, desc=desc, disable=bars_off(progress), leave=False, unit="batch"):
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with autocast(device, precision):
                outputs = task.forward(model, batch)
            parts.append(task.batch_outputs(outputs, batch))
    model.train(was_training)
    order = np.concatenate([np.asarray(b) for b in batches]) if batches else np.zeros(0, int)
    if parts and isinstance(parts[0], list):  # per-example arrays of different lengths
        raw = ragged(row for part in parts for row in part)
    else:
        raw = np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)
    result = np.empty_like(raw)
    result[order] = raw
    return result
