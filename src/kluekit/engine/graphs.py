"""CUDA graphs for training: the forward and backward of each batch shape are captured once and replayed.

A small encoder's training step is bound by the host: hundreds of kernels, each dispatched from Python
(``benchmarks/step_profile.py``). Replaying a captured graph launches them all at once (the pattern of
PyTorch's "whole-network capture"). Graphs need fixed shapes, so batches are padded up to a few length buckets
(``bucket_length``) and only full batches are replayed; others (an epoch's last, smaller batch) run eagerly, as
does evaluation. The update (gradient clipping, the optimizer's step, zeroing the gradients) has one shape and is
captured once (``GraphedUpdate``): eagerly, clip_grad_norm_ and AdamW cost the host about 1.5 ms a step in per-tensor
calls (``benchmarks/loop_profile.py``), more than the GPU needs for them.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from .checkpoint import rng_state, set_rng_state
from .distill import TARGETS

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
    bi-encoder batch has one group per text column. The teachers' predictions (``--teacher``) stay as they are.
    """
    out = dict(batch)
    prefixes = sorted((name[: -len(IDS)] for name in batch if name.endswith(IDS)), key=len, reverse=True)
    done = set()
    for prefix in prefixes:
        length = batch[prefix + IDS].shape[1]
        extra = length_of(length) - length
        for name, tensor in batch.items():
            if name in done or name == TARGETS or not name.startswith(prefix) or tensor.ndim < 2 \
                    or tensor.shape[1] != length:
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
        generators are left as found, so a run draws the same numbers whenever its shapes are captured. The first
        shape warms up 3 times (PyTorch's default; lazy initialisation of the libraries), later ones once (the
        per-shape plans), which saves ~2 eager steps per shape of a run's one-off cost."""
        static_batch = {name: tensor.clone() for name, tensor in batch.items()}
        saved = [param.grad.clone() for param in self.params]
        random_state = rng_state()
        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(1 if self.graphs else 3):
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


class GraphedUpdate:
    """``update()`` clips the gradients to ``max_grad_norm`` (0: no clipping), steps ``optimizer`` and zeroes the
    gradients in place, as one replayed CUDA graph once ``warm`` updates ran eagerly (the optimizer's state exists
    then, and the graph reads it where the eager steps left it).

    The graph is captured with the optimizer ``capturable`` and each group's learning rate in a GPU tensor of its
    own; after the capture the groups hold numbers again (the schedule, checkpoints and logs see what they always
    did) and every ``update()`` copies them into those tensors before the replay. A capture that fails leaves the
    eager update for the rest of the stage.
    """

    def __init__(self, optimizer, params: list, max_grad_norm: float, warm: int = 2):
        self.optimizer, self.params, self.max_grad_norm, self.warm = optimizer, params, max_grad_norm, warm
        self.graph, self.rates, self.failed, self.done = None, [], False, 0

    def eager(self) -> None:
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=False)  # the forward graphs add into these .grad tensors

    def __call__(self) -> None:
        if self.graph is None and not self.failed and self.done >= self.warm:
            self.capture()
        self.done += 1
        if self.graph is None:
            return self.eager()
        for group, rate in zip(self.optimizer.param_groups, self.rates):
            rate.fill_(group["lr"])
        self.graph.replay()

    def capture(self) -> None:
        groups = self.optimizer.param_groups
        before = [(group.get("capturable", False), group["lr"]) for group in groups]
        self.rates = [torch.tensor(float(lr), dtype=torch.float32, device=self.params[0].device) for _, lr in before]
        try:
            for group, rate in zip(groups, self.rates):
                group["capturable"], group["lr"] = True, rate
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self.eager()
            self.graph = graph
        except Exception as error:  # an optimizer that cannot be captured updates eagerly
            self.failed = True
            log.warning("CUDA graph of the optimizer step off (capture failed: %s)", str(error).splitlines()[0])
            check_cuda_usable(error)
        finally:
            for group, (capturable, lr) in zip(groups, before):
                group["capturable"], group["lr"] = capturable, lr
            torch.cuda.synchronize()


class BucketPadding:
    """A collator whose batches are padded up to ``bucket_length`` (few shapes, so few graphs)."""

    def __init__(self, collator, pad_id: int):
        self.collator, self.pad_id = collator, pad_id

    def __call__(self, features):
        return pad_batch(self.collator(features), self.pad_id)
