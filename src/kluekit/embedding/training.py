"""``kluekit train biencoder``: fine-tune a siamese sentence encoder on STS pairs with a CoSENT or cosine loss.

A small loop of our own around sentence-transformers' model, losses and ``save`` (its trainer needs the
``datasets`` package, which the GPU machines lack): length-grouped batches, AdamW (fused on CUDA), linear
warmup, bf16 autocast on GPU, Pearson/Spearman of cosine scores on every dev file after every epoch, the
best epoch (Spearman on the first dev file) saved so that ``SentenceTransformer(run_dir)`` loads it.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..batching import train_batches
from ..data.io import file_sha256
from ..data.sts import read_sts
from ..errors import KluekitError
from ..inference import autocast, resolve_precision
from ..metrics import sts_metrics
from ..rundir import device_name, save_into, versions, write_json
from ..training import make_optimizer
from .encoding import encode, load_biencoder

log = logging.getLogger("kluekit")
RUN_INFO = "kluekit.json"
MAX_GRAD_NORM = 1.0


def load_pairs(paths: list[str], swap: bool = False) -> tuple[list[str], list[str], np.ndarray]:
    """(sentences1, sentences2, labels scaled to 0-1) of STS files in any format, concatenated."""
    frame = pd.concat([read_sts(path) for path in paths], ignore_index=True)
    first, second = frame["sentence1"].tolist(), frame["sentence2"].tolist()
    labels = frame["label"].to_numpy(dtype=np.float32) / 5.0
    if swap:
        first, second, labels = first + second, second + first, np.concatenate([labels, labels])
    return first, second, labels


def read_dev_sets(paths: list[str]) -> dict[str, pd.DataFrame]:
    """Labelled STS dev files keyed by a unique display name (the file name, or the path if names repeat)."""
    names = [Path(path).name for path in paths]
    sets = {}
    for path, name in zip(paths, names):
        frame = read_sts(path)
        if len(frame) < 2:
            raise KluekitError(f"--dev: {path} has {len(frame)} pair; correlations need at least 2")
        sets[name if names.count(name) == 1 else str(path)] = frame
    return sets


def evaluate(model, dev_sets: dict[str, pd.DataFrame], batch_size: int,
             prompt: str | None = None) -> dict[str, dict[str, float]]:
    """Pearson and Spearman (x100) of cosine scores against gold on each dev set, keyed by file name.

    ``prompt`` is put before every sentence (None: the model's default prompt, if it has one).
    """
    results, training = {}, model.training
    for name, frame in dev_sets.items():
        texts = sorted(set(frame["sentence1"]) | set(frame["sentence2"]))
        vectors = dict(zip(texts, encode(model, texts, batch_size=batch_size, prompt=prompt)))
        cosine = np.array([vectors[a] @ vectors[b] for a, b in zip(frame["sentence1"], frame["sentence2"])])
        metrics = sts_metrics(cosine * 5.0, frame["label"].to_numpy())
        results[name] = {"pearson": metrics["pearson"], "spearman": metrics["spearman"]}
    model.train(training)  # encode() switched to eval mode
    return results


def make_loss(model, name: str):
    """sentence-transformers' CoSENT (default; ranks pairs within a batch) or cosine-MSE loss."""
    try:
        from sentence_transformers.sentence_transformer.losses import CoSENTLoss, CosineSimilarityLoss
    except ImportError:  # sentence-transformers < 5.4
        from sentence_transformers.losses import CoSENTLoss, CosineSimilarityLoss
    return {"cosent": CoSENTLoss, "cosine": CosineSimilarityLoss}[name](model)


def features(model, texts: list[str], device: torch.device) -> dict:
    """Tokenized, padded features of ``texts`` on ``device`` (``tokenize`` was renamed ``preprocess``)."""
    prepare = getattr(model, "preprocess", None) or model.tokenize
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in prepare(texts).items()}


def set_default_prompt(model, prompt: str) -> None:
    """Make ``prompt`` the model's default prompt, saved with it, so ``model.encode`` always puts it first."""
    name = next((name for name, text in model.prompts.items() if text == prompt), "kluekit")
    model.prompts = {**model.prompts, name: prompt}
    model.default_prompt_name = name


def check_output_dir(output_dir: str | None, overwrite: bool) -> Path:
    run_dir = Path(output_dir or f"runs/biencoder-{time.strftime('%Y%m%d-%H%M%S')}")
    if run_dir.is_file() or (run_dir.is_dir() and any(run_dir.iterdir()) and not overwrite):
        raise KluekitError(f"--output-dir: {run_dir} is not empty; pass --overwrite to replace it")
    return run_dir


def save_model(model, run_dir: Path) -> None:
    """sentence-transformers' ``model.save`` into the run directory, never half-written (``rundir.save_into``)."""
    save_into(run_dir, lambda folder: model.save(str(folder), create_model_card=False))


