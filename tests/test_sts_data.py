"""STS readers (kluekit.data.sts), the text decoding under them and the sample-submission filler.

Real KLUE-STS / KorSTS files are read in place from ../shared (never copied into the repo);
every other case is a small fixture written into tmp_path.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kluekit.data.sts import COLUMNS, FORMATS, check_labeled, read_sts
from kluekit.data.submission import fill_sample_submission
from kluekit.errors import DataError, KluekitError

from conftest import shared_path

OUT_COLUMNS = COLUMNS + ["_row"]


def shared_file(*parts: str) -> Path:
    """A file under ../shared/data (skipped when ../shared is absent, an error under CI)."""
    return shared_path("data", *parts)


def write(tmp_path: Path, name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return path


# --- fixtures -------------------------------------------------------------------------------

COMPETITION_HEADER = "id,source,sentence_1,sentence_2,label,binary-label\n"
COMPETITION_BODY = (
    "boostcamp-sts-v1-train-000,nsmc-sampled,스릴도있고 반전도 있고 여느 한국영화 쓰레기들하고는 차원이 다르네요~,"
    '"반전도 있고, 사람도 많이 죽고 스릴도 있는 작품이네요.",2.2,0.0\n'
    'boostcamp-sts-v1-train-001,slack-rtt,앗 제가 접근권한이 없다고 뜹니다;;,"오, 액세스 권한이 없다고 합니다.",4.2,1.0\n'
    "boostcamp-sts-v1-train-002,petition-sampled,주택청약조건 변경해주세요.,주택청약 무주택기준 변경해주세요.,0,0.0\n"
    "boostcamp-sts-v1-train-003,slack-sampled,입사후 처음 대면으로 만나 반가웠습니다.,화상으로만 보다가 리얼로 만나니 정말 반가웠습니다.,3.0,1.0\n"
    "boostcamp-sts-v1-train-004,petition-rtt,코로나 백신 접종을 서둘러 주세요.,코로나 백신을 빨리 맞게 해주세요.,5,1.0\n"
)
COMPETITION_CSV = COMPETITION_HEADER + COMPETITION_BODY
COMPETITION_EXPECTED = pd.DataFrame({
    "id": [f"boostcamp-sts-v1-train-00{i}" for i in range(5)],
    "source": ["nsmc-sampled", "slack-rtt", "petition-sampled", "slack-sampled", "petition-rtt"],
    "sentence1": ["스릴도있고 반전도 있고 여느 한국영화 쓰레기들하고는 차원이 다르네요~", "앗 제가 접근권한이 없다고 뜹니다;;",
                  "주택청약조건 변경해주세요.", "입사후 처음 대면으로 만나 반가웠습니다.", "코로나 백신 접종을 서둘러 주세요."],
    "sentence2": ["반전도 있고, 사람도 많이 죽고 스릴도 있는 작품이네요.", "오, 액세스 권한이 없다고 합니다.",
                  "주택청약 무주택기준 변경해주세요.", "화상으로만 보다가 리얼로 만나니 정말 반가웠습니다.",
                  "코로나 백신을 빨리 맞게 해주세요."],
    "label": [2.2, 4.2, 0.0, 3.0, 5.0],
    "_row": [2, 3, 4, 5, 6],
})

COMPETITION_TEST_CSV = (
    "id,source,sentence_1,sentence_2\n"
    "boostcamp-sts-v1-test-000,nsmc-sampled,가히 대세라고 할만 합니다.,가히 최고라고 할만 합니다.\n"
    "boostcamp-sts-v1-test-001,slack-rtt,다들 좋은 주말 보내세요!,모두 즐거운 주말 되세요!\n"
    "boostcamp-sts-v1-test-002,petition-sampled,청원 동의 부탁드립니다.,국민청원에 동의해 주십시오.\n"
)

KORSTS_TSV = (
    "genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2\n"
    "main-captions\tMSRvid\t2012test\t0000\t5.000\t안전모를 가진 한 남자가 춤을 추고 있다.\t안전모를 쓴 한 남자가 춤을 추고 있다.\n"
    'main-news\theadlines\t2013\t0042\t2.500\t"그는 "좋다"라고 말했다.\t그가 말했다 "좋지 않다\n'
    'main-forum\tdeft-forum\t2014\t0042\t0.000\t그는 6" 높이의 상자를 샀다.\t"오늘" 비가 온다.\n'
)
KORSTS_EXPECTED = pd.DataFrame({
    "id": ["main-captions/MSRvid/2012test/0000", "main-news/headlines/2013/0042", "main-forum/deft-forum/2014/0042"],
    "source": ["main-captions", "main-news", "main-forum"],
    "sentence1": ["안전모를 가진 한 남자가 춤을 추고 있다.", '"그는 "좋다"라고 말했다.', '그는 6" 높이의 상자를 샀다.'],
    "sentence2": ["안전모를 쓴 한 남자가 춤을 추고 있다.", '그가 말했다 "좋지 않다', '"오늘" 비가 온다.'],
    "label": [5.0, 2.5, 0.0],
    "_row": [2, 3, 4],
})

JSON_RECORDS = [
    {"guid": "klue-sts-v1_dev_00000", "source": "airbnb-rtt", "sentence1": "무엇보다도 호스트분들이 너무 친절하셨습니다.",
     "sentence2": "무엇보다도, 호스트들은 매우 친절했습니다.",
     "labels": {"label": 4.9, "real-label": 4.857142857142857, "binary-label": 1}},
    {"guid": "klue-sts-v1_dev_00001", "source": "airbnb-sampled", "sentence1": "주요 관광지 모두 걸어서 이동가능합니다.",
     "sentence2": "위치는 피렌체 중심가까지 걸어서 이동 가능합니다.",
     "labels": {"label": 1.4, "real-label": 1.428571428571429, "binary-label": 0}},
]
JSON_EXPECTED = pd.DataFrame({
    "id": ["klue-sts-v1_dev_00000", "klue-sts-v1_dev_00001"],
    "source": ["airbnb-rtt", "airbnb-sampled"],
    "sentence1": [r["sentence1"] for r in JSON_RECORDS],
    "sentence2": [r["sentence2"] for r in JSON_RECORDS],
    "label": [4.857142857142857, 1.428571428571429],
    "_row": [1, 2],
})

PLAIN_CSV = "sentence1,sentence2,label\n첫 문장입니다.,둘째 문장입니다.,1.5\n\"쉼표, 있는 문장\",다른 문장,3\n"
PLAIN_EXPECTED = pd.DataFrame({
    "id": ["0", "1"], "source": ["", ""],
    "sentence1": ["첫 문장입니다.", "쉼표, 있는 문장"], "sentence2": ["둘째 문장입니다.", "다른 문장"],
    "label": [1.5, 3.0], "_row": [2, 3],
})


def assert_table(frame: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same columns in the canonical order, same cells (strings compared as strings, labels as floats)."""
    assert list(frame.columns) == OUT_COLUMNS
    for column in ("id", "source", "sentence1", "sentence2"):
        assert frame[column].tolist() == expected[column].tolist(), column
    np.testing.assert_array_equal(frame["label"].to_numpy(dtype=float), expected["label"].to_numpy(dtype=float))
    assert frame["_row"].tolist() == expected["_row"].tolist()


