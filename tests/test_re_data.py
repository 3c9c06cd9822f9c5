"""RE readers (kluekit.data.re): competition CSV, KLUE JSON, label maps, row checks and skip_bad_rows.

The real KLUE-RE files are read in place from ../shared/data/klue_re (never copied); every other
case is a small fixture written into tmp_path.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from kluekit.data.re import COLUMNS, COMPETITION_LABELS, FORMATS, load_label_map, read_re
from kluekit.errors import DataError, KluekitError

from conftest import shared_path

OUT_COLUMNS = COLUMNS + ["_row"]
LABELS = list(COMPETITION_LABELS)
HEADER = "id,sentence,subject_entity,object_entity,label,source\n"


def re_file(name: str) -> Path:
    return shared_path("data", "klue_re", name)


def write(tmp_path: Path, name: str, content: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode(encoding))
    return path


def line(*cells) -> str:
    """One CSV line, quoted as pandas' to_csv quotes it."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue()


def ent(word, start, end, kind) -> str:
    return repr({"word": word, "start_idx": start, "end_idx": end, "type": kind})


# --- fixtures: real rows of train_partial_union.csv (3558 has quotes in its word: literal_eval path) --

COMPETITION_CSV = HEADER + (
    "0,〈Something〉는 조지 해리슨이 쓰고 비틀즈가 1969년 앨범 《Abbey Road》에 담은 노래다.,"
    "\"{'word': '비틀즈', 'start_idx': 24, 'end_idx': 26, 'type': 'ORG'}\","
    "\"{'word': '조지 해리슨', 'start_idx': 13, 'end_idx': 18, 'type': 'PER'}\",no_relation,wikipedia\n"
    "3,균일가 생활용품점 (주)아성다이소(대표 박정부)는 코로나19 바이러스로 어려움을 겪고 있는 대구광역시에 행복박스를 "
    "전달했다고 10일 밝혔다.,\"{'word': '아성다이소', 'start_idx': 13, 'end_idx': 17, 'type': 'ORG'}\","
    "\"{'word': '박정부', 'start_idx': 22, 'end_idx': 24, 'type': 'PER'}\",org:top_members/employees,wikitree\n"
    "3558,김호영 씨는 지난 2002년 뮤지컬 '렌트'로 데뷔했다.,"
    "\"{'word': '김호영', 'start_idx': 0, 'end_idx': 2, 'type': 'PER'}\","
    "\"{'word': \"\"2002년 뮤지컬 '렌트'\"\", 'start_idx': 10, 'end_idx': 23, 'type': 'DAT'}\",no_relation,wikitree\n"
)
COMPETITION_EXPECTED = {
    "id": ["0", "3", "3558"],
    "sentence": ["〈Something〉는 조지 해리슨이 쓰고 비틀즈가 1969년 앨범 《Abbey Road》에 담은 노래다.",
                 "균일가 생활용품점 (주)아성다이소(대표 박정부)는 코로나19 바이러스로 어려움을 겪고 있는 대구광역시에 행복박스를 "
                 "전달했다고 10일 밝혔다.",
                 "김호영 씨는 지난 2002년 뮤지컬 '렌트'로 데뷔했다."],
    "subj_word": ["비틀즈", "아성다이소", "김호영"], "subj_start": [24, 13, 0], "subj_end": [26, 17, 2],
    "subj_type": ["ORG", "ORG", "PER"],
    "obj_word": ["조지 해리슨", "박정부", "2002년 뮤지컬 '렌트'"], "obj_start": [13, 22, 10], "obj_end": [18, 24, 23],
    "obj_type": ["PER", "PER", "DAT"],
    "label": ["no_relation", "org:top_members/employees", "no_relation"], "label_id": [0, 1, 0],
    "source": ["wikipedia", "wikitree", "wikitree"], "_row": [2, 3, 4],
}

