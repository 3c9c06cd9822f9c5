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

from .checkpoint import rng_state, set_rng_state

log = logging.getLogger("kluekit")
MAX_GRAPHS = 24  # past this many shapes, run eagerly
IDS = "input_ids"


def bucket_length(length: int) -> int:
    """``length`` rounded up to a bucket: multiples of 16 up to 128, of 32 up to 256, then of 64."""
    step = 16 if length <= 128 else 32 if length <= 256 else 64
    return -(-length // step) * step


def pad_batch(batch: dict, pad_id: int, length_of=bucket_length) -> dict:
    """The collated ``batch`` with each group of token tensors padded on the right to ``length_of`` its length.

    A group is the ``<prefix>input_ids`` tensor and the other tensors of the same prefix and length in
    dimension 1 (attention mask, token types; token labels with -100, also per-character ``(B, T, P)`` ones); a
    bi-encoder batch has one group per text column.
    """
    out = dict(batch)
    prefixes = sorted((name[: -len(IDS)] for name in batch if name.endswith(IDS)), key=len, reverse=True)
    done = set()
    for prefix in prefixes:
        length = batch[prefix + IDS].shape[1]
        extra = length_of(length) - length
        for name, tensor in batch.items():
            if name in done or not name.startswith(prefix) or tensor.ndim < 2 or tensor.shape[1] != length:
                continue
            done.add(name)
            if extra > 0:  # along dimension 1 (per-token labels may have more dimensions after it)
                fill = pad_id if name.endswith(IDS) else -100 if name == "labels" else 0
                out[name] = F.pad(tensor, (0, 0) * (tensor.ndim - 2) + (0, extra), value=fill)
    return out


class GraphedSteps:
    """``graphed(batch) -> loss`` runs forward, loss and backward of a training step, adding the gradients
    into ``.grad``, by replaying the CUDA graph captured for that batch shape.

    ``forward(model, batch)`` gives the model's outputs (run under autocast) and ``loss(outputs, batch)`` the
    task's loss; the backward pass takes it divided by ``accum`` (the gradient accumulation steps).
    ``precision``: 'fp32' or 'bf16'. The ``.grad`` tensors are allocated here and must stay (zero them with
    ``zero_grad(set_to_none=False)``): the graphs add into them in place. ``plain_forward`` (default ``forward``)
    runs the batches that are not captured because they are not full (an epoch's last): with a compiled
    ``forward`` that one odd shape would otherwise cost a whole recompilation.

    All shapes' graphs share one memory pool (``share_pool``), as serving engines share one across batch sizes:
    each graph reads only its static batch and the parameters and writes only into ``.grad`` and its own loss,
    which the caller reads before the next replay is queued, so no replay needs what another left in the pool.
    Without sharing, each shape kept its own pool and a run's graphs held the sum of their activations.
    """

    def __init__(self, model, forward, loss, batch_size: int, precision: str, accum: int = 1, plain_forward=None):
        self.model, self.forward, self.loss, self.batch_size, self.accum = model, forward, loss, batch_size, accum
        self.plain_forward = plain_forward or forward
        self.dtype = {"bf16": torch.bfloat16, "fp32": None}[precision]
        self.graphs: dict[tuple, tuple] = {}
        self.failed = False
        self.share_pool, self.pool = True, None
        self.params = [p for p in model.parameters() if p.requires_grad]
        for param in self.params:
            if param.grad is None:
                param.grad = torch.zeros_like(param)

    def forward_loss(self, batch: dict, forward=None) -> torch.Tensor:
        # autocast's weight cache must be off inside a graph
        with torch.autocast("cuda", dtype=self.dtype or torch.float32, enabled=self.dtype is not None,
                            cache_enabled=False):
            outputs = (forward or self.forward)(self.model, batch)
        return self.loss(outputs, batch)

    def eager(self, batch: dict, forward=None) -> torch.Tensor:
        loss = self.forward_loss(batch, forward)
        (loss / self.accum).backward()
        return loss.detach()

    def __call__(self, batch: dict) -> torch.Tensor:
        key = tuple((name, tuple(tensor.shape)) for name, tensor in sorted(batch.items()))
        entry = self.graphs.get(key)
        if entry is None:
            rows = next(iter(batch.values())).shape[0]
            if rows != self.batch_size:
                return self.eager(batch, self.plain_forward)
            if self.failed or len(self.graphs) >= MAX_GRAPHS:
                return self.eager(batch)
            entry = self.capture(batch)
            if entry is None:
                return self.eager(batch)
            self.graphs[key] = entry
        graph, static_batch, static_loss = entry
        for name, tensor in batch.items():
            static_batch[name].copy_(tensor, non_blocking=True)
        graph.replay()
        return static_loss

    def release(self) -> None:
        """Drop the graphs and their memory pool (before another stage builds its own)."""
        self.graphs.clear()
        self.pool = None

    def capture(self, batch: dict):
        """Warm up on a side stream (as CUDA graphs require), then capture; the gradients and the random
        generators are left as found, so a run draws the same numbers whenever its shapes are captured."""
        static_batch = {name: tensor.clone() for name, tensor in batch.items()}
        saved = [param.grad.clone() for param in self.params]
        random_state = rng_state()
        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self.eager(static_batch)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            # thread_local: the DataLoader's pinning thread may call CUDA meanwhile
            with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
                static_loss = self.forward_loss(static_batch)
                (static_loss / self.accum).backward()
            if self.share_pool and self.pool is None:
                self.pool = graph.pool()
        except Exception as error:  # a model or loss that cannot be captured trains eagerly
            self.failed = True
            log.warning("CUDA graphs off (capture failed: %s); training eagerly", str(error).splitlines()[0])
            check_cuda_usable(error)
            return None
        finally:
            torch.cuda.synchronize()
            for param, grad in zip(self.params, saved):
                param.grad.copy_(grad)
            try:
                set_rng_state(random_state)
            except RuntimeError as error:  # a generator the graph holds may refuse: the run stays valid, less exact
                log.debug("random state not restored after capture: %s", error)
        return graph, static_batch, static_loss.detach()


def check_cuda_usable(error: Exception) -> None:
    """A capture that broke off (a synchronising op inside it) can leave CUDA's random generator in capture
    mode, so that the next dropout fails far from the cause: stop now with the way out instead."""
    try:
        torch.nn.functional.dropout(torch.ones(8, device="cuda"), 0.5)
        torch.cuda.synchronize()
    except RuntimeError:
        from ..errors import KluekitError

        raise KluekitError(f"CUDA graph capture failed ({str(error).splitlines()[0]}) and left CUDA unusable for "
                           "this process; run again with --no-cuda-graphs") from None


class BucketPadding:
    """A collator whose batches are padded up to ``bucket_length`` (few shapes, so few graphs)."""

    def __init__(self, collator, pad_id: int):
        self.collator, self.pad_id = collator, pad_id

    def __call__(self, features):
        return pad_batch(self.collator(features), self.pad_id)
