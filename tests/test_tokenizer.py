"""``kluekit tokenizer train``: WordPiece, BPE and Unigram on shared Korean text, the same tokenizer from another
process, the special tokens tasks and masked-LM pre-training need, the held-out statistics, bad input; the
morpheme-aware WordPiece (``--morphemes``, kiwipiepy)."""

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
from kluekit.morphemes import cuts_of, segments
from kluekit.tokenizer import statistics


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, sts_train_csv):
    folder = tmp_path_factory.mktemp("tok-data")
    pd.read_csv(sts_train_csv).head(1500).to_csv(folder / "train.csv", index=False)
    return folder / "train.csv"


@pytest.fixture(scope="module")
def small_corpus(corpus):
    path = corpus.parent / "small.csv"
    pd.read_csv(corpus).head(800).to_csv(path, index=False)
    return path


def command(corpus, out, kind, *extra) -> list[str]:
    return [sys.executable, "-m", "kluekit", "tokenizer", "train", "--input", str(corpus), "--from-task", "sts",
            "--kind", kind, "--vocab-size", "1500", "--output-dir", str(out), *extra]


def train(corpus, out, kind, *extra) -> subprocess.CompletedProcess:
    """In a process of its own, as another user's machine would."""
    return subprocess.run(command(corpus, out, kind, *extra), capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)


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


class Token:  # the two fields of a kiwipiepy Token that the cuts use
    def __init__(self, start: int, length: int):
        self.start, self.len = start, length


def test_morpheme_cuts_and_segments_cover_the_raw_text():
    from tokenizers import implementations

    # 했었다 갔다: kiwi gives 하(0,1) 었(0,1) 었(1,1) 다(2,1) 가(4,1) 었(4,1) 다(5,1); 흐려: 흐리(0,2) 어(1,1)
    assert cuts_of("했었다 갔다", [Token(0, 1), Token(0, 1), Token(1, 1), Token(2, 1), Token(4, 1), Token(4, 1),
                                   Token(5, 1)]) == [1, 2, 5]
    assert cuts_of("흐려져", [Token(0, 2), Token(1, 1), Token(2, 1)]) == [2]  # no cut inside the merged 려
    assert cuts_of("abc d", [Token(0, 1), Token(2, 1), Token(4, 1)]) == [2]  # b, dropped by kiwi, stays with a
    text = "흐려져…남부지방 했었다"
    pipeline = implementations.BertWordPieceTokenizer(lowercase=False, strip_accents=False)._tokenizer  # kluekit's
    split, counts = segments([text], [[2, 3, 4, 6, 10, 11]], pipeline)
    assert split == ["흐려 져 … 남부 지방 했 었 다"]  # "…" splits the eojeol: 남부 starts a word for the tokenizer
    assert counts == {("흐려", True): 1, ("져", False): 1, ("…", True): 1, ("남부", True): 1, ("지방", False): 1,
                      ("했", True): 1, ("었", False): 1, ("다", False): 1}


def test_morpheme_wordpiece_loads_raw_text_respects_morphemes_and_reproduces(small_corpus, tmp_path, capsys):
    corpus, morphemes = small_corpus, ["--morphemes", "--vocab-size", "3000"]
    other = subprocess.Popen(command(corpus, tmp_path / "b", "wordpiece", *morphemes), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    base = ["tokenizer", "train", "--input", str(corpus), "--from-task", "sts", "--vocab-size", "3000"]
    assert cli.main([*base, "--output-dir", str(tmp_path / "plain")]) == 0  # while the other process runs
    assert cli.main([*base, *morphemes, "--output-dir", str(tmp_path / "a"), "--compare", str(tmp_path / "plain")]) == 0
    assert "morpheme-aligned" in capsys.readouterr().out
    assert other.wait(timeout=300) == 0, other.communicate()[1][-2000:]
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()
    record = json.loads((tmp_path / "a" / "tokenizer_stats.json").read_text())
    assert record["morphemes"].startswith("kiwipiepy 0.")
    ours, plain = record["figures"][str(tmp_path / "a")], record["figures"][str(tmp_path / "plain")]
    assert ours["vocab_size"] == plain["vocab_size"] == 3000 and ours["unk_rate"] < 0.01
    # the share of held-out eojeol whose pieces break at every kiwi morpheme boundary (0.95 vs 0.55 here)
    assert ours["morpheme_aligned_words"] > plain["morpheme_aligned_words"] + 0.2
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "a")  # raw text, no kiwipiepy at use time
    pieces = tokenizer.tokenize("숙소 위치는 찾기 쉽고 일반적인 한국의 반지하 숙소입니다.")
    assert tokenizer.unk_token not in pieces and "".join(p.removeprefix("##") for p in pieces) == \
        "숙소위치는찾기쉽고일반적인한국의반지하숙소입니다."
    assert pieces[:3] == ["숙소", "위치", "##는"]  # the noun and its particle, apart
    held = pd.read_csv(shared_path("data", "klue_sts", "klue_sts_val.csv"))["sentence1"].tolist()[:300]
    assert statistics(tokenizer, held)["unk_rate"] < 0.02
    ids = tokenizer("오늘 날씨", "내일 비")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids.count(tokenizer.sep_token_id) == 2


def test_morphemes_without_kiwipiepy_or_with_bpe_is_one_line(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "kiwipiepy", None)  # import kiwipiepy now raises ImportError
    args = ["tokenizer", "train", "--input", str(corpus), "--from-task", "sts", "--morphemes"]
    assert cli.main([*args, "--output-dir", str(tmp_path / "t1")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'kluekit[korean]'" in err
    assert cli.main([*args, "--kind", "bpe", "--output-dir", str(tmp_path / "t2")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--morphemes: only with --kind wordpiece, not bpe" in err
    assert not (tmp_path / "t1").exists() and not (tmp_path / "t2").exists()
