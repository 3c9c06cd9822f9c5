"""The run directory: model, tokenizer, resolved config, data hashes, versions, metrics, logs, checkpoint."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from . import __version__
from .data.io import file_sha256, write_text_atomic
from .errors import KluekitError
from .modeling import RUN_INFO

CHECKPOINT = "checkpoint"


def prepare_run_dir(output_dir: str | None, task_name: str, resume: bool, overwrite: bool) -> Path:
    """Create (or reopen, with ``resume``) the run directory, refusing to clobber an existing run."""
    run_dir = Path(output_dir or f"runs/{task_name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if resume:
        if not (run_dir / CHECKPOINT / "progress.json").is_file():
            raise KluekitError(f"--resume: no checkpoint to resume in {run_dir}/{CHECKPOINT}")
    elif run_dir.exists() and any(run_dir.iterdir()) and not overwrite:
        raise KluekitError(f"--output-dir: {run_dir} is not empty; pass --resume to continue it "
                           "or --overwrite to replace it")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


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


def write_run_info(run_dir: Path, task, cfg, data_files: dict[str, tuple[str, int]], extra: dict) -> None:
    """Everything needed to reproduce the run, as ``kluekit.json``."""
    info = {
        "task": task.name,
        "task_options": dataclasses.asdict(task.options),
        "labels": task.labels,
        "train_config": dataclasses.asdict(cfg),
        "data": {role: {"path": str(path), "sha256": file_sha256(path), "rows": rows}
                 for role, (path, rows) in data_files.items()},
        "versions": versions(),
        "device": device_name(),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }
    write_text_atomic(run_dir / RUN_INFO, json.dumps(info, indent=2, ensure_ascii=False) + "\n")


def save_into(run_dir: Path, save) -> None:
    """``save(folder)`` into a temporary folder, then each file and subfolder moved into ``run_dir`` (an old
    one of the same name replaced), so that a reader never sees a half-written model."""
    tmp = run_dir / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save(tmp)
    for item in tmp.iterdir():
        target = run_dir / item.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(item, target)
    tmp.rmdir()


def save_model(run_dir: Path, model, tokenizer) -> None:
    """Save model + tokenizer (transformers' save_pretrained) into the run directory (see ``save_into``)."""
    def save(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    save_into(run_dir, save)


def write_json(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
