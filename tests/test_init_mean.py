"""--init-mean (the STS default): the regression head's bias starts at the mean of the labels it trains on."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from kluekit import cli
from kluekit.tasks.sts import STSOptions, STSTask


@pytest.mark.parametrize("init_mean", [True, False])
def test_the_head_bias_starts_at_the_label_mean_only_when_asked(tiny_model, init_mean):
    task = STSTask(STSOptions(init_mean=init_mean))
    _, model = task.build_model(str(tiny_model))
    before = model.classifier.bias.detach().clone()
    task.init_head(model, pd.DataFrame({"label": [1.0, 2.0, 4.5]}))
    expected = torch.tensor([2.5]) if init_mean else before
    torch.testing.assert_close(model.classifier.bias.detach(), expected)


def test_a_trained_head_is_kept(tiny_model):
    task = STSTask(STSOptions())
    _, model = task.build_model(str(tiny_model))
    with torch.no_grad():
        model.classifier.bias.fill_(0.7)  # as a head trained before (--model <an STS run>)
    task.init_head(model, pd.DataFrame({"label": [1.0, 2.0, 4.5]}))
    torch.testing.assert_close(model.classifier.bias.detach(), torch.tensor([0.7]))


def test_training_sets_the_head_from_the_rows_left_after_the_dev_split(tmp_path, tiny_model, sts_train_csv,
                                                                       monkeypatch):
    train = tmp_path / "train.csv"
    pd.read_csv(sts_train_csv).head(300).to_csv(train, index=False)
    seen = []
    monkeypatch.setattr(STSTask, "init_head", lambda self, model, examples: seen.append(len(examples)))
    assert cli.main(["train", "sts", "--model", str(tiny_model), "--train", str(train), "--dev-split", "0.1",
                     "--output-dir", str(tmp_path / "run"), "--max-steps", "1", "--max-length", "32",
                     "--no-tensorboard"]) == 0
    assert seen == [270]


def test_a_collapsed_run_is_named_in_a_warning(monkeypatch, caplog):
    import numpy as np

    from kluekit import training

    task = STSTask(STSOptions(swap_average=False))
    gold = pd.DataFrame({"sentence1": ["a"] * 4, "sentence2": ["b"] * 4, "label": [0.0, 1.5, 3.0, 4.5]})
    assert task.collapse(np.array([0.1, 1.4, 3.2, 4.4]), gold["label"].to_numpy()) is None
    monkeypatch.setattr(training, "predict_raw", lambda *args, **kwargs: np.full((4, 1), 2.2, dtype=np.float32))
    evaluator = training.Evaluator(task, None, [("dev", gold, {})], 8, torch.device("cpu"), "fp32", progress=False)
    with caplog.at_level("WARNING", logger="kluekit"):
        evaluator(None)
    assert "dev: the scores are nearly one constant" in caplog.text
    assert "training has collapsed: try another --seed" in caplog.text
