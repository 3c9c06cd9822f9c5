"""Uploaded tables: read with a hard byte limit, decode UTF-8 or CP949, parse CSV/TSV, pick the column."""

from __future__ import annotations

import csv
import io
import warnings

import pandas as pd

from ..data.io import decode_bytes
from ..errors import DataError, first_line
from .errors import RequestError, invalid, too_large

CHUNK = 64 * 1024
DEFAULT_COLUMNS = ("sentence", "text")


async def read_limited(file, limit: int) -> bytes:
    """The upload's bytes; 413 as soon as more than ``limit`` bytes arrive (the rest is never read)."""
    chunks, size = [], 0
    while chunk := await file.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise too_large(f"file: the upload is larger than {limit} bytes (--max-upload-bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def decode(raw: bytes) -> str:
    """The upload's text, decoded as the file readers do (``data.io.decode_bytes``: UTF-8, CP949, ...); 415
    for anything else."""
    try:
        return decode_bytes(raw, "file")
    except DataError:
        raise RequestError(415, "file: not UTF-8 or CP949 text; upload a CSV/TSV saved as UTF-8") from None


def _separator(text: str, filename: str | None) -> str:
    name = (filename or "").lower()
    if name.endswith((".tsv", ".tab")):
        return "\t"
    if name.endswith(".csv"):
        return ","
    sample = "\n".join(text.splitlines()[:20])
    try:
        return csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
    except csv.Error:
        return "\t" if "\t" in sample.splitlines()[0] else ","


def parse_table(text: str, filename: str | None, max_rows: int) -> pd.DataFrame:
    """The table (header row first) with every cell as a string, empty cells as ""; 413 past ``max_rows``."""
    if not text.strip():
        raise invalid("file: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(io.StringIO(text), sep=_separator(text, filename), dtype=str, keep_default_na=False,
                                skip_blank_lines=True, nrows=max_rows + 1, index_col=False)
    except pd.errors.ParserWarning:
        raise invalid("file: a row has more fields than the header; quote texts that contain the separator") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error, ValueError) as error:
        raise invalid(f"file: cannot parse it as CSV/TSV (a header row, then one row per text): "
                      f"{first_line(error)}") from None
    if len(frame) > max_rows:
        raise too_large(f"file: more than {max_rows} data rows (--max-rows)")
    if frame.empty:
        raise invalid("file: no data rows under the header")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def pick_column(frame: pd.DataFrame, column: str | None) -> str:
    """The chosen column; by default the only one, else ``sentence`` or ``text``; 422 naming the columns."""
    columns = list(frame.columns)
    available = ", ".join(repr(c) for c in columns)
    if column is not None and column.strip():
        if column.strip() not in columns:
            raise invalid(f"column: no column {column!r} in the file; available columns: {available}")
        return column.strip()
    if len(columns) == 1:
        return columns[0]
    for name in DEFAULT_COLUMNS:
        if name in columns:
            return name
    raise invalid(f"column: the file has several columns and none is named 'sentence' or 'text'; "
                  f"choose one with the 'column' field; available columns: {available}")


def column_texts(frame: pd.DataFrame, column: str) -> tuple[list[tuple[int, str]], int]:
    """(row index, text) of the non-empty cells of ``column``, and how many cells were empty."""
    rows = [(i, text) for i, text in enumerate(frame[column].tolist()) if isinstance(text, str) and text.strip()]
    return rows, len(frame) - len(rows)
