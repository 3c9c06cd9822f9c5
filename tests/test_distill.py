"""Knowledge distillation (``--teacher``): the distance against scipy and by hand, the wrapped step, the teachers'
targets against their own predictions, tiny STS and classification runs taught by trained runs, and the errors."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import softmax
from scipy.stats import entropy

from conftest import shared_path
from kluekit import cli
from kluekit.engine.distill import TARGETS, DistillStep, distance
from kluekit.engine.graphs import pad_batch
from kluekit.predictor import Predictor
from kluekit.tasks.sts import STSTask
from kluekit.teachers import teacher_targets

STEPS = ["--max-steps", "4", "--batch-size", "16", "--max-length", "48"]


def test_distance_of_classes_is_the_softened_kl_times_t_squared():
    student = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    teacher_probs = np.array([[0.7, 0.2, 0.1], [0.05, 0.15, 0.8]])
    for temperature in (1.0, 2.0):
        got = distance(torch.tensor(student), torch.tensor(np.log(teacher_probs)), temperature).item()
        soft_teacher = softmax(np.log(teacher_probs) / temperature, axis=1)
        soft_student = softmax(student / temperature, axis=1)
        expected = np.mean([entropy(p, q) for p, q in zip(soft_teacher, soft_student)]) * temperature ** 2
        assert got == pytest.approx(expected, rel=1e-6)
    # T = 1 by hand: sum p log(p / q), the teacher's distribution against the model's
    q = np.exp(student) / np.exp(student).sum(axis=1, keepdims=True)
    by_hand = np.mean(np.sum(teacher_probs * np.log(teacher_probs / q), axis=1))
    assert distance(torch.tensor(student), torch.tensor(np.log(teacher_probs)), 1.0).item() == pytest.approx(by_hand)


def test_distance_of_one_score_is_the_mean_squared_difference():
    got = distance(torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0], [2.5]]), 4.0)
    assert got.item() == pytest.approx((1.0 + 0.25) / 2)  # no temperature for scores


def test_step_mixes_the_losses_and_hides_the_targets_from_the_task():
    class Task:
        cuda_graphs = True

        def forward(self, model, batch):
            assert TARGETS not in batch
            return SimpleNamespace(logits=model(batch["x"]))

        def loss(self, outputs, batch):
            assert TARGETS not in batch
            return ((outputs.logits[:, 0] - batch["y"]) ** 2).mean()

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    batch = {"x": torch.randn(8, 4), "y": torch.randn(8), TARGETS: torch.randn(8, 1)}
    step = DistillStep(Task(), weight=0.3, temperature=1.0)
    outputs = step.forward(model, batch)
    own = ((outputs.logits[:, 0] - batch["y"]) ** 2).mean()
    taught = ((outputs.logits - batch[TARGETS]) ** 2).mean()
    torch.testing.assert_close(step.loss(outputs, batch), 0.7 * own + 0.3 * taught)
    only_teacher = DistillStep(Task(), weight=1.0, temperature=1.0)
    torch.testing.assert_close(only_teacher.loss(outputs, batch), taught)


def test_graph_padding_leaves_the_targets_alone():
    batch = {"input_ids": torch.ones(2, 5, dtype=torch.long), "attention_mask": torch.ones(2, 5, dtype=torch.long),
             TARGETS: torch.randn(2, 5)}  # as many classes as tokens: still not a token tensor
    padded = pad_batch(batch, pad_id=0)
    assert padded["input_ids"].shape == (2, 16)
    assert torch.equal(padded[TARGETS], batch[TARGETS])


def train(task: str, model, train_file, out, *extra, dev=None) -> dict:
    assert cli.main(["train", task, "--model", str(model), "--train", str(train_file), "--dev", str(dev or train_file),
                     "--output-dir", str(out), *STEPS, *map(str, extra)]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def sts_files(tmp_path_factory, sts_train_csv):
    folder = tmp_path_factory.mktemp("distill-sts")
    frame = pd.read_csv(sts_train_csv).head(64)
    frame.to_csv(folder / "train.csv", index=False)
    # the same pairs with other labels: a student taught by its teachers alone (weight 1) never reads them
    frame.assign(label=frame["label"].sample(frac=1, random_state=0).to_numpy()).to_csv(folder / "shuffled.csv",
                                                                                      index=False)
    return folder


@pytest.fixture(scope="module")
def sts_teachers(tmp_path_factory, tiny_model, sts_files):
    folder = tmp_path_factory.mktemp("teachers")
    for seed in (1, 2):
        train("sts", tiny_model, sts_files / "train.csv", folder / f"t{seed}", "--seed", seed, "--learning-rate", 1e-3)
    return [folder / "t1", folder / "t2"]


def test_targets_are_the_teachers_mean_prediction(sts_teachers, sts_files):
    task = STSTask()
    examples = task.read(sts_files / "train.csv")
    targets = teacher_targets(task, [str(p) for p in sts_teachers], examples, "fp32", progress=False)
    preds = [Predictor(p, precision="fp32", progress=False).predict(examples) for p in sts_teachers]
    assert len(targets) == len(examples) and targets[0].shape == (1,)
    np.testing.assert_allclose(np.concatenate(targets), (preds[0] + preds[1]) / 2, rtol=1e-6)
    assert not np.allclose(preds[0], preds[1])  # two seeds, two teachers


def test_sts_student_taught_alone_ignores_the_labels(tiny_model, sts_teachers, sts_files, tmp_path):
    """With --distill-weight 1 the loss is the teachers' term only: shuffled training labels change nothing
    (``--no-init-mean``: the head would otherwise start at the labels' mean)."""
    dev, fast = sts_files / "train.csv", ["--no-init-mean", "--learning-rate", 1e-3]
    teach = ["--teacher", *sts_teachers, "--distill-weight", 1, *fast]
    true = train("sts", tiny_model, sts_files / "train.csv", tmp_path / "a", *teach, dev=dev)
    other = train("sts", tiny_model, sts_files / "shuffled.csv", tmp_path / "b", *teach, dev=dev)
    plain = train("sts", tiny_model, sts_files / "shuffled.csv", tmp_path / "c", *fast, dev=dev)
    assert [h["mse"] for h in true["history"]] == [h["mse"] for h in other["history"]]
    assert [h["mse"] for h in plain["history"]] != [h["mse"] for h in other["history"]]
    info = json.loads((tmp_path / "a" / "kluekit.json").read_text())
    assert info["train_config"]["teacher"] == [str(p) for p in sts_teachers]
    assert info["train_config"]["distill_weight"] == 1.0


def test_classification_student(tiny_model, tmp_path, capsys):
    rows = pd.read_csv(shared_path("data", "nsmc", "ratings_train_first5000.txt"), sep="\t").dropna().head(64)
    data = tmp_path / "nsmc.tsv"
    rows.rename(columns={"document": "text"}).to_csv(data, sep="\t", index=False)
    train("classify", tiny_model, data, tmp_path / "teacher", "--learning-rate", 1e-3)
    task = Predictor(tmp_path / "teacher").task  # the run's options and labels
    examples = task.read(data)
    targets = teacher_targets(task, [str(tmp_path / "teacher")], examples, "fp32", progress=False)
    assert targets[0].shape == (2,)
    np.testing.assert_allclose(np.exp(np.stack(targets)).sum(axis=1), 1.0, rtol=1e-5)  # log-probabilities
    record = train("classify", tiny_model, data, tmp_path / "student", "--teacher", tmp_path / "teacher",
                   "--distill-temperature", 2, "--rdrop", 1.0)
    assert record["history"]
    named = tmp_path / "named.tsv"  # the same rows with the labels as words: other labels than the teacher's
    rows.rename(columns={"document": "text"}).assign(label=rows["label"].map({0: "neg", 1: "pos"})) \
        .to_csv(named, sep="\t", index=False)
    code = cli.main(["train", "classify", "--model", str(tiny_model), "--train", str(named), "--output-dir",
                     str(tmp_path / "other"), "--teacher", str(tmp_path / "teacher"), *STEPS])
    assert code != 0 and "has other labels (0, 1) than this run's training file (neg, pos)" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()  # refused before anything was written


def test_tasks_without_one_prediction_per_example_refuse():
    from kluekit.errors import KluekitError
    from kluekit.tasks.ner import NERTask
    from kluekit.teachers import check_teachers

    with pytest.raises(KluekitError, match="ner models cannot learn from teachers"):
        check_teachers(NERTask(), ["anything"])


def test_errors_are_one_line(tiny_model, sts_teachers, sts_files, tmp_path, capsys):
    def fails(*extra) -> str:
        code = cli.main(["train", "sts", "--model", str(tiny_model), "--train", str(sts_files / "train.csv"),
                         "--output-dir", str(tmp_path / "x"), "--overwrite", *STEPS, *map(str, extra)])
        assert code != 0
        return capsys.readouterr().err.strip().splitlines()[-1]

    assert "--distill-weight" in fails("--teacher", sts_teachers[0], "--distill-weight", 0)
    assert "--distill-temperature" in fails("--teacher", sts_teachers[0], "--distill-temperature", 0)
    assert "--teacher" in fails("--teacher", tmp_path / "missing")
    nsmc = tmp_path / "nsmc.tsv"
    pd.read_csv(shared_path("data", "nsmc", "ratings_train_first5000.txt"), sep="\t").dropna().head(32) \
        .rename(columns={"document": "text"}).to_csv(nsmc, sep="\t", index=False)
    train("classify", tiny_model, nsmc, tmp_path / "classifier")
    assert "was trained for classify, not sts" in fails("--teacher", tmp_path / "classifier")