# --- each format, read from real files and fixtures --------------------------------------------

def test_klue_official_dev_json_read_in_place():
    path = shared_file("klue_sts", "klue-sts-v1.1_dev.json")
    records = json.loads(path.read_text(encoding="utf-8"))
    frame = read_sts(path)
    assert len(frame) == 519 == len(records)
    assert list(frame.columns) == OUT_COLUMNS
    assert frame.attrs["format"] == "klue-json" and frame.attrs["has_ids"] is True
    assert frame.attrs["path"] == str(path)
    assert frame["id"].tolist() == [r["guid"] for r in records]
    assert frame["source"].tolist() == [r["source"] for r in records]
    assert frame["sentence1"].tolist() == [r["sentence1"] for r in records]
    assert frame["sentence2"].tolist() == [r["sentence2"] for r in records]
    # the label is the unrounded real-label, not labels.label (= real-label rounded to 0.1)
    assert frame["label"].tolist() == [r["labels"]["real-label"] for r in records]
    assert frame["label"].iloc[0] == 4.857142857142857 != records[0]["labels"]["label"]
    assert frame["_row"].tolist() == list(range(1, 520))
    assert frame["id"].iloc[0] == "klue-sts-v1_dev_00000" and frame["source"].iloc[0] == "airbnb-rtt"


