"""Readers for text classification files (one sentence or a sentence pair) and label sets.

Columns are named by the caller or by a preset for the shared sets (``PRESETS``): YNAT topics, NSMC
sentiment, KLUE-NLI and KorNLI. Formats: CSV, TSV (bare quotes allowed; a CSV-quoted cell is read too),
JSON list or JSON Lines; a file without a header is read when the caller gives its columns by position.

``read_classification`` gives one DataFrame with columns ``id, text, [text_pair], label, _row``: texts as
the file has them ('' where empty), the label stripped ('' where absent). Errors name columns as the
file does (``document``, ``gold_label``, ``guid``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError
from .labels import read_label_file  # noqa: F401  (re-exported: the one label-file reader is in data/labels.py)
from .tables import ROW, ensure_ids, file_column, first_bad, match_column, read_table, warn_long_texts

log = logging.getLogger("kluekit")

FORMATS = ("auto", "csv", "tsv", "json")
METRICS = ("macro_f1", "accuracy")
ROLES = {"text": "text", "text_pair": "second text", "label": "label", "id": "id"}
INTEGER = re.compile(r"[+-]?\d+")
YNAT_LABELS = ("IT과학", "경제", "사회", "생활문화", "세계", "스포츠", "정치")
NLI_LABELS = ("entailment", "neutral", "contradiction")
MISSING_LIKE = ("nan", "na", "n/a", "#n/a", "null", "none", "nil")  # what a hole looks like once written out


@dataclass(frozen=True, kw_only=True)
class Preset:
    """Where a shared set keeps its columns, its official label order and its metric."""

    text: str
    text_pair: str | None = None  # None: single sentence
    label: str = "label"
    id: str | None = None  # None: ids are row numbers
    labels: tuple[str, ...] | None = None  # None: learned from the training file (``label_set``)
    metric: str = "accuracy"
    columns: tuple[str, ...] | None = None  # column names by position, for files without a header
    description: str = ""

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"metric {self.metric!r} is not one of {', '.join(METRICS)}")


PRESETS = {
    "ynat": Preset(text="text", label="label", labels=YNAT_LABELS, metric="macro_f1", columns=("label", "text"),
                   description="KLUE-YNAT news topics, 7 classes (TSV label, text; dev has no header), macro-F1"),
    "nsmc": Preset(text="document", label="label", id="id", labels=("0", "1"), metric="accuracy",
                   description="NSMC movie review sentiment, 0 negative / 1 positive (TSV id, document, label), "
                               "accuracy"),
    "klue-nli": Preset(text="premise", text_pair="hypothesis", label="gold_label", id="guid", labels=NLI_LABELS,
                       metric="accuracy", description="KLUE-NLI premise/hypothesis pairs (official JSON), accuracy"),
    "kornli": Preset(text="sentence1", text_pair="sentence2", label="gold_label", labels=NLI_LABELS,
                     metric="accuracy", description="KorNLI sentence pairs (TSV sentence1, sentence2, gold_label), "
                                                    "accuracy"),
}


def read_classification(path, text: str, label: str, text_pair: str | None = None, id_column: str | None = None,
                        fmt: str = "auto", require_labels: bool = True, columns=None) -> pd.DataFrame:
    """Read a classification file into the canonical table, checking its columns, ids and labels.

    Columns are matched by name exactly, else ignoring case. When they are missing from the header and
    ``columns`` (names by position) has as many names as the file has fields, the file is read as having
    no header. ``attrs``: path, format, header, has_ids, has_labels (every row has a label), columns
    (canonical -> the file's name) and empty_text_rows (rows whose text or second text is empty: kept).
    Raises DataError (file, row, the file's column, problem) for a missing column, an empty or duplicate
    id, and a missing label unless ``require_labels`` is False.
    """
    if fmt not in FORMATS:
        raise DataError(path, 0, "--format", f"unknown classification format {fmt!r} "
                                             f"(choose from {', '.join(FORMATS)})")
    names = {"text": text, "text_pair": text_pair, "label": label, "id": id_column}
    required = ["text"] + (["text_pair"] if text_pair else []) + (["label"] if require_labels else [])
    frame = read_table(path, fmt)
    found = _match_columns(frame, path, names)
    missing = [role for role in required if found[role] is None]
    width = len(frame.columns) - 1
    header = True
    if missing and columns and frame.attrs["kind"] != "json" and width == len(columns):
        frame, header = read_table(path, frame.attrs["kind"], names=columns), False
        found = _match_columns(frame, path, names)
        missing = [role for role in required if found[role] is None]
    if missing:
        role = missing[0]
        have = ", ".join(c for c in frame.columns if c != ROW)
        hint = f"; a file without a header needs {len(columns)} fields: {', '.join(columns)}" if columns else ""
        raise DataError(path, 1, names[role], f"missing column (expected the {ROLES[role]} column "
                                              f"{names[role]!r}; found: {have}{hint})")

    out = pd.DataFrame({role: frame[name].to_numpy() for role, name in found.items() if name is not None})
    out[ROW] = frame[ROW].to_numpy()
    out.attrs["columns"] = {role: name for role, name in found.items() if name is not None}
    has_ids = ensure_ids(out, path)
    out["label"] = out["label"].str.strip() if "label" in out.columns else ""
    _warn_missing_like_labels(out, path)
    empty_label = (out["label"] == "").to_numpy()
    row = first_bad(out, empty_label)
    if require_labels and row is not None:
        raise DataError(path, row, file_column(out, "label"), "missing label")
    pairs = ["text", "text_pair"] if text_pair else ["text"]
    warn_long_texts(out, path, pairs)
    empty_text = np.logical_or.reduce([(out[c].str.strip() == "").to_numpy() for c in pairs])
    columns_out = ["id", *pairs, "label", ROW]
    result = out[columns_out].reset_index(drop=True)
    result.attrs.update(path=str(path), format=frame.attrs["kind"], header=header, has_ids=has_ids,
                        has_labels=found["label"] is not None and not empty_label.any(),
                        columns=out.attrs["columns"], empty_text_rows=out[ROW].to_numpy()[empty_text].tolist())
    return result


def _match_columns(frame: pd.DataFrame, path, names: dict[str, str | None]) -> dict[str, str | None]:
    """Each role's column in ``frame`` (``match_column``: exactly, else ignoring case), or None."""
    return {role: name if name is None else match_column(frame.columns, name, path) for role, name in names.items()}


def _warn_missing_like_labels(frame: pd.DataFrame, path) -> None:
    """One warning for labels that read like a missing value (``NaN``, ``null``, ...): they are kept as class
    names, as the file says, but are most likely holes that a spreadsheet or pandas wrote out."""
    labels = frame["label"]
    missing = labels.str.casefold().isin(MISSING_LIKE).to_numpy()
    if not missing.any():
        return
    rows = frame.loc[missing, ROW].groupby(labels[missing], sort=False).agg(list)
    parts = [f"label {value!r} at row {', '.join(map(str, found[:10]))}"
             + (f", ... ({len(found)} rows)" if len(found) > 10 else "") for value, found in rows.items()]
    log.warning("%s: %s: treated as a class name; fix the file or drop those rows", path, "; ".join(parts))


def label_set(values) -> list[str]:
    """The label order learned from a training file's labels: numeric if every label is an integer, else
    alphabetical; duplicates and empty labels dropped."""
    labels = {str(value).strip() for value in values} - {""}
    if labels and all(INTEGER.fullmatch(label) for label in labels):
        return sorted(labels, key=lambda label: (int(label), label))
    return sorted(labels)


def label_ids(frame: pd.DataFrame, labels, path) -> np.ndarray:
    """Each row's label as its index in ``labels``; an unknown or missing label is a DataError on its row."""
    names = [str(label) for label in labels]
    cells = frame["label"].astype(str).str.strip()
    ids = cells.map({name: i for i, name in enumerate(names)})
    unknown = ids.isna().to_numpy()
    row = first_bad(frame, unknown)
    if row is not None:
        value = cells.to_numpy()[unknown.argmax()]
        shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
        problem = "missing label" if value == "" else f"unknown label {value!r} (known: {shown or 'none'})"
        raise DataError(path, row, file_column(frame, "label"), problem)
    return ids.to_numpy(dtype=np.int64)
