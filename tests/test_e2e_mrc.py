"""End to end on CPU for extractive QA, through ``kluekit.cli.main``: a tiny BERT learns to find the year a
question asks for in contexts longer than one window (and that unanswerable questions have none), then
predicts, evaluates, runs through ONNX, k-fold (by article) and an ensemble, and refuses bad input."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pandas as pd
import pytest

from conftest import shared_path
from kluekit import cli
from kluekit.kfold import fold_indices
from kluekit.tasks.mrc import MRCTask

TINY = ["--max-length", "64", "--doc-stride", "16", "--batch-size", "16", "--eval-batch-size", "64",
        "--learning-rate", "3e-3"]


def kluekit(*args) -> None:
    assert cli.main([str(a) for a in args]) == 0


def synthetic(words: list[str], articles: int, seed: int) -> dict:
    """KLUE-MRC-style JSON: each context is 20-60 Korean words with (in 3 of 4 contexts) one year in it;
    two questions per context, unanswerable (question type 3) where the context holds no year."""
    rng = random.Random(seed)
    data = []
    for a in range(articles):
        filler = [rng.choice(words) for _ in range(rng.randint(20, 60))]
        answer, start = None, -1
        if a % 4:
            answer, position = f"{rng.randint(1000, 2099)}년", rng.randint(0, len(filler))
            start = len(" ".join(filler[:position])) + (1 if position else 0)
            filler[position:position] = [answer]
        context = " ".join(filler)
        qas = [{"guid": f"q{seed}-{a}-{k}", "question": rng.choice(["몇 년인가?", "언제인가?", "그 해는?"]),
                "question_type": 1 if answer else 3, "is_impossible": answer is None,
                "answers": [{"text": answer, "answer_start": start}] if answer else []} for k in range(2)]
        data.append({"title": f"article-{seed}-{a}", "paragraphs": [{"context": context, "qas": qas}]})
    return {"version": "synthetic", "data": data}


@pytest.fixture(scope="module")
def mrc_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mrc")
    korquad = json.loads(shared_path("data", "korquad", "KorQuAD_v1.0_dev.json").read_text(encoding="utf-8"))
    words = sorted({w for article in korquad["data"][:10] for p in article["paragraphs"]
                    for w in p["context"].split() if re.fullmatch("[가-힣]{2,4}", w)})
    for name, articles, seed in (("train", 120, 1), ("dev", 40, 2)):
        (folder / f"{name}.json").write_text(json.dumps(synthetic(words, articles, seed), ensure_ascii=False),
                                             encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def mrc_model(tmp_path_factory, mrc_files):
    from tiny_model import build_tiny_model

    data = json.loads((mrc_files / "train.json").read_text(encoding="utf-8"))
    texts = [p["context"] for a in data["data"] for p in a["paragraphs"]] + ["몇 년인가? 언제인가? 그 해는?"]
    return build_tiny_model(texts, tmp_path_factory.mktemp("tiny-mrc") / "model", vocab_size=1500, dropout=0.0)


def train(model, files, out, *extra):
    kluekit("train", "mrc", "--model", model, "--train", files / "train.json", "--dev", files / "dev.json",
            "--output-dir", out, *TINY, *extra)
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mrc_model, mrc_files):
    run = tmp_path_factory.mktemp("runs") / "mrc"
    return run, train(mrc_model, mrc_files, run, "--epochs", 2)


def test_tiny_model_learns_to_answer(trained, mrc_model, mrc_files, tmp_path):
    untrained = train(mrc_model, mrc_files, tmp_path / "untrained", "--max-steps", 1, "--learning-rate", 0)["best"]
    learned = trained[1]["best"]
    assert set(learned) == {"exact_match", "f1", "klue_exact_match", "rouge_w"}
    assert learned["rouge_w"] > untrained["rouge_w"] + 40, (learned, untrained)
    assert learned["klue_exact_match"] > 70, learned


def test_run_records_the_resolved_options(trained):
    info = json.loads((trained[0] / "kluekit.json").read_text())
    assert info["task_options"]["null_answers"] == "on"  # the training file has unanswerable questions
    assert info["task_options"]["metric"] == "rouge_w"  # a KLUE-MRC-format file
    config = json.loads((trained[0] / "config.json").read_text())
    assert config["architectures"] == ["BertForQuestionAnswering"]


def test_predict_writes_the_submission_json_and_the_csv(trained, mrc_files, tmp_path):
    kluekit("predict", "mrc", "--model", trained[0], "--input", mrc_files / "dev.json", "--output", tmp_path / "out.json")
    answers = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    table = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    data = json.loads((mrc_files / "dev.json").read_text(encoding="utf-8"))
    qas = [(qa, p["context"]) for a in data["data"] for p in a["paragraphs"] for qa in p["qas"]]
    assert list(answers) == [qa["guid"] for qa, _ in qas] == table["id"].tolist()
    assert list(table.columns) == ["id", "answer", "score", "start", "end"]
    assert table["answer"].tolist() == list(answers.values())
    for (qa, context), row in zip(qas, table.itertuples()):
        assert row.answer == (context[row.start:row.end] if row.start >= 0 else "")
        assert 0 <= row.score <= 1
    nulls = [answers[qa["guid"]] == "" for qa, _ in qas if qa["is_impossible"]]
    assert np.mean(nulls) > 0.7  # unanswerable questions: mostly no answer


def test_evaluate_writes_the_report(trained, mrc_files, tmp_path):
    kluekit("evaluate", "mrc", "--model", trained[0], "--input", mrc_files / "dev.json", "--output-dir", tmp_path / "ev")
    folder = tmp_path / "ev"
    report = json.loads((folder / "metrics.json").read_text())
    assert report["rouge_w"] == pytest.approx(trained[1]["best"]["rouge_w"], abs=0.01)
    assert (folder / "answer_lengths.png").read_bytes()[:4] == b"\x89PNG"
    types = pd.read_csv(folder / "per_type.csv")
    assert types["question_type"].astype(str).tolist() == ["1", "3", "all"] and types["n"].tolist() == [60, 20, 80]
    worst = (folder / "worst.txt").read_text(encoding="utf-8")
    assert worst.startswith("30 worst of 80") and "question:" in worst and "gold:" in worst and "predicted:" in worst
    assert len(json.loads((folder / "predictions.json").read_text(encoding="utf-8"))) == 80
    table = pd.read_csv(folder / "predictions.csv", keep_default_na=False)
    assert {"question", "answers", "pred_answer", "score", "start", "end"} <= set(table.columns)


def test_onnx_runtime_gives_the_same_answers(trained, mrc_files, tmp_path):
    pytest.importorskip("onnxruntime")
    for runtime in ("torch", "onnx"):
        kluekit("predict", "mrc", "--model", trained[0], "--input", mrc_files / "dev.json", "--runtime", runtime,
                "--output", tmp_path / f"{runtime}.json")
    torch_answers = json.loads((tmp_path / "torch.json").read_text(encoding="utf-8"))
    onnx_answers = json.loads((tmp_path / "onnx.json").read_text(encoding="utf-8"))
    assert np.mean([torch_answers[k] == onnx_answers[k] for k in torch_answers]) > 0.95


def test_kfold_keeps_articles_whole_and_ensembles(mrc_model, mrc_files, tmp_path):
    task = MRCTask()
    examples = task.read(mrc_files / "dev.json")
    for train_rows, held_rows in fold_indices(task, examples, 3, seed=0):
        assert not set(examples["group"].iloc[train_rows]) & set(examples["group"].iloc[held_rows])
    kluekit("train", "mrc", "--model", mrc_model, "--train", mrc_files / "dev.json", "--folds", 2,
            "--output-dir", tmp_path / "k", "--epochs", 1, *TINY)
    oof = json.loads((tmp_path / "k" / "oof" / "metrics.json").read_text())
    assert oof["rows"] == 80 and set(oof["oof"]) == {"exact_match", "f1", "klue_exact_match", "rouge_w"}
    kluekit("ensemble", "--model", tmp_path / "k" / "fold-0", tmp_path / "k" / "fold-1", "--input", mrc_files / "dev.json",
            "--output", tmp_path / "ens.json", "--evaluate")
    assert len(json.loads((tmp_path / "ens.json").read_text(encoding="utf-8"))) == 80
    assert (tmp_path / "ens.csv").is_file()


def test_bad_answer_offset_is_an_error(trained, mrc_files, tmp_path, capsys):
    data = json.loads((mrc_files / "dev.json").read_text(encoding="utf-8"))
    qa = data["data"][1]["paragraphs"][0]["qas"][0]
    qa["answers"][0]["answer_start"] += 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    assert cli.main(["evaluate", "mrc", "--model", str(trained[0]), "--input", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"bad.json:3: answers: answer: '{qa['answers'][0]['text']}' is not at answer_start" in err
    assert "Traceback" not in err


def test_cli_option_errors(mrc_model, mrc_files, tmp_path, capsys):
    argv = ["train", "mrc", "--model", str(mrc_model), "--train", str(mrc_files / "train.json"),
            "--output-dir", str(tmp_path / "r"), "--max-length", "32"]
    assert cli.main(argv + ["--doc-stride", "30"]) == 2
    assert "--doc-stride 30 must be smaller than the context tokens a window holds" in capsys.readouterr().err
    for option, value in (("--null-answers", "maybe"), ("--format", "conll")):
        with pytest.raises(SystemExit) as exit_:  # argparse: the allowed values, no traceback
            cli.main(argv + [option, value])
        assert exit_.value.code == 2 and f"argument {option}: invalid choice: '{value}'" in capsys.readouterr().err
