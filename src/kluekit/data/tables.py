"""Turn CSV/TSV/JSON files into string tables, with checks shared by every task's reader.

Every table carries a ``_row`` column: the row number a person sees in an editor (header = 1,
first data row = 2; for JSON, the 1-based record number), so errors can point at it.
"""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pandas as pd

from ..errors import DataError
from .io import read_text

ROW = "_row"


def sniff_kind(path, text: str) -> str:
    """Guess 'json', 'tsv' or 'csv' from the file name and its first line."""
    if str(path).lower().endswith((".json", ".jsonl")) or text.lstrip()[:1] in "[{":
        return "json"
    first = text.split("\n", 1)[0]
    return "tsv" if first.count("\t") > first.count(",") else "csv"


def read_table(path, kind: str = "auto", header: bool = True) -> pd.DataFrame:
    """Read a file into a DataFrame of strings (no NaN: missing cells are ''), plus ``_row``.

    TSV is read with no quoting (KorSTS and KorNLI have bare quotes inside the text).
    """
    text = read_text(path)
    kind = sniff_kind(path, text) if kind == "auto" else kind
    if kind == "json":
        frame = _json_table(path, text)
        frame.attrs["kind"] = kind
        return frame
    options = dict(sep="\t", quoting=csv.QUOTE_NONE) if kind == "tsv" else dict(sep=",")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False,
                            header=0 if header else None, skip_blank_lines=True, **options)
    except pd.errors.ParserError as error:
        match = re.search(r"line (\d+)", str(error))
        raise DataError(path, int(match.group(1)) if match else 1, None,
                        f"cannot parse as {kind.upper()}: {error}") from None
    except pd.errors.EmptyDataError:
        raise DataError(path, 1, None, "file is empty") from None
    if not header:
        frame.columns = [str(c) for c in frame.columns]
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise DataError(path, 2, None, "no data rows after the header")
    frame[ROW] = np.arange(len(frame)) + (2 if header else 1)
    frame.attrs["kind"] = kind
    return frame


def _json_table(path, text: str) -> pd.DataFrame:
    try:
        if str(path).lower().endswith(".jsonl"):
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(path, error.lineno, None, f"invalid JSON: {error.msg}") from None
    if isinstance(records, dict) and isinstance(records.get("data"), list):
        records = records["data"]
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(path, 1, None, "expected a JSON list of objects")
    if not records:
        raise DataError(path, 1, None, "file is empty: the JSON list has no records")
    frame = pd.json_normalize(records)  # nested dicts become 'labels.real-label' columns
    frame = frame.astype(object).where(frame.notna(), "").astype(str)
    frame[ROW] = np.arange(len(frame)) + 1
    return frame


def rename_aliases(frame: pd.DataFrame, aliases: dict[str, tuple[str, ...]]) -> pd.DataFrame:
    """Rename the first present alias of each canonical column to its canonical name."""
    mapping = {}
    for canonical, names in aliases.items():
        for name in names:
            if name in frame.columns and canonical not in frame.columns:
                mapping[name] = canonical
                break
    return frame.rename(columns=mapping)


def require_columns(frame: pd.DataFrame, path, columns) -> None:
    """Fail on the first missing column, listing the columns the file does have."""
    found = [c for c in frame.columns if c != ROW]
    for column in columns:
        if column not in frame.columns:
            raise DataError(path, 1, column, f"missing column (found: {', '.join(found)})")


def first_bad(frame: pd.DataFrame, mask) -> int | None:
    """The row number of the first True in ``mask``, or None."""
    mask = np.asarray(mask, dtype=bool)
    return int(frame[ROW].to_numpy()[mask.argmax()]) if mask.any() else None


def check_not_empty(frame: pd.DataFrame, path, columns) -> None:
    """Every cell of ``columns`` holds some non-space text."""
    for column in columns:
        row = first_bad(frame, frame[column].str.strip() == "")
        if row is not None:
            raise DataError(path, row, column, "empty text")


def parse_numbers(frame: pd.DataFrame, path, column: str, low: float, high: float) -> np.ndarray:
    """The column as floats, each a number within [low, high]."""
    values = pd.to_numeric(frame[column].str.strip(), errors="coerce").to_numpy(dtype=float)
    row = first_bad(frame, np.isnan(values))
    if row is not None:
        cell = frame[column].to_numpy()[np.isnan(values).argmax()]
        raise DataError(path, row, column, f"{cell!r} is not a number")
    outside = (values < low) | (values > high)
    row = first_bad(frame, outside)
    if row is not None:
        raise DataError(path, row, column, f"{values[outside.argmax()]:g} is outside {low:g}-{high:g}")
    return values


def check_unique(frame: pd.DataFrame, path, column: str) -> None:
    """No value of ``column`` occurs twice."""
    duplicated = frame[column].duplicated().to_numpy()
    row = first_bad(frame, duplicated)
    if row is not None:
        value = frame[column].to_numpy()[duplicated.argmax()]
        first = int(frame.loc[frame[column] == value, ROW].iloc[0])
        raise DataError(path, row, column, f"duplicate id {value!r} (first at row {first})")