def test_klue_json_fixture_detected_from_content_and_data_wrapper(tmp_path):
    plain = write(tmp_path, "dev.data", json.dumps(JSON_RECORDS, ensure_ascii=False, indent=2))
    wrapped = write(tmp_path, "wrapped.json", json.dumps({"version": "1.1", "data": JSON_RECORDS}, ensure_ascii=False))
    for path in (plain, wrapped):
        frame = read_sts(path)
        assert frame.attrs["format"] == "klue-json"
        assert_table(frame, JSON_EXPECTED)


def test_real_train_csv():
    path = shared_file("klue_sts", "klue_sts_train.csv")
    frame = read_sts(path)
    assert len(frame) == 11668
    assert frame.attrs["format"] == "csv" and frame.attrs["has_ids"] is False
    assert list(frame.columns) == OUT_COLUMNS
    # no id column: ids are the 0-based positions; the source is not in the file
    assert frame["id"].tolist() == [str(i) for i in range(11668)]
    assert (frame["source"] == "").all()
    assert frame["sentence1"].iloc[0] == "숙소 위치는 찾기 쉽고 일반적인 한국의 반지하 숙소입니다."
    assert frame["sentence2"].iloc[0] == "숙박시설의 위치는 쉽게 찾을 수 있고 한국의 대표적인 반지하 숙박시설입니다."
    assert frame["label"].iloc[0] == 3.714285714285714
    assert frame["label"].iloc[1] == 0.0
    assert frame["label"].dtype == np.float64
    assert frame["label"].between(0, 5).all()
    assert frame["_row"].iloc[0] == 2 and frame["_row"].iloc[-1] == 11669


def test_real_val_csv_equals_official_dev_json():
    csv_frame = read_sts(shared_file("klue_sts", "klue_sts_val.csv"))
    json_frame = read_sts(shared_file("klue_sts", "klue-sts-v1.1_dev.json"))
    for column in ("sentence1", "sentence2", "label"):
        assert csv_frame[column].tolist() == json_frame[column].tolist(), column


def test_plain_csv_fixture(tmp_path):
    frame = read_sts(write(tmp_path, "train.csv", PLAIN_CSV))
    assert frame.attrs["format"] == "csv" and frame.attrs["has_ids"] is False
    assert_table(frame, PLAIN_EXPECTED)


def test_competition_csv(tmp_path):
    frame = read_sts(write(tmp_path, "train.csv", COMPETITION_CSV))
    assert frame.attrs["format"] == "competition" and frame.attrs["has_ids"] is True
    assert_table(frame, COMPETITION_EXPECTED)


def test_competition_test_file_without_labels(tmp_path):
    path = write(tmp_path, "test.csv", COMPETITION_TEST_CSV)
    frame = read_sts(path, require_labels=False)
    assert frame.attrs["format"] == "competition"
    assert list(frame.columns) == OUT_COLUMNS
    assert frame["id"].tolist() == [f"boostcamp-sts-v1-test-00{i}" for i in range(3)]
    assert frame["source"].tolist() == ["nsmc-sampled", "slack-rtt", "petition-sampled"]
    assert frame["sentence2"].tolist() == ["가히 최고라고 할만 합니다.", "모두 즐거운 주말 되세요!", "국민청원에 동의해 주십시오."]
    assert frame["label"].isna().all() and len(frame) == 3
    # the same file where labels are required: the label column is missing
    with pytest.raises(DataError) as info:
        read_sts(path)
    assert str(info.value) == (f"{path}:1: label: missing column (expected one of labels.real-label, real-label, label, score, labels.label; "
                               "found: id, source, sentence_1, sentence_2)")


def test_korsts_tsv_with_bare_quotes(tmp_path):
    frame = read_sts(write(tmp_path, "sts-dev.tsv", KORSTS_TSV))
    assert frame.attrs["format"] == "korsts" and frame.attrs["has_ids"] is True
    assert_table(frame, KORSTS_EXPECTED)


def test_real_korsts_dev_matches_a_plain_split():
    path = shared_file("korsts", "sts-dev.tsv")
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    fields = [line.split("\t") for line in lines]
    frame = read_sts(path)
    assert len(frame) == 1500 == len(fields)
    assert frame["id"].tolist() == ["/".join(f[:4]) for f in fields]
    assert frame["sentence1"].tolist() == [f[5] for f in fields]
    assert frame["sentence2"].tolist() == [f[6] for f in fields]
    assert frame["label"].tolist() == [float(f[4]) for f in fields]
    assert frame["sentence1"].str.contains('"').sum() + frame["sentence2"].str.contains('"').sum() > 0


