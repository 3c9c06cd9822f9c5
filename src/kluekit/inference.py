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


def default_batch_size(device: torch.device) -> int:
    """Prediction batch size when none is given: 128 on a GPU; 16 on the CPU, where smaller length-sorted
    batches were faster on 2 cores, with torch and with ONNX Runtime (less padding, activations that stay
    in cache; docs/benchmarks.md, CPU inference)."""
    return 128 if device.type == "cuda" else 16


def load_predictor(task, run_dir, precision: str = "auto", runtime: str = "torch"):
    """(tokenizer, model, device, resolved precision) of a run, for ``predict_logits``: the torch model, or
    with ``runtime`` onnx / onnx-int8 an ONNX Runtime session that runs on the CPU."""
    from .modeling import load_run_model
    from .onnxrun import check_runtime, load_onnx_run_model

    check_runtime(runtime, precision)
    if runtime != "torch":
        return (*load_onnx_run_model(run_dir, task, runtime), torch.device("cpu"), "fp32")
    device = resolve_device()
    precision = resolve_precision(precision, device)
    return (*load_run_model(run_dir, task, device), device, precision)


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