JSON_RECORDS = [
    {"guid": "klue-re-v1_train_00000", "sentence": "〈Something〉는 조지 해리슨이 쓰고 비틀즈가 1969년 앨범 《Abbey Road》에 담은 노래다.",
     "subject_entity": {"word": "비틀즈", "start_idx": 24, "end_idx": 26, "type": "ORG"},
     "object_entity": {"word": "조지 해리슨", "start_idx": 13, "end_idx": 18, "type": "PER"},
     "label": "no_relation", "source": "wikipedia"},
    {"guid": "klue-re-v1_train_00001", "sentence": "호남이 기반인 바른미래당·대안신당·민주평화당이 우여곡절 끝에 합당해 민생당(가칭)으로 재탄생한다.",
     "subject_entity": {"word": "민주평화당", "start_idx": 19, "end_idx": 23, "type": "ORG"},
     "object_entity": {"word": "대안신당", "start_idx": 14, "end_idx": 17, "type": "ORG"},
     "label": "org:members", "source": "wikitree"},
]
JSON_EXPECTED = {
    "id": ["klue-re-v1_train_00000", "klue-re-v1_train_00001"],
    "sentence": [r["sentence"] for r in JSON_RECORDS],
    "subj_word": ["비틀즈", "민주평화당"], "subj_start": [24, 19], "subj_end": [26, 23], "subj_type": ["ORG", "ORG"],
    "obj_word": ["조지 해리슨", "대안신당"], "obj_start": [13, 14], "obj_end": [18, 17], "obj_type": ["PER", "ORG"],
    "label": ["no_relation", "org:members"], "label_id": [0, 2], "source": ["wikipedia", "wikitree"], "_row": [1, 2],
}


def assert_table(frame, expected: dict) -> None:
    assert list(frame.columns) == OUT_COLUMNS
    for column in OUT_COLUMNS:
        assert frame[column].tolist() == expected[column], column
    for column in ("subj_start", "subj_end", "obj_start", "obj_end", "label_id", "_row"):
        assert frame[column].dtype == np.int64, column


def test_competition_fixture(tmp_path):
    path = write(tmp_path, "train.csv", COMPETITION_CSV)
    frame = read_re(path, LABELS)
    assert_table(frame, COMPETITION_EXPECTED)
    assert frame.attrs["path"] == str(path) and frame.attrs["format"] == "competition"
    assert frame.attrs["has_ids"] is True and frame.attrs["skipped"] == []
    # the offsets really are end-inclusive character positions
    for row in frame.itertuples():
        assert row.sentence[row.subj_start:row.subj_end + 1] == row.subj_word
        assert row.sentence[row.obj_start:row.obj_end + 1] == row.obj_word


def test_klue_json_fixture_auto_and_explicit(tmp_path):
    text = json.dumps(JSON_RECORDS, ensure_ascii=False, indent=1)
    for path, fmt in ((write(tmp_path, "dev.json", text), "auto"), (write(tmp_path, "dev.txt", text), "auto"),
                      (write(tmp_path, "dev.data", text), "klue-json")):
        frame = read_re(path, LABELS, fmt=fmt)
        assert frame.attrs["format"] == "klue-json" and frame.attrs["has_ids"] is True
        assert_table(frame, JSON_EXPECTED)
    # the same JSON with entities stored as dict-repr strings (a CSV converted to JSON) reads the same
    as_strings = [dict(r, subject_entity=repr(r["subject_entity"]), object_entity=repr(r["object_entity"]))
                  for r in JSON_RECORDS]
    assert_table(read_re(write(tmp_path, "s.json", json.dumps(as_strings, ensure_ascii=False)), LABELS), JSON_EXPECTED)
    # and a JSON Lines file: rows are line numbers
    jsonl = "\n".join(json.dumps(r, ensure_ascii=False) for r in JSON_RECORDS)
    frame = read_re(write(tmp_path, "dev.jsonl", jsonl), LABELS)
    assert frame["subj_word"].tolist() == ["비틀즈", "민주평화당"] and frame["_row"].tolist() == [1, 2]


def test_competition_file_named_json_read_as_competition(tmp_path):
    frame = read_re(write(tmp_path, "train.txt", COMPETITION_CSV), LABELS, fmt="competition")
    assert frame.attrs["format"] == "competition"
    assert_table(frame, COMPETITION_EXPECTED)
    with pytest.raises(DataError) as info:
        read_re(write(tmp_path, "train2.csv", COMPETITION_CSV), LABELS, fmt="klue-json")
    assert str(info.value) == f"{tmp_path / 'train2.csv'}:1: invalid JSON: Expecting value"


