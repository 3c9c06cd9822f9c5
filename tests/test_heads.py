"""EntityPairClassifier (kluekit.heads): reads the entity-marker states, saves and loads like a transformers model."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel

from kluekit.errors import KluekitError
from kluekit.heads import HEAD_FILE, EntityPairClassifier


@pytest.fixture(scope="module")
def model(tiny_model):
    torch.manual_seed(0)
    return EntityPairClassifier.from_pretrained(str(tiny_model), num_labels=3, id2label={0: "a", 1: "b", 2: "c"},
                                                label2id={"a": 0, "b": 1, "c": 2}).eval()


def batch():
    torch.manual_seed(1)
    ids = torch.randint(10, 900, (2, 12))
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), entity_positions=torch.tensor([[1, 5], [3, 7]]))


def test_logits_depend_on_the_entity_positions(model):
    inputs = batch()
    logits = model(**inputs).logits
    assert logits.shape == (2, 3)
    moved = model(**{**inputs, "entity_positions": torch.tensor([[2, 5], [3, 7]])}).logits
    assert not torch.allclose(logits[0], moved[0]) and torch.allclose(logits[1], moved[1])
    with pytest.raises(ValueError, match="entity_positions"):
        model(input_ids=inputs["input_ids"])


def test_save_and_load_give_the_same_logits(model, tmp_path):
    model.save_pretrained(tmp_path)
    assert (tmp_path / HEAD_FILE).is_file()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["id2label"] == {"0": "a", "1": "b", "2": "c"} and config["kluekit_head"] == "EntityPairClassifier"
    loaded = EntityPairClassifier.from_pretrained(str(tmp_path)).eval()
    torch.testing.assert_close(loaded(**batch()).logits, model(**batch()).logits)
    AutoModel.from_pretrained(tmp_path)  # the encoder alone loads with plain transformers


def test_a_run_directory_without_the_head_is_refused(tiny_model, tmp_path):
    AutoModel.from_pretrained(tiny_model).save_pretrained(tmp_path)
    (tmp_path / "kluekit.json").write_text("{}")
    with pytest.raises(KluekitError, match="not trained with --pooling entity"):
        EntityPairClassifier.from_pretrained(str(tmp_path))
    EntityPairClassifier.from_pretrained(str(tmp_path), num_labels=2)  # as a base model for training: a new head
