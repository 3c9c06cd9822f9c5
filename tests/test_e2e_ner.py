"""End to end on CPU for NER: a tiny BERT learns KLUE-NER character tags from subword tokens, and its
predictions come back as one tag per input character in the KLUE format, through ``kluekit.cli.main``."""

from __future__ import annotations

import json

import pytest

from conftest import shared_path
from kluekit import cli
from kluekit.data.ner import NER_LABELS, read_ner

TINY = ["--max-length", "128", "--batch-size", "16", "--eval-batch-size", "128", "--learning-rate", "2e-3"]


def kluekit(*args) -> None:
    assert cli.main([str(a) for a in args]) == 0


def head(path, sentences: int, out):
    """The first ``sentences`` sentences of a KLUE-NER file (its comment header kept)."""
    blocks = path.read_text(encoding="utf-8").split("\n\n")
    out.write_text("\n\n".join(blocks[:sentences]) + "\n\n", encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def ner_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ner")
    head(shared_path("data", "klue_ner", "klue-ner-v1.1_train_first5000.tsv"), 600, folder / "train.tsv")
    head(shared_path("data", "klue_ner", "klue-ner-v1.1_dev.tsv"), 200, folder / "dev.tsv")
    plain = [sentence for sentence in read_ner(folder / "dev.tsv")["sentence"]]
    (folder / "plain.txt").write_text("\n".join(plain[:20]) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def ner_model(tmp_path_factory, ner_files):
    """The tiny WordPiece + BERT, its vocabulary trained on NER text (so most syllables have a piece)."""
    from tiny_model import build_tiny_model

    texts = read_ner(ner_files / "train.tsv")["sentence"].tolist()
    return build_tiny_model(texts, tmp_path_factory.mktemp("tiny-ner") / "model", vocab_size=1500, dropout=0.0)


def train(model, files, out, *extra):
    kluekit("train", "ner", "--model", model, "--train", files / "train.tsv", "--dev", files / "dev.tsv",
            "--output-dir", out, *TINY, *extra)
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ner_model, ner_files):
    run = tmp_path_factory.mktemp("runs") / "ner"
    return run, train(ner_model, ner_files, run, "--epochs", 8)


def test_tiny_model_learns_entities(trained, ner_model, ner_files, tmp_path):
    untrained = train(ner_model, ner_files, tmp_path / "untrained", "--max-steps", 1, "--learning-rate", 0)["best"]
    learned = trained[1]["best"]
    assert set(learned) == {"entity_f1", "char_f1", "char_f1_with_o"}
    assert learned["char_f1"] > untrained["char_f1"] + 15, (learned, untrained)
    assert learned["entity_f1"] > untrained["entity_f1"] + 10, (learned, untrained)


def test_run_records_the_official_tags(trained):
    info = json.loads((trained[0] / "kluekit.json").read_text())
    assert info["labels"] == list(NER_LABELS)


def test_predictions_keep_every_input_character(trained, ner_files, tmp_path):
    kluekit("predict", "ner", "--model", trained[0], "--input", ner_files / "dev.tsv", "--output", tmp_path / "out.tsv")
    gold, pred = read_ner(ner_files / "dev.tsv"), read_ner(tmp_path / "out.tsv")
    assert pred["id"].tolist() == gold["id"].tolist()
    assert pred["sentence"].tolist() == gold["sentence"].tolist()  # spaces included, character for character
    assert all(len(t) == len(s) for t, s in zip(pred["tags"], pred["sentence"]))
    assert all(tag in NER_LABELS for tags in pred["tags"] for tag in tags)
    assert sum(tag != "O" for tags in pred["tags"] for tag in tags) > 100  # it does tag entities


def test_plain_text_input_and_unknown_characters(trained, ner_files, tmp_path):
    """One sentence per line; characters the tokenizer maps to [UNK] (here a rare CJK ideograph) still get a tag."""
    text = ner_files / "plain.txt"
    text.write_text(text.read_text(encoding="utf-8") + "𠀀𠀁 씨가 서울에 왔다\n", encoding="utf-8")
    kluekit("predict", "ner", "--model", trained[0], "--input", text, "--output", tmp_path / "out.tsv")
    pred = read_ner(tmp_path / "out.tsv")
    lines = text.read_text(encoding="utf-8").splitlines()
    assert pred["sentence"].tolist() == lines
    assert [len(tags) for tags in pred["tags"]] == [len(line) for line in lines]


def test_evaluate_writes_the_report(trained, ner_files, tmp_path):
    kluekit("evaluate", "ner", "--model", trained[0], "--input", ner_files / "dev.tsv", "--output-dir", tmp_path / "eval")
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["entity_f1"] == pytest.approx(trained[1]["best"]["entity_f1"], abs=0.01)
    assert (tmp_path / "eval" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert read_ner(tmp_path / "eval" / "predictions.tsv")["id"].tolist() == read_ner(ner_files / "dev.tsv")["id"].tolist()


def test_kfold_and_ensemble(ner_model, ner_files, tmp_path):
    kluekit("train", "ner", "--model", ner_model, "--train", ner_files / "dev.tsv", "--folds", 2,
            "--output-dir", tmp_path / "k", "--epochs", 1, *TINY)
    oof = json.loads((tmp_path / "k" / "oof" / "metrics.json").read_text())
    assert oof["rows"] == 200 and set(oof["oof"]) == {"entity_f1", "char_f1", "char_f1_with_o"}
    kluekit("ensemble", "--model", tmp_path / "k" / "fold-0", tmp_path / "k" / "fold-1", "--input", ner_files / "dev.tsv",
            "--output", tmp_path / "ens.tsv", "--evaluate")
    assert read_ner(tmp_path / "ens.tsv")["sentence"].tolist() == read_ner(ner_files / "dev.tsv")["sentence"].tolist()


def test_unknown_tag_in_dev_is_an_error(trained, ner_files, tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("## s1\t<서울:XX>\n서\tB-XX\n울\tI-XX\n", encoding="utf-8")
    assert cli.main(["evaluate", "ner", "--model", str(trained[0]), "--input", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.tsv:1" in err and "B-XX" in err


@pytest.mark.parametrize("slots", [3, 0])
def test_char_slots_train_and_predict(ner_model, ner_files, tmp_path, slots):
    """--char-slots 3: a head of 3 x 13 outputs learns and, reloaded from its run, predicts one tag per character;
    --char-slots 0 (first-character labels, one tag per token) likewise."""
    from transformers import AutoConfig

    run = tmp_path / "slots"
    metrics = train(ner_model, ner_files, run, "--epochs", 3, "--char-slots", slots)
    assert metrics["best"]["char_f1"] > 10, metrics["best"]
    assert AutoConfig.from_pretrained(run).num_labels == max(slots, 1) * len(NER_LABELS)
    assert json.loads((run / "kluekit.json").read_text())["task_options"]["char_slots"] == slots
    out = tmp_path / "pred.tsv"
    kluekit("predict", "ner", "--model", run, "--input", ner_files / "dev.tsv", "--output", out)
    predicted, given = read_ner(out), read_ner(ner_files / "dev.tsv")
    assert [len(t) for t in predicted["tags"]] == [len(s) for s in given["sentence"]]
    assert all(tag in NER_LABELS for tags in predicted["tags"] for tag in tags)


def test_one_char_slot_is_refused(ner_model, ner_files, tmp_path, capsys):
    assert cli.main(["train", "ner", "--model", str(ner_model), "--train", str(ner_files / "train.tsv"),
                     "--output-dir", str(tmp_path / "run"), "--char-slots", "1"]) == 2
    err = capsys.readouterr().err
    assert "--char-slots 1 would tag every character of a token alike" in err and "Traceback" not in err
