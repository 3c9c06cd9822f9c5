"""CUDA graphs for training: the forward and backward of each batch shape are captured once and replayed.

A small encoder's training step is bound by the host: hundreds of kernels, each dispatched from Python
(``benchmarks/step_profile.py``). Replaying a captured graph launches them all at once (the pattern of
PyTorch's "whole-network capture", without the optimizer step, which stays outside with the scheduler). Graphs need
fixed shapes, so batches are padded up to a few length buckets (``bucket_length``) and only full
batches are replayed; others (an epoch's last, smaller batch) run eagerly, as does evaluation.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

log = logging.getLogger("kluekit")
MAX_GRAPHS = 24  # each shape keeps its own memory pool; past this many shapes, run eagerly


def bucket_length(length: int) -> int:
    """``length`` rounded up to a bucket: multiples of 16 up to 128, of 32 up to 256, then of 64."""
    step = 16 if length <= 128 else 32 if length <= 256 else 64
    return -(-length // step) * step


def pad_batch(batch: dict, length: int, pad_id: int) -> dict:
    """The collated ``batch`` padded on the right to ``length`` tokens (labels of token heads with -100)."""
    extra = length - batch["input_ids"].shape[1]
    if extra <= 0:
        return batch
    fill = {"input_ids": pad_id, "labels": -100}
    return {name: F.pad(t, (0, extra), value=fill.get(name, 0)) if t.ndim == 2 else t for name, t in batch.items()}


class GraphedSteps:
    """``graphed(batch, labels) -> loss`` runs forward, loss and backward of a training step, adding the
    gradients into ``.grad``, by replaying the CUDA graph captured for that batch shape.

    ``loss_fn(logits, labels)`` is the task's loss; the backward pass takes it divided by ``accum`` (the
    gradient accumulation steps). ``precision``: 'fp32' or 'bf16' (autocast inside the graph). The ``.grad``
    tensors are allocated here and must stay (zero them with ``zero_grad(set_to_none=False)``): the graphs
    add into them in place.
    """

    def __init__(self, model, loss_fn, batch_size: int, precision: str, accum: int = 1):
        self.model, self.loss_fn, self.batch_size, self.accum = model, loss_fn, batch_size, accum
        self.dtype = {"bf16": torch.bfloat16, "fp32": None}[precision]
        self.graphs: dict[tuple, tuple] = {}
        self.failed = False
        self.params = [p for p in model.parameters() if p.requires_grad]
        for param in self.params:
            if param.grad is None:
                param.grad = torch.zeros_like(param)

    def forward_loss(self, batch: dict, labels: torch.Tensor) -> torch.Tensor:
        # autocast's weight cache must be off inside a graph
        with torch.autocast("cuda", dtype=self.dtype or torch.float32, enabled=self.dtype is not None,
                            cache_enabled=False):
            logits = self.model(**batch).logits
        return self.loss_fn(logits, labels)

    def eager(self, batch: dict, labels: torch.Tensor) -> torch.Tensor:
        loss = self.forward_loss(batch, labels)
        (loss / self.accum).backward()
        return loss.detach()

    def __call__(self, batch: dict, labels: torch.Tensor) -> torch.Tensor:
        key = (tuple(sorted(batch)), tuple(batch["input_ids"].shape), tuple(labels.shape))
        entry = self.graphs.get(key)
        if entry is None:
            if self.failed or labels.shape[0] != self.batch_size or len(self.graphs) >= MAX_GRAPHS:
                return self.eager(batch, labels)
            entry = self.capture(batch, labels)
            if entry is None:
                return self.eager(batch, labels)
            self.graphs[key] = entry
        graph, static_batch, static_labels, static_loss = entry
        for name, tensor in batch.items():
            static_batch[name].copy_(tensor, non_blocking=True)
        static_labels.copy_(labels, non_blocking=True)
        graph.replay()
        return static_loss

    def capture(self, batch: dict, labels: torch.Tensor):
        """Warm up on a side stream (as CUDA graphs require), then capture; the gradients are left as found."""
        static_batch = {name: tensor.clone() for name, tensor in batch.items()}
        static_labels = labels.clone()
        saved = [param.grad.clone() for param in self.params]
        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self.eager(static_batch, static_labels)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            # thread_local: the DataLoader's pinning thread may call CUDA meanwhile
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                static_loss = self.forward_loss(static_batch, static_labels)
                (static_loss / self.accum).backward()
        except Exception as error:  # a model or loss that cannot be captured trains eagerly
            self.failed = True
            log.warning("CUDA graphs off (capture failed: %s); training eagerly", str(error).splitlines()[0])
            return None
        finally:
            torch.cuda.synchronize()
            for param, grad in zip(self.params, saved):
                param.grad.copy_(grad)
        return graph, static_batch, static_labels, static_loss.detach()


class BucketPadding:
    """A collator whose batches are padded up to ``bucket_length`` (few shapes, so few graphs)."""

    def __init__(self, collator, pad_id: int):
        self.collator, self.pad_id = collator, pad_id

    def __call__(self, features):
        batch = self.collator(features)
        return pad_batch(batch, bucket_length(batch["input_ids"].shape[1]), self.pad_id)
