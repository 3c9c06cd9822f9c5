"""Training any Task: read and encode the data, build the model, then run the engine's stages.

``train_run(task, cfg)`` is what ``kluekit train <task>`` calls (k-fold calls it once per fold). The loop
itself lives in ``engine/``; this module only wires a task to it: the batches (length-grouped, shuffled per
epoch), the evaluator over the dev files, the run directory and the saved model.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .batching import Features, train_batches
from .config import TrainConfig
from .engine import Stage, Trainer, TrainData
from .engine.checkpoint import read_progress
from .engine.distill import TARGETS, DistillStep
from .engine.multisample import add_multisample_dropout
from .engine.rdrop import RDropStep
from .errors import KluekitError
from .inference import model_inputs, pad_multiple, predict_raw, resolve_device, resolve_precision
from .labelshift import CALIBRATION_KEY, class_shares, fit_calibration, prior_record
from .modeling import reinit_top_layers
from .rundir import RunDir
from .teachers import check_teachers, teacher_targets

log = logging.getLogger("kluekit")


def read_files(task, paths: list[str], fmt: str) -> pd.DataFrame:
    """Examples of one or more files, concatenated in order (the first file's attributes kept)."""
    frames = [task.read(path, fmt) for path in paths]
    if len(frames) == 1:
        return frames[0]
    joined = pd.concat(frames, ignore_index=True)
    joined.attrs = {**frames[0].attrs, "file_rows": [len(frame) for frame in frames]}
    return joined


def dev_name(path: str, paths: list[str]) -> str:
    """A dev file's display name: its file name, or its path where names repeat."""
    names = [Path(p).name for p in paths]
    return Path(path).name if names.count(Path(path).name) == 1 else str(path)


def check_split_seed(cfg: TrainConfig) -> None:
    if cfg.split_seed and not cfg.dev_split:
        raise KluekitError("--split-seed picks the rows --dev-split holds out: give --dev-split too")


def split_off(task, examples: pd.DataFrame, cfg: TrainConfig, has_dev: bool):
    """(training part, held-out part) of the training examples for ``--dev-split``: stratified by the task's
    classes where it has them and every class can be split, whole groups where it has groups (``task.groups``),
    the same for the same ``--split-seed`` (default: ``--seed``)."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    if has_dev:
        raise KluekitError("--dev-split holds out part of --train as the dev set: give --dev or --dev-split, not both")
    if not 0 < cfg.dev_split < 1:
        raise KluekitError(f"--dev-split: {cfg.dev_split} must be between 0 and 1")
    rows, strata, groups = np.arange(len(examples)), task.strata(examples), task.groups(examples)
    seed = cfg.split_seed or cfg.seed
    if groups is None and strata is not None and np.bincount(strata).max(initial=0) \
            and (np.bincount(strata)[np.unique(strata)] < 2).any():
        log.warning("--dev-split: a class has a single example; the split is not stratified")
        strata = None
    try:
        if groups is not None:  # whole groups (e.g. MRC articles) on one side
            splitter = GroupShuffleSplit(1, test_size=cfg.dev_split, random_state=seed)
            kept, held = next(splitter.split(rows, groups=groups))
        else:
            kept, held = train_test_split(rows, test_size=cfg.dev_split, random_state=seed, stratify=strata)
    except ValueError as error:  # too few examples (or groups) for the split asked for
        raise KluekitError(f"--dev-split: {error}") from None
    parts = []
    for part in (np.sort(kept), np.sort(held)):
        frame = examples.iloc[part].reset_index(drop=True)
        frame.attrs = dict(examples.attrs)
        parts.append(frame)
    log.info("--dev-split %g: %d training, %d held-out examples", cfg.dev_split, len(parts[0]), len(parts[1]))
    return parts


class Evaluator:
    """``evaluator(model) -> (metrics, outputs)``: the task's metrics on each dev set (the first one's flat,
    the others' as ``<name>/<metric>``) and the task's outputs on the first."""

    def __init__(self, task, tokenizer, dev_sets: list[tuple[str, pd.DataFrame, dict]], batch_size: int,
                 device: torch.device, precision: str, progress: bool):
        self.task, self.tokenizer, self.dev_sets = task, tokenizer, dev_sets
        self.batch_size, self.device, self.precision, self.progress = batch_size, device, precision, progress
        self.primary, self.greater_is_better = task.primary_metric, task.greater_is_better

    def __call__(self, model):
        metrics, first = {}, None
        for index, (name, examples, features) in enumerate(self.dev_sets):
            raw = predict_raw(self.task, model, self.tokenizer, features, self.batch_size, self.device,
                              self.precision, progress=self.progress, desc="dev")
            outputs, gold = self.task.outputs(raw, features), self.task.gold(examples)
            scores = self.task.metrics(outputs, gold)
            collapse = self.task.collapse(outputs, gold)
            if collapse:
                log.warning("%s: %s: the model does not tell the examples apart; if this lasts to the end, training "
                            "has collapsed: try another --seed, a lower --learning-rate or --precision fp32", name,
                            collapse)
            metrics.update(scores if index == 0 else {f"{name}/{key}": value for key, value in scores.items()})
            first = outputs if index == 0 else first
        return metrics, first


def main_stage(task, cfg: TrainConfig, tokenizer, train_set: Features) -> Stage:
    """The task's own stage: ``cfg.epochs`` epochs of shuffled, length-grouped batches."""
    def plan(epoch: int, rank: int, world: int) -> list[list[int]]:
        return train_batches(train_set.lengths, cfg.batch_size, cfg.seed, epoch, cfg.shuffle, cfg.group_by_length,
                             rank, world)

    collate = task.collator(tokenizer, pad_multiple(resolve_device()))
    step = DistillStep(task, cfg.distill_weight, cfg.distill_temperature) if cfg.teacher else task
    step = RDropStep(step, cfg.rdrop) if cfg.rdrop else step
    return Stage("train", step, TrainData(train_set, plan, collate, tokenizer.pad_token_id or 0), cfg)


def train_run(task, cfg: TrainConfig, examples=None, extra: dict | None = None) -> dict:
    """Train ``cfg.model`` on ``cfg.train`` for ``task``; return the final metrics record (also metrics.json).

    ``examples``: (train, dev or None) examples already read, used instead of reading ``cfg.train`` and
    ``cfg.dev`` (k-fold training passes its splits); ``extra`` is recorded in the run's ``kluekit.json``.
    The record's ``best_outputs`` are the task's outputs on the first dev set from the kept model (None without
    dev, or when that model was scored before a ``--resume``).
    """
    main = os.environ.get("RANK", "0") == "0"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not cfg.output_dir:
        raise KluekitError("--output-dir is required when training with several processes")
    run = RunDir.create(cfg.output_dir, task.name, cfg.resume, cfg.overwrite) if main else RunDir(cfg.output_dir)
    try:
        return _train(task, cfg, run, main, examples, extra or {})
    except KluekitError:
        if main and not cfg.resume:
            run.discard_unstarted()
        raise


def read_data(task, cfg: TrainConfig, examples=None) -> tuple[pd.DataFrame, list[tuple[str, str, pd.DataFrame]]]:
    """(training examples, dev sets as (name, path, examples)): read from ``cfg.train``/``cfg.dev`` (or a
    ``--dev-split`` of the training examples), or the (train, held-out) ``examples`` k-fold gives."""
    if examples is not None:
        train, held = examples
        task.fit(train)
        return train, [] if held is None else [("held-out", cfg.train[0], held)]
    check_split_seed(cfg)
    train = read_files(task, cfg.train, cfg.format)
    task.fit(train)  # before dev is read: the training file may define the labels dev is checked against
    dev_files = [(dev_name(path, cfg.dev), path, task.read(path, cfg.format)) for path in cfg.dev]
    if cfg.dev_split:
        train, held = split_off(task, train, cfg, bool(cfg.dev))
        dev_files = [("dev-split", cfg.train[0], held)]
    return train, dev_files


def data_files(cfg: TrainConfig, train: pd.DataFrame, dev_files: list) -> dict:
    """The run record's data files: role -> (path, rows), or a list of those for several files."""
    rows = train.attrs.get("file_rows", [len(train)])
    data = {"train": list(zip(cfg.train, rows)) if len(cfg.train) > 1 else (cfg.train[0], len(train))}
    if dev_files:
        described = [(path, len(frame)) for _, path, frame in dev_files]
        data["dev"] = described if len(described) > 1 else described[0]
    return data


def _train(task, cfg: TrainConfig, run: RunDir, main: bool, examples, extra: dict) -> dict:
    from transformers import set_seed

    set_seed(cfg.seed)
    train_examples, dev_files = read_data(task, cfg, examples)
    if task.label_shift:  # what --adapt-prior re-weights from, kept in the run record
        task.train_prior = class_shares(task.gold(train_examples), len(task.labels))
    if cfg.teacher:  # before the model is built: a wrong --teacher costs no time
        check_teachers(task, cfg.teacher)
    tokenizer, model = task.build_model(cfg.model)
    task.init_head(model, train_examples)
    if cfg.reinit_layers:  # also on --resume: the same seed, the same weights, and the checkpoint's replace them
        reinit_top_layers(model, cfg.reinit_layers, cfg.seed)
        log.info("re-initialised the top %d encoder layers", cfg.reinit_layers)
    if cfg.multi_sample_dropout:
        add_multisample_dropout(model, cfg.multi_sample_dropout)
    max_length = task.max_length(model, cfg.max_length)
    items = task.augment(train_examples)
    train_set = Features(model_inputs(task.encode(items, tokenizer, max_length), labels=True))
    if cfg.teacher:
        train_set.features[TARGETS] = teacher_targets(task, cfg.teacher, items, cfg.precision, progress=main)
    dev_sets = [(name, frame, task.inference_features(frame, tokenizer, max_length)) for name, _, frame in dev_files]
    stages = task.stages(cfg, tokenizer, model, max_length) + [main_stage(task, cfg, tokenizer, train_set)]
    device = resolve_device()
    evaluator = Evaluator(task, tokenizer, dev_sets, cfg.eval_batch_size, device,
                          resolve_precision(cfg.precision, device), progress=main) if dev_sets else None
    if main and not cfg.resume:
        run.write_info(task, cfg, data_files(cfg, train_examples, dev_files),
                       {**extra, **task.data_record(), **prior_record(task), "world_size": int(os.environ.get("WORLD_SIZE", "1")),
                        "train_examples_after_augment": len(train_set)})
    log.info("training %s on %d examples (%d training items), %s", model.config._name_or_path or "a new model",
             len(train_examples), len(train_set),
             " then ".join(f"{s.name}: {s.cfg.epochs:g} epochs x batch {s.cfg.batch_size}" for s in stages))
    save = lambda trained: run.save_model(lambda folder: task.save_model(trained, tokenizer, folder))  # noqa: E731
    result = run_stages(model, stages, run, cfg, evaluator, save, main)
    if main and task.label_shift and result["best_outputs"] is not None:  # what --adapt-prior calibrates with
        record_calibration(task, run, result["best_outputs"], dev_files[0][2])
    return result


def record_calibration(task, run: RunDir, outputs, dev: pd.DataFrame) -> None:
    """The kept model's calibration of its most frequent training label on the (first) dev set, in the run record."""
    label = int(np.argmax(task.train_prior))
    calibration = fit_calibration(task.posteriors(np.asarray(outputs)), task.gold(dev), label)
    if calibration is None:
        log.warning("the dev set has %s label %s: no calibration recorded, so --adapt-prior will not take this run",
                    "only the" if (task.gold(dev) == label).all() else "none of the", task.labels[label])
        return
    run.update_info({CALIBRATION_KEY: calibration})


def run_stages(model, stages: list[Stage], run: RunDir, cfg: TrainConfig, evaluator, save, main: bool) -> dict:
    """Train ``model`` through each stage (only the last keeps the best model); with ``--resume``, skip the
    stages that ended before the checkpoint's and continue that one. Earlier stages' records go under
    ``stages`` in the result."""
    names = [stage.name for stage in stages]
    start, carry = 0, {}
    if cfg.resume:
        stage = read_progress(run.checkpoint()).get("stage")
        start = names.index(stage) if stage in names else 0
    for index, stage in enumerate(stages[start:], start):
        last = index == len(stages) - 1
        trainer = Trainer(model, stage.step, stage.data, stage.cfg, run.path, evaluator=evaluator,
                          save_best=save if last else None, stage=stage.name, keep_best=last, carry=carry)
        if main and not cfg.resume:  # what the run resolved, beside its options
            facts = {"total_steps": trainer.total_steps, "warmup_steps": trainer.warmup}
            run.update_info(dict(precision=trainer.precision, cuda_graphs=trainer.graphs, **facts) if last
                            else {f"{stage.name}_steps": facts})
        if cfg.resume and index == start:
            trainer.resume()
        result = trainer.fit()
        carry = {**trainer.state["carry"], **({} if last else {stage.name: result})}
        best_outputs = trainer.best_outputs
    result = {**result, **({"stages": carry} if carry else {})}
    if main:
        run.write_json("metrics.json", result)
        run.finish()
        log.info("run directory: %s", run.path)
    return {**result, "best_outputs": best_outputs, "run_dir": str(run.path)}