@pytest.mark.parametrize("fmt, name, content, expected", [
    ("klue-json", "dev.txt", json.dumps(JSON_RECORDS, ensure_ascii=False), JSON_EXPECTED),
    ("csv", "train.txt", PLAIN_CSV, PLAIN_EXPECTED),
    ("competition", "train.txt", COMPETITION_CSV, COMPETITION_EXPECTED),
    ("korsts", "sts.txt", KORSTS_TSV, KORSTS_EXPECTED),
    # a competition file read as the plain csv format: same columns by alias, format as asked
    ("csv", "train.csv", COMPETITION_CSV, COMPETITION_EXPECTED),
])
def test_format_given_explicitly(tmp_path, fmt, name, content, expected):
    frame = read_sts(write(tmp_path, name, content), fmt=fmt)
    assert frame.attrs["format"] == fmt
    assert_table(frame, expected)


def test_explicit_format_is_not_overridden_by_detection(tmp_path):
    csv_path = write(tmp_path, "train.csv", COMPETITION_CSV)
    with pytest.raises(DataError) as info:
        read_sts(csv_path, fmt="korsts")  # read as TSV: the whole header is one column
    assert str(info.value) == (f"{csv_path}:1: genre: missing column "
                               "(found: id,source,sentence_1,sentence_2,label,binary-label)")
    with pytest.raises(DataError) as info:
        read_sts(csv_path, fmt="klue-json")
    assert str(info.value) == f"{csv_path}:1: invalid JSON: Expecting value"


# --- encodings -----------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding, newline", [
    ("utf-8", "\n"), ("utf-8-sig", "\n"), ("cp949", "\n"), ("utf-8-sig", "\r\n"), ("cp949", "\r\n"),
])
def test_encodings_read_identically(tmp_path, encoding, newline):
    path = write(tmp_path, "train.csv", COMPETITION_CSV.replace("\n", newline), encoding=encoding)
    if encoding == "utf-8-sig":
        assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    if encoding == "cp949":
        with pytest.raises(UnicodeDecodeError):
            path.read_bytes().decode("utf-8")  # the fixture really is not UTF-8
    frame = read_sts(path)
    assert frame.columns[0] == "id"  # not '\ufeffid'
    assert frame.attrs["has_ids"] is True and frame.attrs["format"] == "competition"
    assert_table(frame, COMPETITION_EXPECTED)
    reference = read_sts(write(tmp_path, "reference.csv", COMPETITION_CSV))
    pd.testing.assert_frame_equal(frame, reference)


def test_valid_utf8_is_never_read_as_cp949(tmp_path):
    text = "각각 café"
    csv_text = f"id,source,sentence_1,sentence_2,label,binary-label\nx1,s,{text},{text}!,3.5,1.0\n"
    # the whole file's UTF-8 bytes also decode as (wrong) CP949, so the reader must try UTF-8 first
    assert csv_text.encode("utf-8").decode("cp949") != csv_text
    frame = read_sts(write(tmp_path, "train.csv", csv_text))
    assert frame["sentence1"].tolist() == [text]
    assert frame["sentence2"].tolist() == [text + "!"]


# --- bad input: one clear file:row: column: problem ----------------------------------------------

H = COMPETITION_HEADER
ROW_A = "a,s,첫 문장,둘째 문장,3.0,1.0\n"
ROW_B = "b,s,셋째 문장,넷째 문장,1.0,0.0\n"
JSON_BAD = [dict(r) for r in JSON_RECORDS]
JSON_BAD[1] = dict(JSON_BAD[1], sentence2="  ")
JSON_NULL = [dict(JSON_RECORDS[0], labels={"real-label": None})]
JSON_DUP = JSON_RECORDS + [dict(JSON_RECORDS[0])]
JSON_NO_LABELS = [{k: v for k, v in r.items() if k != "labels"} for r in JSON_RECORDS]

