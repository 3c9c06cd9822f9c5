"""Batched prediction: length-sorted batches, dynamic padding, mixed precision, no per-row model calls."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

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


def make_collator(tokenizer, device: torch.device, token_labels: bool = False):
    """Dynamic padding to the longest input of a batch (multiples of 8 on GPU for tensor cores);
    ``token_labels``: the labels are one per token and are padded with -100 too."""
    multiple = 8 if device.type == "cuda" else None
    if token_labels:
        return DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=multiple)
    return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)


def model_inputs(features: dict[str, list], labels: bool = False) -> dict[str, list]:
    """The features the model takes: without task-side keys (named ``_...``, e.g. NER's character
    offsets) and, unless ``labels``, without the labels."""
    return {k: v for k, v in features.items() if not k.startswith("_") and (labels or k != "labels")}


@torch.inference_mode()
def predict_logits(model, tokenizer, features: dict[str, list], batch_size: int, device: torch.device,
                   precision: str = "fp32", progress: bool = True, desc: str = "predict") -> np.ndarray:
    """Logits for every example, in input order, as float32 numpy: (n, C) for sequence heads; for token
    heads an object array of n arrays (tokens of that example, C), padding cut off."""
    dataset = Features(model_inputs(features))
    batches = sorted_batches(dataset.lengths, batch_size)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=make_collator(tokenizer, device))
    was_training = model.training
    model.eval()
    outputs = []
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch"):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast(device, precision):
            logits = model(**batch).logits.float().cpu().numpy()
        if logits.ndim == 3:  # token head: one (length, C) array per example
            masks = batch["attention_mask"].bool().cpu().numpy()
            logits = ragged([row[mask] for row, mask in zip(logits, masks)])
        outputs.append(logits)
    model.train(was_training)
    order = np.concatenate([np.asarray(b) for b in batches]) if batches else np.zeros(0, int)
    logits = np.concatenate(outputs) if outputs else np.zeros((0, 1), np.float32)
    result = np.empty_like(logits)
    result[order] = logits
    return result
