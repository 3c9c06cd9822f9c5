"""End to end on CPU: a tiny BERT learns KLUE-STS, writes a valid submission, reports, resumes, repeats itself.

Everything goes through ``kluekit.cli.main`` (the installed ``kluekit`` command) on the real shared data.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from transformers import AutoModelForSequenceClassification

from kluekit import cli
from kluekit.data.sts import read_sts
from kluekit.metrics import sts_metrics
from kluekit.tasks.sts import STSTask

TINY = ["--max-length", "64", "--batch-size", "32", "--eval-batch-size", "256"]


def kluekit(*args) -> None:
    assert cli.main([str(a) for a in args]) == 0


@pytest.fixture(scope="module")
def train_slice(tmp_path_factory, sts_train_csv):
    """The first 10,000 KLUE-STS training pairs (the rest of the file is not used)."""
    path = tmp_path_factory.mktemp("data") / "train.csv"
    pd.read_csv(sts_train_csv).head(10_000).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model, train_slice, sts_dev_json):
    """1,252 steps (4 epochs of one order of each pair) at lr 1e-3: about a minute on 2 CPU cores."""
    run = tmp_path_factory.mktemp("runs") / "sts"
    kluekit("train", "sts", "--model", tiny_model, "--train", train_slice, "--dev", sts_dev_json,
            "--output-dir", run, "--epochs", 4, "--no-swap-augment", "--learning-rate", 1e-3, *TINY)
    return run


@pytest.fixture(scope="module")
def untrained(tmp_path_factory, tiny_model, train_slice, sts_dev_json):
    """The same tiny model with its fresh head, never updated (learning rate 0)."""
    run = tmp_path_factory.mktemp("runs") / "untrained"
    kluekit("train", "sts", "--model", tiny_model, "--train", train_slice, "--dev", sts_dev_json,
            "--output-dir", run, "--max-steps", 1, "--learning-rate", 0, *TINY)
    return run


def metrics(run):
    return json.loads((run / "metrics.json").read_text())


def raw_dev_pearson(run, dev_path) -> float:
    """Pearson x100 of the model's raw (unclipped) outputs on dev: clipping can hide an untrained model."""
    from kluekit.inference import predict_raw
    from kluekit.predictor import Predictor

    predictor = Predictor(run, "sts", progress=False)
    task, (tokenizer, model, device, _) = predictor.task, predictor.load()
    dev = task.read(dev_path)
    logits = predict_raw(task, model, tokenizer, task.encode(dev, tokenizer, 64), 256, device, progress=False)
    return sts_metrics(logits[:, 0], dev["label"])["pearson"]


def test_training_beats_the_untrained_model_by_a_clear_margin(trained, untrained, sts_dev_json):
    learned = metrics(trained)["best"]["pearson"]
    untrained_clipped = metrics(untrained)["best"]["pearson"]  # what kluekit reports for it (scores clipped to 0-5)
    untrained_raw = raw_dev_pearson(untrained, sts_dev_json)  # its raw outputs: a random net is not always at 0
    assert learned > 20 and learned > untrained_clipped + 15 and learned > untrained_raw + 10, \
        (learned, untrained_clipped, untrained_raw)
    assert raw_dev_pearson(trained, sts_dev_json) > 20


def test_run_directory_holds_a_loadable_model_and_its_record(trained, sts_dev_json, train_slice):
    model = AutoModelForSequenceClassification.from_pretrained(trained)
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"
    info = json.loads((trained / "kluekit.json").read_text())
    assert info["task"] == "sts" and info["train_config"]["learning_rate"] == 1e-3
    assert info["data"]["train"]["rows"] == 10_000 and len(info["data"]["train"]["sha256"]) == 64
    assert info["data"]["dev"]["rows"] == 519
    assert {"torch", "transformers", "accelerate", "kluekit"} <= set(info["versions"])
    result = metrics(trained)
    assert result["steps"] == 4 * 313 and len(result["history"]) == 4
    best = max(result["history"], key=lambda h: h["pearson"])
    assert result["best"]["pearson"] == best["pearson"] and result["best_step"] == best["step"]
    assert list((trained / "logs").glob("events.out.tfevents.*")), "no TensorBoard log"
    assert not (trained / "checkpoint").exists(), "a finished run keeps no resume checkpoint"


def test_predict_writes_a_valid_submission_in_input_order(trained, sts_dev_json, tmp_path):
    dev = read_sts(sts_dev_json)
    test = pd.DataFrame({"id": [f"test-{i:04d}" for i in range(len(dev))][::-1], "source": dev["source"],
                         "sentence_1": dev["sentence1"], "sentence_2": dev["sentence2"]})
    test.to_csv(tmp_path / "test.csv", index=False)
    kluekit("predict", "sts", "--model", trained, "--input", tmp_path / "test.csv", "--output", tmp_path / "output.csv")
    out = pd.read_csv(tmp_path / "output.csv", dtype={"id": str})
    assert list(out.columns) == ["id", "target"]
    assert out["id"].tolist() == test["id"].tolist()
    assert out["target"].between(0, 5).all() and out["target"].notna().all()
    assert out["target"].std() > 0.05, "constant predictions"


