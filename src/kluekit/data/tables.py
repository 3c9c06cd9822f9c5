"""Turn CSV/TSV/JSON files into string tables, with checks shared by every task's reader.

Every table carries a ``_row`` column: the row number a person sees in an editor (header = 1,
first data row = 2; for JSON, the 1-based record number; for JSON Lines, the line number), so errors
can point at it. After ``rename_aliases``, ``frame.attrs["columns"]`` maps canonical column names to
the names the file uses, so that errors name a column as the user sees it.
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
    if str(path).lower().endswith((".json", ".jsonl")) or text.lstrip()[:1] in ("[", "{"):
        return "json"
    first = text.lstrip().split("\n", 1)[0]
    return "tsv" if first.count("\t") > first.count(",") else "csv"


def read_table(path, kind: str = "auto", header: bool = True, names=None) -> pd.DataFrame:
    """Read a file into a DataFrame of strings (no NaN: missing cells are ''), plus ``_row``.

    TSV is read with no quoting (KorSTS and KorNLI have bare quotes inside the text); if a line then
    has the wrong number of fields, the TSV is read again with CSV quoting (KLUE-YNAT quotes a title
    that holds a tab) and that is used when every quoted cell is well formed.
    Blank lines are dropped but still counted, so ``_row`` is the file's line number; the one
    exception is a quoted cell that spans lines, after which rows count as one line each.
    Without a header (``header=False``) the columns are named '0', '1', ...; ``names`` reads a file
    without a header and names its columns by position (a row with more fields is an error).
    """
    text = read_text(path)
    kind = sniff_kind(path, text) if kind == "auto" else kind
    if kind == "json":
        frame = _json_table(path, text)
        frame.attrs["kind"] = kind
        return frame
    header = header and names is None
    blank = len(text) - len(text.lstrip())
    start = text.rfind("\n", 0, blank) + 1  # the first non-blank line: the header
    skipped = text.count("\n", 0, start)
    try:
        try:
            frame = _parse(text[start:], kind, header, quoted=kind != "tsv")
        except pd.errors.ParserError as error:
            frame = _quoted_tsv(text[start:], header) if kind == "tsv" and FIELDS.search(str(error)) else None
            if frame is None:
                raise
    except pd.errors.ParserError as error:
        match = re.search(r"line (\d+)", str(error))
        raise DataError(path, skipped + (int(match.group(1)) if match else 1), None,
                        f"cannot parse as {kind.upper()}: {error}") from None
    except pd.errors.EmptyDataError:
        raise DataError(path, 1, None, "file is empty") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if names is not None:
        frame = _name_columns(frame, path, [str(name) for name in names], skipped + 1)
    frame[ROW] = np.arange(len(frame)) + skipped + (2 if header else 1)
    frame = frame[~(frame.drop(columns=[ROW]).apply(lambda cells: cells.str.strip()) == "").all(axis=1)]
    if frame.empty:
        raise DataError(path, skipped + 2, None, "no data rows after the header")
    frame = frame.reset_index(drop=True)
    frame.attrs["kind"] = kind
    return frame


FIELDS = re.compile(r"Expected \d+ fields in line \d+, saw \d+")  # pandas: a line with the wrong number of fields


def _parse(text: str, kind: str, header: bool, quoted: bool) -> pd.DataFrame:
    """pandas' read of CSV/TSV text as strings; a first data line with extra fields is a ParserError."""
    options = dict(sep="\t" if kind == "tsv" else ",")
    if not quoted:
        options["quoting"] = csv.QUOTE_NONE
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False,
                        header=0 if header else None, skip_blank_lines=False, **options)
    if not isinstance(frame.index, pd.RangeIndex):  # pandas took the extra fields of line 2 for an index
        width = len(frame.columns)
        raise pd.errors.ParserError(f"Expected {width} fields in line 2, saw {width + frame.index.nlevels}")
    return frame


def _quoted_tsv(text: str, header: bool) -> pd.DataFrame | None:
    """The TSV read with CSV quoting, or None if a quoted cell is malformed (``"a"b``, no closing quote)
    or a line still has the wrong number of fields: then the bare quotes were text, not quoting."""
    try:
        for _ in csv.reader(io.StringIO(text), delimiter="\t", strict=True):
            pass
        return _parse(text, "tsv", header, quoted=True)
    except (csv.Error, pd.errors.ParserError):
        return None


def _name_columns(frame: pd.DataFrame, path, names: list[str], row: int) -> pd.DataFrame:
    """Name a headerless table's columns by position; missing trailing columns are ''."""
    if len(set(names)) < len(names):
        raise ValueError(f"column names must differ: {names}")
    if frame.shape[1] > len(names):
        raise DataError(path, row, None, f"has {frame.shape[1]} fields but {len(names)} column names were "
                                         f"given ({', '.join(names)})")
    frame.columns = names[:frame.shape[1]]
    for name in names[frame.shape[1]:]:
        frame[name] = ""
    return frame


