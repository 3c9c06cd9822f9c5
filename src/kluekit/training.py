"""Fine-tuning any Task: length-grouped dynamic-padded batches, mixed precision, fused AdamW,
evaluation and checkpoint every epoch (or N steps), best model kept, resumable, DDP-ready."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm
from transformers import get_scheduler

from .batching import Features, train_batches
from .config import TrainConfig
from .graphs import BucketPadding, GraphedSteps
from .inference import make_collator, model_inputs, predict_logits, resolve_precision
from .modeling import load_pretrained
from .rundir import CHECKPOINT, prepare_run_dir, save_model, write_json, write_run_info
from .tasks import Task

log = logging.getLogger("kluekit")
SCHEDULE_NAMES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


def make_optimizer(model, cfg: TrainConfig, fused: bool) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and normalisation weights."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, fused=fused)


def train(task: Task, cfg: TrainConfig, examples=None, extra: dict | None = None) -> dict:
    """Fine-tune ``cfg.model`` on ``cfg.train`` for ``task``; return the final metrics record.

    ``examples``: (train, dev or None) examples already read, used instead of reading ``cfg.train`` and
    ``cfg.dev`` (k-fold training passes its splits); ``extra`` is recorded in the run's ``kluekit.json``.
    The record's ``best_outputs`` are the task's outputs on dev from the saved (best) model (None without
    dev, or when that model was scored before a ``--resume``).
    """
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    precision = resolve_precision(cfg.precision, torch.device(device_type))
    graphs = use_cuda_graphs(cfg, device_type, precision)
    # with graphs, autocast runs inside the captured step (GraphedSteps), not around the model
    accelerator = Accelerator(mixed_precision="no" if graphs or precision == "fp32" else precision,
                              cpu=device_type == "cpu")
    main = accelerator.is_main_process
    run_dir = prepare_run_dir(cfg.output_dir, task.name, cfg.resume, cfg.overwrite) if main else Path(cfg.output_dir or ".")
    set_seed(cfg.seed)

    train_examples, dev_examples = examples or (task.read(cfg.train, cfg.format), None)
    task.fit(train_examples)  # before dev is read: the training file may define the labels dev is checked against
    if examples is None and cfg.dev:
        dev_examples = task.read(cfg.dev, cfg.format)
    tokenizer, model = load_pretrained(cfg.model, task)
    train_set = Features(model_inputs(task.encode(task.augment(train_examples), tokenizer, cfg.max_length), labels=True))
    dev_features = task.encode(dev_examples, tokenizer, cfg.max_length) if dev_examples is not None else None

    per_epoch = math.ceil(len(train_batches(train_set.lengths, cfg.batch_size, cfg.seed, 0, cfg.shuffle, cfg.group_by_length,
                                            accelerator.process_index, accelerator.num_processes)) / cfg.grad_accum)
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch))
    warmup = int(cfg.warmup * total_steps) if cfg.warmup < 1 else int(cfg.warmup)
    optimizer = make_optimizer(model, cfg, fused=device_type == "cuda")
    scheduler = get_scheduler(SCHEDULE_NAMES[cfg.scheduler], optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    collator = make_collator(tokenizer, accelerator.device, token_labels=task.head == "token")
    graphed = None
    if graphs:
        collator = BucketPadding(collator, tokenizer.pad_token_id)
        graphed = GraphedSteps(model, task.loss, cfg.batch_size, precision, cfg.grad_accum)

    state = {"global_step": 0, "epoch": 0, "batch": 0, "best": None, "best_step": None, "history": [],
             "train_seconds": 0.0, "train_examples_seen": 0}
    if cfg.resume:
        accelerator.load_state(str(run_dir / CHECKPOINT))
        state = json.loads((run_dir / CHECKPOINT / "progress.json").read_text())
        log.info("resumed from step %d (epoch %d, batch %d)", state["global_step"], state["epoch"], state["batch"])
    if main:
        data_files = {"train": (cfg.train, len(train_examples))}
        if dev_examples is not None:
            data_files["dev"] = (cfg.dev or cfg.train, len(dev_examples))
        write_run_info(run_dir, task, cfg, data_files,
                       {**(extra or {}), "precision": precision, "world_size": accelerator.num_processes,
                        "cuda_graphs": graphs, "train_examples_after_augment": len(train_set), "total_steps": total_steps,
                        "warmup_steps": warmup})
    writer = SummaryWriter(str(run_dir / "logs")) if main else None
    log.info("training %s on %d examples (%d after augmentation): %d steps, batch %d x %d process(es), %s, %s",
             cfg.model, len(train_examples), len(train_set), total_steps, cfg.batch_size, accelerator.num_processes,
             precision, accelerator.device)

    best_outputs = [None]  # not in ``state``: that is written to JSON with each checkpoint

    def evaluate_and_checkpoint():
        unwrapped = accelerator.unwrap_model(model)
        if dev_features is not None:
            logits = predict_logits(unwrapped, tokenizer, dev_features, cfg.eval_batch_size, accelerator.device,
                                    precision, progress=main, desc="dev")
            outputs = task.outputs(logits, dev_features)
            metrics = task.metrics(outputs, task.gold(dev_examples))
            better = state["best"] is None or (
                (metrics[task.primary_metric] > state["best"][task.primary_metric]) == task.greater_is_better)
            state["history"].append({"step": state["global_step"], "epoch": round(state["global_step"] / per_epoch, 3), **metrics})
            if writer:
                for key, value in metrics.items():
                    writer.add_scalar(f"dev/{key}", value, state["global_step"])
            log.info("step %d dev: %s%s", state["global_step"], " ".join(f"{k}={v:.2f}" for k, v in metrics.items()),
                     " (best)" if better else "")
            if better:
                state["best"], state["best_step"] = metrics, state["global_step"]
                best_outputs[0] = outputs
        else:
            better = True
        if main and better:
            save_model(run_dir, unwrapped, tokenizer)
        save_checkpoint(accelerator, run_dir, state)

    progress = tqdm(total=total_steps, initial=state["global_step"], disable=not main, unit="step", dynamic_ncols=True)
    model.train()
    while state["global_step"] < total_steps:
        batches = train_batches(train_set.lengths, cfg.batch_size, cfg.seed, state["epoch"], cfg.shuffle,
                                cfg.group_by_length, accelerator.process_index, accelerator.num_processes)
        loader = torch.utils.data.DataLoader(train_set, batch_sampler=batches[state["batch"]:], collate_fn=collator,
                                             num_workers=cfg.num_workers, pin_memory=device_type == "cuda")
        started = time.perf_counter()
        for index, batch in enumerate(loader, state["batch"]):
            update = (index + 1) % cfg.grad_accum == 0 or index + 1 == len(batches)
            batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
            labels = batch.pop("labels")
            sync = contextlib.nullcontext() if update or accelerator.num_processes == 1 else accelerator.no_sync(model)
            with sync:
                if graphed is not None:
                    loss = graphed(batch, labels)  # forward, loss and backward
                else:
                    with accelerator.autocast():
                        logits = model(**batch).logits
                    loss = task.loss(logits, labels)
                    accelerator.backward(loss / cfg.grad_accum)
            state["train_examples_seen"] += len(labels) * accelerator.num_processes
            if not update:
                continue
            if cfg.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=graphed is None)  # graphs accumulate into kept .grad tensors
            state["global_step"] += 1
            progress.update(1)
            if state["global_step"] % 10 == 0:
                log_train_step(writer, progress, loss.item(), scheduler.get_last_lr()[0], state["global_step"])
            epoch_done = index + 1 == len(batches)
            state["epoch"], state["batch"] = (state["epoch"] + 1, 0) if epoch_done else (state["epoch"], index + 1)
            at_end = state["global_step"] >= total_steps
            if at_end or (cfg.eval_steps and state["global_step"] % cfg.eval_steps == 0) or (epoch_done and not cfg.eval_steps):
                state["train_seconds"] += time.perf_counter() - started
                evaluate_and_checkpoint()
                started = time.perf_counter()
            if at_end:
                break
        state["train_seconds"] += time.perf_counter() - started
    progress.close()
    extra = {"cuda_graph_shapes": len(graphed.graphs), "cuda_graphs_failed": graphed.failed} if graphed else {}
    return {**finish(run_dir, state, main, writer, accelerator, extra), "best_outputs": best_outputs[0]}


def use_cuda_graphs(cfg: TrainConfig, device_type: str, precision: str) -> bool:
    """CUDA graphs where they are safe: one CUDA process (DDP's gradient hooks are not captured), fp32 or bf16
    (fp16's loss scaling stays with accelerate)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return cfg.cuda_graphs and device_type == "cuda" and world == 1 and precision in ("fp32", "bf16")


def log_train_step(writer, progress, loss: float, lr: float, step: int) -> None:
    progress.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
    if writer:
        writer.add_scalar("train/loss", loss, step)
        writer.add_scalar("train/lr", lr, step)


def save_checkpoint(accelerator: Accelerator, run_dir: Path, state: dict) -> None:
    """Model, optimizer, scheduler, RNG and progress, replaced as a whole so a kill leaves a usable one."""
    tmp, final = run_dir / (CHECKPOINT + ".tmp"), run_dir / CHECKPOINT
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        write_json(tmp / "progress.json", state)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    accelerator.wait_for_everyone()


def finish(run_dir: Path, state: dict, main: bool, writer, accelerator: Accelerator, extra: dict) -> dict:
    """Write metrics.json and drop the resume checkpoint of a completed run."""
    result = {"best": state["best"], "best_step": state["best_step"], "steps": state["global_step"],
              "history": state["history"], "train_seconds": round(state["train_seconds"], 3),
              "train_examples_seen": state["train_examples_seen"],
              "train_examples_per_s": round(state["train_examples_seen"] / max(state["train_seconds"], 1e-9), 2)}
    if torch.cuda.is_available():
        result["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    result.update(extra)
    if main:
        write_json(run_dir / "metrics.json", result)
        shutil.rmtree(run_dir / CHECKPOINT, ignore_errors=True)
        writer.close()
        log.info("run directory: %s", run_dir)
    accelerator.wait_for_everyone()
    result["run_dir"] = str(run_dir)
    return result