def test_utf8_bom_and_cp949_files_read_identically(tmp_path):
    for encoding in ("utf-8-sig", "cp949"):
        frame = read_re(write(tmp_path, f"{encoding}.csv", COMPETITION_CSV.replace("\n", "\r\n"), encoding), LABELS)
        assert_table(frame, COMPETITION_EXPECTED)


# --- the real files, read in place -----------------------------------------------------------------

def test_real_train_partial_union():
    frame = read_re(re_file("train_partial_union.csv"), LABELS)
    assert len(frame) == 17875 and list(frame.columns) == OUT_COLUMNS
    assert frame.attrs["format"] == "competition" and frame.attrs["skipped"] == []
    first = frame.iloc[0]
    assert (first["id"], first["subj_word"], first["subj_start"], first["subj_end"], first["subj_type"]) == \
        ("0", "비틀즈", 24, 26, "ORG")
    assert (first["obj_word"], first["obj_start"], first["obj_end"], first["obj_type"]) == ("조지 해리슨", 13, 18, "PER")
    assert (first["label"], first["label_id"], first["source"], first["_row"]) == ("no_relation", 0, "wikipedia", 2)
    last = frame.iloc[-1]
    assert (last["id"], last["subj_word"], last["obj_word"], last["label"], last["label_id"]) == \
        ("32469", "화순군", "구충곤", "org:top_members/employees", 1)
    quoted = frame.loc[frame["id"] == "3558"].iloc[0]  # a word with quotes: parsed by literal_eval
    assert (quoted["obj_word"], quoted["obj_start"], quoted["obj_end"]) == ("2002년 뮤지컬 '렌트'", 10, 23)
    assert frame["id"].astype(int).is_monotonic_increasing
    assert (frame["label"] == "no_relation").sum() == 5314
    assert sorted(frame["label_id"].unique()) == list(range(30))
    assert (frame["label"].map(LABELS.index) == frame["label_id"]).all()
    assert set(frame["subj_type"]) | set(frame["obj_type"]) == {"PER", "ORG", "LOC", "DAT", "POH", "NOH"}


def test_real_dev_with_labels_and_blind_test():
    dev = read_re(re_file("boostcamp_test_data_with_labels.csv"), LABELS)
    assert len(dev) == 7765 and (dev["label"] == "no_relation").sum() == 4631
    assert dev["label_id"].between(0, 29).all() and dev["label_id"].nunique() == 30
    assert dev["id"].tolist() == [str(i) for i in range(7765)]
    assert (dev["subj_word"].iloc[0], dev["obj_word"].iloc[0], dev["label"].iloc[0]) == \
        ("MBC", "탐사기획 스트레이트", "org:members")
    assert (dev["subj_word"].iloc[1], dev["obj_start"].iloc[1], dev["label"].iloc[1]) == ("프린세스 프링", 84, "per:title")

    blind_path = re_file("boostcamp_test_data.csv")
    blind = read_re(blind_path, LABELS, require_labels=False)
    assert len(blind) == 7765 and (blind["label"] == "").all() and (blind["label_id"] == -1).all()
    same = ["id", "sentence", "subj_word", "subj_start", "subj_end", "obj_word", "obj_start", "obj_end", "source"]
    assert blind[same].equals(dev[same])
    with pytest.raises(DataError) as info:
        read_re(blind_path, LABELS)  # label 100 = no label: an error where labels are required
    assert str(info.value) == f"{blind_path}:2: label: missing label (100 or empty)"


# --- bad input: file:row: column: problem ---------------------------------------------------------

S = "조지 해리슨이 쓰고 비틀즈가 부른 노래"
GOOD_SUBJ, GOOD_OBJ = ent("비틀즈", 11, 13, "ORG"), ent("조지 해리슨", 0, 5, "PER")
GOOD = line("a", S, GOOD_SUBJ, GOOD_OBJ, "no_relation", "wikipedia")


def bad(subj=GOOD_SUBJ, obj=GOOD_OBJ, label="no_relation", sentence=S, id_="b") -> str:
    return HEADER + GOOD + line(id_, sentence, subj, obj, label, "wikipedia")