def _json_table(path, text: str) -> pd.DataFrame:
    if str(path).lower().endswith(".jsonl"):
        lines = text.split("\n")  # not splitlines(): JSON text may hold a bare U+2028
        rows = [number for number, line in enumerate(lines, 1) if line.strip()]
        records = [loads_json(path, lines[row - 1], row) for row in rows]
    else:
        records = loads_json(path, text)
        if isinstance(records, dict) and isinstance(records.get("data"), list):
            records = records["data"]
        if not isinstance(records, list):
            raise DataError(path, 1, None, "expected a JSON list of objects")
        rows = list(range(1, len(records) + 1))
    if not records:
        raise DataError(path, 1, None, "file is empty: the JSON list has no records")
    objects = [isinstance(record, dict) for record in records]
    if not all(objects):
        raise DataError(path, rows[objects.index(False)], None, "expected a JSON list of objects")
    frame = pd.json_normalize(records)  # nested dicts become 'labels.real-label' columns
    frame = frame.astype(object).where(frame.notna(), "").astype(str)
    frame[ROW] = rows
    return frame


def loads_json(path, text: str, row: int | None = None, **options):
    """``json.loads(text, **options)``; invalid JSON is a DataError on ``row`` (by default the error's line)."""
    try:
        return json.loads(text, **options)
    except json.JSONDecodeError as error:
        raise DataError(path, row or error.lineno, None, f"invalid JSON: {error.msg}") from None


def rename_aliases(frame: pd.DataFrame, aliases: dict[str, tuple[str, ...]]) -> pd.DataFrame:
    """Rename the first present alias of each canonical column to its canonical name.

    Records canonical -> original name in ``attrs["columns"]`` (see ``file_column``).
    """
    mapping = {}
    for canonical, names in aliases.items():
        for name in names:
            if name in frame.columns and canonical not in frame.columns:
                mapping[name] = canonical
                break
    renamed = frame.rename(columns=mapping)
    renamed.attrs["columns"] = {**frame.attrs.get("columns", {}), **{c: n for n, c in mapping.items()}}
    return renamed


def file_column(frame: pd.DataFrame, column: str) -> str:
    """The name the file gives the (canonical) ``column``, for error messages."""
    return frame.attrs.get("columns", {}).get(column, column)


def require_columns(frame: pd.DataFrame, path, columns, aliases: dict | None = None) -> None:
    """Fail on the first missing column, listing its accepted names and the columns the file does have."""
    found = [file_column(frame, c) for c in frame.columns if c != ROW]
    for column in columns:
        if column not in frame.columns:
            names = (aliases or {}).get(column, ())
            expected = f"expected one of {', '.join(names)}; " if len(names) > 1 else ""
            raise DataError(path, 1, column, f"missing column ({expected}found: {', '.join(found)})")


def first_bad(frame: pd.DataFrame, mask) -> int | None:
    """The row number of the first True in ``mask``, or None."""
    mask = np.asarray(mask, dtype=bool)
    return int(frame[ROW].to_numpy()[mask.argmax()]) if mask.any() else None


def check_not_empty(frame: pd.DataFrame, path, columns) -> None:
    """Every cell of ``columns`` holds some non-space text."""
    for column in columns:
        row = first_bad(frame, frame[column].str.strip() == "")
        if row is not None:
            raise DataError(path, row, file_column(frame, column), "empty text")


def parse_numbers(frame: pd.DataFrame, path, column: str, low: float, high: float,
                  allow_empty: bool = False) -> np.ndarray:
    """The column as floats, each a number within [low, high]; empty cells are NaN if ``allow_empty``."""
    cells = frame[column].str.strip()
    name = file_column(frame, column)
    empty = (cells == "").to_numpy()
    row = None if allow_empty else first_bad(frame, empty)
    if row is not None:
        raise DataError(path, row, name, f"missing {column}")
    values = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=float)
    wrong = np.isnan(values) & ~empty
    row = first_bad(frame, wrong)
    if row is not None:
        raise DataError(path, row, name, f"{frame[column].to_numpy()[wrong.argmax()]!r} is not a number")
    outside = (values < low) | (values > high)
    row = first_bad(frame, outside)
    if row is not None:
        raise DataError(path, row, name, f"{values[outside.argmax()]:g} is outside {low:g}-{high:g}")
    return values


def check_unique(frame: pd.DataFrame, path, column: str) -> None:
    """No value of ``column`` occurs twice."""
    duplicated = frame[column].duplicated().to_numpy()
    row = first_bad(frame, duplicated)
    if row is not None:
        value = frame[column].to_numpy()[duplicated.argmax()]
        first = int(frame.loc[frame[column] == value, ROW].iloc[0])
        raise DataError(path, row, file_column(frame, column), f"duplicate id {value!r} (first at row {first})")


def ensure_ids(frame: pd.DataFrame, path) -> bool:
    """Check a present ``id`` column (no empty, no duplicate ids) or number the rows; True if the file had ids."""
    if "id" not in frame.columns:
        frame["id"] = np.arange(len(frame)).astype(str)
        return False
    check_not_empty(frame, path, ["id"])
    check_unique(frame, path, "id")
    return True