def train_biencoder(cfg) -> dict:
    """Fine-tune ``cfg.model`` as a bi-encoder on ``cfg.train``; return the metrics record (also metrics.json)."""
    from transformers import get_linear_schedule_with_warmup, set_seed

    run_dir = check_output_dir(cfg.output_dir, cfg.overwrite)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve_precision(cfg.precision, device)
    precision = "fp32" if precision == "fp16" else precision  # auto on a GPU without bf16: no loss scaling here
    set_seed(cfg.seed)
    first, second, labels = load_pairs(cfg.train, cfg.swap_augment)
    dev_sets = read_dev_sets(cfg.dev)
    model = load_biencoder(cfg.model, device=str(device))
    model.max_seq_length = min(cfg.max_length, model.max_seq_length or cfg.max_length)  # not past the positions
    if cfg.prompt:
        set_default_prompt(model, cfg.prompt)
        first, second = [cfg.prompt + text for text in first], [cfg.prompt + text for text in second]
    loss_fn = make_loss(model, cfg.loss)
    lengths = [len(a) + len(b) for a, b in zip(first, second)]  # characters: close enough to group batches

    per_epoch = len(train_batches(lengths, cfg.batch_size, cfg.seed, 0, True, cfg.group_by_length))
    total_steps = cfg.epochs * per_epoch
    warmup = int(cfg.warmup * total_steps) if cfg.warmup < 1 else int(cfg.warmup)
    optimizer = make_optimizer(model, cfg, fused=device.type == "cuda")
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total_steps)

    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / RUN_INFO, run_info(cfg, len(labels), precision, total_steps, warmup))
    writer = None
    if cfg.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "logs"))
    log.info("training bi-encoder %s on %d pairs (%s): %d epochs x %d steps, batch %d, %s loss, %s on %s",
             cfg.model, len(labels), ", ".join(cfg.train), cfg.epochs, per_epoch, cfg.batch_size, cfg.loss,
             precision, device)
    history = [{"epoch": 0, "dev": evaluate(model, dev_sets, cfg.eval_batch_size)}] if dev_sets else []
    if history:
        log.info("untrained dev: %s", describe(history[0]["dev"]))
    best, seconds, seen, step = None, 0.0, 0, 0
    progress = tqdm(total=total_steps, unit="step", dynamic_ncols=True)
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        for batch in train_batches(lengths, cfg.batch_size, cfg.seed, epoch - 1, True, cfg.group_by_length):
            inputs = [features(model, [first[i] for i in batch], device),
                      features(model, [second[i] for i in batch], device)]
            with autocast(device, precision):
                loss = loss_fn(inputs, torch.as_tensor(labels[batch], device=device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step, seen = step + 1, seen + len(batch)
            progress.update(1)
            if step % 10 == 0:
                progress.set_postfix(loss=f"{loss.item():.4f}", epoch=epoch)
                if writer:
                    writer.add_scalar("train/loss", loss.item(), step)
                    writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
        if device.type == "cuda":
            torch.cuda.synchronize()  # count the queued GPU work of this epoch as training time
        seconds += time.perf_counter() - started
        entry = {"epoch": epoch, "step": step}
        if dev_sets:
            entry["dev"] = evaluate(model, dev_sets, cfg.eval_batch_size)
            primary = next(iter(entry["dev"].values()))["spearman"]
            better = best is None or primary > best["spearman"]
            log.info("epoch %d dev: %s%s", epoch, describe(entry["dev"]), " (best)" if better else "")
            if writer:
                for name, metrics in entry["dev"].items():
                    for key, value in metrics.items():
                        writer.add_scalar(f"dev/{name}/{key}", value, step)
        else:
            better, primary = True, None
        history.append(entry)
        if better:
            best = {"epoch": epoch, "spearman": primary, "dev": entry.get("dev")}
            save_model(model, run_dir)
    progress.close()
    if writer:
        writer.close()
    result = {"best_epoch": best["epoch"], "best": best["dev"], "history": history, "steps": step,
              "train_seconds": round(seconds, 3), "train_examples_seen": seen,
              "train_examples_per_s": round(seen / max(seconds, 1e-9), 2)}
    write_json(run_dir / "metrics.json", result)
    log.info("run directory: %s", run_dir)
    return {**result, "run_dir": str(run_dir)}


def describe(dev: dict[str, dict[str, float]]) -> str:
    return "; ".join(f"{name} pearson={m['pearson']:.2f} spearman={m['spearman']:.2f}" for name, m in dev.items())


def run_info(cfg, pairs: int, precision: str, total_steps: int, warmup: int) -> dict:
    """What reproduces the run: options, data hashes, versions, device, command."""
    import sentence_transformers

    return {
        "task": "biencoder",
        "train_config": dataclasses.asdict(cfg),
        "data": {role: [{"path": str(path), "sha256": file_sha256(path)} for path in paths]
                 for role, paths in (("train", cfg.train), ("dev", cfg.dev))},
        "train_pairs_after_augment": pairs,
        "versions": {**versions(), "sentence_transformers": sentence_transformers.__version__},
        "device": device_name(), "precision": precision, "total_steps": total_steps, "warmup_steps": warmup,
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