BAD_CASES = [
    # (case id, file name, content, read_sts keyword arguments, message after "path:")
    ("missing-sentence-column", "x.csv", "id,source,sentence_1,label,binary-label\na,s,x,3,1\n", {},
     "1: sentence2: missing column (expected one of sentence2, sentence_2; "
     "found: id, source, sentence_1, label, binary-label)"),
    ("missing-label-column", "x.csv", "sentence1,sentence2\nx,y\n", {},
     "1: label: missing column (expected one of labels.real-label, real-label, label, score, labels.label; found: sentence1, sentence2)"),
    ("korsts-missing-score", "x.tsv", "genre\tfilename\tyear\tid\tsentence1\tsentence2\ng\tf\t2012\t1\tx\ty\n",
     {"fmt": "korsts"}, "1: score: missing column (found: genre, filename, year, id, sentence1, sentence2)"),
    ("empty-sentence", "x.csv", H + ROW_A + "b,s,셋째 문장,,1.0,0.0\n", {}, "3: sentence_2: empty text"),
    ("whitespace-sentence", "x.csv", H + ROW_A + ROW_B + 'c,s,"   ",넷째,1.0,0.0\n', {}, "4: sentence_1: empty text"),
    ("short-row", "x.csv", H + ROW_A + "b,s,셋째 문장\n", {}, "3: sentence_2: empty text"),
    ("empty-sentence-unlabelled", "x.csv", "id,source,sentence_1,sentence_2\na,s,x,y\nb,s, \t,y\n",
     {"require_labels": False}, "3: sentence_1: empty text"),
    ("label-not-a-number", "x.csv", H + ROW_A + "b,s,x,y,abc,0\n", {}, "3: label: 'abc' is not a number"),
    ("label-empty", "x.csv", H + "a,s,x,y,,0\n", {}, "2: label: missing label"),
    ("label-above-5", "x.csv", H + ROW_A + "b,s,x,y,5.5,1\n", {}, "3: label: 5.5 is outside 0-5"),
    ("label-below-0", "x.csv", H + "a,s,x,y,-1,0\n", {}, "2: label: -1 is outside 0-5"),
    ("korsts-score-above-5", "x.tsv", KORSTS_TSV + "g\tf\t2015\t0001\t5.200\tx\ty\n", {},
     "5: score: 5.2 is outside 0-5"),
    ("duplicate-id", "x.csv", H + ROW_A + ROW_B + "a,s,x,y,2,0\n", {}, "4: id: duplicate id 'a' (first at row 2)"),
    ("empty-id", "x.csv", H + ROW_A + ",s,x,y,2,0\n", {}, "3: id: empty text"),
    ("undecodable-bytes", "x.csv", (H + ROW_A).encode() + b"b,s,x\xff\xfe\xff,y,1.0,0.0\n", {},
     "3: bytes ff fe ff 2c are neither UTF-8 nor CP949; save the file as UTF-8"),
    ("empty-file", "x.csv", b"", {}, "1: file is empty"),
    ("blank-file", "x.csv", "\n  \r\n\n", {}, "1: file is empty"),
    ("bom-only-file", "x.csv", b"\xef\xbb\xbf", {}, "1: file is empty"),
    ("header-only", "x.csv", H, {}, "2: no data rows after the header"),
    ("invalid-json", "x.json", '[\n  {"guid": "a",\n   "sentence1": ]\n', {}, "3: invalid JSON: Expecting value"),
    ("json-not-a-list", "x.json", '{"guid": "a"}', {}, "1: expected a JSON list of objects"),
    ("json-empty-list", "x.json", "[]", {}, "1: file is empty: the JSON list has no records"),
    ("json-empty-sentence", "x.json", json.dumps(JSON_BAD), {}, "2: sentence2: empty text"),
    ("json-null-label", "x.json", json.dumps(JSON_NULL), {}, "1: labels.real-label: missing label"),
    ("json-duplicate-guid", "x.json", json.dumps(JSON_DUP), {},
     "3: guid: duplicate id 'klue-sts-v1_dev_00000' (first at row 1)"),
    ("json-no-labels", "x.json", json.dumps(JSON_NO_LABELS), {},
     "1: label: missing column (expected one of labels.real-label, real-label, label, score, labels.label; found: guid, source, sentence1, sentence2)"),
]


