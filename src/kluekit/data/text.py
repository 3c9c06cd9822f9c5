"""Text files (one document or sentence per line) and the text column of a table, read into a list of texts.

Formats, by file name: ``.csv`` and ``.tsv`` (with a header; the text column is ``--column``, else the only
column, else ``sentence``, else ``text``: ``data.columns.text_column``), ``.json``/``.jsonl`` (records; same
column rule), anything else (``.txt``) one text per line; decoded as ``data.io.read_text`` does. Blank lines
of a text file are skipped; an empty text cell in a row that has other cells is an error. Used by the corpus
commands (``kluekit encode``, ``search``) and language-model pre-training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .io import read_text
from .tables import ROW, TEXT_COLUMNS, check_not_empty, read_table, text_column, warn_long_texts

TABLE_KINDS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "json"}
DEFAULT_COLUMNS = TEXT_COLUMNS


def read_corpus(path, column: str | None = None) -> list[str]:
    """The texts of a corpus file; DataError ``path:row: column: problem`` for a missing column or empty text."""
    return read_corpus_column(path, column)[0]


def read_corpus_column(path, column: str | None = None) -> tuple[list[str], str | None]:
    """(texts, the column they came from; None for a text file)."""
    kind = TABLE_KINDS.get(Path(path).suffix.lower())
    if kind is None:
        if column:
            raise DataError(path, 1, column, "--column needs a CSV/TSV/JSON file with a header; "
                                             "this file is read as plain text, one sentence per line")
        lines = pd.Series(read_text(path).split("\n"), dtype=object).str.strip()
        kept = (lines != "").to_numpy()
        if not kept.any():
            raise DataError(path, 1, None, "file is empty")
        warn_long_texts(pd.DataFrame({"text": lines[kept], ROW: np.flatnonzero(kept) + 1}), path, ["text"])
        return lines[kept].tolist(), None
    frame = read_table(path, kind)
    column = text_column(frame.columns, column, path, DEFAULT_COLUMNS)
    check_not_empty(frame, path, [column])
    warn_long_texts(frame, path, [column])
    return [text.strip() for text in frame[column].tolist()], column