def test_predict_fills_the_sample_submission_keeping_its_ids_order_and_columns(trained, sts_dev_json, tmp_path):
    dev = read_sts(sts_dev_json)
    sample = pd.DataFrame({"id": dev["id"].sample(frac=1, random_state=0).to_numpy(), "target": 0.0, "note": "x"})
    sample.to_csv(tmp_path / "sample_submission.csv", index=False)
    kluekit("predict", "sts", "--model", trained, "--input", sts_dev_json, "--output", tmp_path / "direct.csv")
    kluekit("predict", "sts", "--model", trained, "--input", sts_dev_json, "--output", tmp_path / "filled.csv",
            "--sample-submission", tmp_path / "sample_submission.csv")
    direct = pd.read_csv(tmp_path / "direct.csv").set_index("id")["target"]
    filled = pd.read_csv(tmp_path / "filled.csv")
    assert list(filled.columns) == ["id", "target", "note"]
    assert filled["id"].tolist() == sample["id"].tolist()
    np.testing.assert_allclose(filled["target"], direct.loc[filled["id"]].to_numpy())


def test_evaluate_reports_official_metrics_and_writes_the_analysis(trained, sts_dev_json, tmp_path, capsys):
    kluekit("evaluate", "sts", "--model", trained, "--input", sts_dev_json, "--output-dir", tmp_path / "eval",
            "--worst", 5)
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    preds = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    assert len(preds) == 519
    expected = sts_metrics(preds["pred"], preds["label"])
    for key in ("pearson", "f1", "spearman", "mse"):
        assert report[key] == pytest.approx(expected[key], abs=1e-3)
    # the best epoch's dev Pearson, recomputed from the saved model
    assert report["pearson"] == pytest.approx(metrics(trained)["best"]["pearson"], abs=0.05)
    per_source = pd.read_csv(tmp_path / "eval" / "per_source.csv")
    assert set(per_source["group"]) == set(read_sts(sts_dev_json)["source"]) | {"all"}
    assert per_source.set_index("group").loc["all", "n"] == 519
    assert (tmp_path / "eval" / "scatter.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    worst = (tmp_path / "eval" / "worst.txt").read_text(encoding="utf-8")
    assert worst.startswith("5 worst of 519") and worst.count("\n#") == 5
    printed = capsys.readouterr().out
    assert f"pearson: {report['pearson']:.2f}" in printed and "airbnb-rtt" in printed


def short_run(model, train, dev, out, *extra):
    kluekit("train", "sts", "--model", model, "--train", train, "--dev", dev, "--output-dir", out,
            "--max-steps", 40, "--eval-steps", 20, "--learning-rate", 1e-3, *TINY, *extra)
    return metrics(out)


@pytest.fixture(scope="module")
def small_files(tmp_path_factory, train_slice, sts_dev_json):
    folder = tmp_path_factory.mktemp("small")
    pd.read_csv(train_slice).head(1500).to_csv(folder / "train.csv", index=False)
    read_sts(sts_dev_json).head(200).rename(columns={"sentence1": "sentence_1", "sentence2": "sentence_2"})[
        ["id", "source", "sentence_1", "sentence_2", "label"]].to_csv(folder / "dev.csv", index=False)
    return folder / "train.csv", folder / "dev.csv"


def test_same_seed_twice_gives_the_same_metrics(tiny_model, small_files, tmp_path):
    first = short_run(tiny_model, *small_files, tmp_path / "a")
    second = short_run(tiny_model, *small_files, tmp_path / "b")
    other = short_run(tiny_model, *small_files, tmp_path / "c", "--seed", 7)
    assert first["history"] == second["history"]
    assert first["history"] != other["history"]


def test_resume_continues_a_killed_run_to_the_same_result(tiny_model, small_files, tmp_path, monkeypatch):
    whole = short_run(tiny_model, *small_files, tmp_path / "whole")

    calls = {"n": 0}
    real_loss = STSTask.loss

    def dies_at_step_30(self, outputs, batch):
        calls["n"] += 1
        if calls["n"] > 30:
            raise KeyboardInterrupt  # as if killed after the step-20 checkpoint
        return real_loss(self, outputs, batch)

    monkeypatch.setattr(STSTask, "loss", dies_at_step_30)
    assert cli.main(["train", "sts", "--model", str(tiny_model), "--train", str(small_files[0]), "--dev",
                     str(small_files[1]), "--output-dir", str(tmp_path / "killed"), "--max-steps", "40",
                     "--eval-steps", "20", "--learning-rate", "1e-3", *TINY]) == 130
    assert not (tmp_path / "killed" / "metrics.json").exists()
    assert json.loads((tmp_path / "killed" / "checkpoint" / "progress.json").read_text())["global_step"] == 20
    monkeypatch.setattr(STSTask, "loss", real_loss)
    resumed = short_run(tiny_model, *small_files, tmp_path / "killed", "--resume")
    assert [h["step"] for h in resumed["history"]] == [20, 40]
    for got, want in zip(resumed["history"], whole["history"]):
        for key in ("pearson", "f1", "spearman", "mse"):
            assert got[key] == pytest.approx(want[key], abs=1e-4), (key, got, want)


def test_ensemble_averages_the_scores_of_its_runs(trained, untrained, sts_dev_json, tmp_path):
    """Weighted soft voting over two STS runs is the weighted mean of their own predictions, in input order."""
    for name, run in (("a", trained), ("b", untrained)):
        kluekit("predict", "sts", "--model", run, "--input", sts_dev_json, "--output", tmp_path / f"{name}.csv")
    kluekit("ensemble", "--model", trained, untrained, "--weights", 3, 1, "--input", sts_dev_json,
            "--output", tmp_path / "ens.csv")
    a, b, ens = (pd.read_csv(tmp_path / f"{name}.csv") for name in ("a", "b", "ens"))
    assert ens["id"].tolist() == a["id"].tolist()
    np.testing.assert_allclose(ens["target"], (3 * a["target"] + b["target"]) / 4, atol=2e-6)