@pytest.mark.parametrize("name, content, kwargs, message", [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_input_names_file_row_column(tmp_path, name, content, kwargs, message):
    path = write(tmp_path, name, content)
    with pytest.raises(DataError) as info:
        read_sts(path, **kwargs)
    assert str(info.value) == f"{path}:{message}"
    assert info.value.path == str(path)
    assert info.value.row == int(message.split(":")[0])


def test_too_many_fields_names_the_line(tmp_path):
    path = write(tmp_path, "x.csv", H + ROW_A + ROW_B + "c,s,x,y,1,0,extra\n")
    with pytest.raises(DataError) as info:
        read_sts(path)
    assert info.value.row == 4
    assert str(info.value).startswith(f"{path}:4: cannot parse as CSV: ")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError) as info:
        read_sts(path)
    assert str(info.value) == f"{path}:0: no such file"
    with pytest.raises(DataError) as info:
        read_sts(tmp_path)  # a folder is not a file either
    assert str(info.value) == f"{tmp_path}:0: no such file"


@pytest.mark.parametrize("fmt", ["tsv", "json", "KLUE-JSON", ""])
def test_unknown_format(tmp_path, fmt):
    path = write(tmp_path, "train.csv", COMPETITION_CSV)
    with pytest.raises(DataError) as info:
        read_sts(path, fmt=fmt)
    assert str(info.value) == (f"{path}:0: --format: unknown STS format {fmt!r} "
                               "(choose from auto, klue-json, csv, competition, korsts)")
    assert FORMATS == ("auto", "klue-json", "csv", "competition", "korsts")


def test_data_error_is_a_kluekit_error_with_fields():
    error = DataError("a.csv", 7, "label", "bad")
    assert isinstance(error, KluekitError)
    assert (error.path, error.row, error.column, error.problem) == ("a.csv", 7, "label", "bad")
    assert str(error) == "a.csv:7: label: bad"
    assert str(DataError(Path("b.csv"), 1, None, "file is empty")) == "b.csv:1: file is empty"


# --- check_labeled -------------------------------------------------------------------------------

def test_check_labeled(tmp_path):
    test_path = write(tmp_path, "test.csv", COMPETITION_TEST_CSV)
    with pytest.raises(DataError) as info:
        check_labeled(read_sts(test_path, require_labels=False))
    assert str(info.value) == f"{test_path}:2: label: missing label"

    train = read_sts(write(tmp_path, "train.csv", COMPETITION_CSV))
    assert check_labeled(train) is None
    train.loc[2, "label"] = math.nan  # third data row = editor row 4
    with pytest.raises(DataError) as info:
        check_labeled(train)
    assert str(info.value) == f"{tmp_path / 'train.csv'}:4: label: missing label"


# --- fill_sample_submission ----------------------------------------------------------------------

SAMPLE = "id,target,note\nboostcamp-sts-v1-test-002,0,x\nboostcamp-sts-v1-test-000,0,y\nboostcamp-sts-v1-test-001,0,z\n"


def test_fill_sample_submission_by_id_keeps_ids_order_columns(tmp_path):
    test = read_sts(write(tmp_path, "test.csv", COMPETITION_TEST_CSV), require_labels=False)
    predictions = pd.DataFrame({"id": test["id"], "target": [1.25, 4.5, 3.0]})
    out = fill_sample_submission(write(tmp_path, "sample_submission.csv", SAMPLE), predictions)
    assert list(out.columns) == ["id", "target", "note"]
    assert out["id"].tolist() == ["boostcamp-sts-v1-test-002", "boostcamp-sts-v1-test-000", "boostcamp-sts-v1-test-001"]
    assert out["target"].tolist() == [3.0, 1.25, 4.5]
    assert out["note"].tolist() == ["x", "y", "z"]


def test_fill_sample_submission_ids_compared_as_text(tmp_path):
    sample = write(tmp_path, "sample.csv", "id,target\n007,0\n10,0\n")
    out = fill_sample_submission(sample, pd.DataFrame({"id": ["10", "007"], "target": [2.0, 1.0]}))
    assert out["id"].tolist() == ["007", "10"]  # leading zeros kept
    assert out["target"].tolist() == [1.0, 2.0]
    out = fill_sample_submission(sample, pd.DataFrame({"id": [10, "007"], "target": [2.0, 1.0]}))
    assert out["target"].tolist() == [1.0, 2.0]


def test_fill_sample_submission_by_position(tmp_path):
    sample = write(tmp_path, "sample.csv", "id,target\n0,0\n1,0\n2,0\n")
    out = fill_sample_submission(sample, pd.DataFrame({"id": ["9", "8", "7"], "target": [0.5, 1.5, 2.5]}),
                                 match_ids=False)
    assert list(out.columns) == ["id", "target"]
    assert out["id"].tolist() == ["0", "1", "2"]
    assert out["target"].tolist() == [0.5, 1.5, 2.5]


def test_fill_sample_submission_other_target_column(tmp_path):
    sample = write(tmp_path, "sample.csv", "id,label\nb,0\na,0\n")
    out = fill_sample_submission(sample, pd.DataFrame({"id": ["a", "b"], "label": [1.0, 2.0]}), target="label")
    assert list(out.columns) == ["id", "label"]
    assert out["label"].tolist() == [2.0, 1.0]


PREDICTIONS = pd.DataFrame({"id": ["a", "b", "c"], "target": [1.0, 2.0, 3.0]})


@pytest.mark.parametrize("sample, kwargs, message", [
    ("id,target\na,0\nq,0\nb,0\n", {}, "3: id: id 'q' is not in the input file"),
    ("id,score\na,0\n", {}, "1: target: missing column (found: id, score)"),
    ("idx,target\na,0\n", {}, "1: id: missing column (found: idx, target)"),
    ("id,target\na,0\nb,0\n", {"match_ids": False},
     "1: has 2 rows but the input has 3 and no id column to match them by"),
    ("id,target\n", {}, "2: no data rows after the header"),
], ids=["unknown-id", "no-target-column", "no-id-column", "row-count-mismatch", "header-only"])
def test_fill_sample_submission_errors(tmp_path, sample, kwargs, message):
    path = write(tmp_path, "sample_submission.csv", sample)
    with pytest.raises(DataError) as info:
        fill_sample_submission(path, PREDICTIONS, **kwargs)
    assert str(info.value) == f"{path}:{message}"


def test_fill_sample_submission_missing_file(tmp_path):
    with pytest.raises(DataError) as info:
        fill_sample_submission(tmp_path / "sample.csv", PREDICTIONS)
    assert str(info.value) == f"{tmp_path / 'sample.csv'}:0: no such file"


# --- row numbers, encodings, JSON Lines, empty labels, column names (regressions) ----------------

def test_blank_lines_are_dropped_but_counted(tmp_path):
    # header = line 1; blank (and space-only) lines still count, as an editor shows them
    content = "\n \n" + H + ROW_A + "\n" + ROW_B + "\r\n  \n,,,,,\n"
    frame = read_sts(write(tmp_path, "x.csv", content))
    assert frame["id"].tolist() == ["a", "b"]
    assert frame["_row"].tolist() == [4, 6]
    path = write(tmp_path, "bad.csv", H + ROW_A + "\n" + ROW_B + "\n  \nc,s,x,,1,0\n")
    with pytest.raises(DataError) as info:
        read_sts(path)
    assert str(info.value) == f"{path}:7: sentence_2: empty text"
    path = write(tmp_path, "bad.tsv", KORSTS_TSV.replace("\n", "\n\n", 1) + "g\tf\t2015\t0001\t5.200\tx\ty\n")
    with pytest.raises(DataError) as info:
        read_sts(path)
    assert str(info.value) == f"{path}:6: score: 5.2 is outside 0-5"
    path = write(tmp_path, "long.csv", "\n" + H + ROW_A + "\n" + ROW_B + "c,s,x,y,1,0,extra\n")
    with pytest.raises(DataError) as info:
        read_sts(path)
    assert str(info.value).startswith(f"{path}:6: cannot parse as CSV: ")
    path = write(tmp_path, "header.csv", H + "\n\n")
    with pytest.raises(DataError) as info:
        read_sts(path)
    assert str(info.value) == f"{path}:2: no data rows after the header"


def test_cp949_error_names_the_bad_byte_not_the_first_korean_character(tmp_path):
    content = COMPETITION_CSV.encode("cp949") + b"x,s,\xff\xfe,y,1,0\n"
    path = write(tmp_path, "x.csv", content)
    with pytest.raises(DataError) as info:
        read_sts(path)
    assert str(info.value) == f"{path}:7: bytes ff fe 2c 79 are neither UTF-8 nor CP949; save the file as UTF-8"


JSONL = "\n".join(json.dumps(r, ensure_ascii=False) for r in JSON_RECORDS) + "\n"


def test_jsonl_rows_are_line_numbers(tmp_path):
    records = [dict(JSON_RECORDS[0], sentence1="줄\u2028바꿈")] + JSON_RECORDS[1:]
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in records).replace("\n", "\n\n")
    frame = read_sts(write(tmp_path, "x.jsonl", content))
    assert frame.attrs["format"] == "klue-json"
    assert frame["sentence1"].tolist() == [r["sentence1"] for r in records]
    assert frame["_row"].tolist() == [1, 3]
    assert_table(read_sts(write(tmp_path, "y.jsonl", JSONL)), JSON_EXPECTED)


