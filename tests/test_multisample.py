"""Multi-sample dropout (``--multi-sample-dropout N``): the output layer's N draws are averaged while training and
nothing changes in evaluation or in what is saved; models without a head are refused in one line."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, BertConfig

from kluekit import cli
from kluekit.engine.multisample import add_multisample_dropout, averaged_output, output_layer
from kluekit.errors import KluekitError


def tiny_bert(model_class, labels: int):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, num_labels=labels)
    return model_class.from_config(config)


def test_the_draws_are_averaged_and_the_next_dropout_is_replaced():
    linear = torch.nn.Linear(8, 3)
    inputs = torch.randn(4, 8)
    torch.manual_seed(1)
    got = averaged_output(linear, inputs, 0.5, 4)
    torch.manual_seed(1)
    draws = [linear(torch.nn.functional.dropout(inputs, 0.5, True)) for _ in range(4)]
    torch.testing.assert_close(got, torch.stack(draws).mean(0))
    model = tiny_bert(AutoModelForSequenceClassification, 3)
    layer, dropout = output_layer(model)
    assert layer is model.classifier and dropout is model.dropout


@pytest.mark.parametrize("model_class", [AutoModelForSequenceClassification, AutoModelForTokenClassification])
def test_training_output_is_the_mean_and_evaluation_is_unchanged(model_class):
    model = tiny_bert(model_class, 3)
    ids = torch.randint(5, 50, (2, 7))
    model.eval()
    before = model(input_ids=ids).logits
    state = {k: v.clone() for k, v in model.state_dict().items()}
    handle = add_multisample_dropout(model, 5)
    assert model.dropout.p == 0.0
    torch.testing.assert_close(model(input_ids=ids).logits, before)  # eval: no dropout, the same output
    assert model.state_dict().keys() == state.keys()
    model.train()
    torch.manual_seed(3)
    got = model(input_ids=ids).logits
    assert not torch.equal(got, before)
    handle.remove()
    # the same draws by hand from the same seed (the encoder's dropouts first, then 5 of the head at BERT's 0.1)
    model.classifier.register_forward_hook(lambda m, a, o: averaged_output(m, a[0], 0.1, 5))
    torch.manual_seed(3)
    torch.testing.assert_close(model(input_ids=ids).logits, got)


def test_the_entity_pair_head_samples_its_last_dropout(tiny_model):
    from kluekit.heads import EntityPairClassifier

    model = EntityPairClassifier.from_pretrained(str(tiny_model), num_labels=4)
    layer, dropout = output_layer(model)
    assert layer is model.head[-1] and dropout is model.head[-2]


def test_models_without_a_head_and_one_draw_are_refused():
    with pytest.raises(KluekitError, match="no classification or regression head"):
        add_multisample_dropout(torch.nn.Sequential(torch.nn.Linear(4, 4)), 5)
    with pytest.raises(KluekitError, match="give 2 or more"):
        add_multisample_dropout(tiny_bert(AutoModelForSequenceClassification, 2), 1)


def test_a_cli_run_with_multisample_dropout_trains_and_reloads(tiny_model, sts_train_csv, tmp_path):
    run = tmp_path / "run"
    assert cli.main(["train", "sts", "--model", str(tiny_model), "--train", str(sts_train_csv), "--dev-split", "0.2",
                     "--output-dir", str(run), "--max-steps", "6", "--batch-size", "16",
                     "--multi-sample-dropout", "4", "--no-tensorboard"]) == 0
    assert json.loads((run / "kluekit.json").read_text())["train_config"]["multi_sample_dropout"] == 4
    reloaded = AutoModelForSequenceClassification.from_pretrained(run)
    assert reloaded.config.num_labels == 1
