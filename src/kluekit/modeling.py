"""Loading tokenizers and models: pretrained encoders with a task head, and finished run directories."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

from .errors import KluekitError, first_line
from .tasks import Task, get_task_class

RUN_INFO = "kluekit.json"


def _looks_local(name: str) -> bool:
    """A path rather than a Hub id ("org/name" has exactly one slash)."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).exists()


def check_model_path(name: str) -> None:
    """KluekitError naming --model when ``name`` looks like a local path but is no directory."""
    if _looks_local(name) and not Path(name).expanduser().is_dir():
        raise KluekitError(f"--model: no such directory {name!r}")


def _model_class(task: Task):
    return task.model_class() or (
        AutoModelForTokenClassification if task.head == "token" else AutoModelForSequenceClassification)


def load_pretrained(name: str, task: Task):
    """Tokenizer and a model with a fresh ``task`` head; the task's special tokens are added."""
    check_model_path(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        added = tokenizer.add_special_tokens({"additional_special_tokens": list(task.special_tokens)}) \
            if task.special_tokens else 0
        kwargs = dict(num_labels=task.num_labels, pad_token_id=tokenizer.pad_token_id)
        if task.head == "regression":
            kwargs["problem_type"] = "regression"
        else:
            kwargs.update(id2label=dict(enumerate(task.labels)),
                          label2id={label: i for i, label in enumerate(task.labels)})
        model = _model_class(task).from_pretrained(name, **kwargs)
    except (OSError, ValueError) as error:
        raise KluekitError(f"--model: cannot load {name!r}: {first_line(error)}") from None
    if added:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=8)
    return tokenizer, model


def read_run_info(run_dir) -> dict:
    """The run's ``kluekit.json`` (task, options, training config, data hashes, versions)."""
    path = Path(run_dir) / RUN_INFO
    if not path.is_file():
        raise KluekitError(f"--model: {run_dir} is not a kluekit run directory (no {RUN_INFO}); "
                           "train one with 'kluekit train'")
    return json.loads(path.read_text(encoding="utf-8"))


def run_task(info: dict) -> Task:
    """The task object a run was trained for, with its options and labels."""
    if info.get("task") == "biencoder":
        raise KluekitError("--model: this is a bi-encoder run ('kluekit train biencoder'): use it with "
                           "'kluekit encode', 'kluekit search' or 'kluekit serve'")
    task_class = get_task_class(info["task"])
    options = {**task_class.Options.LEGACY, **info.get("task_options", {})}
    return task_class(task_class.Options(**options), labels=info.get("labels"))


def check_saved_model(run_dir) -> None:
    """KluekitError when a run directory holds no saved model yet."""
    if not (Path(run_dir) / "config.json").is_file():
        raise KluekitError(f"--model: {run_dir} holds no saved model yet (was its training killed before "
                           "the first evaluation? continue it with 'kluekit train ... --resume')")


def load_run_model(run_dir, task: Task, device: torch.device):
    """Tokenizer and model (in eval mode, on ``device``) saved in a run directory trained for ``task``."""
    check_saved_model(run_dir)
    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    model = _model_class(task).from_pretrained(run_dir).to(device).eval()
    return tokenizer, model


def load_run(run_dir, device: torch.device):
    """Task, tokenizer and model (in eval mode, on ``device``) of a finished training run."""
    info = read_run_info(run_dir)
    task = run_task(info)
    return (task, *load_run_model(run_dir, task, device), info)
