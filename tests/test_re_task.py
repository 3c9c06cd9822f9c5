"""The RE task's own pieces: losses, class weights, probabilities, the submission format."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers import AutoModelForSequenceClassification
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from kluekit.tasks.re import REOptions, RETask


def task(**options) -> RETask:
    return RETask(REOptions(**options))


def test_default_labels_are_the_competition_order():
    labels = task().labels
    assert len(labels) == 30 and labels[0] == "no_relation" and labels[1] == "org:top_members/employees"


def test_balanced_class_weights_match_scikit_learn():
    t = task(loss="weighted_ce")
    ids = np.array([0] * 50 + [1] * 5 + [2] * 20 + [5])
    t.fit(pd.DataFrame({"label_id": ids}))
    present = np.unique(ids)
    expected = compute_class_weight("balanced", classes=present, y=ids) * len(present) / 30
    np.testing.assert_allclose(t.class_weights[present], expected)
    assert (t.class_weights[[3, 4] + list(range(6, 30))] == 1.0).all()


def test_losses():
    logits = torch.tensor([[2.0, 0.5, -1.0] + [0.0] * 27, [0.1, 3.0, 0.2] + [0.0] * 27])
    labels = torch.tensor([0, 2])
    outputs, batch = SequenceClassifierOutput(logits=logits), {"labels": labels}  # what forward gives, the batch
    ce = F.cross_entropy(logits, labels)
    assert task(loss="ce").loss(outputs, batch) == pytest.approx(ce.item())
    assert task(loss="focal", focal_gamma=0.0).loss(outputs, batch).item() == pytest.approx(ce.item(), rel=1e-6)
    p = F.softmax(logits, -1)[[0, 1], [0, 2]]
    focal = (-(1 - p) ** 2 * p.log()).mean()
    assert task(loss="focal").loss(outputs, batch).item() == pytest.approx(focal.item(), rel=1e-6)
    weighted = task(loss="weighted_ce")
    weighted.fit(pd.DataFrame({"label_id": [0, 0, 0, 2]}))
    expected = F.cross_entropy(logits, labels, weight=torch.tensor(weighted.class_weights, dtype=torch.float32))
    assert weighted.loss(outputs, batch).item() == pytest.approx(expected.item(), rel=1e-6)


def test_outputs_are_probabilities_and_submission_is_well_formed(tmp_path):
    t = task()
    logits = np.random.default_rng(0).normal(size=(3, 30)) * 20
    probs = t.outputs(logits)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    examples = pd.DataFrame({"id": ["7", "3", "5"]})
    t.write_predictions(probs, examples, tmp_path / "submission.csv")
    out = pd.read_csv(tmp_path / "submission.csv", dtype={"id": str})
    assert out["id"].tolist() == ["7", "3", "5"]
    assert out["pred_label"].tolist() == [t.labels[i] for i in probs.argmax(axis=1)]
    parsed = np.array([json.loads(p) for p in out["probs"]])
    np.testing.assert_array_equal(parsed, probs)  # full precision: the 30 values still sum to 1


def test_marker_style_asks_for_its_special_tokens():
    assert task(entity_style="marker").special_tokens == ("[E1]", "[/E1]", "[E2]", "[/E2]")
    assert task(entity_style="typed").special_tokens == ()


def test_pooling_auto_resolves_by_entity_style_and_entity_pooling_needs_markers():
    from kluekit.errors import KluekitError
    from kluekit.heads import EntityPairClassifier

    assert task(entity_style="typed").options.pooling == "entity"
    assert task(entity_style="marker").model_class() is EntityPairClassifier
    assert task(entity_style="baseline").options.pooling == "cls"
    assert task(entity_style="typed", pooling="cls").model_class() is AutoModelForSequenceClassification
    with pytest.raises(KluekitError, match="--pooling entity"):
        task(entity_style="baseline", pooling="entity")


def run_task(info: dict, tmp_path):
    import json

    from kluekit.rundir import RunDir

    (tmp_path / "kluekit.json").write_text(json.dumps(info))
    return RunDir.open(tmp_path).task()


def test_runs_saved_before_the_pooling_option_keep_cls_pooling(tmp_path):
    old = run_task({"task": "re", "task_options": {"entity_style": "typed", "label_map": None, "loss": "ce",
                                                   "focal_gamma": 2.0, "skip_bad_rows": False}}, tmp_path)
    assert old.options.pooling == "cls"
    assert run_task({"task": "re", "task_options": {"entity_style": "typed", "pooling": "entity"}},
                    tmp_path).options.pooling == "entity"


def test_a_run_is_refused_for_another_task(tmp_path):
    from kluekit.errors import KluekitError
    from kluekit.rundir import RunDir

    run_task({"task": "biencoder"}, tmp_path)  # bi-encoder runs saved before it was a task still open
    with pytest.raises(KluekitError, match="was trained for biencoder, not sts; use kluekit predict biencoder"):
        RunDir.open(tmp_path).task(expected="sts")


def test_a_biencoder_run_saved_before_it_was_a_task_keeps_its_prompt(tmp_path):
    old = run_task({"task": "biencoder", "train_config": {"prompt": "query: ", "loss": "cosine", "epochs": 4,
                                                          "train": ["a.csv"], "max_length": 128}}, tmp_path)
    assert old.options.prompt == "query: " and old.options.loss == "cosine"
