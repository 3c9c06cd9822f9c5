"""Faults at the file boundary: file modes, write errors as one line, CSV row numbers, encodings, label cells
that look missing, sample submissions checked up front, and huge text cells."""

from __future__ import annotations

import errno
import json
import logging
import os
import pathlib
import stat
import tempfile

import pandas as pd
import pytest

from kluekit.data import io as data_io
from kluekit.data.classify import label_set, read_classification
from kluekit.data.io import (apply_umask, atomic_path, check_output_path, clip_text, read_text, write_csv_atomic,
                             write_error, write_text_atomic)
from kluekit.data.ner import read_ner
from kluekit.data.nli_pairs import read_nli
from kluekit.data.re import COMPETITION_LABELS, read_re
from kluekit.data.sts import read_sts
from kluekit.data.submission import check_sample_submission, fill_sample_submission
from kluekit.data.tables import read_table
from kluekit.embedding.corpus import read_corpus
from kluekit.errors import DataError, KluekitError

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
EROFS = OSError(errno.EROFS, os.strerror(errno.EROFS))
EACCES = OSError(errno.EACCES, os.strerror(errno.EACCES))


def write(tmp_path, name: str, content: str | bytes) -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test (and restore it)."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "kluekit" and r.levelno == logging.WARNING]


# --- 1. file modes -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_writes_get_the_mode_open_would_give(tmp_path, umask, mask, expected):
    umask(mask)
    assert data_io.current_umask() == mask
    write_text_atomic(tmp_path / "a.txt", "x")
    write_csv_atomic(pd.DataFrame({"a": [1]}), tmp_path / "b.csv")
    with open(tmp_path / "plain.txt", "w"):
        pass
    assert mode(tmp_path / "a.txt") == mode(tmp_path / "b.csv") == mode(tmp_path / "plain.txt") == expected


def test_atomic_overwrite_keeps_the_files_mode(tmp_path, umask):
    path = write(tmp_path, "a.txt", "old")
    os.chmod(path, 0o640)
    write_text_atomic(path, "new")
    assert path.read_text() == "new" and mode(path) == 0o640


def test_apply_umask_files_and_directories(tmp_path, umask):
    umask(0o022)
    root = pathlib.Path(tempfile.mkdtemp(dir=tmp_path))  # 0700, as a temporary save folder is
    (root / "sub").mkdir(mode=0o700)
    files = [pathlib.Path(tempfile.mkstemp(dir=folder)[1]) for folder in (root, root / "sub")]  # 0600
    (root / "link").symlink_to(files[0])
    apply_umask(root)
    assert mode(root) == mode(root / "sub") == 0o755
    assert [mode(f) for f in files] == [0o644, 0o644]
    single = pathlib.Path(tempfile.mkstemp(dir=tmp_path)[1])
    umask(0o077)
    apply_umask(single)
    assert mode(single) == 0o600


# --- 2. write errors as one line -----------------------------------------------------------------------------

def test_check_output_path_directory_and_file_parents(tmp_path):
    with pytest.raises(KluekitError) as info:
        check_output_path(tmp_path)
    assert str(info.value) == f"--output: {tmp_path} is a directory"
    parent = write(tmp_path, "notes.txt", "x")
    for target in (parent / "out.csv", parent / "deeper" / "out.csv"):
        with pytest.raises(KluekitError) as info:
            check_output_path(target, option="--index-dir")
        assert str(info.value) == f"--index-dir: cannot create {target}: {parent} is a file"
    check_output_path(tmp_path / "new" / "dirs" / "out.csv")  # fine: they can be made
    check_output_path(parent)  # an existing file is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing made, no probe left


@pytest.mark.parametrize("error, reason", [(EROFS, "read-only file system"), (EACCES, "permission denied"),
                                           (ENOSPC, "no space left on device")])
def test_check_output_path_unwritable_directory(tmp_path, monkeypatch, error, reason):
    def refuse(*args, **kwargs):
        raise error
    monkeypatch.setattr(data_io.tempfile, "mkstemp", refuse)
    target = tmp_path / "sub" / "out.csv"
    with pytest.raises(KluekitError) as info:
        check_output_path(target)
    assert str(info.value) == f"--output: cannot write {target}: {reason}"


