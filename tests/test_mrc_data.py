"""MRC readers (KorQuAD JSON, KLUE-MRC JSON, CSV/TSV), bad rows, windows and the span mapping back to characters."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import shared_path

from kluekit.data.mrc import read_mrc
from kluekit.errors import DataError, KluekitError
from kluekit.mrc_spans import NEG, best_spans, char_scores, encode_windows, span_texts, window_labels
from kluekit.tasks.mrc import MRCTask


@pytest.fixture(scope="module")
def korquad_path():
    return shared_path("data", "korquad", "KorQuAD_v1.0_dev.json")


@pytest.fixture(scope="module")
def korquad(korquad_path):
    return read_mrc(korquad_path)


def squad(questions, context="세종대왕은 1443년에 훈민정음을 창제하였다.", title="세종", **extra):
    return {"version": "test", "data": [{"title": title, "paragraphs": [{"context": context, "qas": questions}]}],
            **extra}


def write_json(tmp_path, data, name="mrc.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


# ---------------------------------------------------------------- readers

def test_korquad_dev_file(korquad, korquad_path):
    assert len(korquad) == 5774 and korquad["group"].nunique() == 140
    assert korquad.attrs["format"] == "korquad" and korquad.attrs["has_answers"] and not korquad.attrs["has_types"]
    first = korquad.iloc[0]
    assert first["id"] == "6548850-0-0" and first["title"] == "임종석" and first["_row"] == 1
    assert first["answers"] == ["1989년 2월 15일"] and first["answer_starts"] == [0]
    assert not korquad["is_impossible"].any()
    for context, answers, starts in zip(korquad["context"], korquad["answers"], korquad["answer_starts"]):
        assert all(context[s:s + len(a)] == a for a, s in zip(answers, starts))


def test_klue_mrc_json_with_unanswerable_questions(tmp_path):
    questions = [
        {"guid": "klue-mrc-1", "question": "훈민정음을 창제한 해는?", "question_type": 1, "is_impossible": False,
         "answers": [{"text": "1443년", "answer_start": 6}]},
        {"guid": "klue-mrc-2", "question": "한글날은 언제인가?", "question_type": 3, "is_impossible": True,
         "answers": [], "plausible_answers": [{"text": "1443년", "answer_start": 6}]},
    ]
    frame = read_mrc(write_json(tmp_path, squad(questions)))
    assert frame.attrs["format"] == "klue" and frame.attrs["has_types"]
    assert frame["id"].tolist() == ["klue-mrc-1", "klue-mrc-2"]
    assert frame["is_impossible"].tolist() == [False, True]
    assert frame["question_type"].tolist() == ["1", "3"]
    assert frame["answers"].tolist() == [["1443년"], []]


def test_csv_and_tsv_tables(tmp_path):
    frame = pd.DataFrame({"id": ["q1", "q2"], "context": ["서울은 한국의 수도이다.", "부산은 항구 도시이다."],
                          "question": ["한국의 수도는?", "항구 도시는?"], "answer_text": ["서울", "부산"],
                          "answer_start": [0, 0]})
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_csv(tmp_path / "a.tsv", index=False, sep="\t")
    for name in ("a.csv", "a.tsv"):
        read = read_mrc(tmp_path / name)
        assert read.attrs["format"] == "table"
        assert read["answers"].tolist() == [["서울"], ["부산"]] and read["answer_starts"].tolist() == [[0], [0]]
        assert read["_row"].tolist() == [2, 3]
        assert read["group"].tolist() == frame["context"].tolist()  # no title: one group per context
    frame.drop(columns=["answer_text", "answer_start"]).to_csv(tmp_path / "test.csv", index=False)
    unlabelled = read_mrc(tmp_path / "test.csv", require_labels=False)
    assert unlabelled["answers"].tolist() == [[], []] and not unlabelled.attrs["has_answers"]
    with pytest.raises(DataError, match="test.csv:1: answer_text: missing column"):
        read_mrc(tmp_path / "test.csv")


def test_answer_not_at_its_offset_is_a_row_error(tmp_path):
    good = {"id": "q1", "question": "창제한 해는?", "answers": [{"text": "1443년", "answer_start": 6}]}
    bad = {"id": "q2", "question": "무엇을 창제했나?", "answers": [{"text": "훈민정음", "answer_start": 12}]}
    path = write_json(tmp_path, squad([good, bad]))
    with pytest.raises(DataError) as error:
        read_mrc(path)
    assert str(error.value).startswith(f"{path}:2: answers: answer: '훈민정음' is not at answer_start 12")
    assert "it occurs at 13" in str(error.value) and "(question q2)" in str(error.value)
    skipped = read_mrc(path, skip_bad_rows=True)
    assert skipped["id"].tolist() == ["q1"]
    assert len(skipped.attrs["skipped"]) == 1 and skipped.attrs["skipped"][0].startswith(f"{path}:2:")
    with pytest.raises(DataError, match="is not at answer_start"):  # answers given to predict are checked too
        read_mrc(path, require_labels=False)


def test_csv_bad_rows_name_the_line_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("id,context,question,answer_text,answer_start\n"
                    "q1,서울은 수도이다.,수도는?,서울,0\n"
                    "q2,부산은 항구이다.,항구는?,부산,x\n"
                    "q3,대구는 도시이다.,,대구,0\n"
                    "q4,광주는 도시이다.,도시는?,광주,3\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.csv:3: answer_start: 'x' is not a character offset"):
        read_mrc(path)
    frame = read_mrc(path, skip_bad_rows=True)
    assert frame["id"].tolist() == ["q1"]
    assert [m.split(": ")[0] for m in frame.attrs["skipped"]] == [f"{path}:3", f"{path}:4", f"{path}:5"]
    assert "question: empty text" in frame.attrs["skipped"][1]


@pytest.mark.parametrize("data, message", [
    ({"data": [{"title": "x"}]}, 'data[0]: expected an article with a "paragraphs" list'),
    ([1, 2], 'expected a JSON object with a "data" list'),
    (squad([{"id": "q1", "question": "왜?", "answers": []}]), "no answer (mark an unanswerable"),
    (squad([{"id": "q1", "question": "왜?", "is_impossible": True, "answers": [{"text": "세종", "answer_start": 0}]}]),
     "is_impossible is true but answers are given"),
    (squad([{"id": "q1", "question": "누구?", "answers": [{"text": "세종", "answer_start": 0}]},
            {"id": "q1", "question": "누구?", "answers": [{"text": "세종", "answer_start": 0}]}]), "duplicate id 'q1'"),
])
def test_json_errors(tmp_path, data, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("(", r"\(")):
        read_mrc(path, fmt="squad" if isinstance(data, list) else "auto")


# ---------------------------------------------------------------- windows and offsets

@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


CONTEXT = " ".join(f"단어{i}" if i % 3 else f"문장{i}." for i in range(60))


def oracle(features, labels):
    """Raw logits that point at each window's label exactly."""
    raw = []
    for ids, (start, end) in zip(features["input_ids"], labels):
        logits = np.full((len(ids), 2), -5.0, np.float32)
        logits[start, 0] = logits[end, 1] = 5.0
        raw.append(logits)
    return raw


