"""Reading text files in the encodings users have, and writing outputs atomically."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from ..errors import DataError

BOM = b"\xef\xbb\xbf"


def read_text(path: str | os.PathLike) -> str:
    """Return the file's text: UTF-8 (with or without BOM) or CP949, as Excel on Korean Windows saves.

    Raises DataError for a missing, empty (or whitespace-only) or undecodable file; for the last,
    naming the line where the decoder that got further failed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, 0, None, "no such file")
    raw = path.read_bytes()
    if raw.startswith(BOM):
        raw = raw[len(BOM):]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as utf8_error:
        try:
            text = raw.decode("cp949")
        except UnicodeDecodeError as cp949_error:
            start = max(utf8_error.start, cp949_error.start)
            line = raw.count(b"\n", 0, start) + 1
            bad = raw[start:start + 4].hex(" ")
            raise DataError(path, line, None,
                            f"bytes {bad} are neither UTF-8 nor CP949; save the file as UTF-8") from None
    if not text.strip():
        raise DataError(path, 1, None, "file is empty")
    return text


def file_sha256(path: str | os.PathLike) -> str:
    """Hash of a file's bytes, recorded in the run directory so a run can be reproduced."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_csv_atomic(frame, path: str | os.PathLike, **to_csv) -> None:
    """Write a DataFrame as CSV (no index) so that readers see either the old file or the whole new one."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, **to_csv)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` as UTF-8 so that readers see either the old file or the whole new one."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
