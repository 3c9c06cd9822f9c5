"""Analysis a person wants to look at: scatter plots, confusion matrices, per-group/per-class tables, worst examples."""

from .plots import confusion_matrix_plot, scatter_plot
from .tables import group_metrics_table, per_class_table, worst_examples
from .write import write_report


def class_report(gold_ids, pred_ids, labels, out_dir, title: str) -> list[str]:
    """``confusion_matrix.png`` and ``per_class.csv`` in ``out_dir``; returns the table's printable lines."""
    from pathlib import Path

    out_dir = Path(out_dir)
    confusion_matrix_plot(gold_ids, pred_ids, labels, out_dir / "confusion_matrix.png", title=title)
    return per_class_table(gold_ids, pred_ids, labels, out_dir / "per_class.csv")


__all__ = ["scatter_plot", "confusion_matrix_plot", "group_metrics_table", "per_class_table", "worst_examples",
           "class_report", "write_report"]