def decode(features, labels, contexts, **options):
    preds = char_scores(oracle(features, labels), features, [len(c) for c in contexts])
    found = best_spans(preds, **options)
    return span_texts(contexts, found["start"], found["end"])[0]


def test_long_context_becomes_overlapping_windows(tokenizer):
    features = encode_windows(["무엇인가?"], [CONTEXT], tokenizer, max_length=32, doc_stride=8, max_question_tokens=64)
    assert len(features["input_ids"]) > 3 and set(features["_example"]) == {0}
    assert all(len(ids) <= 32 for ids in features["input_ids"])
    spans = [o[o[:, 0] >= 0] for o in features["_offsets"]]
    assert spans[0][0, 0] == 0 and spans[-1][-1, 1] == len(CONTEXT)  # every character is in some window
    for before, after in zip(spans, spans[1:]):
        overlap = (after[:, 0] < before[-1, 1]).sum()
        assert overlap == 8  # doc-stride tokens shared by neighbouring windows
    assert all(features["_cls"][w] == 0 for w in range(len(spans)))


def test_labels_at_a_window_edge_in_the_overlap_and_past_the_first_window(tokenizer):
    features = encode_windows(["무엇인가?"], [CONTEXT], tokenizer, 32, 8, 64)
    offsets = features["_offsets"]
    first = offsets[0][offsets[0][:, 0] >= 0]
    edge_start, edge_end = first[-1]  # the last context token of window 0: also in window 1 (the overlap)
    labels = window_labels(offsets, features["_cls"], features["_example"], [int(edge_start)], [int(edge_end)])
    edge_token = int(np.flatnonzero(offsets[0][:, 0] == edge_start)[0])
    assert labels[0] == [edge_token, edge_token]
    in_second = int(np.flatnonzero(offsets[1][:, 0] == edge_start)[0])
    assert labels[1] == [in_second, in_second] and all(label == [0, 0] for label in labels[2:])
    assert decode(features, labels, [CONTEXT]) == [CONTEXT[edge_start:edge_end]]

    late = CONTEXT.index("문장54.")  # past the first windows: only the last ones hold it
    labels = window_labels(offsets, features["_cls"], features["_example"], [late], [late + 4])
    assert labels[0] == [0, 0] and any(label != [0, 0] for label in labels[2:])
    assert decode(features, labels, [CONTEXT]) == ["문장54"]


