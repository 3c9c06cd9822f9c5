"""Reading text files in the encodings users have, clipping huge texts, and writing outputs atomically."""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import logging
import os
import re
import tempfile
import threading
from pathlib import Path

import pandas as pd

from ..errors import DataError, KluekitError, first_line

log = logging.getLogger("kluekit")
BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # Excel's "Unicode text" (UTF-16 TSV)
NON_ASCII = re.compile(r"[^\x00-\x7f]")
HIGH_BYTE = re.compile(rb"[\x80-\xff]")
HIGH_BYTES = bytes(range(0x80, 0x100))
LONE_HIGH_BYTE = re.compile(rb"(?<![\x80-\xff])[\x80-\xff](?![\x80-\xff])")
SAMPLE = 1 << 20  # characters (bytes) looked at to judge an encoding, from the first non-ASCII one


def read_text(path: str | os.PathLike) -> str:
    """Return the file's text: UTF-8 (with or without BOM), UTF-16 with a BOM, or CP949 as Excel on Korean
    Windows saves; Windows-1252 (with a warning) when its bytes decode as CP949 only into unlikely characters.

    Raises DataError for a missing, empty (or whitespace-only) or undecodable file; for the last,
    naming the line where the decoder that got further failed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, 0, None, "no such file")
    text = decode_bytes(path.read_bytes(), path)
    if not text.strip():
        raise DataError(path, 1, None, "file is empty")
    return text


def decode_bytes(raw: bytes, path) -> str:
    """The text of ``raw`` (the bytes of file ``path``), decoded as ``read_text`` does: the one text decoder.

    DataError (``path:line: problem``) for bytes that are no text in those encodings, or that hold a NUL.
    """
    if raw.startswith(UTF16_BOMS):
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError as error:
            raise DataError(path, raw[:error.start].decode("utf-16", "replace").count("\n") + 1, None,
                            "not valid UTF-16 after its byte order mark; save the file as UTF-8") from None
    else:
        raw = raw[len(BOM):] if raw.startswith(BOM) else raw
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
            text = _western_text(raw, text, path) or text
    nul = text.find("\x00")
    if nul >= 0:
        raise DataError(path, text.count("\n", 0, nul) + 1, None,
                        "holds a NUL character: not a text file (or UTF-16 without a BOM); save it as UTF-8")
    return text


def _unlikely(char: str) -> bool:
    """True for a character that CP949 Korean text rarely holds: anything but KS X 1001's Hangul syllables,
    jamo and symbols (rows A1-C8), so Hanja and UHC's extra syllables (what Windows-1252 bytes decode into)."""
    try:
        code = char.encode("cp949")
    except UnicodeEncodeError:
        return True
    return not (len(code) == 2 and 0xA1 <= code[0] <= 0xC8 and code[1] >= 0xA1)


def _western_text(raw: bytes, cp949_text: str, path) -> str | None:
    """The Windows-1252 reading of ``raw`` when its CP949 reading is mostly unlikely characters and its bytes
    above 0x7F stand alone, as in English or French text (CP949 writes every Korean character as two
    such bytes); else None. Logs a warning naming the file when it is used."""
    first = NON_ASCII.search(cp949_text)
    if first is None:
        return None
    counts = collections.Counter(cp949_text[first.start():first.start() + SAMPLE])
    others = {char: n for char, n in counts.items() if ord(char) > 0x7F}
    unlikely = {char: n for char, n in others.items() if _unlikely(char)}
    if sum(unlikely.values()) * 2 <= sum(others.values()):
        return None
    start = HIGH_BYTE.search(raw).start()
    sample = raw[start:start + SAMPLE]
    if len(LONE_HIGH_BYTE.findall(sample)) * 2 < len(sample) - len(sample.translate(None, HIGH_BYTES)):
        return None
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError:
        return None
    shown = "".join(sorted(unlikely, key=unlikely.get, reverse=True)[:5])
    log.warning("%s: read as Windows-1252 (cp1252): as CP949 its text would be mostly unlikely characters "
                "(%s); save the file as UTF-8 to be sure", path, shown)
    return text


