"""The files of an evaluation: the task's report, the examples with their predictions and the metrics."""

from __future__ import annotations

import json
from pathlib import Path

from ..data.io import write_csv_atomic, write_text_atomic


def write_report(task, preds, examples, out_dir: Path, worst: int, record: dict) -> list[str]:
    """The task's report files, ``predictions.csv`` (the examples with their predictions) and
    ``metrics.json`` (``record``) in ``out_dir``; returns the report's printable lines."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = task.report(preds, examples, out_dir, worst)
    write_csv_atomic(task.prediction_table(preds, examples), out_dir / "predictions.csv")
    write_text_atomic(out_dir / "metrics.json", json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return summary