@pytest.mark.parametrize("content, message", [
    (JSONL + '{"guid": "x",\n', "3: invalid JSON: Expecting property name enclosed in double quotes"),
    ("\n" + JSONL + "\n[1, 2]\n", "5: expected a JSON list of objects"),
], ids=["invalid-line", "not-an-object"])
def test_jsonl_errors_name_the_line(tmp_path, content, message):
    path = write(tmp_path, "x.jsonl", content)
    with pytest.raises(DataError) as info:
        read_sts(path)
    assert str(info.value) == f"{path}:{message}"


@pytest.mark.parametrize("name, content", [
    ("x.csv", "\u3000"), ("x.csv", "\u3000\n \t\u00a0\n"), ("x.json", "\u3000"), ("x.csv", "\u3000".encode("cp949")),
])
def test_unicode_whitespace_file_is_empty(tmp_path, name, content):
    path = write(tmp_path, name, content)
    with pytest.raises(DataError) as info:
        read_sts(path)
    assert str(info.value) == f"{path}:1: file is empty"


def test_sniff_kind_of_empty_text():
    from kluekit.data.tables import sniff_kind
    assert sniff_kind("x.txt", "") == "csv"
    assert sniff_kind("x.txt", "  [1]") == "json"
    assert sniff_kind("x.txt", "a\tb") == "tsv"
    assert sniff_kind("x.txt", "\n\na\tb\n") == "tsv"  # the first line that is not blank