JSON_GOOD = {"guid": "g1", "sentence": S, "subject_entity": {"word": "비틀즈", "start_idx": 11, "end_idx": 13, "type": "ORG"},
             "object_entity": {"word": "조지 해리슨", "start_idx": 0, "end_idx": 5, "type": "PER"}, "label": "no_relation"}


def json_bad(**changes) -> str:
    record = dict(JSON_GOOD, guid="g2")
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            record[outer] = {k: v for k, v in {**record[outer], inner: value}.items() if v is not ...}
        else:
            record[key] = value
    return json.dumps([JSON_GOOD, record], ensure_ascii=False)


BAD_CASES = [
    # file-level: missing columns (named as the file would name them)
    ("no-sentence", "x.csv", "id,text,subject_entity,object_entity,label\na,b,c,d,e\n", {},
     "1: sentence: missing column (found: id, text, subject_entity, object_entity, label)"),
    ("no-subject", "x.csv", "id,sentence,object_entity,label\na,b,c,d\n", {},
     "1: subject_entity: missing column (found: id, sentence, object_entity, label)"),
    ("no-object", "x.csv", "id,sentence,subject_entity,label\na,b,c,d\n", {},
     "1: object_entity: missing column (found: id, sentence, subject_entity, label)"),
    ("no-label", "x.csv", "id,sentence,subject_entity,object_entity\na,b,c,d\n", {},
     "1: label: missing column (found: id, sentence, subject_entity, object_entity)"),
    ("json-no-type-key", "x.json",
     json.dumps([dict(JSON_GOOD, subject_entity={"word": "비틀즈", "start_idx": 11, "end_idx": 13})]), {},
     "1: subject_entity.type: missing column (found: guid, sentence, label, subject_entity.word, "
     "subject_entity.start_idx, subject_entity.end_idx, object_entity.word, object_entity.start_idx, "
     "object_entity.end_idx, object_entity.type)"),
    ("json-no-object", "x.json", json.dumps([{k: v for k, v in JSON_GOOD.items() if k != "object_entity"}]), {},
     "1: object_entity: missing column (found: guid, sentence, label, subject_entity.word, subject_entity.start_idx, "
     "subject_entity.end_idx, subject_entity.type)"),
    # rows
    ("empty-sentence", "x.csv", bad(sentence="  "), {}, "3: sentence: empty text"),
    ("not-a-literal", "x.csv", bad(subj="{'word': '비틀즈'"), {},
     "3: subject_entity: not an entity dict like {'word': ..., 'start_idx': ..., 'end_idx': ..., 'type': ...}: "
     "\"{'word': '비틀즈'\""),
    ("plain-word", "x.csv", bad(obj="조지 해리슨"), {},
     "3: object_entity: not an entity dict like {'word': ..., 'start_idx': ..., 'end_idx': ..., 'type': ...}: "
     "'조지 해리슨'"),
    ("a-list", "x.csv", bad(obj="[0, 5]"), {},
     "3: object_entity: not an entity dict like {'word': ..., 'start_idx': ..., 'end_idx': ..., 'type': ...}: "
     "'[0, 5]'"),
    ("missing-keys", "x.csv", bad(subj="{'word': '비틀즈', 'start_idx': 11}"), {},
     "3: subject_entity: entity has no end_idx, type"),
    ("text-offset", "x.csv", bad(subj=ent("비틀즈", "11", 13, "ORG")), {},
     "3: subject_entity: start_idx '11' is not an integer"),
    ("float-offset", "x.csv", bad(obj=ent("조지 해리슨", 0, 5.0, "PER")), {},
     "3: object_entity: end_idx 5.0 is not an integer"),
    ("bool-offset", "x.csv", bad(obj=ent("조지 해리슨", True, 5, "PER")), {},
     "3: object_entity: start_idx True is not an integer"),
    ("huge-offset", "x.csv", bad(obj=ent("조지 해리슨", 0, 10 ** 30, "PER")), {},
     f"3: object_entity: end_idx {10 ** 30} is far outside any sentence"),
    ("empty-word", "x.csv", bad(subj=ent("", 11, 13, "ORG")), {}, "3: subject_entity: word '' is not a non-empty text"),
    ("no-type", "x.csv", bad(subj=ent("비틀즈", 11, 13, None)), {}, "3: subject_entity: type None is not a non-empty text"),
    ("outside", "x.csv", bad(subj=ent("비틀즈", 11, 30, "ORG")), {},
     "3: subject_entity: offsets 11-30 are outside the sentence (length 21)"),
    ("negative", "x.csv", bad(obj=ent("조지 해리슨", -1, 5, "PER")), {},
     "3: object_entity: offsets -1-5 are outside the sentence (length 21)"),
    ("reversed", "x.csv", bad(subj=ent("비틀즈", 13, 11, "ORG")), {}, "3: subject_entity: end_idx 11 is before start_idx 13"),
    ("shifted", "x.csv", bad(subj=ent("비틀즈", 10, 12, "ORG")), {},
     "3: subject_entity: word '비틀즈' does not match the sentence at 10-12: ' 비틀'"),
    ("exclusive-end", "x.csv", bad(obj=ent("조지 해리슨", 0, 6, "PER")), {},
     "3: object_entity: word '조지 해리슨' does not match the sentence at 0-6: '조지 해리슨이'"),
    ("unknown-label", "x.csv", bad(label="per:favourite_food"), {},
     "3: label: unknown label 'per:favourite_food' (not one of the 30 labels)"),
    ("unknown-label-optional", "x.csv", bad(label="org:membrs"), {"require_labels": False},
     "3: label: unknown label 'org:membrs' (not one of the 30 labels)"),
    ("label-100", "x.csv", bad(label="100"), {}, "3: label: missing label (100 or empty)"),
    ("label-empty", "x.csv", bad(label=" "), {}, "3: label: missing label (100 or empty)"),
    ("duplicate-id", "x.csv", bad(id_="a"), {}, "3: id: duplicate id 'a' (first at row 2)"),
    ("empty-id", "x.csv", bad(id_=" "), {}, "3: id: empty text"),
    # JSON rows name the flattened column
    ("json-text-offset", "x.json", json_bad(**{"subject_entity.start_idx": "x"}), {},
     "2: subject_entity.start_idx: start_idx 'x' is not an integer"),
    ("json-null-type", "x.json", json_bad(**{"object_entity.type": None}), {},
     "2: object_entity.type: entity has no type"),
    ("json-shifted", "x.json", json_bad(**{"object_entity.start_idx": 1, "object_entity.end_idx": 6}), {},
     "2: object_entity: word '조지 해리슨' does not match the sentence at 1-6: '지 해리슨이'"),
    ("json-duplicate-guid", "x.json", json_bad(guid="g1"), {}, "2: guid: duplicate id 'g1' (first at row 1)"),
    ("json-unknown-label", "x.json", json_bad(label="per:age"), {},
     "2: label: unknown label 'per:age' (not one of the 30 labels)"),
    ("json-null-label", "x.json", json_bad(label=None), {}, "2: label: missing label (100 or empty)"),
]


