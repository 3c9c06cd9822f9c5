"""``kluekit tokenizer train``: WordPiece, BPE and Unigram on shared Korean text, the same tokenizer from another
process, the special tokens tasks and masked-LM pre-training need, the held-out statistics, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import shared_path
from transformers import AutoTokenizer

from kluekit import cli
from kluekit.tokenizer import statistics


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, sts_train_csv):
    folder = tmp_path_factory.mktemp("tok-data")
    pd.read_csv(sts_train_csv).head(1500).to_csv(folder / "train.csv", index=False)
    return folder / "train.csv"


def train(corpus, out, kind, *extra) -> subprocess.CompletedProcess:
    """In a process of its own, as another user's machine would."""
    return subprocess.run([sys.executable, "-m", "kluekit", "tokenizer", "train", "--input", str(corpus), "--from-task",
                           "sts", "--kind", kind, "--vocab-size", "1500", "--output-dir", str(out), *extra],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)


@pytest.mark.parametrize("kind, framed", [("wordpiece", ("[CLS]", "[SEP]", "[MASK]")), ("bpe", ("<s>", "</s>", "<mask>")),
                                          ("unigram", ("<s>", "</s>", "<mask>"))])
def test_a_tokenizer_trained_twice_in_two_processes_is_the_same(corpus, tmp_path, kind, framed):
    first, second = train(corpus, tmp_path / "a", kind), train(corpus, tmp_path / "b", kind)
    assert first.returncode == second.returncode == 0, first.stderr[-2000:]
    a, b = (json.loads((tmp_path / name / "tokenizer.json").read_text()) for name in ("a", "b"))
    if kind == "unigram":  # the same pieces; only the made-up scores of rare characters may come in another order
        assert {p for p, _ in a["model"]["vocab"]} == {p for p, _ in b["model"]["vocab"]}
    else:
        assert a == b
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "a")
    other = AutoTokenizer.from_pretrained(tmp_path / "b")
    text = pd.read_csv(corpus)["sentence1"].tolist()[:200]
    assert [tokenizer.tokenize(t) for t in text] == [other.tokenize(t) for t in text]
    pieces = tokenizer.convert_ids_to_tokens(tokenizer("오늘 날씨", "내일 비")["input_ids"])
    assert pieces[0] == framed[0] and pieces[-1] == framed[1] and pieces.count(framed[1]) >= 2
    assert tokenizer.mask_token == framed[2] and tokenizer.pad_token_id is not None
    stats = json.loads((tmp_path / "a" / "tokenizer_stats.json").read_text())["figures"][str(tmp_path / "a")]
    assert stats["held_out_documents"] == 150 and 1 < stats["pieces_per_word"] < 5 and stats["unk_rate"] < 0.05
    assert "pieces/word" in first.stdout


def test_statistics_against_hand_counts(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(shared_path("models", "e5-small-ko"))
    texts = ["오늘 날씨가 좋다", "가나다"]
    pieces = [tokenizer.tokenize(t) for t in texts]
    stats = statistics(tokenizer, texts)
    assert stats["pieces_per_word"] == pytest.approx(sum(map(len, pieces)) / 4, abs=1e-4)
    assert stats["unk_rate"] == 0 and stats["vocab_size"] == len(tokenizer)


def test_compare_and_bad_input(corpus, tmp_path, capsys):
    assert cli.main(["tokenizer", "train", "--input", str(corpus), "--from-task", "sts", "--vocab-size", "800",
                     "--output-dir", str(tmp_path / "tok"), "--compare", str(shared_path("models", "e5-small-ko"))]) == 0
    figures = json.loads((tmp_path / "tok" / "tokenizer_stats.json").read_text())["figures"]
    e5 = figures[str(shared_path("models", "e5-small-ko"))]
    assert e5["vocab_size"] == 32000 and e5["unk_rate"] < 0.01
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    capsys.readouterr()
    assert cli.main(["tokenizer", "train", "--input", str(empty), "--output-dir", str(tmp_path / "t2")]) == 2
    assert capsys.readouterr().err.strip().endswith(f"{empty}:1: file is empty")
    assert cli.main(["tokenizer", "train", "--input", str(corpus), "--from-task", "sts", "--held-out", "1",
                     "--output-dir", str(tmp_path / "t3")]) == 2
    assert "--held-out: 1.0 must be at least 0 and below 1" in capsys.readouterr().err
    assert not (tmp_path / "t2").exists() and not (tmp_path / "t3").exists()
