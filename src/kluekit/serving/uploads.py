"""Uploaded tables: read with a hard byte limit, decode UTF-8 or CP949 (Windows-1252 detected), parse CSV/TSV, pick
the column."""

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
    """The upload's text, decoded as the file readers do (``data.io.decode_bytes``: UTF-8, CP949, and Windows-1252
    when its CP949 reading would be no Korean text); 415 for anything else, and for bytes that are valid CP949
    only by accident (Windows-1252 text whose CP949 reading is mostly Hanja or rare syllables): never a guess."""
    try:
        text = decode_bytes(raw, "file")
    except DataError as error:
        if _western(raw):
            raise RequestError(415, "file: not UTF-8 or CP949 text: it looks like Windows-1252 (cp1252, Western "
                                    "European) text; save the file as UTF-8") from None
        raise RequestError(415, f"file: not UTF-8 or CP949 text (line {error.row}: {error.problem}); upload a "
                                "CSV/TSV saved as UTF-8") from None
    if _is_utf8(raw) or not _western(raw):
        return text
    try:
        as_cp949 = raw.decode("cp949")
    except UnicodeDecodeError:
        return text  # decode_bytes chose Windows-1252 itself (and logged it)
    if text == as_cp949 and _mostly_unlikely(as_cp949):
        raise RequestError(415, "file: not UTF-8, and as CP949 it would read as rare Hanja or syllables "
                                f"({_sample(as_cp949)!r}), so it is likely Windows-1252 (cp1252) text; "
                                "save the file as UTF-8")
    return text


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _western(raw: bytes) -> bool:
    """True when ``raw`` is Windows-1252 text: it decodes so, and its characters past ASCII are letters."""
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError:
        return False
    if any(ord(char) < 0x20 and char not in "\t\r\n" for char in text):
        return False  # control characters: not a text file
    high = [char for char in text if ord(char) > 0x7F]
    return bool(high) and sum(char.isalpha() or char in "\u2018\u2019\u201c\u201d\u2013\u2014\u20ac\u2026"
                              for char in high) >= 0.9 * len(high)


def _likely_korean(char: str) -> bool:
    """A character CP949 Korean text is made of: KS X 1001's Hangul, jamo and symbols (lead bytes A1-C8)."""
    try:
        code = char.encode("cp949")
    except UnicodeEncodeError:
        return False
    return len(code) == 2 and 0xA1 <= code[0] <= 0xC8 and code[1] >= 0xA1


def _mostly_unlikely(text: str) -> bool:
    others = [char for char in text if ord(char) > 0x7F]
    return bool(others) and sum(not _likely_korean(char) for char in others) * 2 > len(others)


def _sample(text: str) -> str:
    return "".join(char for char in text if ord(char) > 0x7F)[:8]


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
