"""``kluekit answer``: retrieval over a stored QA set, the verifier's check and threshold, no-answer, the index kept
and reused, a generated fallback, and bad inputs as one line."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import shared_path
from kluekit import cli
from kluekit.answering import AnswerOptions, answer

QUESTIONS = ["오늘 너무 배고파", "배가 너무 고파요", "비가 많이 오네", "오늘 비 온대", "영화 보러 갈래?", "주말에 영화 볼까"]
ANSWERS = ["뭐 좀 드세요.", "뭐 좀 드세요.", "우산 챙기세요.", "우산 챙기세요.", "좋아요.", "좋아요."]


@pytest.fixture(scope="module")
def qa_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qa")
    path = folder / "faq.csv"
    pd.DataFrame({"Q": QUESTIONS, "A": ANSWERS}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def verifier(tmp_path_factory, tiny_model):
    """A tiny pair classifier (label 1: same answer) trained for a few steps on pairs of the QA set's questions."""
    folder = tmp_path_factory.mktemp("verifier")
    pairs = [(a, b, int(x == y)) for a, x in zip(QUESTIONS, ANSWERS) for b, y in zip(QUESTIONS, ANSWERS) if a != b]
    path = folder / "pairs.csv"
    pd.DataFrame(pairs, columns=["sentence1", "sentence2", "label"]).to_csv(path, index=False)
    run = folder / "run"
    assert cli.main(["train", "classify", "--model", str(tiny_model), "--train", str(path), "--text-column", "sentence1",
                     "--text-pair-column", "sentence2", "--label-column", "label", "--output-dir", str(run),
                     "--max-steps", "3", "--max-length", "32"]) == 0
    return run


def test_a_stored_question_is_found_and_answered(qa_set, tiny_biencoder):
    rows = answer(AnswerOptions(qa_set=str(qa_set), model=str(tiny_biencoder), question=["비가 많이 오네"],
                                threshold=0.99))
    assert rows[0]["answered"] and rows[0]["answer"] == "우산 챙기세요." and rows[0]["matched_question"] == "비가 많이 오네"
    assert rows[0]["retrieval_score"] == pytest.approx(1.0, abs=1e-4) and len(rows[0]["candidates"]) == 5


def test_nothing_passes_the_threshold(qa_set, tiny_biencoder, capsys):
    rows = answer(AnswerOptions(qa_set=str(qa_set), model=str(tiny_biencoder), question=["양자역학의 해석 문제"],
                                threshold=0.9999, top_n=3))
    assert not rows[0]["answered"] and rows[0]["answer"] == "" and not rows[0]["generated"]
    assert len(rows[0]["candidates"]) == 3 and "no stored answer passes" in capsys.readouterr().out


def test_the_verifier_decides(qa_set, tiny_biencoder, verifier, tmp_path):
    base = dict(qa_set=str(qa_set), model=str(tiny_biencoder), verifier=str(verifier), question=["배고파 죽겠어", "비 와?"],
                index_dir=str(tmp_path / "index"))
    every = answer(AnswerOptions(**base, threshold=0.0))
    assert all(row["answered"] for row in every)
    for row in every:
        scores = [c["verifier_score"] for c in row["candidates"]]
        assert all(0 <= s <= 1 for s in scores) and row["verifier_score"] == max(scores)
    output = tmp_path / "answers.csv"
    none = answer(AnswerOptions(**base, threshold=1.01, output=str(output)))
    assert not any(row["answered"] for row in none)
    table = pd.read_csv(output, keep_default_na=False)
    assert list(table.columns) == ["question_id", "question", "answered", "answer", "matched_question", "retrieval_score",
                                   "verifier_score", "generated", "candidates"]
    assert len(json.loads(table["candidates"][0])) == 5
    assert (tmp_path / "index" / "index.json").is_file()  # kept; the second call reused it


def test_bad_inputs_are_one_line(qa_set, tiny_biencoder, tiny_model, tmp_path, capsys):
    sts_run = tmp_path / "sts"
    train = tmp_path / "sts.csv"
    pd.DataFrame({"sentence1": QUESTIONS, "sentence2": QUESTIONS[::-1], "label": [1.0] * 6}).to_csv(train, index=False)
    assert cli.main(["train", "sts", "--model", str(tiny_model), "--train", str(train), "--output-dir", str(sts_run),
                     "--max-steps", "1", "--max-length", "32"]) == 0
    capsys.readouterr()
    base = ["answer", "--qa-set", str(qa_set), "--model", str(tiny_biencoder)]
    cases = [(base + ["--question", "배고파", "--answer-column", "reply"], "no column reply (columns: Q, A"),
             (base + ["--question", "배고파", "--verifier", str(sts_run)], "--positive-label: '1' is not one of"),
             (base, "give questions with either --question or --input"),
             (base + ["--question", " "], "--question 1: empty question")]
    for args, message in cases:
        assert cli.main([*args, "--output", str(tmp_path / "out.csv")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
        assert not (tmp_path / "out.csv").exists()


def test_generated_fallback_is_marked(qa_set, tiny_biencoder, tmp_path):
    from tiny_model import build_tiny_gpt2

    pairs = tmp_path / "chat.csv"
    pd.read_csv(shared_path("data", "chatbot", "ChatbotData.csv")).head(64).to_csv(pairs, index=False)
    gpt = build_tiny_gpt2(QUESTIONS * 20 + ANSWERS * 20, tmp_path / "gpt", vocab_size=300)
    run = tmp_path / "dialogue"
    assert cli.main(["train", "dialogue", "--model", str(gpt), "--train", str(pairs), "--output-dir", str(run),
                     "--max-steps", "2", "--max-length", "32"]) == 0
    rows = answer(AnswerOptions(qa_set=str(qa_set), model=str(tiny_biencoder), question=["양자역학"], threshold=2.0,
                                generator=str(run)))
    assert not rows[0]["answered"] and rows[0]["generated"] and isinstance(rows[0]["answer"], str)
