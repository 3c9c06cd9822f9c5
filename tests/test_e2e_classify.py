"""End to end on CPU for text classification, k-fold training and ensembles: a tiny BERT learns YNAT
topics, writes label names with per-class probabilities, and K fold runs average into one submission,
through ``kluekit.cli.main`` on slices of the real shared data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from transformers import AutoConfig

from conftest import shared_path
from kluekit import cli

TINY = ["--max-length", "48", "--batch-size", "32", "--eval-batch-size", "256", "--learning-rate", "2e-3"]
YNAT_LABELS = ["IT과학", "경제", "사회", "생활문화", "세계", "스포츠", "정치"]


def kluekit(*args) -> None:
    assert cli.main([str(a) for a in args]) == 0


@pytest.fixture(scope="module")
def ynat(tmp_path_factory):
    """2,000 training titles (header) and 600 dev titles written WITHOUT a header, as the shared dev file is."""
    folder = tmp_path_factory.mktemp("ynat")
    lines = shared_path("data", "klue_ynat", "ynat_train.tsv").read_text(encoding="utf-8").splitlines()
    (folder / "train.tsv").write_text("\n".join(lines[:2001]) + "\n", encoding="utf-8")
    dev = shared_path("data", "klue_ynat", "ynat_dev.tsv").read_text(encoding="utf-8").splitlines()
    (folder / "dev.tsv").write_text("\n".join(dev[:600]) + "\n", encoding="utf-8")
    return folder


def train(model, files, out, *extra):
    kluekit("train", "classify", "--preset", "ynat", "--model", model, "--train", files / "train.tsv",
            "--dev", files / "dev.tsv", "--output-dir", out, *TINY, *extra)
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model, ynat):
    run = tmp_path_factory.mktemp("runs") / "ynat"
    return run, train(tiny_model, ynat, run, "--epochs", 6)


def test_tiny_model_learns_topics(trained, tiny_model, ynat, tmp_path):
    untrained = train(tiny_model, ynat, tmp_path / "untrained", "--max-steps", 1, "--learning-rate", 0)["best"]
    learned = trained[1]["best"]
    dev = pd.read_csv(ynat / "dev.tsv", sep="\t", header=None, names=["label", "text"])
    share = dev["label"].value_counts().iloc[0] / len(dev)  # always answering the commonest topic (사회):
    constant_macro_f1 = 100 * 2 * share / (1 + share) / 7  # F1 of that class, 0 for the six others
    assert learned["macro_f1"] > max(untrained["macro_f1"], constant_macro_f1) + 15, (learned, untrained, share)
    assert learned["accuracy"] > untrained["accuracy"] + 15, (learned, untrained)
    assert set(learned) == {"accuracy", "macro_f1"}


def test_run_records_the_official_label_order_and_primary_metric(trained):
    info = json.loads((trained[0] / "kluekit.json").read_text())
    assert info["labels"] == YNAT_LABELS
    assert info["task_options"]["metric"] == "macro_f1" and info["task_options"]["columns"] == ["label", "text"]
    config = AutoConfig.from_pretrained(trained[0])
    assert [config.id2label[i] for i in range(7)] == YNAT_LABELS


def test_predictions_have_label_names_and_probabilities(trained, ynat, tmp_path):
    kluekit("predict", "classify", "--model", trained[0], "--input", ynat / "dev.tsv", "--output", tmp_path / "out.csv")
    out = pd.read_csv(tmp_path / "out.csv", dtype={"id": str})
    assert list(out.columns) == ["id", "pred_label"] + [f"prob_{name}" for name in YNAT_LABELS]
    probs = out[[f"prob_{name}" for name in YNAT_LABELS]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (np.asarray(YNAT_LABELS)[probs.argmax(axis=1)] == out["pred_label"]).all()
    assert out["id"].tolist() == [str(i) for i in range(600)]  # the file has no ids: row numbers, in order


def test_evaluate_writes_confusion_matrix_and_per_class_table(trained, ynat, tmp_path):
    kluekit("evaluate", "classify", "--model", trained[0], "--input", ynat / "dev.tsv", "--output-dir", tmp_path / "eval")
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["macro_f1"] == pytest.approx(trained[1]["best"]["macro_f1"], abs=0.01)
    assert (tmp_path / "eval" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    table = pd.read_csv(tmp_path / "eval" / "per_class.csv")
    assert table["label"].tolist()[:7] == YNAT_LABELS and table["support"].iloc[:7].sum() == 600
    assert table.loc[table["label"] == "macro avg", "f1"].item() == pytest.approx(report["macro_f1"], abs=0.01)


def test_kfold_then_ensemble_of_the_folds(tiny_model, ynat, tmp_path):
    """3 stratified folds of 600 titles: 3 runs, an out-of-fold score over all 600; the ensemble of the 3 runs
    is the mean of their own predictions."""
    root = tmp_path / "kfold"
    small = ynat / "small.tsv"
    small.write_text("\n".join((ynat / "train.tsv").read_text(encoding="utf-8").splitlines()[:601]) + "\n",
                     encoding="utf-8")
    kluekit("train", "classify", "--preset", "ynat", "--model", tiny_model, "--train", small, "--folds", 3,
            "--output-dir", root, "--epochs", 2, *TINY)
    oof = json.loads((root / "oof" / "metrics.json").read_text())
    assert [fold["fold"] for fold in oof["folds"]] == [0, 1, 2] and oof["rows"] == 600
    held = [json.loads((root / f"fold-{k}" / "kluekit.json").read_text()) for k in range(3)]
    assert sorted(info["data"]["dev"]["rows"] for info in held) == [200, 200, 200]
    assert all(info["labels"] == YNAT_LABELS and info["fold"] == k for k, info in enumerate(held))
    predictions = pd.read_csv(root / "oof" / "predictions.csv")
    assert len(predictions) == 600 and predictions["pred_label"].isin(YNAT_LABELS).all()
    assert oof["oof"]["accuracy"] == pytest.approx(100 * (predictions["pred_label"] == predictions["label"]).mean())

    runs = [root / f"fold-{k}" for k in range(3)]
    for k, run in enumerate(runs):
        kluekit("predict", "classify", "--model", run, "--input", ynat / "dev.tsv", "--output", tmp_path / f"p{k}.csv")
    kluekit("ensemble", "--model", *runs, "--weights", 1, 1, 2, "--input", ynat / "dev.tsv",
            "--output", tmp_path / "ens.csv", "--evaluate")
    columns = [f"prob_{name}" for name in YNAT_LABELS]
    members = [pd.read_csv(tmp_path / f"p{k}.csv")[columns].to_numpy() for k in range(3)]
    ensemble = pd.read_csv(tmp_path / "ens.csv")
    np.testing.assert_allclose(ensemble[columns].to_numpy(), (members[0] + members[1] + 2 * members[2]) / 4, atol=2e-6)
    report = json.loads((tmp_path / "ens-report" / "metrics.json").read_text())
    assert set(report["members"]) == {str(run) for run in runs} and "macro_f1" in report


def test_pair_classification_with_the_nli_presets(tiny_model, tmp_path):
    """KLUE-NLI JSON to train (pairs), KorNLI TSV to evaluate: the official label order, three probabilities."""
    records = json.loads(shared_path("data", "klue_nli", "klue-nli-v1.1_dev.json").read_text(encoding="utf-8"))
    (tmp_path / "nli.json").write_text(json.dumps(records[:300], ensure_ascii=False), encoding="utf-8")
    kornli = shared_path("data", "kornli", "xnli.dev.ko.tsv").read_text(encoding="utf-8").splitlines()
    (tmp_path / "xnli.tsv").write_text("\n".join(kornli[:101]) + "\n", encoding="utf-8")
    kluekit("train", "classify", "--preset", "klue-nli", "--model", tiny_model, "--train", tmp_path / "nli.json",
            "--output-dir", tmp_path / "run", "--epochs", 1, *TINY)
    info = json.loads((tmp_path / "run" / "kluekit.json").read_text())
    assert info["labels"] == ["entailment", "neutral", "contradiction"]
    assert info["task_options"]["text_pair_column"] == "hypothesis"
    kluekit("evaluate", "classify", "--model", tmp_path / "run", "--input", tmp_path / "nli.json",
            "--output-dir", tmp_path / "eval")
    assert 0 <= json.loads((tmp_path / "eval" / "metrics.json").read_text())["accuracy"] <= 100


def test_generic_columns_numeric_labels_and_empty_texts(tiny_model, tmp_path):
    """NSMC by column options (no preset): labels 0/1 learned and sorted numerically; empty documents kept."""
    lines = shared_path("data", "nsmc", "ratings_train_first5000.txt").read_text(encoding="utf-8").splitlines()
    rows = lines[:201] + ["1\t\t0", "2\t   \t1"]
    (tmp_path / "train.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    kluekit("train", "classify", "--model", tiny_model, "--train", tmp_path / "train.txt", "--text-column", "document",
            "--metric", "accuracy", "--output-dir", tmp_path / "run", "--epochs", 1, *TINY)
    info = json.loads((tmp_path / "run" / "kluekit.json").read_text())
    assert info["labels"] == ["0", "1"] and info["task_options"]["metric"] == "accuracy"
    kluekit("predict", "classify", "--model", tmp_path / "run", "--input", tmp_path / "train.txt",
            "--output", tmp_path / "out.csv")
    out = pd.read_csv(tmp_path / "out.csv", dtype={"id": str})
    assert len(out) == 202 and out["id"].tolist()[-2:] == ["1", "2"]


def fails(capsys, *args) -> str:
    assert cli.main([str(a) for a in args]) == 2
    return capsys.readouterr().err


def test_cli_errors(trained, tiny_model, ynat, tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("label\ttext\n스포츠\t골\n날씨\t비가 온다\n", encoding="utf-8")
    err = fails(capsys, "evaluate", "classify", "--model", trained[0], "--input", bad)
    assert "bad.tsv:3" in err and "날씨" in err
    err = fails(capsys, "train", "classify", "--model", tiny_model, "--train", ynat / "train.tsv",
                "--text-column", "title", "--output-dir", tmp_path / "x")
    assert "title" in err and "text" in err
    err = fails(capsys, "train", "classify", "--preset", "ynat", "--model", tiny_model, "--train", ynat / "train.tsv",
                "--dev", ynat / "dev.tsv", "--folds", 3, "--output-dir", tmp_path / "y")
    assert "--folds" in err and "--dev" in err
    err = fails(capsys, "ensemble", "--model", trained[0], trained[0], "--weights", 1, "--input", ynat / "dev.tsv",
                "--output", tmp_path / "e.csv")
    assert "--weights" in err
    err = fails(capsys, "ensemble", "--model", trained[0], "--input", ynat / "dev.tsv", "--output", tmp_path / "e.csv")
    assert "two or more" in err


def test_kfold_with_a_held_out_split_scores_the_ensemble(tiny_model, ynat, tmp_path):
    """--folds 2 --dev-split 0.25 on 400 titles: 100 set apart (stratified), the 2 folds over the other 300; the
    held-out record holds each fold model's score and that of their mean, which its predictions reproduce."""
    root = tmp_path / "kfold"
    small = ynat / "small400.tsv"
    small.write_text("\n".join((ynat / "train.tsv").read_text(encoding="utf-8").splitlines()[:401]) + "\n",
                     encoding="utf-8")
    kluekit("train", "classify", "--preset", "ynat", "--model", tiny_model, "--train", small, "--folds", 2,
            "--dev-split", 0.25, "--output-dir", root, "--epochs", 1, *TINY)
    assert json.loads((root / "oof" / "metrics.json").read_text())["rows"] == 300
    held = json.loads((root / "held-out" / "metrics.json").read_text())
    assert held["rows"] == 100 and len(held["members"]) == 2
    assert held["members_mean"]["accuracy"] == pytest.approx(np.mean([m["accuracy"] for m in held["members"]]))
    predictions = pd.read_csv(root / "held-out" / "predictions.csv")
    assert len(predictions) == 100
    assert held["ensemble"]["accuracy"] == pytest.approx(100 * (predictions["pred_label"] == predictions["label"]).mean())
    folded = pd.read_csv(root / "oof" / "predictions.csv")["id"]
    assert not set(folded) & set(predictions["id"]) and len(set(folded) | set(predictions["id"])) == 400
