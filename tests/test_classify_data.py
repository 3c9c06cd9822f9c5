"""Classification readers (kluekit.data.classify), label files, and read_table's TSV quoting fallback.

The shared YNAT / NSMC / KLUE-NLI / KorNLI files are read in place from ../shared (never copied);
every other case is a small fixture written into tmp_path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kluekit.data.classify import (NLI_LABELS, PRESETS, YNAT_LABELS, Preset, label_ids, label_set,
                                   read_classification, read_label_file)
from kluekit.data.tables import read_table
from kluekit.errors import DataError

from conftest import shared_path


def write(tmp_path: Path, name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return path


def read_preset(name: str, path, **kwargs):
    preset = PRESETS[name]
    return read_classification(path, preset.text, preset.label, preset.text_pair, preset.id,
                               columns=preset.columns, **kwargs)


def raises(function, *args, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        function(*args, **kwargs)
    return info.value


# --- the shared sets, read in place ----------------------------------------------------------------

SHARED = {  # preset, file, rows, has ids
    "ynat-train": ("ynat", ("klue_ynat", "ynat_train.tsv"), 45678, False),
    "ynat-dev": ("ynat", ("klue_ynat", "ynat_dev.tsv"), 9107, False),
    "nsmc-train": ("nsmc", ("nsmc", "ratings_train_first5000.txt"), 5000, True),
    "nsmc-test": ("nsmc", ("nsmc", "ratings_test.txt"), 50000, True),
    "klue-nli-dev": ("klue-nli", ("klue_nli", "klue-nli-v1.1_dev.json"), 3000, True),
    "kornli-dev": ("kornli", ("kornli", "xnli.dev.ko.tsv"), 2490, False),
    "kornli-test": ("kornli", ("kornli", "xnli.test.ko.tsv"), 5010, False),
}


@pytest.fixture(scope="module")
def shared_frames():
    cache = {}

    def get(key):
        if key not in cache:
            preset, parts, _, _ = SHARED[key]
            cache[key] = read_preset(preset, shared_path("data", *parts))
        return cache[key]
    return get


@pytest.mark.parametrize("key", list(SHARED))
def test_every_preset_reads_its_shared_files(shared_frames, key):
    name, _, rows, has_ids = SHARED[key]
    preset = PRESETS[name]
    frame = shared_frames(key)
    pair = ["text_pair"] if preset.text_pair else []
    assert list(frame.columns) == ["id", "text", *pair, "label", "_row"]
    assert len(frame) == rows
    assert frame.attrs["has_ids"] is has_ids and frame.attrs["has_labels"] is True
    assert frame["id"].is_unique and (frame["id"] != "").all()
    if not has_ids:
        assert frame["id"].tolist()[:3] == ["0", "1", "2"]
    # every label is one of the preset's official labels, and every official label occurs
    assert set(frame["label"]) == set(preset.labels)
    ids = label_ids(frame, preset.labels, "x")
    assert ids.dtype == np.int64 and ids.min() == 0 and ids.max() == len(preset.labels) - 1
    assert [preset.labels[i] for i in ids[:5]] == frame["label"].tolist()[:5]


def test_presets_fix_the_official_orders_and_metrics():
    assert set(PRESETS) == {"ynat", "nsmc", "klue-nli", "kornli"}
    assert PRESETS["ynat"].labels == ("IT과학", "경제", "사회", "생활문화", "세계", "스포츠", "정치") == YNAT_LABELS
    assert PRESETS["klue-nli"].labels == PRESETS["kornli"].labels == ("entailment", "neutral", "contradiction")
    assert NLI_LABELS == ("entailment", "neutral", "contradiction")
    assert PRESETS["nsmc"].labels == ("0", "1")
    assert {name: p.metric for name, p in PRESETS.items()} == {
        "ynat": "macro_f1", "nsmc": "accuracy", "klue-nli": "accuracy", "kornli": "accuracy"}
    assert [name for name, p in PRESETS.items() if p.text_pair] == ["klue-nli", "kornli"]
    assert all(p.description and "\n" not in p.description for p in PRESETS.values())
    with pytest.raises(ValueError, match="metric 'f1' is not one of macro_f1, accuracy"):
        Preset(text="t", metric="f1")
    with pytest.raises(AttributeError):
        PRESETS["ynat"].metric = "accuracy"  # frozen


def test_ynat_train_label_set_is_the_official_order(shared_frames):
    assert label_set(shared_frames("ynat-train")["label"]) == list(YNAT_LABELS)


def test_ynat_train_title_with_a_tab_reads_as_two_fields(shared_frames):
    # the file CSV-quotes this title because it ends in a tab; the tab is kept inside the text
    frame = shared_frames("ynat-train")
    row = frame[frame["_row"] == 42920].iloc[0]
    assert row["label"] == "정치"
    assert row["text"] == "朴대통령 경기침체·저성장 극복에 여성금융인 역할중요\t"
    assert frame["_row"].tolist()[-1] == 45679  # one record per line: row numbers stay line numbers
    assert frame["_row"].is_monotonic_increasing and frame["_row"].diff().dropna().eq(1).all()


def test_ynat_dev_has_no_header(shared_frames):
    frame = shared_frames("ynat-dev")
    assert frame.attrs["header"] is False
    first = frame.iloc[0]
    assert (first["label"], first["text"], first["_row"]) == ("사회", "5억원 무이자 융자는 되고 7천만원 이사비는 안된다", 1)
    assert frame.attrs["columns"] == {"label": "label", "text": "text"}


def test_nsmc_test_keeps_empty_documents_and_bare_quotes(shared_frames):
    frame = shared_frames("nsmc-test")
    assert frame.attrs["empty_text_rows"] == [5748, 7901, 27099]
    assert frame.loc[frame["_row"].isin([5748, 7901, 27099]), "id"].tolist() == ["402110", "5026896", "511097"]
    assert (frame.loc[frame["_row"].isin([5748, 7901, 27099]), "text"] == "").all()
    row = frame[frame["_row"] == 16].iloc[0]  # quotes read as text (QUOTE_NONE), not as CSV quoting
    assert row["id"] == "9037756" and row["label"] == "0"
    assert row["text"].startswith('"""스토리, 연출, 연기') and row["text"].endswith('빠져있겠지?"""')
    assert frame.attrs["columns"] == {"text": "document", "label": "label", "id": "id"}


def test_klue_nli_json_pairs(shared_frames):
    frame = shared_frames("klue-nli-dev")
    first = frame.iloc[0]
    assert first["id"] == "klue-nli-v1_dev_00000" and first["label"] == "contradiction"
    assert first["text"] == "흡연자분들은 발코니가 있는 방이면 발코니에서 흡연이 가능합니다."
    assert first["text_pair"] == "어떤 방에서도 흡연은 금지됩니다."
    assert frame.attrs["format"] == "json" and frame["_row"].tolist()[:2] == [1, 2]


def test_kornli_bare_quotes_are_text(shared_frames):
    first = shared_frames("kornli-dev").iloc[0]
    assert first["text"] == '그리고 그가 말했다, "엄마, 저 왔어요."'
    assert first["label"] == "neutral"


# --- headers, column names -------------------------------------------------------------------------

def test_headerless_file_is_read_with_positional_columns(tmp_path):
    path = write(tmp_path, "dev.tsv", "사회\t첫 제목\n\n경제\t둘째 제목\n")
    frame = read_classification(path, "text", "label", columns=["label", "text"])
    assert frame["label"].tolist() == ["사회", "경제"]
    assert frame["text"].tolist() == ["첫 제목", "둘째 제목"]
    assert frame["_row"].tolist() == [1, 3]
    assert frame.attrs["header"] is False
    # with a header, the same columns are not re-read positionally
    with_header = read_classification(write(tmp_path, "train.tsv", "label\ttext\n사회\t첫 제목\n"), "text", "label",
                                      columns=["label", "text"])
    assert with_header["label"].tolist() == ["사회"] and with_header.attrs["header"] is True


def test_missing_column_names_what_was_expected_and_what_the_file_has(tmp_path):
    path = write(tmp_path, "x.tsv", "id\treview\tlabel\n1\t좋다\t1\n")
    error = raises(read_classification, path, "document", "label")
    assert str(error) == f"{path}:1: document: missing column (expected the text column 'document'; found: id, review, label)"
    error = raises(read_classification, path, "review", "label", text_pair="hypothesis")
    assert str(error) == (f"{path}:1: hypothesis: missing column (expected the second text column 'hypothesis'; "
                          "found: id, review, label)")
    # positional names given, but the file has 3 fields, not 2: the header stays a header
    error = raises(read_classification, path, "text", "label", columns=["label", "text"])
    assert str(error) == (f"{path}:1: text: missing column (expected the text column 'text'; found: id, review, label; "
                          "a file without a header needs 2 fields: label, text)")
    error = raises(read_classification, path, "review", "gold")
    assert str(error) == f"{path}:1: gold: missing column (expected the label column 'gold'; found: id, review, label)"


def test_columns_match_exactly_first_then_ignoring_case(tmp_path):
    frame = read_classification(write(tmp_path, "a.csv", "ID,Text,LABEL\n7,가,x\n"), "text", "label", id_column="id")
    assert frame[["id", "text", "label"]].values.tolist() == [["7", "가", "x"]]
    assert frame.attrs["columns"] == {"text": "Text", "label": "LABEL", "id": "ID"}
    frame = read_classification(write(tmp_path, "b.csv", "Text,text,label\n가,나,x\n"), "text", "label")
    assert frame["text"].tolist() == ["나"]  # the exact name wins
    path = write(tmp_path, "c.csv", "Text,TEXT,label\n가,나,x\n")
    assert str(raises(read_classification, path, "text", "label")) == (
        f"{path}:1: text: several columns match ignoring case: Text, TEXT")


def test_ids_from_a_column_or_row_numbers(tmp_path):
    frame = read_classification(write(tmp_path, "a.csv", "text,label\n가,x\n나,y\n"), "text", "label", id_column="id")
    assert frame["id"].tolist() == ["0", "1"] and frame.attrs["has_ids"] is False
    path = write(tmp_path, "dup.csv", "key,text,label\na,가,x\nb,나,y\na,다,x\n")
    assert str(raises(read_classification, path, "text", "label", id_column="key")) == (
        f"{path}:4: key: duplicate id 'a' (first at row 2)")
    path = write(tmp_path, "empty.csv", "key,text,label\na,가,x\n ,나,y\n")
    assert str(raises(read_classification, path, "text", "label", id_column="key")) == f"{path}:3: key: empty text"


# --- labels ----------------------------------------------------------------------------------------

def test_empty_label_is_an_error_unless_labels_are_optional(tmp_path):
    path = write(tmp_path, "test.tsv", "text\tlabel\n가\t x \n나\t\n다\t \n")
    assert str(raises(read_classification, path, "text", "label")) == f"{path}:3: label: missing label"
    frame = read_classification(path, "text", "label", require_labels=False)
    assert frame["label"].tolist() == ["x", "", ""]  # stripped
    assert frame.attrs["has_labels"] is False
    # no label column at all
    path = write(tmp_path, "blind.tsv", "text\n가\n나\n")
    assert str(raises(read_classification, path, "text", "label")).startswith(f"{path}:1: label: missing column")
    frame = read_classification(path, "text", "label", require_labels=False)
    assert frame["label"].tolist() == ["", ""] and frame.attrs["has_labels"] is False
    assert list(frame.columns) == ["id", "text", "label", "_row"]


def test_empty_texts_are_kept_and_listed(tmp_path):
    path = write(tmp_path, "nli.tsv", "sentence1\tsentence2\tgold_label\n가\t나\tneutral\n \t나\tneutral\n"
                                      "가\t\u3000\tentailment\n")
    frame = read_preset("kornli", path)
    assert len(frame) == 3
    assert frame.attrs["empty_text_rows"] == [3, 4]
    assert frame["text_pair"].tolist() == ["나", "나", "\u3000"]


def test_label_set_orders():
    assert label_set(["10", "2", "1", "2", " 1 "]) == ["1", "2", "10"]
    assert label_set(["b", "a", "10", "2", "a"]) == ["10", "2", "a", "b"]
    assert label_set(["-1", "0", "1", ""]) == ["-1", "0", "1"]
    assert label_set([]) == []


def test_unknown_label_names_row_label_and_known_labels(tmp_path):
    path = write(tmp_path, "x.tsv", "document\tlabel\n가\t1\n\n나\t2\n")
    frame = read_preset("nsmc", path)
    error = raises(label_ids, frame, PRESETS["nsmc"].labels, path)
    assert str(error) == f"{path}:4: label: unknown label '2' (known: 0, 1)"
    many = [f"c{i}" for i in range(30)]
    error = raises(label_ids, frame, many, path)
    assert str(error) == f"{path}:2: label: unknown label '1' (known: {', '.join(many[:20])}, ... (30 in all))"
    blind = read_preset("nsmc", write(tmp_path, "blind.tsv", "document\tlabel\n가\t\n"), require_labels=False)
    assert str(raises(label_ids, blind, ["0", "1"], "blind.tsv")) == "blind.tsv:2: label: missing label"
    assert label_ids(read_preset("nsmc", write(tmp_path, "ok.tsv", "document\tlabel\n가\t1\n나\t0\n")),
                     [0, 1], "ok.tsv").tolist() == [1, 0]


def test_label_errors_name_the_files_column(tmp_path):
    path = write(tmp_path, "x.json", json.dumps([{"premise": "가", "hypothesis": "나", "gold_label": "maybe"}]))
    frame = read_preset("klue-nli", path)
    assert str(raises(label_ids, frame, NLI_LABELS, path)) == (
        f"{path}:1: gold_label: unknown label 'maybe' (known: entailment, neutral, contradiction)")


def test_label_files_in_three_forms(tmp_path):
    assert read_label_file(write(tmp_path, "a.json", '["IT과학", "경제", "사회"]')) == ["IT과학", "경제", "사회"]
    assert read_label_file(write(tmp_path, "b.json", '{"neutral": 1, "contradiction": 2, "entailment": 0}')) == list(
        NLI_LABELS)
    assert read_label_file(write(tmp_path, "c.json", '{"1": "긍정", "0": "부정"}')) == ["부정", "긍정"]  # id2label
    assert read_label_file(write(tmp_path, "labels.txt", "\n 세계 \r\n\n스포츠\n정치\n")) == ["세계", "스포츠", "정치"]
    assert read_label_file(write(tmp_path, "d.json", "[0, 1]")) == ["0", "1"]
    assert read_label_file(write(tmp_path, "r.json", '{"relations": ["b", "a"]}')) == ["b", "a"]  # KLUE's form


@pytest.mark.parametrize("name, content, message", [
    ("dup.json", '["a", "b", "a"]', "3: duplicate label 'a' (first at row 1)"),
    ("dup.txt", "a\n\nb\na\n", "4: duplicate label 'a' (first at row 1)"),
    ("gap.json", '{"a": 0, "b": 2}', "1: label ids must be 0..1 without gaps: no label has id 1 (ids given: 0, 2)"),
    ("start.json", '{"a": 1, "b": 2}', "1: label ids must be 0..1 without gaps: no label has id 0 (ids given: 1, 2)"),
    ("same-id.json", '{"a": 0, "b": 0}', "2: id 0 is given to both 'a' and 'b'"),
    ("same-key.json", '{"a": 0, "a": 1}', "2: duplicate label 'a' (first at row 1)"),  # not silently the last
    ("float-id.json", '{"a": 0, "b": 1.0}', "2: id 1.0 of label 'b' is not an integer"),
    ("empty-name.json", '["a", " "]', "2: label ' ' is not a non-empty name"),
    ("null-name.json", '["a", null]', "2: label None is not a non-empty name"),
    ("empty.json", "[]", "1: no labels in the file"),
    ("scalar.json", '"a"', "1: expected a JSON list of label names or an object name -> id"),
    ("bad.json", '["a",', "1: invalid JSON: Expecting value"),
    ("blank.txt", " \n\n", "1: file is empty"),
])
def test_label_file_errors(tmp_path, name, content, message):
    path = write(tmp_path, name, content)
    assert str(raises(read_label_file, path)) == f"{path}:{message}"


# --- formats and encodings -------------------------------------------------------------------------

def test_json_lines_rows_are_line_numbers(tmp_path):
    records = [{"guid": "a", "premise": "가", "hypothesis": "나", "gold_label": "neutral"},
               {"guid": "b", "premise": "다", "hypothesis": "", "gold_label": " entailment "}]
    path = write(tmp_path, "x.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in records).replace("\n", "\n\n"))
    frame = read_preset("klue-nli", path)
    assert frame[["id", "text", "text_pair", "label"]].values.tolist() == [
        ["a", "가", "나", "neutral"], ["b", "다", "", "entailment"]]
    assert frame["_row"].tolist() == [1, 3]
    assert frame.attrs["empty_text_rows"] == [3] and frame.attrs["format"] == "json"
    path = write(tmp_path, "y.jsonl", json.dumps(records[0]) + "\n" + json.dumps(dict(records[1], guid="a")) + "\n")
    assert str(raises(read_preset, "klue-nli", path)) == f"{path}:2: guid: duplicate id 'a' (first at row 1)"


def test_json_numbers_as_labels(tmp_path):
    path = write(tmp_path, "x.json", json.dumps([{"id": 1, "document": "가", "label": 1},
                                                 {"id": 2, "document": "나", "label": 0}]))
    frame = read_preset("nsmc", path, fmt="json")
    assert frame["label"].tolist() == ["1", "0"] and frame["id"].tolist() == ["1", "2"]


@pytest.mark.parametrize("encoding, prefix", [("cp949", b""), ("utf-8", b"\xef\xbb\xbf")], ids=["cp949", "bom"])
def test_cp949_and_bom_files(tmp_path, encoding, prefix):
    content = "label,text\n경제,환율 급등에 수출 기업 \"웃음\"\n사회,\"서울, 첫눈\"\n"
    path = write(tmp_path, "x.csv", prefix + content.encode(encoding))
    frame = read_preset("ynat", path)
    assert frame["label"].tolist() == ["경제", "사회"]
    assert frame["text"].tolist() == ['환율 급등에 수출 기업 "웃음"', "서울, 첫눈"]
    assert frame.attrs["columns"] == {"text": "text", "label": "label"}  # no BOM in the first column's name


def test_format_option(tmp_path):
    path = write(tmp_path, "x.txt", "label\ttext\n경제\t가, 나\n")
    assert read_preset("ynat", path, fmt="tsv")["text"].tolist() == ["가, 나"]
    assert read_preset("ynat", path)["text"].tolist() == ["가, 나"]  # detected as TSV
    error = raises(read_preset, "ynat", path, fmt="xlsx")
    assert str(error) == f"{path}:0: --format: unknown classification format 'xlsx' (choose from auto, csv, tsv, json)"


# --- read_table: TSV quoting fallback, headers, names ----------------------------------------------

def test_tsv_with_a_quoted_tab_falls_back_to_csv_quoting(tmp_path):
    path = write(tmp_path, "x.tsv", 'label\ttext\n정치\t"제목\t"\n경제\t"따옴표 ""안"" 제목"\n\n사회\t끝\n')
    frame = read_table(path)
    assert frame["text"].tolist() == ["제목\t", '따옴표 "안" 제목', "끝"]
    assert frame["_row"].tolist() == [2, 3, 5]


def test_tsv_quoted_cell_spanning_lines_rows_are_start_lines(tmp_path):
    # a row's number is the line where it starts, past the lines of an earlier multi-line cell
    path = write(tmp_path, "x.tsv", 'label\ttext\n정치\t"둘째\t줄\n이어짐"\n경제\t다음\n')
    frame = read_table(path)
    assert frame["text"].tolist() == ["둘째\t줄\n이어짐", "다음"]
    assert frame["_row"].tolist() == [2, 4]


def test_tsv_with_bare_quotes_is_read_without_quoting(tmp_path):
    content = 'sentence1\tsentence2\tgold_label\n"그는 "좋다"라고 말했다.\t그는 6" 상자를 샀다\tneutral\n"열린\t닫힌"\tentailment\n'
    frame = read_table(write(tmp_path, "x.tsv", content))
    assert frame["sentence1"].tolist() == ['"그는 "좋다"라고 말했다.', '"열린']
    assert frame["sentence2"].tolist() == ['그는 6" 상자를 샀다', '닫힌"']


@pytest.mark.parametrize("content, line", [
    ('a\tb\n"x\ty\t"z\tw\n1\t2\n', 2),  # quoting gives "x\ty\t"z: a malformed quoted cell
    ('a\tb\n1\t2\n3\t4\t5\n', 3),  # an extra field that quoting does not explain
    ('a\tb\n1\t"2\n3\t4\t5\n', 3),  # the quote never closes
], ids=["malformed-quote", "extra-field", "unclosed-quote"])
def test_tsv_fallback_only_when_quoting_explains_the_line(tmp_path, content, line):
    path = write(tmp_path, "x.tsv", "\n" + content)
    error = raises(read_table, path)
    assert error.row == line + 1  # the blank first line counts
    assert str(error).startswith(f"{path}:{line + 1}: cannot parse as TSV: ")


def test_extra_field_on_the_first_data_line_is_an_error_not_an_index(tmp_path):
    # pandas would take the extra leading field for an index and shift the columns
    path = write(tmp_path, "x.csv", "a,b\nx,y,z\nq,r\n")
    error = raises(read_table, path)
    assert str(error) == f"{path}:2: cannot parse as CSV: Expected 2 fields in line 2, saw 3"
    frame = read_table(write(tmp_path, "x.tsv", 'a\tb\nx\t"y\tz"\nq\tr\n'))
    assert frame[["a", "b"]].values.tolist() == [["x", "y\tz"], ["q", "r"]]


def test_read_table_without_a_header(tmp_path):
    path = write(tmp_path, "x.tsv", "가\t1\n\n나\t2\n")
    frame = read_table(path, header=False)
    assert list(frame.columns) == ["0", "1", "_row"]
    assert frame[["0", "1"]].values.tolist() == [["가", "1"], ["나", "2"]] and frame["_row"].tolist() == [1, 3]
    frame = read_table(path, names=["text", "label"])
    assert list(frame.columns) == ["text", "label", "_row"] and frame["text"].tolist() == ["가", "나"]
    frame = read_table(path, names=["text", "label", "id"])  # a missing trailing column is ''
    assert frame["id"].tolist() == ["", ""]
    assert str(raises(read_table, path, names=["text"])) == (
        f"{path}:1: has 2 fields but 1 column names were given (text)")
    with pytest.raises(ValueError, match="column names must differ"):
        read_table(path, names=["a", "a"])
