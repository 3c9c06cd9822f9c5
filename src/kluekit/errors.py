"""Errors that the CLI turns into one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations


class KluekitError(Exception):
    """A user-facing error: bad option, bad file, missing run directory."""


def first_line(error: BaseException) -> str:
    """The first line of a library error's message (its type name if it has none), for one-line reports."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class DataError(KluekitError):
    """A problem in an input file, located as ``file:row: column: problem``.

    ``row`` counts lines as an editor or spreadsheet shows them (the header is row 1);
    for JSON files it is the 1-based record number.
    """

    def __init__(self, path, row: int, column: str | None, problem: str):
        self.path, self.row, self.column, self.problem = str(path), row, column, problem
        where = f"{self.path}:{row}:"
        super().__init__(f"{where} {column}: {problem}" if column else f"{where} {problem}")
