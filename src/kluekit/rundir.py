"""The run directory, one object for every run kind: create, resume, read, write and save.

A run directory holds the model and tokenizer (as the task saves them), ``kluekit.json`` (task, options,
labels, resolved config, data hashes, versions, device, command), ``metrics.json``, ``logs/`` and, while
training, the resume ``checkpoint/``::

    run = RunDir.create("runs/sts1", default_name="sts", resume=False, overwrite=False)
    run.write_info(task, cfg, {"train": ("train.csv", 10000)}, extra={})
    run.save_model(lambda folder: task.save_model(model, tokenizer, folder))
    run = RunDir.open("runs/sts1"); task = run.task(expected="sts", verb="predict")
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .data.io import apply_umask, file_sha256, probe_write, write_error, write_reason, write_text_atomic
from .engine.checkpoint import find_checkpoint, remove_checkpoints
from .errors import KluekitError
from .labelshift import CALIBRATION_KEY, PRIOR_KEY
from .modeling import RUN_INFO

MODEL_TMP = ".model.tmp"


class RunDir:
    """A run directory on disk (``path``) and its record (``info``, read from ``kluekit.json`` on demand)."""

    def __init__(self, path):
        self.path = Path(path)
        self._info = None
        self.created = False  # made by this process (``create``): removed again if the run never started

    @classmethod
    def create(cls, output_dir: str | None, default_name: str, resume: bool = False, overwrite: bool = False) -> "RunDir":
        """Create (or reopen, with ``resume``) a run directory, refusing to clobber an existing run."""
        path = Path(output_dir or f"runs/{default_name}-{time.strftime('%Y%m%d-%H%M%S')}")
        if path.exists() and not path.is_dir():
            raise KluekitError(f"--output-dir: {path} is a file")
        if resume:
            if find_checkpoint(path) is None:
                raise KluekitError(f"--resume: no checkpoint to resume in {path}/checkpoint")
        elif path.exists() and any(path.iterdir()) and not overwrite:
            raise KluekitError(f"--output-dir: {path} is not empty; pass --resume to continue it "
                               "or --overwrite to replace it")
        created = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe_write(path)
        except OSError as error:
            raise KluekitError(f"--output-dir: cannot write {path}: {write_reason(error)}") from None
        run = cls(path)
        run.created = created
        return run

    @classmethod
    def open(cls, path, option: str = "--model") -> "RunDir":
        """An existing run; KluekitError naming ``option`` when ``path`` holds no kluekit run."""
        run = cls(path)
        if not (run.path / RUN_INFO).is_file():
            raise KluekitError(f"{option}: {path} is not a kluekit run directory (no {RUN_INFO}); "
                               "train one with 'kluekit train'")
        return run

    @property
    def info(self) -> dict:
        if self._info is None:
            self._info = json.loads((self.path / RUN_INFO).read_text(encoding="utf-8"))
        return self._info

    @property
    def task_name(self) -> str:
        return self.info.get("task", "")

    def task(self, expected: str | None = None, verb: str = "predict"):
        """The task object the run was trained for, with its options and labels; with ``expected``, a
        KluekitError unless the run was trained for that task."""
        from .tasks import get_task_class

        if expected is not None and self.task_name != expected:
            raise KluekitError(f"--model: {self.path} was trained for {self.task_name}, not {expected}; "
                               f"use kluekit {verb} {self.task_name}")
        task_class = get_task_class(self.task_name)
        known = {f.name for f in dataclasses.fields(task_class.Options)}
        # bi-encoder runs saved before it was a task kept its options (prompt, loss, ...) in train_config
        recorded = {**self.info.get("train_config", {}), **self.info.get("task_options", {})}
        options = {**task_class.Options.LEGACY, **{k: v for k, v in recorded.items() if k in known}}
        task = task_class(task_class.Options(**options), labels=self.info.get("labels"))
        if PRIOR_KEY in self.info:
            task.train_prior = np.asarray(self.info[PRIOR_KEY], dtype=np.float64)
        task.calibration = self.info.get(CALIBRATION_KEY)
        return task

    @property
    def max_length(self) -> int:
        return int(self.info.get("train_config", {}).get("max_length") or 128)

    def checkpoint(self) -> Path | None:
        return find_checkpoint(self.path)

    def write_info(self, task, cfg, data_files: dict, extra: dict) -> None:
        """Everything needed to reproduce the run, as ``kluekit.json``. ``data_files``: role -> (path, rows),
        or a list of those for several files."""
        def describe(path, rows):
            return {"path": str(path), "sha256": file_sha256(path), "rows": rows}

        info = {
            "task": task.name,
            "task_options": dataclasses.asdict(task.options),
            "labels": task.labels,
            "train_config": dataclasses.asdict(cfg),
            "data": {role: [describe(*f) for f in files] if isinstance(files, list) else describe(*files)
                     for role, files in data_files.items()},
            "versions": versions(),
            "device": device_name(),
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **extra,
        }
        self.write_json(RUN_INFO, info)
        self._info = info

    def update_info(self, facts: dict) -> None:
        """Add ``facts`` to ``kluekit.json``."""
        self._info = {**self.info, **facts}
        self.write_json(RUN_INFO, self._info)

    def write_json(self, name: str, data: dict) -> None:
        write_json(self.path / name, data)

    def save_model(self, save) -> None:
        """``save(folder)`` into a temporary folder, then each file and subfolder moved into the run (an old
        one of the same name replaced), so that a reader never sees a half-written model. A full or read-only
        disk is one KluekitError; the model saved before stays."""
        tmp = self.path / MODEL_TMP
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            save(tmp)
            apply_umask(tmp)
        except Exception as error:
            shutil.rmtree(tmp, ignore_errors=True)
            if write_reason(error) is None:
                raise
            raise write_error(self.path, error) from None
        for item in tmp.iterdir():
            target = self.path / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
        tmp.rmdir()

    def finish(self) -> None:
        """Drop what only a running training needs (the resume checkpoint)."""
        remove_checkpoints(self.path)

    def discard_unstarted(self) -> None:
        """After a failed start with no checkpoint yet: remove the record and logs (and the directory, if this
        run made it), so the same command can be run again without --overwrite."""
        if self.checkpoint() is None and not (self.path / "config.json").exists():
            for name in (RUN_INFO, "logs", MODEL_TMP):
                target = self.path / name
                shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
            if self.created and self.path.is_dir() and not any(self.path.iterdir()):
                self.path.rmdir()


def versions() -> dict[str, str]:
    import accelerate
    import tokenizers
    import transformers

    return {"kluekit": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "accelerate": accelerate.__version__,
            "tokenizers": tokenizers.__version__}


def device_name() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


def write_json(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
