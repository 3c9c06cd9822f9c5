"""``kluekit train biencoder``: fine-tune a siamese sentence encoder on STS pairs with a CoSENT or cosine loss,
optionally after an NLI stage (triplets, MultipleNegativesRankingLoss; ``nli.py``).

A small loop of our own (``loop.py``) around sentence-transformers' model, losses and ``save`` (its trainer
needs the ``datasets`` package, which the GPU machines lack): length-grouped batches, AdamW (fused on CUDA),
linear warmup, bf16 autocast on GPU, Pearson/Spearman of cosine scores on every dev file after every epoch,
the best STS epoch (Spearman on the first dev file) saved so that ``SentenceTransformer(run_dir)`` loads it.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..batching import train_batches
from ..data.io import file_sha256
from ..data.sts import read_sts
from ..errors import KluekitError
from ..inference import resolve_precision
from ..metrics import sts_metrics
from ..rundir import device_name, save_into, versions, write_json
from .encoding import encode, load_biencoder
from .loop import Stage, features, make_loss, run_stage, warmup_steps
from .nli import nli_stage, read_triplets

log = logging.getLogger("kluekit")
RUN_INFO = "kluekit.json"


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
    """Fine-tune ``cfg.model`` as a bi-encoder on ``cfg.train`` (after an NLI stage on ``cfg.nli``, if given);
    return the metrics record (also metrics.json)."""
    from transformers import set_seed

    run_dir = check_output_dir(cfg.output_dir, cfg.overwrite)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve_precision(cfg.precision, device)
    precision = "fp32" if precision == "fp16" else precision  # auto on a GPU without bf16: no loss scaling here
    set_seed(cfg.seed)
    first, second, labels = load_pairs(cfg.train, cfg.swap_augment)
    dev_sets = read_dev_sets(cfg.dev)
    triplets, nli_files = read_triplets(cfg.nli)  # every file is checked before the model is loaded
    model = load_biencoder(cfg.model, device=str(device))
    model.max_seq_length = min(cfg.max_length, model.max_seq_length or cfg.max_length)  # not past the positions
    prompt = cfg.prompt or ""
    if prompt:
        set_default_prompt(model, prompt)
    sts = sts_stage(model, cfg, [prompt + text for text in first], [prompt + text for text in second], labels, device)
    stages = ([nli_stage(model, cfg, triplets, device)] if triplets else []) + [sts]

    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / RUN_INFO, run_info(cfg, len(labels), precision, stages, nli_files))
    writer = None
    if cfg.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "logs"))
    if triplets:
        log.info("NLI stage: %d (premise, entailment, contradiction) triplets (%s): %d epochs x %d steps, batch %d, "
                 "MultipleNegativesRankingLoss, lr %g", len(triplets), ", ".join(cfg.nli), cfg.nli_epochs,
                 len(stages[0].plan[0]), cfg.nli_batch_size, cfg.nli_learning_rate)
    log.info("training bi-encoder %s on %d pairs (%s): %d epochs x %d steps, batch %d, %s loss, %s on %s",
             cfg.model, len(labels), ", ".join(cfg.train), cfg.epochs, len(sts.plan[0]), cfg.batch_size, cfg.loss,
             precision, device)
    record = Record(model, dev_sets, cfg.eval_batch_size, run_dir, writer)
    record.history = [{"stage": "untrained", "epoch": 0, "dev": record.score()}] if dev_sets else []
    if record.history:
        log.info("untrained dev: %s", describe(record.history[0]["dev"]))
    done, step0 = {}, 0
    for stage in stages:  # only STS epochs may be saved; NLI epochs are scored for information
        on_epoch = partial(record.epoch_done, stage.name, stage is sts, step0)
        done[stage.name] = run_stage(model, stage, cfg, device, precision, on_epoch, writer, step0)
        step0 += stage.total_steps
    if writer:
        writer.close()
    best, trained = record.best, done["sts"]
    result = {"best_epoch": best["epoch"], "best": best["dev"], "history": record.history, "steps": trained["steps"],
              "train_seconds": trained["train_seconds"], "train_examples_seen": trained["examples_seen"],
              "train_examples_per_s": trained["examples_per_s"]}
    if "nli" in done:
        result["nli"] = {"epochs": cfg.nli_epochs, "triplets": len(triplets), **done["nli"]}
    write_json(run_dir / "metrics.json", result)
    log.info("run directory: %s", run_dir)
    return {**result, "run_dir": str(run_dir)}


def sts_stage(model, cfg, first: list[str], second: list[str], labels: np.ndarray, device) -> Stage:
    """The STS stage: ``cfg.epochs`` epochs of (length-grouped) shuffled batches of pairs, CoSENT or cosine loss."""
    lengths = [len(a) + len(b) for a, b in zip(first, second)]  # characters: close enough to group batches
    plan = [train_batches(lengths, cfg.batch_size, cfg.seed, epoch, True, cfg.group_by_length)
            for epoch in range(cfg.epochs)]

    def inputs(batch: list[int]):
        return ([features(model, [first[i] for i in batch], device), features(model, [second[i] for i in batch], device)],
                torch.as_tensor(labels[batch], device=device))

    return Stage("sts", make_loss(model, cfg.loss), plan, inputs, cfg.learning_rate)


class Record:
    """Dev scores after each epoch (``history``) and the best kept epoch, saved into the run directory."""

    def __init__(self, model, dev_sets: dict, batch_size: int, run_dir: Path, writer=None):
        self.model, self.dev_sets, self.batch_size, self.run_dir, self.writer = model, dev_sets, batch_size, run_dir, writer
        self.history, self.best = [], None

    def score(self) -> dict:
        return evaluate(self.model, self.dev_sets, self.batch_size)

    def epoch_done(self, stage: str, keep: bool, step0: int, epoch: int, step: int) -> None:
        """Score the dev sets, log and record them (TensorBoard at global step ``step0 + step``); with ``keep``,
        save the model if it is the best so far (Spearman on the first dev set; without dev sets, every kept
        epoch is saved)."""
        entry = {"stage": stage, "epoch": epoch, "step": step}
        better, primary = keep, None
        if self.dev_sets:
            entry["dev"] = self.score()
            primary = next(iter(entry["dev"].values()))["spearman"]
            better = keep and (self.best is None or primary > self.best["spearman"])
            log.info("%s epoch %d dev: %s%s", stage, epoch, describe(entry["dev"]), " (best)" if better else "")
            if self.writer:
                for name, metrics in entry["dev"].items():
                    for key, value in metrics.items():
                        self.writer.add_scalar(f"dev/{name}/{key}", value, step0 + step)
        self.history.append(entry)
        if better:
            self.best = {"epoch": epoch, "spearman": primary, "dev": entry.get("dev")}
            save_model(self.model, self.run_dir)


def describe(dev: dict[str, dict[str, float]]) -> str:
    return "; ".join(f"{name} pearson={m['pearson']:.2f} spearman={m['spearman']:.2f}" for name, m in dev.items())


def run_info(cfg, pairs: int, precision: str, stages: list[Stage], nli_files: list[dict]) -> dict:
    """What reproduces the run: options, data hashes (and NLI rows used), versions, device, steps, command."""
    import sentence_transformers

    data = {role: [{"path": str(path), "sha256": file_sha256(path)} for path in paths]
            for role, paths in (("train", cfg.train), ("dev", cfg.dev))}
    steps = {stage.name: {"total_steps": stage.total_steps, "warmup_steps": warmup_steps(cfg.warmup, stage.total_steps)}
             for stage in stages}
    return {
        "task": "biencoder",
        "train_config": dataclasses.asdict(cfg),
        "data": {**data, **({"nli": nli_files} if nli_files else {})},
        "train_pairs_after_augment": pairs,
        "versions": {**versions(), "sentence_transformers": sentence_transformers.__version__},
        "device": device_name(), "precision": precision, **steps["sts"],
        **({"nli_triplets": sum(f["triplets"] for f in nli_files), "nli_steps": steps["nli"]} if "nli" in steps else {}),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
