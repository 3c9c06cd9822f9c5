"""Turn CSV/TSV/JSON files into string tables, with checks shared by every task's reader.

Every table carries a ``_row`` column: the row number a person sees in an editor (header = 1,
first data row = 2; for JSON, the 1-based record number; for JSON Lines, the line number), so errors
can point at it. Columns are picked by name in data/columns.py (re-exported here): after ``rename_aliases``,
``frame.attrs["columns"]`` maps canonical column names to the names the file uses, so that errors name a
column as the user sees it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re

import numpy as np
import pandas as pd

from ..errors import DataError
from .columns import (ROW, TEXT_COLUMNS, file_column, match_column, rename_aliases,  # noqa: F401 (re-exported)
                      require_columns, text_column)
from .io import read_text

log = logging.getLogger("kluekit")

LONG_TEXT = 20_000  # characters; a longer text is most likely a broken file (a quote that swallowed lines)


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
    Blank lines are dropped but still counted, and so are the lines of a quoted cell that spans lines,
    so ``_row`` is the line where the row starts; a parse error names the line where the record at
    fault starts (for a quote that never closes: the line where it opens).
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
    body = text[start:]
    try:
        try:
            frame = _parse(body, kind, header, quoted=kind != "tsv")
        except pd.errors.ParserError as error:
            frame = _quoted_tsv(body, header) if kind == "tsv" and FIELDS.search(str(error)) else None
            if frame is None:
                raise
    except pd.errors.ParserError as error:
        line, problem = _parse_problem(body, kind, error)
        raise DataError(path, skipped + line, None, f"cannot parse as {kind.upper()}: {problem}") from None
    except pd.errors.EmptyDataError:
        raise DataError(path, 1, None, "file is empty") from None
    rows = _start_lines(frame, body, header) + skipped
    frame.columns = [str(c).strip() for c in frame.columns]
    if names is not None:
        frame = _name_columns(frame, path, [str(name) for name in names], skipped + 1)
    frame[ROW] = rows
    frame = frame[~(frame.drop(columns=[ROW]).apply(lambda cells: cells.str.strip()) == "").all(axis=1)]
    if frame.empty:
        raise DataError(path, skipped + 2, None, "no data rows after the header")
    frame = frame.reset_index(drop=True)
    frame.attrs["kind"] = kind
    return frame


FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")  # pandas: a record with the wrong width
UNCLOSED = re.compile(r"EOF inside string starting at row (\d+)")  # pandas: a quote that never closes


def _parse_problem(text: str, kind: str, error: pd.errors.ParserError) -> tuple[int, str]:
    """(line in ``text``, problem) of pandas' parse error, which counts records (0-based for an unclosed
    quote, 1-based for a wrong width), not the lines of quoted cells that span lines."""
    message = str(error)
    if match := UNCLOSED.search(message):
        return (_record_line(text, kind, int(match.group(1))),
                'a quoted cell opens on this row and never closes (a " without its closing "; '
                'inside a quoted cell a quote is written "")')
    if match := FIELDS.search(message):
        line = _record_line(text, kind, int(match.group(2)) - 1)
        return line, f"Expected {match.group(1)} fields in line {line}, saw {match.group(3)}"
    match = re.search(r"line (\d+)", message)
    return (int(match.group(1)) if match else 1), message


def _record_line(text: str, kind: str, record: int) -> int:
    """The line (1-based) of ``text`` where 0-based CSV record ``record`` starts: the records before it
    read again (TSV is read without quoting first, so there a record is a line)."""
    if record <= 0 or kind == "tsv":
        return max(record, 0) + 1
    try:
        before = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, header=None,
                             skip_blank_lines=False, nrows=record)
    except (pd.errors.ParserError, ValueError):
        return record + 1
    return record + 1 + int(_newlines(before).sum())


def _newlines(frame: pd.DataFrame) -> np.ndarray:
    """Per row, the newlines inside its cells (quoted cells that span lines)."""
    counts = [frame[c].astype(str).str.count("\n").to_numpy() for c in frame.columns]
    return np.sum(counts, axis=0).astype(np.int64) if counts else np.zeros(len(frame), np.int64)


def _start_lines(frame: pd.DataFrame, text: str, header: bool) -> np.ndarray:
    """The line (1-based, in ``text``) where each parsed row starts, past the lines of earlier multi-line cells."""
    rows = np.arange(len(frame), dtype=np.int64) + (2 if header else 1)
    if text.count("\n") + (not text.endswith("\n")) == len(frame) + header:
        return rows  # one line per record
    inner = _newlines(frame)
    head = sum(str(c).count("\n") for c in frame.columns) if header else 0
    return rows + head + np.concatenate([[0], np.cumsum(inner)[:-1]]).astype(np.int64)


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


def warn_long_texts(frame: pd.DataFrame, path, columns, limit: int = LONG_TEXT) -> int:
    """Log one warning when cells of ``columns`` are longer than ``limit`` characters (a tokenizer would
    take a 52 MB cell whole); returns how many are."""
    lengths = np.stack([frame[c].str.len().fillna(0).to_numpy(dtype=np.int64) for c in columns])
    count = int((lengths > limit).sum())
    if count:
        row = int(frame[ROW].to_numpy()[lengths.max(axis=0).argmax()])
        log.warning("%s: %d text(s) longer than %s characters (longest: %s at row %d); only the first "
                    "--max-length tokens are used", path, count, f"{limit:,}", f"{lengths.max():,}", row)
    return count