def test_empty_labels_in_a_test_file_are_nan(tmp_path):
    path = write(tmp_path, "test.csv", H + ROW_A + "b,s,x,y,,\n" + "c,s,x,y, ,0\n")
    frame = read_sts(path, require_labels=False)
    np.testing.assert_array_equal(frame["label"].to_numpy(), [3.0, np.nan, np.nan])
    with pytest.raises(DataError) as info:
        read_sts(path)
    assert str(info.value) == f"{path}:3: label: missing label"
    with pytest.raises(DataError) as info:
        check_labeled(frame)
    assert str(info.value) == f"{path}:3: label: missing label"
    # every label empty; a bad label is still an error when labels are optional
    assert read_sts(write(tmp_path, "all.csv", H + "a,s,x,y,,\nb,s,x,y,,\n"), require_labels=False)["label"].isna().all()
    path = write(tmp_path, "bad.csv", H + "a,s,x,y,,\nb,s,x,y,abc,\n")
    with pytest.raises(DataError) as info:
        read_sts(path, require_labels=False)
    assert str(info.value) == f"{path}:3: label: 'abc' is not a number"


def test_errors_name_columns_as_the_file_does(tmp_path):
    path = write(tmp_path, "sts.tsv", KORSTS_TSV.replace("\t0.000\t", "\t\t"))
    frame = read_sts(path, require_labels=False)
    with pytest.raises(DataError) as info:
        check_labeled(frame)
    assert str(info.value) == f"{path}:4: score: missing label"
    path = write(tmp_path, "dev.json", json.dumps([dict(JSON_RECORDS[0], guid=" ")]))
    with pytest.raises(DataError) as info:
        read_sts(path)
    assert str(info.value) == f"{path}:1: guid: empty text"


def test_fill_sample_submission_row_after_blank_line(tmp_path):
    path = write(tmp_path, "sample.csv", "id,target\na,0\n\nq,0\n")
    with pytest.raises(DataError) as info:
        fill_sample_submission(path, PREDICTIONS)
    assert str(info.value) == f"{path}:4: id: id 'q' is not in the input file"
    out = fill_sample_submission(write(tmp_path, "ok.csv", "id,target\nb,0\n\na,0\n"), PREDICTIONS)
    assert list(out.columns) == ["id", "target"]
    assert out["id"].tolist() == ["b", "a"] and out["target"].tolist() == [2.0, 1.0]


def test_fill_sample_submission_duplicate_and_extra_prediction_ids(tmp_path):
    sample = write(tmp_path, "sample.csv", "id,target\nb,0\na,0\n")
    duplicated = pd.DataFrame({"id": ["a", "b", "a"], "target": [1.0, 2.0, 3.0]})
    with pytest.raises(DataError) as info:
        fill_sample_submission(sample, duplicated)
    assert str(info.value) == "predictions:0: id: duplicate id 'a' in the predictions"
    extra = pd.DataFrame({"id": ["z", "a", "y", "b"], "target": [9.0, 1.0, 8.0, 2.0]})
    out = fill_sample_submission(sample, extra)
    assert out["id"].tolist() == ["b", "a"] and out["target"].tolist() == [2.0, 1.0]
