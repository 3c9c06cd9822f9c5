"""The training engine on its own: a toy model kind with a two-output head (start and end logits, as
extractive QA has) trains through ``Trainer`` and resumes exactly; and the Task contract's documented example
runs as written."""

from __future__ import annotations

import doctest
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import kill_after
from kluekit.batching import Features
from kluekit.config import TrainConfig
from kluekit.engine import Trainer, TrainData

ROOT = Path(__file__).resolve().parents[1]
VOCAB, LENGTH = 50, 12


class SpanModel(torch.nn.Module):
    """Embeddings, a GRU and a 2-output head: per-token start and end logits."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, 32)
        self.rnn = torch.nn.GRU(32, 32, batch_first=True, bidirectional=True)
        self.dropout = torch.nn.Dropout(0.1)  # random numbers in every step: an inexact resume would show
        self.head = torch.nn.Linear(64, 2)

    def forward(self, input_ids, attention_mask):
        hidden, _ = self.rnn(self.embed(input_ids))
        logits = self.head(self.dropout(hidden)).masked_fill(~attention_mask.bool()[..., None], -1e4)
        return SimpleNamespace(start_logits=logits[..., 0], end_logits=logits[..., 1])


class SpanTask:
    """The engine's side of a task: ``forward`` and ``loss`` (the toy span: the first and the last token 7)."""

    def forward(self, model, batch):
        return model(batch["input_ids"], batch["attention_mask"])

    def loss(self, outputs, batch):
        return (F.cross_entropy(outputs.start_logits, batch["labels"][:, 0])
                + F.cross_entropy(outputs.end_logits, batch["labels"][:, 1])) / 2


