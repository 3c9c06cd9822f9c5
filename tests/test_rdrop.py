"""R-Drop (``--rdrop``): the consistency term against hand-computed values (classes, one output, per token with
padding left out), the wrapped step's loss, and a tiny STS run trained with it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from kluekit import cli
from kluekit.engine.rdrop import RDropStep
from kluekit.tasks.sts import STSTask


def symmetric_kl(p: np.ndarray, q: np.ndarray) -> float:
    """Mean over rows of (KL(p||q) + KL(q||p)) / 2, by hand."""
    return float(np.mean([(np.sum(a * np.log(a / b)) + np.sum(b * np.log(b / a))) / 2 for a, b in zip(p, q)]))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_consistency_of_class_logits_is_the_symmetric_kl():
    a, b = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]), np.array([[1.0, 1.0, 0.0], [0.3, -0.2, 0.0]])
    term = STSTask().consistency(SimpleNamespace(logits=torch.tensor(a)), SimpleNamespace(logits=torch.tensor(b)), {})
    assert term.item() == pytest.approx(symmetric_kl(softmax(a), softmax(b)), rel=1e-6)
    same = STSTask().consistency(SimpleNamespace(logits=torch.tensor(a)), SimpleNamespace(logits=torch.tensor(a)), {})
    assert same.item() == pytest.approx(0.0, abs=1e-7)


def test_consistency_of_one_output_is_the_mean_squared_difference():
    a, b = torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0], [2.5]])
    term = STSTask().consistency(SimpleNamespace(logits=a), SimpleNamespace(logits=b), {})
    assert term.item() == pytest.approx((1.0 + 0.25) / 2)


def test_consistency_per_token_leaves_padding_out():
    a, b = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    term = STSTask().consistency(SimpleNamespace(logits=a), SimpleNamespace(logits=b), {"attention_mask": mask})
    keep = mask.bool().numpy()
    expected = symmetric_kl(softmax(a.numpy()[keep]), softmax(b.numpy()[keep]))
    assert term.item() == pytest.approx(expected, rel=1e-5)
    b[0, 2] += 100  # a padding position: no effect
    again = STSTask().consistency(SimpleNamespace(logits=a), SimpleNamespace(logits=b), {"attention_mask": mask})
    assert again.item() == pytest.approx(term.item(), rel=1e-6)


def test_rdrop_step_averages_the_two_losses_and_adds_the_term():
    class Task:
        def forward(self, model, batch):
            return SimpleNamespace(logits=model(batch["x"]))

        def loss(self, outputs, batch):
            return ((outputs.logits[:, 0] - batch["y"]) ** 2).mean()

        consistency = STSTask.consistency

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(4, 1)).train()
    batch = {"x": torch.randn(8, 4), "y": torch.randn(8)}
    step = RDropStep(Task(), alpha=2.0)
    torch.manual_seed(1)
    loss = step.loss(step.forward(model, batch), batch)
    torch.manual_seed(1)
    a, b = Task().forward(model, batch), Task().forward(model, batch)
    expected = (Task().loss(a, batch) + Task().loss(b, batch)) / 2 + 2.0 * ((a.logits - b.logits) ** 2).mean()
    torch.testing.assert_close(loss, expected)
    assert not torch.equal(a.logits, b.logits)  # two dropout draws


def test_train_sts_with_rdrop(tiny_model, sts_train_csv, tmp_path):
    """The tiny model has no dropout: both passes agree, the term is 0, and the run is the plain run exactly."""
    train = tmp_path / "train.csv"
    pd.read_csv(sts_train_csv).head(64).to_csv(train, index=False)
    runs = {}
    for name, extra in (("plain", []), ("rdrop", ["--rdrop", "1.0"])):
        run = tmp_path / name
        assert cli.main(["train", "sts", "--model", str(tiny_model), "--train", str(train), "--dev", str(train),
                         "--output-dir", str(run), "--max-steps", "4", "--batch-size", "16", "--max-length", "48",
                         *extra]) == 0
        runs[name] = json.loads((run / "metrics.json").read_text())
    info = json.loads((tmp_path / "rdrop" / "kluekit.json").read_text())
    assert info["train_config"]["rdrop"] == 1.0
    assert [h["mse"] for h in runs["plain"]["history"]] == [h["mse"] for h in runs["rdrop"]["history"]]
