"""The start-up quality gate (``kluekit serve --check-on DEV``): a faster runtime must not cost quality.

For each task model served with a runtime other than torch (``--runtime onnx`` or ``onnx-int8``), the
labelled DEV file is scored with that runtime and with torch in fp32; both scores are logged, and the
server refuses to start when the runtime loses more than ``--max-metric-drop`` points of the task's
primary metric::

    results = check_quality(settings, plan)   # KluekitError naming the model, both scores and the limit
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import KluekitError
from .settings import ServeSettings
from .tasks import ModelPlan

logger = logging.getLogger("kluekit")


def dev_files(settings: ServeSettings, plan: ModelPlan) -> dict[str, str]:
    """--check-on as model name -> DEV file; a FILE alone goes to the only task model."""
    names = [model.name for model in plan.tasks]
    out = {}
    for value in settings.check_on:
        name, sep, path = value.partition("=")
        if not sep or Path(value).exists():
            if len(names) != 1:
                raise KluekitError(f"--check-on: {value!r}: say which model it is for as NAME=FILE "
                                   f"(task models: {', '.join(names) or 'none'})")
            name, path = names[0], value
        if name not in names:
            raise KluekitError(f"--check-on: {value!r}: no task model named {name!r} (task models: "
                               f"{', '.join(names) or 'none'})")
        if not Path(path).is_file():
            raise KluekitError(f"--check-on: no such file {path!r}")
        out[name] = path
    return out


def metric_drop(fp32: float, other: float, greater_is_better: bool) -> float:
    """How many points ``other`` is worse than ``fp32`` (negative: better)."""
    return fp32 - other if greater_is_better else other - fp32


def check_quality(settings: ServeSettings, plan: ModelPlan) -> list[dict]:
    """Score each --check-on file with --runtime and with torch fp32; KluekitError when the drop is over the limit.
    Returns one dict per checked model: name, metric, fp32, runtime, score, drop."""
    from ..predictor import Predictor

    files = dev_files(settings, plan)
    results = []
    for model in plan.tasks:
        if model.name not in files:
            continue
        runtime = model.predictor.runtime
        if runtime == "torch":
            logger.warning("--check-on %s: %s runs on torch; nothing to compare", files[model.name], model.name)
            continue
        task = model.predictor.task
        reference = Predictor(model.path, verb="serve", precision="fp32", runtime="torch", progress=False)
        scores = {}
        for label, predictor in (("fp32", reference), (runtime, model.predictor)):
            examples = predictor.read(files[model.name], require_labels=True)
            preds = predictor.predict(examples)
            scores[label] = float(predictor.task.metrics(preds, predictor.task.gold(examples))[task.primary_metric])
        drop = metric_drop(scores["fp32"], scores[runtime], task.greater_is_better)
        line = (f"{model.name}: {task.primary_metric} on {files[model.name]}: torch fp32 {scores['fp32']:.2f}, "
                f"{runtime} {scores[runtime]:.2f} (drop {drop:.2f}, limit {settings.max_metric_drop:g})")
        logger.info("quality gate: %s", line)
        print(f"kluekit: quality gate: {line}", flush=True)
        results.append({"name": model.name, "metric": task.primary_metric, "fp32": scores["fp32"],
                        "runtime": runtime, "score": scores[runtime], "drop": drop})
        if drop > settings.max_metric_drop:
            raise KluekitError(f"--check-on: {runtime} loses {drop:.2f} points of {task.primary_metric} against torch "
                               f"fp32 for {model.name} ({scores[runtime]:.2f} vs {scores['fp32']:.2f}), more than "
                               f"--max-metric-drop {settings.max_metric_drop:g}; serve it with --runtime torch or "
                               "raise the limit")
    return results
