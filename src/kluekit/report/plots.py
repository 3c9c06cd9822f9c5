"""Plots written as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

import functools
import importlib.util
import logging
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sklearn.metrics import confusion_matrix  # noqa: E402

from ..data.io import atomic_path  # noqa: E402
from ..metrics import check_class_ids  # noqa: E402


# fonts with Hangul that matplotlib may find (Linux packages, Windows, macOS), in order of preference; used
# when koreanize-matplotlib's bundled NanumGothic cannot be registered
KOREAN_FONTS = ("NanumGothic", "Noto Sans CJK KR", "Noto Sans KR", "Malgun Gothic", "AppleGothic", "Apple SD Gothic Neo",
                "UnDotum", "Baekmuk Gulim", "Droid Sans Fallback")
BUNDLED_FONTS = ("NanumGothic.ttf", "NanumGothicBold.ttf", "NanumGothicExtraBold.ttf", "NanumGothicLight.ttf")


def bundled_font() -> str | None:
    """Register koreanize-matplotlib's NanumGothic files with matplotlib and return the family name, or None.

    The files are found without importing the package, whose import sets matplotlib's fonts for the
    whole process (and needs distutils, gone in Python 3.12); plots select the font per figure instead.
    """
    from matplotlib import font_manager

    try:
        spec = importlib.util.find_spec("koreanize_matplotlib")
        folders = list(spec.submodule_search_locations or []) if spec else []
        files = [Path(folder, "fonts", name) for folder in folders for name in BUNDLED_FONTS]
        files = [path for path in files if path.is_file()]
        if not files:
            return None
        for path in files:
            font_manager.fontManager.addfont(str(path))
        return font_manager.FontProperties(fname=str(files[0])).get_name()
    except (ImportError, OSError, RuntimeError, ValueError):
        return None


@functools.lru_cache(maxsize=None)
def korean_font() -> str | None:
    """The font family for Korean labels: koreanize-matplotlib's NanumGothic, else the first installed font
    of ``KOREAN_FONTS``, else None after one warning."""
    from matplotlib import font_manager

    found = bundled_font()
    if found is None:
        installed = {font.name for font in font_manager.fontManager.ttflist}
        found = next((name for name in KOREAN_FONTS if name in installed), None)
    if found is None:
        logging.getLogger("kluekit").warning(
            "no Korean font found for plots: Hangul labels show as boxes (pip install koreanize-matplotlib, "
            "or install one, e.g. 'apt install fonts-nanum', then delete matplotlib's font cache)")
    return found


def korean_labels(plot):
    """Draw ``plot`` with a Korean font first (when one is installed; else one warning, not one per glyph)."""
    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        font = korean_font()
        with matplotlib.rc_context({"font.family": [font, "DejaVu Sans"]} if font else {}), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Glyph .* missing from font")
            return plot(*args, **kwargs)
    return wrapper


def save_png(fig, path) -> None:
    """Write ``fig`` as PNG atomically and free it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


@korean_labels
def scatter_plot(preds, gold, groups, path, title: str, low: float = 0.0, high: float = 5.0) -> None:
    """Prediction (y) against gold (x), one colour per group, with the diagonal and the 3.0 thresholds."""
    preds, gold, groups = np.asarray(preds), np.asarray(gold), np.asarray(groups, dtype=str)
    fig, ax = plt.subplots(figsize=(7, 7), dpi=110)
    names = sorted(set(groups))
    for name in names:
        mask = groups == name
        ax.scatter(gold[mask], preds[mask], s=10, alpha=0.6, label=f"{name or 'all'} ({mask.sum()})")
    ax.plot([low, high], [low, high], color="black", linewidth=1, linestyle="--")
    ax.axhline(3.0, color="grey", linewidth=0.7, linestyle=":")
    ax.axvline(3.0, color="grey", linewidth=0.7, linestyle=":")
    ax.set(xlim=(low - 0.1, high + 0.1), ylim=(low - 0.1, high + 0.1), xlabel="gold score",
           ylabel="predicted score", title=title)
    if len(names) > 1:
        ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)


@korean_labels
def confusion_matrix_plot(gold_ids, pred_ids, labels: list[str], path, title: str, normalize: bool = True) -> None:
    """Gold (rows) against predicted (columns) class, readable for 30 classes, written as PNG.

    With ``normalize`` the colours are row-normalised (the share of each gold class predicted as each
    class, so rare classes stay visible); every non-zero cell is annotated with its count either way.
    """
    num_classes = len(labels)
    gold = check_class_ids(gold_ids, num_classes, "gold_ids")
    pred = check_class_ids(pred_ids, num_classes, "pred_ids")
    if gold.shape != pred.shape:
        raise ValueError(f"gold_ids has {gold.size} ids but pred_ids has {pred.size}")
    counts = confusion_matrix(gold, pred, labels=np.arange(num_classes))
    support = counts.sum(axis=1)
    colours = (counts / np.maximum(support, 1)[:, None]) if normalize else counts.astype(float)
    side = max(6.0, 0.42 * num_classes + 3.0)
    fig, ax = plt.subplots(figsize=(side + 1.5, side), dpi=110)
    image = ax.imshow(colours, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else max(1, counts.max()))
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02,
                 label="share of the gold class" if normalize else "count")
    dark = colours > (0.55 if normalize else 0.55 * max(1, counts.max()))
    font = 9 if num_classes <= 15 else 7
    for row, col in zip(*np.nonzero(counts)):
        ax.text(col, row, str(counts[row, col]), ha="center", va="center", fontsize=font,
                color="white" if dark[row, col] else "black")
    ticks = np.arange(num_classes)
    ax.set_xticks(ticks, labels=labels, rotation=60, ha="right", rotation_mode="anchor", fontsize=font + 1)
    ax.set_yticks(ticks, labels=[f"{name} ({n})" for name, n in zip(labels, support)], fontsize=font + 1)
    ax.set_xticks(ticks[:-1] + 0.5, minor=True)
    ax.set_yticks(ticks[:-1] + 0.5, minor=True)
    ax.grid(which="minor", color="lightgrey", linewidth=0.4)
    ax.tick_params(which="minor", length=0)
    accuracy = float(np.trace(counts)) / max(1, gold.size) * 100
    ax.set(xlabel="predicted class", ylabel="gold class (support)",
           title=f"{title}\n{gold.size} examples, accuracy {accuracy:.1f}%")
    fig.tight_layout()
    save_png(fig, path)
