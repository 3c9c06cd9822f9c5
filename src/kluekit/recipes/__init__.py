"""Recipes shipped with kluekit: named sets of training options (``kluekit train <task> --recipe NAME``).

A recipe is a YAML file in this folder: ``options`` for every task and ``tasks: {<task>: {...}}`` for one task's
own options (e.g. a classification-only lever), each with the measurement that chose it in a comment. Its values
sit above the task's defaults and below ``--config`` and the command line, so any of them can be overridden::

    # competition.yaml
    options: {layer_decay: 0.9}
    tasks:
      classify: {label_smoothing: 0.1}
"""

from __future__ import annotations

from pathlib import Path

from ..errors import KluekitError

FOLDER = Path(__file__).parent


def recipe_names(folder: Path | None = None) -> list[str]:
    """The recipes shipped (file names without ``.yaml``), sorted."""
    return sorted(path.stem for path in (folder or FOLDER).glob("*.yaml"))


def load_recipe(name: str, task: str, folder: Path | None = None) -> dict:
    """The options recipe ``name`` sets for ``task`` (its ``options`` and its ``tasks[task]``)."""
    import yaml

    path = (folder or FOLDER) / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(recipe_names(folder)) or "none shipped yet"
        raise KluekitError(f"--recipe: no recipe {name!r} (known: {known})")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not set(data) <= {"options", "tasks"}:
        raise KluekitError(f"--recipe: {path} must hold 'options' and/or 'tasks' mappings")
    values = {**(data.get("options") or {}), **((data.get("tasks") or {}).get(task) or {})}
    if not values:
        measured = ", ".join(sorted(data.get("tasks") or {})) or "none"
        raise KluekitError(f"--recipe {name}: it sets nothing for {task} (it has options for: {measured})")
    return {key.replace("-", "_"): value for key, value in values.items()}
