"""End to end on CPU for relation extraction: a tiny BERT learns KLUE-RE relations, writes a valid submission
and the evaluation report, through ``kluekit.cli.main`` on the real shared data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from transformers import AutoModel, AutoModelForSequenceClassification

from conftest import shared_path
from kluekit import cli
from kluekit.data.re import COMPETITION_LABELS

TINY = ["--max-length", "64", "--batch-size", "32", "--eval-batch-size", "256", "--learning-rate", "2e-3"]


def kluekit(*args) -> None:
    assert cli.main([str(a) for a in args]) == 0


@pytest.fixture(scope="module")
def re_files(tmp_path_factory):
    """The five most frequent relations (no_relation left out: it is what a tiny model takes longest to tell
    apart), 4,000 training rows and 1,000 dev rows sliced from the shared files, plus a blind test file."""
    folder = tmp_path_factory.mktemp("re")
    train = pd.read_csv(shared_path("data", "klue_re", "train_partial_union.csv"))
    frequent = train.loc[train["label"] != "no_relation", "label"].value_counts().index[:5]
    train[train["label"].isin(frequent)].head(4000).to_csv(folder / "train.csv", index=False)
    dev = pd.read_csv(shared_path("data", "klue_re", "boostcamp_test_data_with_labels.csv"))
    dev = dev[dev["label"].isin(frequent)].head(1000)
    dev.to_csv(folder / "dev.csv", index=False)
    dev.assign(label=100).to_csv(folder / "test.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def re_tiny_model(tmp_path_factory, re_files):
    from tiny_model import build_tiny_model

    from kluekit.data.entity_inputs import entity_texts
    from kluekit.data.re import COMPETITION_LABELS, read_re

    # trained on marked sentences, as a real model's vocabulary has the marker punctuation and type names
    frame = read_re(shared_path("data", "klue_re", "train_partial_union.csv"), COMPETITION_LABELS).head(4000)
    return build_tiny_model(entity_texts(frame, "typed")[1], tmp_path_factory.mktemp("tiny-re") / "model",
                            vocab_size=1500, dropout=0.0)


def train(model, files, out, *extra):
    kluekit("train", "re", "--model", model, "--train", files / "train.csv", "--dev", files / "dev.csv",
            "--output-dir", out, *TINY, *extra)
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory, re_tiny_model, re_files):
    run = tmp_path_factory.mktemp("runs") / "re"
    return run, train(re_tiny_model, re_files, run, "--epochs", 6, "--entity-style", "typed")


def best_constant_micro_f1(dev: pd.DataFrame) -> float:
    """Micro-F1 x100 (no_relation excluded) of always answering the most frequent relation (here, its share)."""
    return 100 * dev["label"].value_counts().iloc[0] / len(dev)


def test_tiny_model_learns_relations(trained, re_tiny_model, re_files, tmp_path):
    untrained = train(re_tiny_model, re_files, tmp_path / "untrained", "--max-steps", 1, "--learning-rate", 0,
                      "--entity-style", "typed")["best"]
    learned = trained[1]["best"]
    constant = best_constant_micro_f1(pd.read_csv(re_files / "dev.csv"))
    # AUPRC is no criterion here: the 25 relations absent from this dev slice score 50 each (KLUE's definition)
    assert learned["micro_f1"] > max(untrained["micro_f1"], constant) + 15, (learned, untrained, constant)


def test_saved_model_carries_the_label_map(trained):
    # typed markers pool the entity states by default: the run holds an encoder checkpoint + the head's weights
    assert json.loads((trained[0] / "kluekit.json").read_text())["task_options"]["pooling"] == "entity"
    assert (trained[0] / "entity_head.safetensors").is_file()
    model = AutoModel.from_pretrained(trained[0])
    assert model.config.num_labels == 30
    assert [model.config.id2label[i] for i in range(30)] == list(COMPETITION_LABELS)
    assert model.config.label2id["no_relation"] == 0


def test_submission_has_label_names_and_30_probabilities_in_input_order(trained, re_files, tmp_path):
    kluekit("predict", "re", "--model", trained[0], "--input", re_files / "test.csv", "--output", tmp_path / "out.csv")
    out = pd.read_csv(tmp_path / "out.csv")
    test = pd.read_csv(re_files / "test.csv")
    assert list(out.columns) == ["id", "pred_label", "probs"]
    assert out["id"].tolist() == test["id"].tolist()
    probs = np.array([json.loads(p) for p in out["probs"]])
    assert probs.shape == (1000, 30)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert (np.asarray(COMPETITION_LABELS)[probs.argmax(axis=1)] == out["pred_label"]).all()
    # --adapt-prior: the same rows, re-weighted to the share of the most frequent training label estimated from its
    # probability as calibrated on the dev set when training ended (both kept in the run record)
    info = json.loads((trained[0] / "kluekit.json").read_text())
    shares = info["train_label_shares"]
    assert len(shares) == 30 and sum(shares) == pytest.approx(1.0)
    assert info["share_calibration"]["label"] == int(np.argmax(shares)) and info["share_calibration"]["rows"] == len(pd.read_csv(re_files / "dev.csv"))
    kluekit("predict", "re", "--model", trained[0], "--input", re_files / "test.csv", "--output", tmp_path / "a.csv",
            "--adapt-prior")
    adapted = np.array([json.loads(p) for p in pd.read_csv(tmp_path / "a.csv")["probs"]])
    assert adapted.shape == (1000, 30) and not np.allclose(adapted, probs)
    np.testing.assert_allclose(adapted.sum(axis=1), 1.0, atol=1e-9)


def test_evaluate_writes_confusion_matrix_and_per_class_table(trained, re_files, tmp_path):
    kluekit("evaluate", "re", "--model", trained[0], "--input", re_files / "dev.csv", "--output-dir", tmp_path / "eval")
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["micro_f1"] == pytest.approx(trained[1]["best"]["micro_f1"], abs=0.01)
    assert (tmp_path / "eval" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    table = pd.read_csv(tmp_path / "eval" / "per_class.csv")
    assert set(COMPETITION_LABELS) <= set(table.iloc[:, 0])
    predictions = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    assert {"pred_label", "pred_prob"} <= set(predictions.columns) and len(predictions) == 1000


@pytest.mark.parametrize("style, loss, pooling", [("baseline", "weighted_ce", "auto"), ("marker", "focal", "entity"),
                                                  ("typed", "ce", "cls")])
def test_other_entity_styles_losses_and_poolings_train(re_tiny_model, re_files, tmp_path, style, loss, pooling):
    result = train(re_tiny_model, re_files, tmp_path / style, "--max-steps", 20, "--entity-style", style,
                   "--loss", loss, "--pooling", pooling)
    assert result["steps"] == 20 and np.isfinite(result["best"]["micro_f1"])
    if pooling != "entity":  # [CLS] pooling: a plain sequence-classification checkpoint
        assert not (tmp_path / style / "entity_head.safetensors").exists()
        AutoModelForSequenceClassification.from_pretrained(tmp_path / style)
    if style == "marker":  # the four marker tokens were added to the saved tokenizer
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tmp_path / style)
        assert all(tokenizer.convert_tokens_to_ids(t) != tokenizer.unk_token_id for t in ("[E1]", "[/E2]"))
