"""Task registry: one line per task."""

from __future__ import annotations

from ..errors import KluekitError
from .base import Task
from .biencoder import BiencoderTask
from .classify import ClassifyTask
from .clm import CLMTask
from .dialogue import DialogueTask
from .mlm import MLMTask
from .mrc import MRCTask
from .ner import NERTask
from .re import RETask
from .sts import STSTask

TASKS: dict[str, type[Task]] = {
    STSTask.name: STSTask,
    RETask.name: RETask,
    ClassifyTask.name: ClassifyTask,
    NERTask.name: NERTask,
    MRCTask.name: MRCTask,
    BiencoderTask.name: BiencoderTask,
    MLMTask.name: MLMTask,
    CLMTask.name: CLMTask,
    DialogueTask.name: DialogueTask,
}


def get_task_class(name: str) -> type[Task]:
    """The Task class registered under ``name``."""
    if name not in TASKS:
        raise KluekitError(f"unknown task {name!r} (known: {', '.join(TASKS)})")
    return TASKS[name]