def test_an_answer_cut_by_a_window_boundary_is_no_answer_there(tokenizer):
    features = encode_windows(["무엇인가?"], [CONTEXT], tokenizer, 32, 8, 64)
    offsets = features["_offsets"]
    first = offsets[0][offsets[0][:, 0] >= 0]
    start = int(first[-3, 0])
    end = int(offsets[1][offsets[1][:, 0] >= 0][-1, 1])  # ends past window 0 (and inside window 1)
    labels = window_labels(offsets, features["_cls"], features["_example"], [start], [end])
    assert labels[0] == [0, 0] and labels[1][0] > 0 and labels[1][1] >= labels[1][0]


@pytest.mark.parametrize("context, answer", [
    ("그는 \"세종대왕\"이라고 불렸다.", "세종대왕"),
    ("정답(1443년)은 여기에, 있다", "1443년"),
    ("  앞에   공백이  많은   서울특별시  문장  ", "서울특별시"),
    ("쉼표,마침표.세종,", "세종"),
])
def test_spans_map_back_to_exact_characters(tokenizer, context, answer):
    start = context.index(answer)
    features = encode_windows(["무엇인가?"], [context], tokenizer, 64, 16, 64)
    labels = window_labels(features["_offsets"], features["_cls"], features["_example"], [start], [start + len(answer)])
    assert decode(features, labels, [context]) == [answer]


def test_korquad_answers_round_trip_through_windows(tokenizer, korquad):
    sample = korquad.iloc[:300].reset_index(drop=True)
    sample.attrs = dict(korquad.attrs)
    task = MRCTask()
    features = task.encode(sample, tokenizer, 128)
    assert len(features["input_ids"]) > len(sample)  # long contexts: several windows
    preds = task.outputs(oracle(features, features["labels"]), features)
    spans = task.spans(preds, sample["context"])
    for answer, gold, start, gold_start in zip(spans["answer"], sample["answers"], spans["start"],
                                               sample["answer_starts"]):
        assert gold[0] in answer and start <= gold_start[0] < start + len(answer)  # whole tokens around it
    assert task.metrics(preds, task.gold(sample))["f1"] > 95


def test_best_span_rules():
    scores = np.zeros((11, 3), np.float32)
    scores[:-1, :2] = NEG
    scores[:-1, 2] = 1.0  # every character starts a token
    scores[2, 0], scores[6, 1] = 3.0, 3.0  # best: 2..6
    scores[7, 0], scores[1, 1] = 9.0, 9.0  # higher, but end before start: invalid
    scores[-1, 0] = 1.0
    found = best_spans([scores], n_best=5, max_answer_length=10)
    assert (found["start"][0], found["end"][0], found["score"][0]) == (2, 7, 6.0)
    assert best_spans([scores], n_best=5, max_answer_length=3)["start"][0] != 2  # 5 tokens: too long
    scores[-1, 0] = 7.0
    assert best_spans([scores], 5, 10, allow_null=True)["start"][0] == -1  # null beats the span by 1
    assert best_spans([scores], 5, 10, allow_null=True, null_threshold=2.0)["start"][0] == 2
    assert best_spans([scores], 5, 10, allow_null=False)["start"][0] == 2


def test_questions_too_long_for_the_stride_are_refused(tokenizer):
    with pytest.raises(KluekitError, match="--doc-stride 30 must be smaller"):
        encode_windows(["아주 긴 질문 " * 5], [CONTEXT], tokenizer, 32, 30, 64)
    cut = encode_windows(["아주 긴 질문 " * 20], [CONTEXT], tokenizer, 64, 8, 10)
    assert all(seq.count(tokenizer.sep_token_id) == 2 for seq in cut["input_ids"])


def test_spans_are_decoded_once_per_predictions(monkeypatch):
    """evaluate asks for the spans of the same predictions three times: decoded once, and each caller gets its
    own copy (write_predictions inserts a column)."""
    import numpy as np

    from kluekit.tasks import mrc as mrc_module
    from kluekit.tasks.mrc import MRCTask

    calls = []

    def fake_best_spans(preds, *args):
        calls.append(preds)
        return {"start": np.zeros(len(preds), int), "end": np.ones(len(preds), int), "prob": np.ones(len(preds))}

    monkeypatch.setattr(mrc_module, "best_spans", fake_best_spans)
    task, preds, contexts = MRCTask(), np.empty(2, dtype=object), ["가나다", "라마바"]
    first = task.spans(preds, contexts)
    first.insert(0, "id", ["a", "b"])
    second = task.spans(preds, list(contexts))
    assert len(calls) == 1 and "id" not in second and second["answer"].tolist() == ["가", "라"]
    task.spans(np.empty(2, dtype=object), contexts)  # other predictions: decoded again
    task.spans(preds, ["다른", "문맥"])  # other contexts: again
    assert len(calls) == 3
