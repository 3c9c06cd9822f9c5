"""Picking a table's columns by name: exactly, else ignoring case; the one column picker of the readers.

After ``rename_aliases``, ``frame.attrs["columns"]`` maps canonical column names to the names the file
uses, so that errors name a column as the user sees it (``file_column``).
"""

from __future__ import annotations

import pandas as pd

from ..errors import DataError

ROW = "_row"  # the row number a person sees in an editor, carried by every table (see tables.read_table)
TEXT_COLUMNS = ("sentence", "text")  # a one-text-per-row table's text column, when it has several


def match_column(columns, name: str, path) -> str | None:
    """The column called ``name``: the exact name, else the one column equal to it ignoring case, else None.

    The one column picker of the readers. Several columns equal ignoring case (and none exactly) is a
    DataError on the header.
    """
    columns = [c for c in columns if c != ROW]
    if name in columns:
        return name
    matches = [c for c in columns if c.casefold() == name.casefold()]
    if len(matches) > 1:
        raise DataError(path, 1, name, f"several columns match ignoring case: {', '.join(matches)}")
    return matches[0] if matches else None


def text_column(columns, column: str | None, path, defaults=TEXT_COLUMNS) -> str:
    """The text column of a one-text-per-row table: ``column`` (``--column``) if given, else the only
    column, else the first of ``defaults`` present; DataError naming the columns the file has."""
    columns = [c for c in columns if c != ROW]
    if column is not None:
        found = match_column(columns, column, path)
        if found is None:
            raise DataError(path, 1, column, f"missing column (found: {', '.join(columns)})")
        return found
    if len(columns) == 1:
        return columns[0]
    for name in defaults:
        found = match_column(columns, name, path)
        if found is not None:
            return found
    raise DataError(path, 1, None, f"several columns ({', '.join(columns)}) and none named "
                                   f"{' or '.join(defaults)}: choose one with --column")


def rename_aliases(frame: pd.DataFrame, aliases: dict[str, tuple[str, ...]], path="?") -> pd.DataFrame:
    """Rename each canonical column's first present alias (exactly, else ignoring case: ``match_column``)
    to its canonical name.

    Records canonical -> original name in ``attrs["columns"]`` (see ``file_column``).
    """
    mapping: dict[str, str] = {}
    for canonical, names in aliases.items():
        if canonical in frame.columns:
            continue
        free = [c for c in frame.columns if c not in mapping and c not in aliases]
        exact = next((name for name in names if name in free), None)
        found = exact or next(filter(None, (match_column(free, name, path) for name in names)), None)
        if found is not None:
            mapping[found] = canonical
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


