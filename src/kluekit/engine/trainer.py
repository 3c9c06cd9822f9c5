"""The one training loop: every model kind (cross-encoders, the bi-encoder, language models) trains here.

``Trainer`` owns the loop, gradient accumulation, mixed precision, CUDA graphs, DDP through accelerate,
evaluation every epoch or N steps, best-model keeping (of a weight average with ``--ema-decay``), exact
resume, progress with ETA, TensorBoard and the throughput / peak-memory record. What differs between model
kinds comes from the task (``tasks/base.py``): ``forward(model, batch)`` and ``loss(outputs, batch)``; the data
comes as a ``TrainData``::

    data = TrainData(Features(features), plan=lambda epoch, rank, world: batches, collate=collator, pad_id=0)
    result = Trainer(model, task, data, cfg, run_dir, evaluator=evaluator, save_best=save).fit()
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from ..inference import bars_off, matmul_tf32, resolve_precision
from .checkpoint import find_checkpoint, load_checkpoint, read_progress, save_checkpoint
from .ema import EMA
from .graphs import BucketPadding, GraphedSteps, GraphedUpdate
from .optim import make_optimizer, make_scheduler, warmup_steps

log = logging.getLogger("kluekit")


@dataclass
class TrainData:
    """What one training stage iterates: ``dataset[i]`` is one example's features, ``plan(epoch, rank, world)``
    the batches (lists of indices) of an epoch for one process, ``collate`` makes a batch of tensors,
    ``pad_id`` pads token ids when batches are padded to CUDA-graph buckets."""

    dataset: torch.utils.data.Dataset
    plan: Callable[[int, int, int], list[list[int]]]
    collate: Callable[[list[dict]], dict]
    pad_id: int = 0


def use_cuda_graphs(cfg, device_type: str, precision: str) -> bool:
    """CUDA graphs where they are safe: one CUDA process (DDP's gradient hooks are not captured), fp32 or bf16
    (fp16's loss scaling stays with accelerate)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return cfg.cuda_graphs and device_type == "cuda" and world == 1 and precision in ("fp32", "bf16")


WARM_STEPS = 10  # steps left out of the steady speed


def compiled(forward):
    """``forward`` through ``torch.compile`` (its kernels fused; compiled at the first batch of each shape)."""
    log.info("compiling the training step (torch.compile): the first steps take a while")
    return torch.compile(forward)


def host_copy(value: torch.Tensor) -> tuple[torch.Tensor, torch.cuda.Event | None]:
    """(a host copy of ``value``, the event after which it holds the value: None where it already does). On a
    GPU the copy goes to pinned memory without blocking the host."""
    if value.device.type != "cuda":
        return value.detach().clone(), None
    host = torch.empty(value.shape, dtype=value.dtype, pin_memory=True)
    host.copy_(value.detach(), non_blocking=True)
    ready = torch.cuda.Event()
    ready.record()
    return host, ready


def real_tokens(batch: dict) -> int:
    """Tokens of a (CPU) batch that are not padding: the sum of its attention masks (one per text column)."""
    return int(sum(tensor.sum() for name, tensor in batch.items() if name.endswith("attention_mask")))


class Trainer:
    """Trains ``model`` through one stage and returns its record (``fit``).

    ``step`` gives ``forward`` and ``loss`` (a Task); ``cfg`` the run options (epochs, batch size, rates,
    precision, ...). ``evaluator(model) -> (metrics, outputs)`` (with ``primary`` and ``greater_is_better``)
    scores the dev data; ``save_best(model)`` keeps the best model (every evaluation's model without an
    evaluator; never with ``keep_best=False``). ``stage`` names the stage in checkpoints and logs; ``carry``
    is recorded with every checkpoint (results of earlier stages).
    """

    def __init__(self, model, step, data: TrainData, cfg, run_dir, evaluator=None, save_best=None,
                 stage: str = "train", keep_best: bool = True, carry: dict | None = None):
        from accelerate import Accelerator

        self.step, self.data, self.cfg, self.run_dir = step, data, cfg, Path(run_dir)
        self.evaluator, self.save_best, self.stage, self.keep_best = evaluator, save_best, stage, keep_best
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
        self.precision = resolve_precision(cfg.precision, torch.device(device_type))
        self.graphs = use_cuda_graphs(cfg, device_type, self.precision) and getattr(step, "cuda_graphs", True)
        # with graphs, autocast runs inside the captured step (GraphedSteps), not around the model
        self.accelerator = Accelerator(mixed_precision="no" if self.graphs or self.precision == "fp32" else self.precision,
                                       cpu=device_type == "cpu")
        self.main = self.accelerator.is_main_process
        acc = self.accelerator
        self.per_epoch = math.ceil(len(data.plan(0, acc.process_index, acc.num_processes)) / cfg.grad_accum)
        self.total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * self.per_epoch))
        self.warmup = warmup_steps(cfg.warmup, self.total_steps)
        optimizer = make_optimizer(model, cfg.learning_rate, cfg.weight_decay, fused=device_type == "cuda",
                                   layer_decay=cfg.layer_decay)
        self.scheduler = make_scheduler(optimizer, cfg.scheduler, self.warmup, self.total_steps)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        # after prepare: the average lives on the device the weights were moved to
        self.ema = EMA(self.unwrapped.parameters(), cfg.ema_decay) if cfg.ema_decay else None
        self.collate = BucketPadding(data.collate, data.pad_id) if self.graphs else data.collate
        self.forward = compiled(step.forward) if cfg.compile and device_type == "cuda" \
            else step.forward
        self.graphed = GraphedSteps(self.model, self.forward, step.loss, cfg.batch_size, self.precision,
                                    cfg.grad_accum, plain_forward=step.forward) if self.graphs else None
        self.update = GraphedUpdate(self.optimizer, self.graphed.params, cfg.max_grad_norm) if self.graphs else None
        self.state = {"stage": stage, "global_step": 0, "epoch": 0, "batch": 0, "best": None, "best_step": None,
                      "history": [], "train_seconds": 0.0, "train_examples_seen": 0, "train_tokens_seen": 0,
                      "carry": carry or {}}
        self.best_outputs = None  # the evaluator's outputs for the kept model (not saved in checkpoints)
        self.first_step, self.warm = 0, None  # (train seconds, tokens) once WARM_STEPS steps of this process ran
        self.pending = None  # (step, its loss on the host, the copy's event): logged at the next logging step

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    def parts(self) -> dict:
        return {"model": self.unwrapped, "optimizer": self.optimizer, "scheduler": self.scheduler,
                "scaler": self.accelerator.scaler, "ema": self.ema}

    def resume(self) -> bool:
        """Continue from the run's checkpoint if it belongs to this stage; True if it did."""
        folder = find_checkpoint(self.run_dir)
        if folder is None or read_progress(folder).get("stage", self.stage) != self.stage:
            return False
        self.state = load_checkpoint(folder, self.parts(), self.accelerator.process_index, self.accelerator.device)
        if self.ema is not None and not (folder / "ema.pt").is_file():
            log.warning("--ema-decay: the checkpoint holds no weight average; starting one from its weights")
            self.ema.reset()
        self.first_step = self.state["global_step"]
        log.info("%s: resumed from step %d (epoch %d, batch %d)", self.stage, self.state["global_step"],
                 self.state["epoch"], self.state["batch"])
        return True

    def fit(self) -> dict:
        """Train to ``total_steps``, evaluating (and checkpointing) every epoch or ``cfg.eval_steps``."""
        state, writer = self.state, None
        if self.main and self.cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.run_dir / "logs"))
        progress = tqdm(total=self.total_steps, initial=state["global_step"], disable=bars_off(self.main), unit="step",
                        desc=self.stage, dynamic_ncols=True)
        try:
            with matmul_tf32(self.cfg.tf32):
                self.loop(writer, progress)
        finally:  # also on an error: the bar ends its line before the message, the log is flushed
            progress.close()
            if writer:
                writer.close()
        return self.record()

    def loop(self, writer, progress) -> None:
        """The epochs and steps of ``fit``."""
        cfg, acc, state = self.cfg, self.accelerator, self.state
        self.model.train()
        while state["global_step"] < self.total_steps and not state.get("stopped_early"):
            batches = self.data.plan(state["epoch"], acc.process_index, acc.num_processes)
            # a generator of its own: creating the iterator must not draw from torch's global one (dropout)
            loader = torch.utils.data.DataLoader(self.data.dataset, batch_sampler=batches[state["batch"]:],
                                                 collate_fn=self.collate, num_workers=cfg.num_workers,
                                                 pin_memory=acc.device.type == "cuda", generator=torch.Generator())
            started = time.perf_counter()
            for index, batch in enumerate(loader, state["batch"]):
                state["train_tokens_seen"] += real_tokens(batch) * acc.num_processes
                update = (index + 1) % cfg.grad_accum == 0 or index + 1 == len(batches)
                loss = self.train_step({k: v.to(acc.device, non_blocking=True) for k, v in batch.items()}, update)
                state["train_examples_seen"] += len(batches[index]) * acc.num_processes
                if not update:
                    continue
                self.optimizer_step()
                state["global_step"] += 1
                progress.update(1)
                if state["global_step"] - self.first_step == WARM_STEPS:  # compiling and capturing are behind
                    self.warm = (state["train_seconds"] + self.elapsed(started), state["train_tokens_seen"])
                if state["global_step"] % 10 == 0:
                    self.log_step(writer, progress, loss)
                epoch_done = index + 1 == len(batches)
                state["epoch"], state["batch"] = (state["epoch"] + 1, 0) if epoch_done else (state["epoch"], index + 1)
                at_end = state["global_step"] >= self.total_steps
                if at_end or (cfg.eval_steps and state["global_step"] % cfg.eval_steps == 0) or \
                        (epoch_done and not cfg.eval_steps):
                    state["train_seconds"] += self.elapsed(started)
                    self.evaluate(writer)
                    at_end = at_end or self.out_of_patience()
                    if not at_end:
                        save_checkpoint(self.run_dir, self.parts(), state, acc.process_index, self.main,
                                        acc.wait_for_everyone)
                    started = time.perf_counter()
                if at_end:
                    break
            state["train_seconds"] += self.elapsed(started)

    def out_of_patience(self) -> bool:
        """``--patience N``: True (and logged) once the last N evaluations all came after the best one."""
        state, patience = self.state, self.cfg.patience
        if not patience or self.evaluator is None or state["best_step"] is None:
            return False
        since = sum(entry["step"] > state["best_step"] for entry in state["history"])
        if since < patience:
            return False
        log.info("%s: stopping early at step %d: %d evaluations without a better dev score than step %d's",
                 self.stage, state["global_step"], since, state["best_step"])
        state["stopped_early"] = True
        return True

    def train_step(self, batch: dict, update: bool) -> torch.Tensor:
        """Forward, loss and backward of one batch (gradients summed over ``grad_accum`` batches)."""
        acc = self.accelerator
        sync = contextlib.nullcontext() if update or acc.num_processes == 1 else acc.no_sync(self.model)
        with sync:
            if self.graphed is not None:
                return self.graphed(batch)
            full = len(next(iter(batch.values()))) == self.cfg.batch_size
            with acc.autocast():  # a compiled forward for full batches only: an odd last batch would recompile it
                outputs = (self.forward if full else self.step.forward)(self.model, batch)
            loss = self.step.loss(outputs, batch)
            acc.backward(loss / self.cfg.grad_accum)
            return loss.detach()

    def optimizer_step(self) -> None:
        """Clip, step and zero the gradients (one CUDA graph with ``update``), then the weight average and the
        schedule."""
        if self.update is not None:
            self.update()
        else:
            if self.cfg.max_grad_norm:
                self.accelerator.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update()
        self.scheduler.step()

    def elapsed(self, started: float) -> float:
        if self.accelerator.device.type == "cuda":
            torch.cuda.synchronize()  # count the queued GPU work as training time
        return time.perf_counter() - started

    def log_step(self, writer, progress, loss: torch.Tensor) -> None:
        """Shows and records the loss of the previous logging step, and starts copying this one's to the host
        for the next: reading a GPU value with ``.item()`` would wait for every step queued behind it and leave
        the GPU idle while the host prepares the next batch; the copy's event waits only for that step."""
        (step, value, ready), self.pending = self.pending or (None, None, None), (self.state["global_step"],
                                                                                  *host_copy(loss))
        if step is None:
            return
        if ready is not None:
            ready.synchronize()
        value, lr = value.item(), max(self.scheduler.get_last_lr())  # the peak rate (--layer-decay lowers others)
        progress.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}")
        if writer:
            writer.add_scalar(f"{self.stage}/loss", value, step)
            writer.add_scalar(f"{self.stage}/lr", lr, self.state["global_step"])

    def evaluate(self, writer) -> None:
        """Score the dev data (if any), record it, and keep the model if it is the best so far; with
        ``--ema-decay``, of the weight average, swapped in for this and out after (training goes on raw)."""
        with self.ema.applied() if self.ema is not None else contextlib.nullcontext():
            self.score(writer)

    def score(self, writer) -> None:
        """``evaluate`` with the weights the model holds now."""
        state, better = self.state, self.keep_best
        if self.evaluator is not None:
            metrics, outputs = self.evaluator(self.unwrapped)
            self.model.train()
            key, best = self.evaluator.primary, state["best"]
            better = self.keep_best and (best is None or (metrics[key] > best[key]) == self.evaluator.greater_is_better)
            state["history"].append({"step": state["global_step"], "epoch": round(state["global_step"] / self.per_epoch, 3),
                                     **({"stage": self.stage} if not self.keep_best else {}), **metrics})
            if writer:
                for name, value in metrics.items():
                    writer.add_scalar(f"dev/{name}", value, state["global_step"])
            log.info("%s step %d dev: %s%s", self.stage, state["global_step"],
                     " ".join(f"{k}={v:.2f}" for k, v in metrics.items()), " (best)" if better else "")
            if better:
                state["best"], state["best_step"], self.best_outputs = metrics, state["global_step"], outputs
        if better and self.main and self.save_best is not None:
            self.save_best(self.unwrapped)
        self.accelerator.wait_for_everyone()

    def steady(self) -> dict:
        """Tokens per second after the first ``WARM_STEPS`` steps (compilation, graph capture, cuDNN/cuBLAS
        start-up): the speed a long run keeps."""
        if self.warm is None or self.state["train_seconds"] <= self.warm[0]:
            return {}
        seconds, tokens = self.state["train_seconds"] - self.warm[0], self.state["train_tokens_seen"] - self.warm[1]
        return {"steady_tokens_per_s": round(tokens / seconds, 1)}

    def record(self) -> dict:
        """The stage's record: best dev metrics and step, every evaluation, throughput, peak GPU memory."""
        state = self.state
        result = {"best": state["best"], "best_step": state["best_step"], "steps": state["global_step"],
                  "history": state["history"], "train_seconds": round(state["train_seconds"], 3),
                  "train_examples_seen": state["train_examples_seen"],
                  "train_examples_per_s": round(state["train_examples_seen"] / max(state["train_seconds"], 1e-9), 2),
                  "train_tokens_per_s": round(state["train_tokens_seen"] / max(state["train_seconds"], 1e-9), 1),
                  "total_steps": self.total_steps, "stopped_early": state.get("stopped_early", False),
                  "warmup_steps": self.warmup, "precision": self.precision, "tf32": self.cfg.tf32,
                  **self.steady(),
                  "cuda_graphs": self.graphs}
        if torch.cuda.is_available():
            result["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        if self.graphed is not None:
            result.update(cuda_graph_shapes=len(self.graphed.graphs), cuda_graphs_failed=self.graphed.failed,
                          cuda_graph_update=self.update.graph is not None)
            self.graphed.release()  # free the graphs' memory pools before the next stage
            self.update.graph = None
        return result