def toy_data(rows: int, seed: int) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(8, VOCAB, size=(rows, LENGTH))
    starts = rng.integers(0, LENGTH // 2, size=rows)
    ends = starts + rng.integers(1, LENGTH // 2, size=rows)
    ids[np.arange(rows), starts] = ids[np.arange(rows), ends] = 7
    return {"input_ids": ids.tolist(), "attention_mask": np.ones_like(ids).tolist(),
            "labels": np.stack([starts, ends], 1).tolist()}


def collate(items):
    return {key: torch.tensor([item[key] for item in items]) for key in items[0]}


@dataclass
class SpanEvaluator:
    features: dict
    primary: str = "exact"
    greater_is_better: bool = True

    @torch.no_grad()
    def __call__(self, model):
        model.eval()
        out = model(torch.tensor(self.features["input_ids"]), torch.tensor(self.features["attention_mask"]))
        spans = torch.stack([out.start_logits.argmax(-1), out.end_logits.argmax(-1)], 1).numpy()
        exact = float((spans == np.array(self.features["labels"])).all(axis=1).mean() * 100)
        return {"exact": exact}, spans


def trainer(run_dir, **options):
    torch.manual_seed(0)
    cfg = TrainConfig(train=["toy"], epochs=6, batch_size=16, learning_rate=3e-3, eval_steps=10, seed=3,
                      tensorboard=False, **options)
    train = Features(toy_data(320, seed=1))
    data = TrainData(train, lambda epoch, rank, world: [list(range(i, min(i + 16, 320)))
                                                        for i in np.random.default_rng([3, epoch]).permutation(320)[::16]],
                     collate)
    saved = []
    return Trainer(SpanModel(), SpanTask(), data, cfg, run_dir, evaluator=SpanEvaluator(toy_data(100, seed=2)),
                   save_best=lambda model: saved.append({k: v.clone() for k, v in model.state_dict().items()})), saved


def test_a_two_output_model_kind_trains_through_the_engine(tmp_path):
    first, saved = trainer(tmp_path / "run")
    untrained = first.evaluator(first.unwrapped)[0]["exact"]
    record = first.fit()
    assert record["steps"] == 120 and [h["step"] for h in record["history"]][:3] == [10, 20, 30]
    assert record["best"]["exact"] > untrained + 30, (untrained, record["best"])
    assert record["best"]["exact"] == max(h["exact"] for h in record["history"])
    assert len(saved) >= 1 and first.best_outputs.shape == (100, 2)
    assert (tmp_path / "run" / "checkpoint" / "progress.json").is_file()  # the caller drops it when the run ends


def test_the_engine_resumes_a_two_output_model_exactly(tmp_path):
    whole, _ = trainer(tmp_path / "whole")
    expected = whole.fit()

    interrupted, _ = trainer(tmp_path / "killed")
    kill_after(interrupted, 25)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    assert json.loads((tmp_path / "killed" / "checkpoint" / "progress.json").read_text())["global_step"] == 20

    resumed, _ = trainer(tmp_path / "killed", resume=True)
    assert resumed.resume()
    got = resumed.fit()
    assert got["history"] == expected["history"]
    for name, tensor in whole.unwrapped.state_dict().items():
        assert torch.equal(resumed.unwrapped.state_dict()[name], tensor), name


def test_the_task_contract_example_runs(tiny_model):
    import kluekit.tasks.base as base

    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = finder.find(base, "kluekit.tasks.base", globs={"model_dir": str(tiny_model)})
    examples = [t for t in tests if t.examples]
    assert examples, "the module docstring lost its example"
    for test in examples:
        runner.run(test)
    assert runner.failures == 0 and runner.tries >= 12


def test_the_worked_example_task_of_the_architecture_page_works_through_the_cli(tiny_model, sts_train_csv, tmp_path,
                                                                               monkeypatch):
    """docs/architecture.md's worked example, taken from the page as written: one module + one registry line."""
    import importlib.util
    import re
    import sys

    import pandas as pd

    from kluekit import cli, tasks

    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    source = re.search(r"```python\n(# src/kluekit/tasks/formality.py\n.*?)```", page, re.S).group(1)
    spec = importlib.util.spec_from_loader("kluekit.tasks.formality", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "kluekit.tasks"
    monkeypatch.setitem(sys.modules, "kluekit.tasks.formality", module)
    exec(compile(source, "docs/architecture.md", "exec"), module.__dict__)
    monkeypatch.setitem(tasks.TASKS, "formality", module.FormalityTask)  # the registry line

    sts = pd.read_csv(sts_train_csv).head(600)  # a stand-in: the STS score / 5 as "formality" of sentence 1
    frame = pd.DataFrame({"text": sts["sentence1"], "label": (sts["label"] / 5).round(3)})
    frame.iloc[:500].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[500:].to_csv(tmp_path / "dev.csv", index=False)
    run = tmp_path / "run"
    assert cli.main(["train", "formality", "--model", str(tiny_model), "--train", str(tmp_path / "train.csv"),
                     "--dev", str(tmp_path / "dev.csv"), "--output-dir", str(run), "--epochs", "2",
                     "--batch-size", "32", "--learning-rate", "1e-3", "--max-length", "64"]) == 0
    assert json.loads((run / "kluekit.json").read_text())["task"] == "formality"
    assert cli.main(["evaluate", "formality", "--model", str(run), "--input", str(tmp_path / "dev.csv")]) == 0
    frame.iloc[500:][["text"]].to_csv(tmp_path / "test.csv", index=False)
    assert cli.main(["predict", "formality", "--model", str(run), "--input", str(tmp_path / "test.csv"),
                     "--output", str(tmp_path / "out.csv")]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["id", "score"] and len(out) == 100 and out["score"].between(0, 1).all()


def test_patience_stops_training_once_the_dev_score_stops_improving(tmp_path):
    run, _ = trainer(tmp_path / "run", patience=2)
    scores = iter([10.0, 30.0, 20.0, 25.0, 90.0])  # best at the 2nd evaluation, two worse ones after it
    run.evaluator = lambda model: ({"exact": next(scores)}, None)
    run.evaluator.primary, run.evaluator.greater_is_better = "exact", True
    record = run.fit()
    assert [h["step"] for h in record["history"]] == [10, 20, 30, 40]
    assert record["steps"] == 40 and record["stopped_early"] and record["best_step"] == 20
    off, _ = trainer(tmp_path / "off")
    assert not off.fit()["stopped_early"]


def test_tf32_holds_for_the_training_loop_only(tmp_path, monkeypatch):
    seen = []
    plain_step = SpanTask.loss
    monkeypatch.setattr(SpanTask, "loss", lambda self, outputs, batch: (
        seen.append(torch.get_float32_matmul_precision()), plain_step(self, outputs, batch))[1])
    before = torch.get_float32_matmul_precision()
    run, _ = trainer(tmp_path / "tf32", tf32=True, max_steps=3)
    assert run.fit()["tf32"] is True and set(seen) == {"high"}
    assert torch.get_float32_matmul_precision() == before  # as it was: a library caller's setting is not changed
    seen.clear()
    run, _ = trainer(tmp_path / "plain", max_steps=3)
    assert run.fit()["tf32"] is False and set(seen) == {before}

    def fail(self, outputs, batch):
        raise RuntimeError("a step fails")
    monkeypatch.setattr(SpanTask, "loss", fail)
    with pytest.raises(RuntimeError, match="a step fails"):
        trainer(tmp_path / "fails", tf32=True, max_steps=3)[0].fit()
    assert torch.get_float32_matmul_precision() == before
