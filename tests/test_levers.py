"""Three fine-tuning levers of ``kluekit train``: layer-wise learning-rate decay (``--layer-decay``), a moving
average of the weights for evaluating and saving (``--ema-decay``) and re-initialising the top encoder layers
(``--reinit-layers``); each off by default, with the behaviour unchanged then."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from test_engine import trainer as toy_trainer  # the engine's toy model kind (a GRU span model) and its run
from transformers import AutoModelForSequenceClassification

from conftest import kill_after
from kluekit import cli
from kluekit.engine.ema import EMA
from kluekit.engine.optim import depth, make_optimizer, make_scheduler
from kluekit.errors import KluekitError
from kluekit.modeling import reinit_top_layers

LR = 1e-3


@pytest.fixture
def cross_encoder(tiny_model):
    """The tiny 2-layer BERT with a fresh one-output head (the same head weights every time)."""
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)


def group_of(optimizer, model) -> dict[str, dict]:
    """Parameter name -> the optimizer group holding it."""
    by_id = {id(param): group for group in optimizer.param_groups for param in group["params"]}
    return {name: by_id[id(param)] for name, param in model.named_parameters()}


# ---- --layer-decay ------------------------------------------------------------------------------------------
def test_layer_decay_scales_each_depth_and_the_schedule_keeps_the_ratios(cross_encoder):
    optimizer = make_optimizer(cross_encoder, LR, 0.01, fused=False, layer_decay=0.5)
    groups = group_of(optimizer, cross_encoder)
    expected = {"bert.embeddings.word_embeddings.weight": 0.5 ** 3,       # depth 0 of 2 layers
                "bert.embeddings.LayerNorm.weight": 0.5 ** 3,
                "bert.encoder.layer.0.attention.self.query.weight": 0.5 ** 2,
                "bert.encoder.layer.0.output.LayerNorm.bias": 0.5 ** 2,
                "bert.encoder.layer.1.intermediate.dense.weight": 0.5,    # the top layer
                "bert.pooler.dense.weight": 1.0, "classifier.weight": 1.0, "classifier.bias": 1.0}
    for name, scale in expected.items():
        assert groups[name]["lr"] == pytest.approx(LR * scale, rel=1e-12), name
    assert groups["bert.encoder.layer.0.attention.self.query.weight"]["weight_decay"] == 0.01
    assert groups["bert.encoder.layer.0.output.LayerNorm.bias"]["weight_decay"] == 0.0
    assert groups["classifier.bias"]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(cross_encoder.parameters()))

    scheduler = make_scheduler(optimizer, "linear", 2, 10)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    factor = 5 / 8  # linear: 3 of the 8 steps after warmup done
    for name, scale in expected.items():
        assert groups[name]["lr"] == pytest.approx(LR * scale * factor, rel=1e-9), name


def test_layer_decay_1_gives_the_groups_of_before(cross_encoder):
    optimizer = make_optimizer(cross_encoder, LR, 0.01, fused=False, layer_decay=1.0)
    params = list(cross_encoder.parameters())
    assert [[id(p) for p in g["params"]] for g in optimizer.param_groups] == \
        [[id(p) for p in params if p.ndim >= 2], [id(p) for p in params if p.ndim < 2]]
    assert [(g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == [(LR, 0.01), (LR, 0.0)]
    assert "lr_scale" not in optimizer.param_groups[0]


@pytest.mark.parametrize("name, expected", [
    ("bert.embeddings.position_embeddings.weight", 0), ("transformer.wte.weight", 0), ("transformer.wpe.weight", 0),
    ("bert.encoder.layer.0.attention.self.key.bias", 1), ("roberta.encoder.layers.11.fc1.weight", 12),
    ("transformer.h.3.attn.c_attn.weight", 4), ("encoder.block.5.layer.1.DenseReluDense.wi.weight", 6),
    ("0.auto_model.encoder.layer.2.output.dense.weight", 3),  # a bi-encoder (sentence-transformers)
    ("transformer.ln_f.weight", 13), ("lm_head.weight", 13), ("pre_classifier.weight", 13)])
def test_the_depth_of_a_parameter_comes_from_its_name(name, expected):
    assert depth(name, 12) == expected


def test_layer_decay_outside_0_1_is_refused(cross_encoder):
    for value in (0.0, -0.5, 1.5):
        with pytest.raises(KluekitError, match="--layer-decay"):
            make_optimizer(cross_encoder, LR, 0.01, fused=False, layer_decay=value)


# ---- --ema-decay --------------------------------------------------------------------------------------------
def test_the_average_follows_the_recurrence():
    torch.manual_seed(0)
    linear = torch.nn.Linear(3, 2)
    frozen = torch.nn.Linear(3, 1).requires_grad_(False)
    ema = EMA(list(linear.parameters()) + list(frozen.parameters()), decay=0.5)
    assert len(ema.shadow) == 2  # trainable weights only
    optimizer = torch.optim.SGD(linear.parameters(), lr=0.1)
    expected = [param.detach().clone().double() for param in linear.parameters()]
    for k in range(12):  # the decay ramps (1 + k) / (10 + k) up to 0.5, reached at k = 8
        linear(torch.randn(4, 3)).square().sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        ema.update()
        decay = min(0.5, (1 + k) / (10 + k))
        expected = [decay * e + (1 - decay) * p.detach().double() for e, p in zip(expected, linear.parameters())]
    assert ema.updates == 12
    for got, want in zip(ema.shadow, expected):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-7)


def test_the_average_is_swapped_in_place_and_back_and_round_trips():
    torch.manual_seed(0)
    linear = torch.nn.Linear(3, 2)
    ema = EMA(linear.parameters(), decay=0.9)
    with torch.no_grad():
        linear.weight.add_(1.0)
    ema.update()
    raw, pointers = [p.detach().clone() for p in linear.parameters()], [p.data_ptr() for p in linear.parameters()]
    with ema.applied():
        assert all(torch.equal(p, s) for p, s in zip(linear.parameters(), ema.shadow))
        assert [p.data_ptr() for p in linear.parameters()] == pointers  # the same storage (CUDA graphs read it)
    assert all(torch.equal(p, r) for p, r in zip(linear.parameters(), raw))
    assert not torch.equal(linear.weight, ema.shadow[0])

    other = EMA(torch.nn.Linear(3, 2).parameters(), decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1 and all(torch.equal(a, b) for a, b in zip(other.shadow, ema.shadow))
    with pytest.raises(KluekitError, match="does not match"):
        EMA(torch.nn.Linear(4, 2).parameters(), decay=0.9).load_state_dict(ema.state_dict())


class Watching:
    """An evaluator that records the weights it is given, then scores as the wrapped one does."""

    def __init__(self, evaluator):
        self.evaluator, self.seen = evaluator, []
        self.primary, self.greater_is_better = evaluator.primary, evaluator.greater_is_better

    def __call__(self, model):
        self.seen.append([p.detach().clone() for p in model.parameters()])
        return self.evaluator(model)


def test_evaluation_and_saving_see_the_average_and_training_goes_on_raw(tmp_path):
    plain, _ = toy_trainer(tmp_path / "plain", max_steps=20)
    plain.fit()
    averaged, saved = toy_trainer(tmp_path / "ema", max_steps=20, ema_decay=0.9)
    averaged.evaluator = watching = Watching(averaged.evaluator)
    averaged.fit()
    assert len(watching.seen) == 2 and averaged.ema.updates == 20
    final = watching.seen[-1]  # the evaluation at the last step: the average after 20 updates
    assert all(torch.equal(seen, shadow) for seen, shadow in zip(final, averaged.ema.shadow))
    names = [name for name, _ in averaged.unwrapped.named_parameters()]
    kept = watching.seen[averaged.state["best_step"] // 10 - 1]  # the kept model is the average it was scored with
    assert all(torch.equal(saved[-1][name], tensor) for name, tensor in zip(names, kept))
    # the average never fed back into training: the raw weights end exactly where a run without one does
    for (name, mine), theirs in zip(averaged.unwrapped.named_parameters(), plain.unwrapped.parameters()):
        assert torch.equal(mine, theirs), name
    assert not torch.equal(averaged.unwrapped.embed.weight, averaged.ema.shadow[0])


def test_a_resumed_run_with_an_average_ends_as_the_uninterrupted_one(tmp_path):
    whole, _ = toy_trainer(tmp_path / "whole", max_steps=40, ema_decay=0.9)
    expected = whole.fit()

    interrupted, _ = toy_trainer(tmp_path / "killed", max_steps=40, ema_decay=0.9)
    kill_after(interrupted, 25)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    assert (tmp_path / "killed" / "checkpoint" / "ema.pt").is_file()

    resumed, _ = toy_trainer(tmp_path / "killed", max_steps=40, ema_decay=0.9, resume=True)
    assert resumed.resume() and resumed.ema.updates == 20
    got = resumed.fit()
    assert got["history"] == expected["history"]  # every evaluation (of the average), exactly
    assert resumed.ema.updates == 40
    assert all(torch.equal(a, b) for a, b in zip(resumed.ema.shadow, whole.ema.shadow))
    for name, tensor in whole.unwrapped.state_dict().items():
        assert torch.equal(resumed.unwrapped.state_dict()[name], tensor), name


# ---- --reinit-layers ----------------------------------------------------------------------------------------
def test_reinit_changes_exactly_the_top_layers_and_is_deterministic(tiny_model, cross_encoder):
    before = {name: tensor.clone() for name, tensor in cross_encoder.state_dict().items()}
    torch.manual_seed(123)
    next_draw = torch.rand(3)
    torch.manual_seed(123)
    reinit_top_layers(cross_encoder, 1, seed=7)
    assert torch.equal(torch.rand(3), next_draw)  # the global generator is left as it was
    after = cross_encoder.state_dict()
    top = [name for name in after if name.startswith("bert.encoder.layer.1.")]
    matrices = [name for name in top if after[name].ndim == 2]
    assert len(matrices) == 6  # query, key, value, attention output, intermediate, output
    for name in matrices:
        assert not torch.equal(after[name], before[name]), name
        assert after[name].std().item() == pytest.approx(0.02, rel=0.25), name  # the config's initializer_range
    for name in top:
        if name.endswith("LayerNorm.weight"):
            assert torch.equal(after[name], torch.ones_like(after[name])), name
        if name.endswith("bias"):
            assert torch.equal(after[name], torch.zeros_like(after[name])), name
    for name in set(after) - set(top):  # layer 0, the embeddings, the pooler and the head
        assert torch.equal(after[name], before[name]), name

    torch.manual_seed(0)
    again = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    reinit_top_layers(again, 1, seed=7)
    assert all(torch.equal(again.state_dict()[name], after[name]) for name in after)
    torch.manual_seed(0)
    other_seed = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    reinit_top_layers(other_seed, 2, seed=8)
    assert not torch.equal(other_seed.state_dict()[matrices[0]], after[matrices[0]])
    assert not torch.equal(other_seed.bert.encoder.layer[0].attention.self.query.weight,
                           before["bert.encoder.layer.0.attention.self.query.weight"])
    with pytest.raises(KluekitError, match="3 is more than the model's 2 encoder layers"):
        reinit_top_layers(other_seed, 3, seed=8)


# ---- through kluekit train ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_csv(tmp_path_factory, sts_train_csv):
    path = tmp_path_factory.mktemp("levers") / "train.csv"
    pd.read_csv(sts_train_csv).head(64).to_csv(path, index=False)
    return path


def train_args(model, train, out, *extra) -> list[str]:
    return ["train", "sts", "--model", str(model), "--train", str(train), "--output-dir", str(out), "--max-steps", "4",
            "--batch-size", "16", "--max-length", "64", "--learning-rate", "1e-3", "--dev-split", "0.25", *extra]


def test_the_levers_train_and_are_recorded(tiny_model, small_csv, tmp_path):
    run = tmp_path / "run"
    assert cli.main(train_args(tiny_model, small_csv, run, "--layer-decay", "0.8", "--ema-decay", "0.99",
                               "--reinit-layers", "1", "--eval-steps", "2")) == 0
    options = json.loads((run / "kluekit.json").read_text())["train_config"]
    assert (options["layer_decay"], options["ema_decay"], options["reinit_layers"]) == (0.8, 0.99, 1)
    assert [h["step"] for h in json.loads((run / "metrics.json").read_text())["history"]] == [2, 4]
    assert (run / "model.safetensors").is_file()


def test_the_levers_are_off_by_default_and_have_help(capsys):
    from kluekit.config import TrainConfig

    cfg = TrainConfig(train=["x.csv"])
    assert (cfg.layer_decay, cfg.ema_decay, cfg.reinit_layers) == (1.0, 0.0, 0)
    with pytest.raises(SystemExit):
        cli.main(["train", "sts", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for option, usual in [("--layer-decay", "usual 0.8 to 0.95"), ("--ema-decay", "usual 0.999"),
                          ("--reinit-layers", "usual 1 to 3")]:
        assert option in shown and usual in shown, option


@pytest.mark.parametrize("extra, message", [
    (["--layer-decay", "0"], "--layer-decay: 0.0 must be in (0, 1]"),
    (["--layer-decay", "1.5"], "--layer-decay: 1.5 must be in (0, 1]"),
    (["--ema-decay", "1"], "--ema-decay: 1.0 must be in [0, 1)"),
    (["--ema-decay", "-0.1"], "--ema-decay: -0.1 must be in [0, 1)"),
    (["--reinit-layers", "-1"], "--reinit-layers: -1 must be >= 0"),
    (["--reinit-layers", "3"], "--reinit-layers: 3 is more than the model's 2 encoder layers")])
def test_bad_values_are_one_line(tiny_model, small_csv, tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert cli.main(train_args(tiny_model, small_csv, out, *extra)) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line[line.index("kluekit:"):] for line in err.replace("\r", "\n").splitlines() if "kluekit:" in line]
    assert len(lines) == 1 and message in lines[0], err[-2000:]
    assert not (out / "kluekit.json").exists()
