"""Commands that are not a (verb, task) pair, such as ``encode``, ``search``, ``ensemble`` or ``serve``."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module


@dataclass(frozen=True)
class Command:
    """A command with its own options dataclass; ``run`` ("module:function", imported only when the
    command runs, so that building the parser stays cheap) takes the built options."""

    options: type
    help: str
    run: str

    def call(self, cfg) -> object:
        module, function = self.run.split(":")
        return getattr(import_module(module), function)(cfg)