def test_check_output_path_read_only_directory_for_real(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: chmod does not stop writes")
        with pytest.raises(KluekitError) as info:
            check_output_path(folder / "out.csv")
        assert str(info.value) == f"--output: cannot write {folder / 'out.csv'}: permission denied"
    finally:
        folder.chmod(0o755)


def test_full_disk_while_writing_keeps_the_old_file(tmp_path, monkeypatch):
    path = write(tmp_path, "preds.csv", "old")

    def half_then_full(self, *args, **kwargs):
        with open(self, "w") as handle:
            handle.write("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(pathlib.Path, "write_text", half_then_full)
    with pytest.raises(KluekitError) as info:
        write_text_atomic(path, "new")
    assert str(info.value) == f"cannot write {path}: no space left on device"
    monkeypatch.setattr(pd.DataFrame, "to_csv", lambda self, target, **kw: half_then_full(pathlib.Path(target)))
    with pytest.raises(KluekitError, match="no space left on device"):
        write_csv_atomic(pd.DataFrame({"a": [1]}), path)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["preds.csv"]  # no temporary file left


def test_read_only_rename_and_directory_target(tmp_path, monkeypatch):
    target = tmp_path / "dir"
    target.mkdir()
    with pytest.raises(KluekitError) as info:
        write_text_atomic(target, "x")
    assert str(info.value) == f"cannot write {target}: is a directory"
    with pytest.raises(KluekitError) as info:
        write_text_atomic(write(tmp_path, "file", "") / "x.txt", "x")
    assert str(info.value) == f"cannot write {tmp_path / 'file' / 'x.txt'}: not a directory"

    def read_only(*args):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(data_io.os, "replace", read_only)
    with pytest.raises(KluekitError) as info:
        write_text_atomic(tmp_path / "a.txt", "x")
    assert str(info.value) == f"cannot write {tmp_path / 'a.txt'}: read-only file system"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file"]


def test_write_error_messages_and_what_is_not_translated(tmp_path):
    class SafetensorError(Exception):
        pass
    full = SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                           'message: "No space left on device" })')
    assert str(write_error("m.safetensors", full)) == "cannot write m.safetensors: no space left on device"
    assert str(write_error("x", EROFS)) == "cannot write x: read-only file system"
    assert str(write_error("x", ValueError("bad shape\nmore"))) == "cannot write x: bad shape"
    with pytest.raises(KluekitError, match="no space left on device"):
        with atomic_path(tmp_path / "w.bin"):
            raise full
    with pytest.raises(ValueError, match="a bug"):  # not about the disk: unchanged
        with atomic_path(tmp_path / "w.bin"):
            raise ValueError("a bug")
    with pytest.raises(FileNotFoundError):  # another file's problem: unchanged
        with atomic_path(tmp_path / "w.bin"):
            open(tmp_path / "missing-input.txt")
    assert list(tmp_path.iterdir()) == []


# --- 3. CSV row numbers --------------------------------------------------------------------------------------

UNCLOSED = 'sentence1,sentence2,label\n"abc,def,3\nx,y,1\nz,w,2\n'
READERS = {
    "table": read_table,
    "sts": read_sts,
    "classify": lambda path: read_classification(path, "sentence1", "label", "sentence2"),
    "re": lambda path: read_re(path, COMPETITION_LABELS),
    "nli": read_nli,
    "corpus": read_corpus,
}


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
def test_unclosed_quote_is_reported_where_it_opens(tmp_path, reader):
    path = write(tmp_path, "x.csv", UNCLOSED)
    with pytest.raises(DataError) as info:
        reader(path)
    assert info.value.row == 2
    assert str(info.value).startswith(f"{path}:2: cannot parse as CSV: a quoted cell opens on this row and never "
                                      "closes")


def test_parse_errors_after_a_cell_that_spans_lines(tmp_path):
    path = write(tmp_path, "x.csv", '\nsentence1,sentence2,label\n"a\nb",c,1\n\nx,y,1\nz,"w,2\n')
    with pytest.raises(DataError) as info:
        read_table(path)
    assert info.value.row == 7  # the blank first line, the two lines of "a\nb" and the blank line count
    path = write(tmp_path, "y.csv", 'sentence1,sentence2,label\n"a\nb",c,1\nx,y,1,9\nz,w,2\n')
    with pytest.raises(DataError) as info:
        read_table(path)
    assert str(info.value) == f"{path}:4: cannot parse as CSV: Expected 3 fields in line 4, saw 4"


def test_rows_after_a_cell_that_spans_lines_are_their_lines(tmp_path):
    path = write(tmp_path, "x.csv", 'sentence1,sentence2,label\n"a\nb\nc",d,1\nx,,1\n')
    assert read_table(path)["_row"].tolist() == [2, 5]
    with pytest.raises(DataError) as info:
        read_sts(path)
    assert str(info.value) == f"{path}:5: sentence2: empty text"


# --- 4. encodings --------------------------------------------------------------------------------------------

WESTERN = "sentence1,sentence2,label\nIt’s Bob’s day,We’re “Nice”ok,3\nDon’t–stop…now,fine,2\n"


def test_windows_1252_text_is_not_read_as_cp949_garbage(tmp_path, caplog):
    raw = WESTERN.encode("cp1252")
    assert raw.decode("cp949") != WESTERN  # the trap: it does decode as CP949, into rare syllables
    path = write(tmp_path, "x.csv", raw)
    frame = read_sts(path)
    assert frame["sentence1"].tolist() == ["It’s Bob’s day", "Don’t–stop…now"]
    assert frame["sentence2"].tolist() == ["We’re “Nice”ok", "fine"]
    (message,) = warnings_of(caplog)
    assert str(path) in message and "Windows-1252 (cp1252)" in message


@pytest.mark.parametrize("text", [
    "label,text\n정치,美 대통령 방한… 한미 정상회담 “성과”\n세계,中 외교부 “北 도발 우려”\n",  # Hanja in headlines
    "label,text\n역사,大韓民國 臨時政府 樹立\n역사,三國史記 高句麗本紀\n",  # mostly Hanja: still CP949
    "label,text\n사회,똠방각하 뷁 햏자 ㅋㅋ\n",  # UHC's extra syllables next to common ones
], ids=["hanja-headlines", "mostly-hanja", "uhc-syllables"])
def test_cp949_korean_reads_as_before(tmp_path, caplog, text):
    path = write(tmp_path, "x.csv", text.encode("cp949"))
    assert read_text(path) == text
    assert warnings_of(caplog) == []


def test_utf16_with_a_bom_and_nul_characters(tmp_path):
    text = "label\ttext\n경제\t환율\n"
    assert read_text(write(tmp_path, "u.tsv", text.encode("utf-16"))) == text  # Excel's "Unicode text"
    path = write(tmp_path, "n.csv", "a,b\n1,2\n3,\x00\n")
    with pytest.raises(DataError) as info:
        read_text(path)
    assert str(info.value).startswith(f"{path}:3: holds a NUL character")


# --- 5. label cells that look like a missing value -----------------------------------------------------------

def test_missing_looking_labels_are_kept_and_warned_once(tmp_path, caplog):
    rows = ["a,NaN", "b,pos", "c,nan", "d,null", "e,NA", "f,None", "g,NaN"]
    path = write(tmp_path, "train.csv", "text,label\n" + "\n".join(rows) + "\n")
    frame = read_classification(path, "text", "label")
    assert frame["label"].tolist() == ["NaN", "pos", "nan", "null", "NA", "None", "NaN"]
    assert all(isinstance(label, str) for label in frame["label"])
    assert "NaN" in label_set(frame["label"])
    (message,) = warnings_of(caplog)
    assert message == (f"{path}: label 'NaN' at row 2, 8; label 'nan' at row 4; label 'null' at row 5; "
                       "label 'NA' at row 6; label 'None' at row 7: treated as a class name; "
                       "fix the file or drop those rows")


def test_empty_labels_keep_their_behaviour(tmp_path, caplog):
    path = write(tmp_path, "x.json", json.dumps([{"text": "가", "label": None}, {"text": "나", "label": "pos"}]))
    with pytest.raises(DataError) as info:
        read_classification(path, "text", "label")
    assert str(info.value) == f"{path}:1: label: missing label"
    frame = read_classification(write(tmp_path, "t.csv", "text,label\n가,\n나,pos\n"), "text", "label",
                                require_labels=False)
    assert frame["label"].tolist() == ["", "pos"] and not frame.attrs["has_labels"]
    assert warnings_of(caplog) == []


# --- 6. sample submission, checked before predicting ---------------------------------------------------------

@pytest.mark.parametrize("content, has_ids, message", [
    (None, True, "0: no such file"),
    ("idx,target\na,0\n", True, "1: id: missing column (found: idx, target)"),
    ("id,target\na,0\nzz,0\n", True, "3: id: id 'zz' is not in the input file"),
    ("id,target\na,0\n", False, "1: has 1 rows but the input has 3 and no id column to match them by"),
], ids=["missing-file", "no-id-column", "unknown-id", "row-count"])
def test_check_sample_submission_errors(tmp_path, content, has_ids, message):
    path = tmp_path / "sample.csv" if content is None else write(tmp_path, "sample.csv", content)
    with pytest.raises(DataError) as info:
        check_sample_submission(path, ["a", "b", "c"], has_ids)
    assert str(info.value) == f"{path}:{message}"


def test_sample_with_a_subset_of_ids_logs_its_row_count(tmp_path, caplog):
    path = write(tmp_path, "sample.csv", "id,target,note\nc,0,x\na,0,y\n")
    assert check_sample_submission(path, pd.Series([1, "a", "c"]), True)["id"].tolist() == ["c", "a"]
    caplog.set_level(logging.INFO, logger="kluekit")
    out = fill_sample_submission(path, pd.DataFrame({"id": ["a", "b", "c"], "target": [1.0, 2.0, 3.0]}))
    assert list(out.columns) == ["id", "target", "note"]
    assert out.values.tolist() == [["c", 3.0, "x"], ["a", 1.0, "y"]]
    (message,) = [r.getMessage() for r in caplog.records if "sample submission" in r.getMessage()]
    assert message == (f"filled the 2 rows of the sample submission {path}, in its order "
                       "(1 of the 3 predicted rows are not in it and are left out)")


# --- 7. huge text cells --------------------------------------------------------------------------------------

LONG = "가" * 20_001


def long_files(tmp_path) -> dict:
    entity = "\"{'word': '%s', 'start_idx': %d, 'end_idx': %d, 'type': 'ORG'}\""
    return {
        "sts": (lambda p: read_sts(p), f"sentence1,sentence2,label\n가,나,1\n다,{LONG},2\n{LONG}1,라,3\n", 4),
        "classify": (lambda p: read_classification(p, "text", "label"), f"text,label\n가,a\n{LONG},b\n", 3),
        "re": (lambda p: read_re(p, COMPETITION_LABELS),
               "id,sentence,subject_entity,object_entity,label\n"
               f"1,{LONG},{entity % ('가', 0, 0)},{entity % ('가', 1, 1)},no_relation\n", 2),
        "nli": (read_nli, f"premise,hypothesis,label\n{LONG},나,neutral\n", 2),
        "ner": (lambda p: read_ner(p, fmt="text", require_labels=False), f"짧은 문장\n\n{LONG}\n", 3),
        "corpus-csv": (read_corpus, f"id,sentence\n1,가\n2,{LONG}\n", 3),
        "corpus-txt": (read_corpus, f"가\n\n\n{LONG}\n", 4),
    }


@pytest.mark.parametrize("name", ["sts", "classify", "re", "nli", "ner", "corpus-csv", "corpus-txt"])
def test_huge_text_cells_are_warned_once(tmp_path, caplog, name):
    reader, content, row = long_files(tmp_path)[name]
    path = write(tmp_path, "x.txt" if name == "corpus-txt" else "x.csv", content)
    reader(path)
    (message,) = warnings_of(caplog)
    count, longest = (2, 20_002) if name == "sts" else (1, 20_001)
    assert message == (f"{path}: {count} text(s) longer than 20,000 characters (longest: {longest:,} at row {row}); "
                       "only the first --max-length tokens are used")


def test_no_warning_at_the_limit_and_clip_text(tmp_path, caplog):
    read_sts(write(tmp_path, "x.csv", f"sentence1,sentence2,label\n{'가' * 20_000},나,1\n"))
    assert warnings_of(caplog) == []
    texts = ["abcdef", "ab", ""]
    clipped = clip_text(texts, 3)
    assert clipped == ["abc", "ab", ""] and texts == ["abcdef", "ab", ""] and clipped is not texts
    assert clip_text(iter(["abc"]), 10) == ["abc"] and clip_text([], 5) == []


# --- 8. one column picker, one label-file reader ------------------------------------------------------------

def test_one_column_picker_for_every_reader(tmp_path):
    path = write(tmp_path, "c.csv", "ID,Text,Sentence\n1,t,가\n2,u,나\n")
    assert read_corpus(path) == ["가", "나"]  # 'sentence' before 'text', matched ignoring case
    assert read_corpus(path, "text") == ["t", "u"]
    sts = read_sts(write(tmp_path, "s.csv", "ID,Sentence1,Sentence2,Label\na,가,나,1.5\n"))
    assert sts[["id", "sentence1", "label"]].values.tolist() == [["a", "가", 1.5]]
    assert read_classification(path, "sentence", "text", require_labels=False)["text"].tolist() == ["가", "나"]
    twice = write(tmp_path, "d.csv", "Sentence,SENTENCE\n가,나\n")
    with pytest.raises(DataError) as info:
        read_corpus(twice)
    assert str(info.value) == f"{twice}:1: sentence: several columns match ignoring case: Sentence, SENTENCE"


def test_one_label_file_reader():
    from kluekit.data import classify, labels, re as re_data

    assert classify.read_label_file is re_data.load_label_map is labels.read_label_file