@pytest.mark.parametrize("name, content, kwargs, message", [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_input_names_file_row_column(tmp_path, name, content, kwargs, message):
    path = write(tmp_path, name, content)
    with pytest.raises(DataError) as info:
        read_re(path, LABELS, **kwargs)
    assert str(info.value) == f"{path}:{message}"
    assert info.value.row == int(message.split(":")[0])


def test_first_bad_row_wins_and_each_row_reports_its_first_problem(tmp_path):
    content = (HEADER + GOOD + line("b", S, GOOD_SUBJ, GOOD_OBJ, "bad_label", "w")
               + line("c", "", "nonsense", GOOD_OBJ, "no_relation", "w"))
    path = write(tmp_path, "x.csv", content)
    with pytest.raises(DataError) as info:
        read_re(path, LABELS)
    assert str(info.value) == f"{path}:3: label: unknown label 'bad_label' (not one of the 30 labels)"
    frame = read_re(path, LABELS, skip_bad_rows=True)
    assert frame.attrs["skipped"] == [f"{path}:3: label: unknown label 'bad_label' (not one of the 30 labels)",
                                      f"{path}:4: sentence: empty text"]


@pytest.mark.parametrize("fmt", ["json", "csv", "KLUE-JSON", ""])
def test_unknown_format(tmp_path, fmt):
    path = write(tmp_path, "train.csv", COMPETITION_CSV)
    with pytest.raises(DataError) as info:
        read_re(path, LABELS, fmt=fmt)
    assert str(info.value) == f"{path}:0: --format: unknown RE format {fmt!r} (choose from auto, competition, klue-json)"
    assert FORMATS == ("auto", "competition", "klue-json")


def test_missing_file(tmp_path):
    with pytest.raises(DataError) as info:
        read_re(tmp_path / "nope.csv", LABELS)
    assert str(info.value) == f"{tmp_path / 'nope.csv'}:0: no such file"


# --- skip_bad_rows, optional labels, optional columns ---------------------------------------------

def test_skip_bad_rows(tmp_path):
    content = (HEADER + GOOD
               + line("b", S, ent("비틀즈", 10, 12, "ORG"), GOOD_OBJ, "no_relation", "w")
               + "\n"  # a blank line still counts
               + line("c", S, GOOD_SUBJ, GOOD_OBJ, "org:members", "w")
               + line("d", S, GOOD_SUBJ, "oops", "no_relation", "w")
               + line("e", S, GOOD_SUBJ, GOOD_OBJ, "100", "w"))
    path = write(tmp_path, "train.csv", content)
    frame = read_re(path, LABELS, skip_bad_rows=True)
    assert frame["id"].tolist() == ["a", "c"] and frame["_row"].tolist() == [2, 5]
    assert frame["label_id"].tolist() == [0, 2] and frame["subj_start"].dtype == np.int64
    assert frame.attrs["skipped"] == [
        f"{path}:3: subject_entity: word '비틀즈' does not match the sentence at 10-12: ' 비틀'",
        f"{path}:6: object_entity: not an entity dict like {{'word': ..., 'start_idx': ..., 'end_idx': ..., "
        "'type': ...}: 'oops'",
        f"{path}:7: label: missing label (100 or empty)",
    ]
    # labels optional: the row labelled 100 stays, unlabelled
    frame = read_re(path, LABELS, require_labels=False, skip_bad_rows=True)
    assert frame["id"].tolist() == ["a", "c", "e"]
    assert frame["label"].tolist() == ["no_relation", "org:members", ""]
    assert frame["label_id"].tolist() == [0, 2, -1]
    assert len(frame.attrs["skipped"]) == 2


def test_skip_bad_rows_still_raises_on_file_problems(tmp_path):
    path = write(tmp_path, "x.csv", HEADER.replace("subject_entity", "subject") + GOOD)
    with pytest.raises(DataError) as info:
        read_re(path, LABELS, skip_bad_rows=True)
    assert str(info.value) == (f"{path}:1: subject_entity: missing column "
                               "(found: id, sentence, subject, object_entity, label, source)")
    path = write(tmp_path, "dup.csv", bad(id_="a", label="nope"))
    with pytest.raises(DataError) as info:
        read_re(path, LABELS, skip_bad_rows=True)
    assert str(info.value) == f"{path}:3: id: duplicate id 'a' (first at row 2)"
    path = write(tmp_path, "all.csv", HEADER + line("a", S, "x", GOOD_OBJ, "no_relation", "w")
                 + line("b", S, GOOD_SUBJ, GOOD_OBJ, "100", "w"))
    with pytest.raises(DataError) as info:
        read_re(path, LABELS, skip_bad_rows=True)
    assert str(info.value) == (f"{path}:2: subject_entity: not an entity dict like {{'word': ..., 'start_idx': ..., "
                               "'end_idx': ..., 'type': ...}: 'x' (and every other row is bad too: nothing left to read)")


def test_no_id_no_source_no_label_columns(tmp_path):
    content = "sentence,subject_entity,object_entity\n" + line(S, GOOD_SUBJ, GOOD_OBJ) + line(S + "!", GOOD_SUBJ, GOOD_OBJ)
    frame = read_re(write(tmp_path, "x.csv", content), LABELS, require_labels=False)
    assert list(frame.columns) == OUT_COLUMNS
    assert frame["id"].tolist() == ["0", "1"] and frame.attrs["has_ids"] is False
    assert frame["source"].tolist() == ["", ""] and frame["label"].tolist() == ["", ""]
    assert frame["label_id"].tolist() == [-1, -1] and frame["label_id"].dtype == np.int64


def test_other_label_lists(tmp_path):
    content = HEADER + line("a", S, GOOD_SUBJ, GOOD_OBJ, "sings", "w") + line("b", S, GOOD_SUBJ, GOOD_OBJ, "none", "w")
    frame = read_re(write(tmp_path, "x.csv", content), ["none", "sings"])
    assert frame["label"].tolist() == ["sings", "none"] and frame["label_id"].tolist() == [1, 0]


# --- label maps -----------------------------------------------------------------------------------

def test_competition_labels_equal_the_shared_label_map():
    path = re_file("dict_label_to_num.json")
    mapping = json.loads(path.read_text(encoding="utf-8"))
    assert list(COMPETITION_LABELS) == sorted(mapping, key=mapping.get)
    assert load_label_map(path) == list(COMPETITION_LABELS)
    assert len(COMPETITION_LABELS) == 30 and COMPETITION_LABELS[:3] == ("no_relation", "org:top_members/employees",
                                                                         "org:members")


def test_official_relation_list_order():
    labels = load_label_map(re_file("relation_list.json"))
    assert len(labels) == 30 and set(labels) == set(COMPETITION_LABELS)
    assert labels[:4] == ["no_relation", "org:dissolved", "org:founded", "org:place_of_headquarters"]
    assert labels[-1] == "per:title"


def test_load_label_map_forms(tmp_path):
    shuffled = write(tmp_path, "map.json", json.dumps({"b": 1, "c": 2, "a": 0}))
    assert load_label_map(shuffled) == ["a", "b", "c"]
    assert load_label_map(write(tmp_path, "list.json", '["x", "y"]')) == ["x", "y"]
    assert load_label_map(write(tmp_path, "ids.json", '[0, 1]')) == ["0", "1"]  # integers as names
    assert load_label_map(write(tmp_path, "labels.txt", "no_relation\norg:members\n")) == ["no_relation", "org:members"]


@pytest.mark.parametrize("content, message", [  # the label-file reader of data/labels.py, shared with classify
    ('{"a": 0, "b": 2}', "1: label ids must be 0..1 without gaps: no label has id 1 (ids given: 0, 2)"),
    ('{"a": 1, "b": 2}', "1: label ids must be 0..1 without gaps: no label has id 0 (ids given: 1, 2)"),
    ('{"a": 0, "b": 0}', "2: id 0 is given to both 'a' and 'b'"),
    ('{"a": 0, "a": 1}', "2: duplicate label 'a' (first at row 1)"),
    ('["a", "b", "a"]', "3: duplicate label 'a' (first at row 1)"),
    ('{"a": "0"}', "1: id '0' of label 'a' is not an integer"),
    ('{"a": true}', "1: id True of label 'a' is not an integer"),
    ('["a", 3.5]', "2: label 3.5 is not a non-empty name"),
    ('["a", ""]', "2: label '' is not a non-empty name"),
    ('{"relations": ["x", {"y": 1}]}', "2: label {'y': 1} is not a non-empty name"),
    ("[]", "1: no labels in the file"),
    ("{}", "1: no labels in the file"),
    ("7", "1: expected a JSON list of label names or an object name -> id"),
    ('{"a": 0,\n "b": }', "2: invalid JSON: Expecting value"),
], ids=["gap", "from-one", "same-id", "duplicate-key", "duplicate-name", "text-id", "bool-id", "number-name",
        "empty-name", "relations-object", "empty-list", "empty-object", "number", "invalid"])
def test_load_label_map_errors(tmp_path, content, message):
    path = write(tmp_path, "labels.json", content)
    with pytest.raises(DataError) as info:
        load_label_map(path)
    assert str(info.value) == f"{path}:{message}"
    assert isinstance(info.value, KluekitError)


def test_load_label_map_missing_file(tmp_path):
    with pytest.raises(DataError) as info:
        load_label_map(tmp_path / "labels.json")
    assert str(info.value) == f"{tmp_path / 'labels.json'}:0: no such file"
