"""Readers for sentence-pair similarity (STS) files, in every format our users have.

Formats (detected from the file, or named with ``--format``):

- ``klue-json``: the official KLUE JSON (guid, source, sentence1, sentence2, labels{real-label, ...});
- ``csv``: ``sentence1,sentence2,label`` (label optional for test files);
- ``competition``: ``id,source,sentence_1,sentence_2,label,binary-label`` (test: no label columns);
- ``korsts``: KorSTS TSV ``genre,filename,year,id,score,sentence1,sentence2`` (bare quotes in text).

All give one DataFrame with columns ``id, source, sentence1, sentence2, label`` (label NaN when absent,
or when the cell is empty in a file read with ``require_labels=False``) and ``_row`` for error messages.
Errors name columns as the file does (``sentence_1``, ``score``, ``labels.real-label``, ``guid``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError
from .tables import (ROW, check_not_empty, ensure_ids, file_column, parse_numbers, read_table, rename_aliases,
                     require_columns, warn_long_texts)

FORMATS = ("auto", "klue-json", "csv", "competition", "korsts")
COLUMNS = ["id", "source", "sentence1", "sentence2", "label"]
ALIASES = {
    "id": ("id", "guid"),
    "sentence1": ("sentence1", "sentence_1"),
    "sentence2": ("sentence2", "sentence_2"),
    "label": ("labels.real-label", "real-label", "label", "score", "labels.label"),
    "source": ("source",),
}


def detect_format(frame: pd.DataFrame) -> str:
    """Name the STS format of a freshly read table from its kind and columns."""
    columns = set(frame.columns)
    if frame.attrs.get("kind") == "json":
        return "klue-json"
    if {"genre", "filename", "year", "score"} <= columns:
        return "korsts"
    if "sentence_1" in columns:
        return "competition"
    return "csv"


def read_sts(path, fmt: str = "auto", require_labels: bool = True) -> pd.DataFrame:
    """Read an STS file into the canonical table, checking it row by row.

    Raises DataError naming file, row, column and problem for: a missing column, an empty
    sentence, a label that is missing (unless ``require_labels`` is False: then it is NaN),
    not a number or outside 0-5, a duplicate id.
    """
    if fmt not in FORMATS:
        raise DataError(path, 0, "--format", f"unknown STS format {fmt!r} (choose from {', '.join(FORMATS)})")
    kind = {"klue-json": "json", "csv": "csv", "competition": "csv", "korsts": "tsv"}.get(fmt, "auto")
    frame = read_table(path, kind)
    fmt = detect_format(frame) if fmt == "auto" else fmt
    if fmt == "korsts":
        require_columns(frame, path, ["genre", "filename", "year", "id", "score", "sentence1", "sentence2"])
        frame["id"] = frame["genre"] + "/" + frame["filename"] + "/" + frame["year"] + "/" + frame["id"]
        frame = frame.rename(columns={"genre": "source"})
        frame.attrs["columns"] = {"source": "genre"}
    frame = rename_aliases(frame, ALIASES, path)
    require_columns(frame, path, ["sentence1", "sentence2"], ALIASES)
    if require_labels:
        require_columns(frame, path, ["label"], ALIASES)
    check_not_empty(frame, path, ["sentence1", "sentence2"])
    warn_long_texts(frame, path, ["sentence1", "sentence2"])
    if "label" in frame.columns:
        frame["label"] = parse_numbers(frame, path, "label", 0.0, 5.0, allow_empty=not require_labels)
    else:
        frame["label"] = np.nan
    has_ids = ensure_ids(frame, path)
    if "source" not in frame.columns:
        frame["source"] = ""
    out = frame[COLUMNS + [ROW]].reset_index(drop=True)
    out.attrs.update(path=str(path), format=fmt, has_ids=has_ids)
    return out


def check_labeled(frame: pd.DataFrame) -> None:
    """Fail if a table meant for training or evaluation has no labels."""
    if frame["label"].isna().any():
        row = int(frame.loc[frame["label"].isna(), ROW].iloc[0])
        raise DataError(frame.attrs.get("path", "?"), row, file_column(frame, "label"), "missing label")