def file_sha256(path: str | os.PathLike) -> str:
    """Hash of a file's bytes, recorded in the run directory so a run can be reproduced."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def clip_text(texts, max_chars: int) -> list[str]:
    """``texts`` as a new list with each string cut to its first ``max_chars`` characters, so that a
    52 MB cell is not tokenized whole only to be truncated to --max-length tokens."""
    cells = pd.Series(list(texts), dtype=object)
    if max_chars is None or max_chars < 0:
        return cells.tolist()
    long = (cells.str.len() > max_chars).to_numpy()
    if long.any():
        cells[long] = cells[long].str.slice(0, max_chars)
    return cells.tolist()


# --- writing -------------------------------------------------------------------------------------------------

_UMASK_LOCK = threading.Lock()
# errors of the disk, not of one file: a write that fails so is reported as such whatever file it names
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO}
# the system's words for them (and for EACCES), looked for in other libraries' messages
PHRASES = [os.strerror(code).lower() for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES)]


def current_umask() -> int:
    """The process umask, read from /proc (Linux) or else by setting and restoring it under a lock."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike) -> None:
    """Give a file (or a directory and everything under it) the mode a plain ``open``/``mkdir`` would have
    given it (0o666/0o777 less the umask): for files written through temporary files, which are 0600."""
    path = Path(path)
    mask = current_umask()
    modes = {False: 0o666 & ~mask, True: 0o777 & ~mask}
    try:
        if path.is_symlink():
            return
        os.chmod(path, modes[path.is_dir()])
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                for name in dirs + files:
                    child = os.path.join(root, name)
                    if not os.path.islink(child):
                        os.chmod(child, modes[name in dirs])
    except OSError as error:
        raise write_error(path, error) from None


def write_reason(error: BaseException) -> str | None:
    """Why a write failed, lower-cased ('no space left on device', 'read-only file system', ...): an OSError's
    strerror, or the system's phrase found in another library's message (safetensors' SafetensorError);
    None when ``error`` is not about the disk."""
    if isinstance(error, OSError):
        if error.strerror or error.errno:
            return (error.strerror or os.strerror(error.errno)).lower()
        return first_line(error)
    text = str(error).lower()
    return next((phrase for phrase in PHRASES if phrase in text), None)


def write_error(path, error: BaseException) -> KluekitError:
    """The one-line error ``cannot write <path>: <reason>`` for a failed write (see ``write_reason``)."""
    return KluekitError(f"cannot write {path}: {write_reason(error) or first_line(error)}")


def check_output_path(path: str | os.PathLike, option: str = "--output") -> None:
    """Fail before any work when ``path`` cannot be written: it is a directory, a parent is a file, or the
    nearest existing parent directory does not let us create a file (permissions, read-only file system)."""
    path = Path(path)
    if path.is_dir():
        raise KluekitError(f"{option}: {path} is a directory")
    parent = next(p for p in [*path.parents, Path(path.anchor or ".")] if p.exists())
    if not parent.is_dir():
        raise KluekitError(f"{option}: cannot create {path}: {parent} is a file")
    try:
        probe_write(parent)
    except OSError as error:
        raise KluekitError(f"{option}: cannot write {path}: {write_reason(error)}") from None


def probe_write(directory) -> None:
    """Create and remove a file in ``directory``: an OSError where it cannot be written (permissions, a
    read-only file system), found before any work is done."""
    fd, probe = tempfile.mkstemp(prefix=".kluekit-probe-", dir=directory)
    os.close(fd)
    os.unlink(probe)


def _new_mode(path: Path) -> int:
    """The mode ``open(path, "w")`` would leave: the existing file's, else 0o666 less the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~current_umask()


def _about_target(error: BaseException, *paths: Path) -> bool:
    """True when ``error`` is a failure to write one of ``paths`` (or the disk), not some other file's problem."""
    if isinstance(error, KluekitError):
        return False
    if not isinstance(error, OSError):
        return write_reason(error) is not None
    if error.errno in DISK_ERRNOS or error.filename is None:
        return True
    return Path(os.fsdecode(error.filename)) in paths


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The file gets the mode a plain ``open`` would give it (not mkstemp's 0600). A failed write (full disk,
    read-only file system, ...) is ``KluekitError('cannot write <path>: <reason>')``; the temporary file is
    removed and an old ``path`` is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except FileExistsError:  # mkdir: a parent is a file
        raise write_error(path, NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))) from None
    except OSError as error:
        raise write_error(path, error) from None
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _new_mode(path))
        os.replace(tmp, path)
    except Exception as error:
        if not _about_target(error, tmp, path):
            raise
        raise write_error(path, error) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_csv_atomic(frame, path: str | os.PathLike, **to_csv) -> None:
    """Write a DataFrame as CSV (no index) so that readers see either the old file or the whole new one."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, **to_csv)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` as UTF-8 so that readers see either the old file or the whole new one."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
