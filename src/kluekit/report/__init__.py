"""Analysis a person wants to look at: scatter plots, confusion matrices, per-group/per-class tables, worst examples."""

from .plots import confusion_matrix_plot, scatter_plot
from .tables import group_metrics_table, per_class_table, worst_examples

__all__ = ["scatter_plot", "confusion_matrix_plot", "group_metrics_table", "per_class_table", "worst_examples"]
