"""Confusion-matrix PNG and per-class table: file validity, contents against sklearn, atomic writes."""

from __future__ import annotations

import struct

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

import kluekit.report.plots as plots
from kluekit.report import confusion_matrix_plot, per_class_table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LABELS_30 = [f"{'org' if i % 2 else 'per'}:relation_name_{i:02d}" for i in range(30)]
LABELS_30[0] = "no_relation"


def png_size(path):
    """(width, height) from the IHDR chunk that follows the signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def random_ids(size=600, classes=30, seed=0):
    rng = np.random.default_rng(seed)
    gold = np.minimum(rng.geometric(0.25, size) - 1, classes - 1)
    pred = np.where(rng.random(size) < 0.7, gold, rng.integers(0, classes, size))
    return gold, pred


@pytest.fixture
def captured(monkeypatch):
    """The figures confusion_matrix_plot builds, kept from plt.close so that their contents can be checked."""
    figures, close = [], plots.plt.close
    monkeypatch.setattr(plots.plt, "close", lambda fig=None: figures.append(fig))
    yield figures
    for fig in figures:
        close(fig)


def test_confusion_matrix_png_for_30_classes(tmp_path, captured):
    gold, pred = random_ids()
    gold[gold == 29] = 28  # a class with no gold example: its row stays 0, no division warning
    path = tmp_path / "out" / "confusion.png"
    confusion_matrix_plot(gold, pred, LABELS_30, path, title="RE dev")
    width, height = png_size(path)
    assert width >= 1500 and height >= 1400  # large enough to read 30 rotated labels
    assert [p.name for p in path.parent.iterdir()] == ["confusion.png"]  # no temp file left

    (fig,) = captured
    ax = fig.axes[0]
    counts = confusion_matrix(gold, pred, labels=range(30))
    shown = np.asarray(ax.images[0].get_array())
    rows = counts.sum(axis=1)
    np.testing.assert_allclose(shown[rows > 0], (counts / rows.clip(1)[:, None])[rows > 0])
    np.testing.assert_array_equal(shown[29], 0.0)
    np.testing.assert_allclose(shown[rows > 0].sum(axis=1), 1.0)  # row-normalised colours
    annotated = {(round(t.get_position()[1]), round(t.get_position()[0])): int(t.get_text()) for t in ax.texts}
    assert annotated == {(r, c): counts[r, c] for r, c in zip(*np.nonzero(counts))}  # counts where non-zero
    assert [t.get_text() for t in ax.get_xticklabels()] == LABELS_30
    assert ax.get_xticklabels()[0].get_rotation() > 0
    assert ax.get_yticklabels()[0].get_text() == f"no_relation ({rows[0]})"


def test_confusion_matrix_counts_unnormalised_and_overwrite(tmp_path, captured):
    path = tmp_path / "cm.png"
    path.write_bytes(b"old")
    gold, pred = [0, 1, 2, 2, 1, 0], [0, 2, 2, 2, 1, 1]
    confusion_matrix_plot(gold, pred, ["no_relation", "a", "b"], path, title="t", normalize=False)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    shown = np.asarray(captured[0].axes[0].images[0].get_array())
    np.testing.assert_array_equal(shown, confusion_matrix(gold, pred, labels=range(3)))


@pytest.mark.parametrize("gold, pred, message", [
    ([0, 1, 3], [0, 1, 1], r"gold_ids\[2\] = 3"),
    ([0, 1, 2], [0, -1, 1], r"pred_ids\[1\] = -1"),
    ([0, 1, 2], [0, 1], "3 ids but pred_ids has 2"),
])
def test_confusion_matrix_bad_ids_raise_and_write_nothing(tmp_path, gold, pred, message):
    path = tmp_path / "cm.png"
    with pytest.raises(ValueError, match=message):
        confusion_matrix_plot(gold, pred, ["no_relation", "a", "b"], path, title="t")
    assert list(tmp_path.iterdir()) == []


def test_per_class_table_matches_sklearn(tmp_path):
    gold, pred = random_ids(seed=1)
    gold[gold == 29] = 28  # a class never in gold: precision 0 (zero_division=0), support 0
    path = tmp_path / "per_class.csv"
    lines = per_class_table(gold, pred, LABELS_30, path)
    table = pd.read_csv(path)
    assert list(table.columns) == ["label", "precision", "recall", "f1", "support"]
    assert table["label"].tolist() == LABELS_30 + ["micro avg", "macro avg"]

    precision, recall, f1, support = precision_recall_fscore_support(gold, pred, labels=range(30), zero_division=0)
    body = table.iloc[:30]
    np.testing.assert_allclose(body["precision"], precision * 100, atol=1e-4)  # CSV keeps 4 decimals
    np.testing.assert_allclose(body["recall"], recall * 100, atol=1e-4)
    np.testing.assert_allclose(body["f1"], f1 * 100, atol=1e-4)
    np.testing.assert_array_equal(body["support"], support)
    assert body["support"].iloc[29] == 0 and body["precision"].iloc[29] == 0.0
    for average in ("micro", "macro"):
        row = table.set_index("label").loc[f"{average} avg"]
        expected = precision_recall_fscore_support(gold, pred, labels=range(30), average=average, zero_division=0)
        np.testing.assert_allclose(row[["precision", "recall", "f1"]].astype(float), np.array(expected[:3]) * 100,
                                   atol=1e-4)
        assert row["support"] == len(gold)
    # micro over all classes, no_relation included, is the accuracy
    assert table.set_index("label").loc["micro avg", "f1"] == pytest.approx(np.mean(gold == pred) * 100, abs=1e-4)

    assert len(lines) == 1 + 30 + 2
    assert lines[0].split() == ["label", "precision", "recall", "f1", "support"]
    assert lines[1].split()[0] == "no_relation" and lines[-1].split()[:2] == ["macro", "avg"]
    assert lines[1].split()[1] == f"{precision[0] * 100:.2f}"
    assert [p.name for p in tmp_path.iterdir()] == ["per_class.csv"]


def test_per_class_table_bad_ids_raise_and_write_nothing(tmp_path):
    with pytest.raises(ValueError, match=r"pred_ids\[0\] = 5"):
        per_class_table([0, 1], [5, 1], ["no_relation", "a"], tmp_path / "t.csv")
    with pytest.raises(ValueError, match="equally many"):
        per_class_table([0, 1], [0], ["no_relation", "a"], tmp_path / "t.csv")
    assert list(tmp_path.iterdir()) == []


def test_plots_use_a_font_with_hangul():
    from matplotlib import font_manager, ft2font

    plots.korean_font.cache_clear()
    family = plots.korean_font()
    assert family is not None
    path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
    font = ft2font.FT2Font(path)
    assert all(font.get_char_index(ord(char)) != 0 for char in "한국어 관계")


def test_plot_font_falls_back_without_koreanize(monkeypatch, caplog):
    monkeypatch.setattr(plots.importlib.util, "find_spec", lambda name: None)
    assert plots.bundled_font() is None
    monkeypatch.setattr(plots, "KOREAN_FONTS", ("No Such Font",))
    plots.korean_font.cache_clear()
    try:
        assert plots.korean_font() is None
        assert any("no Korean font found" in r.getMessage() for r in caplog.records)
    finally:
        plots.korean_font.cache_clear()
