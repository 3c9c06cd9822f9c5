"""The training engine shared by every model kind (see ``trainer.py`` and docs/architecture.md)."""

from __future__ import annotations

from dataclasses import dataclass

from .trainer import Trainer, TrainData


@dataclass
class Stage:
    """A training stage run before a task's main one (e.g. the bi-encoder's NLI stage): ``step`` gives
    ``forward``/``loss``, ``data`` the batches, ``cfg`` the run options for this stage (epochs, rates)."""

    name: str
    step: object
    data: TrainData
    cfg: object


__all__ = ["Stage", "Trainer", "TrainData"]
