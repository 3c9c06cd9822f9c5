"""Analysis a person wants to look at: scatter plots, per-group tables, worst examples."""

from .plots import scatter_plot
from .tables import group_metrics_table, worst_examples

__all__ = ["scatter_plot", "group_metrics_table", "worst_examples"]
