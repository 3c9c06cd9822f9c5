"""The training speed paths that CPU CI can check: bucket padding for CUDA graphs (shapes, values, and that
it leaves the model's outputs unchanged), when graphs are used, the eager fallback's gradients, the numpy padding
collator against transformers' ``DataCollatorWithPadding``, the optimizer update (eagerly; replayed as a graph
where a GPU is present) and ``kluekit train`` under torchrun (DDP, two CPU processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from conftest import shared_path
from kluekit.batching import PadCollator
from kluekit.config import TrainConfig
from kluekit.engine.graphs import BucketPadding, GraphedSteps, GraphedUpdate, bucket_length, pad_batch
from kluekit.engine.optim import make_optimizer, make_scheduler
from kluekit.errors import KluekitError
from kluekit.engine.trainer import use_cuda_graphs
from kluekit.tasks.sts import STSTask

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("length, bucket", [(1, 16), (16, 16), (17, 32), (41, 48), (128, 128), (129, 160),
                                            (256, 256), (257, 320), (512, 512)])
def test_bucket_length(length, bucket):
    assert bucket_length(length) == bucket


def test_pad_batch_fills_each_field():
    batch = {"input_ids": torch.tensor([[5, 6, 7], [5, 6, 0]]), "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]]),
             "labels": torch.tensor([1.5, 2.0])}
    padded = pad_batch(batch, 0, lambda length: 5)
    assert padded["input_ids"].tolist() == [[5, 6, 7, 0, 0], [5, 6, 0, 0, 0]]
    assert padded["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    assert padded["labels"].tolist() == [1.5, 2.0]  # one label per example: unchanged
    token_labels = pad_batch({"input_ids": torch.ones(1, 2, dtype=torch.long), "labels": torch.tensor([[3, 4]])}, 1,
                             lambda length: 4)
    assert token_labels["labels"].tolist() == [[3, 4, -100, -100]]
    assert token_labels["input_ids"].tolist() == [[1, 1, 1, 1]]
    slots = pad_batch({"input_ids": torch.ones(1, 2, dtype=torch.long), "labels": torch.tensor([[[3, 4], [5, -100]]])},
                      1, lambda length: 3)["labels"]  # per-character labels (B, T, P): padded along T
    assert slots.tolist() == [[[3, 4], [5, -100], [-100, -100]]]
    assert pad_batch(batch, 0, lambda length: 3)["input_ids"] is batch["input_ids"]
    # a bi-encoder batch: each text column is padded to its own bucket; (batch, 2) positions are left alone
    columns = {"a_input_ids": torch.ones(2, 3, dtype=torch.long), "a_attention_mask": torch.ones(2, 3),
               "b_input_ids": torch.ones(2, 20, dtype=torch.long), "b_attention_mask": torch.ones(2, 20),
               "entity_positions": torch.tensor([[1, 2], [2, 1]])}
    shapes = {name: tuple(t.shape) for name, t in pad_batch(columns, 0).items()}
    assert shapes == {"a_input_ids": (2, 16), "a_attention_mask": (2, 16), "b_input_ids": (2, 32),
                      "b_attention_mask": (2, 32), "entity_positions": (2, 2)}


@pytest.fixture(scope="module")
def tiny_sts(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1).eval()
    features = [dict(tokenizer(a, b)) for a, b in [("오늘 날씨가 좋다", "날씨가 맑다"), ("숙소가 깨끗해요", "방이 더러웠어요 정말로")]]
    return tokenizer, model, features


def test_bucket_padding_leaves_outputs_unchanged(tiny_sts):
    tokenizer, model, features = tiny_sts
    collate = STSTask().collator(tokenizer)
    plain = collate(features)
    bucketed = BucketPadding(collate, tokenizer.pad_token_id)(features)
    assert bucketed["input_ids"].shape[1] == bucket_length(plain["input_ids"].shape[1]) > plain["input_ids"].shape[1]
    with torch.no_grad():
        torch.testing.assert_close(model(**bucketed).logits, model(**plain).logits, atol=1e-5, rtol=1e-5)


def test_graphed_steps_eager_fallback_matches_backward(tiny_sts):
    """Batches that are not replayed (an epoch's last, smaller one) take the eager path: same gradients."""
    tokenizer, model, features = tiny_sts
    task = STSTask()
    batch = {**task.collator(tokenizer)(features), "labels": torch.tensor([4.0, 1.0])}

    model.zero_grad(set_to_none=True)
    task.loss(task.forward(model, batch), batch).backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    graphed = GraphedSteps(model, task.forward, task.loss, batch_size=32, precision="fp32", accum=2)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())  # kept, zeroed
    graphed(batch)  # 2 rows, not the batch size: eager
    assert not graphed.graphs
    for param, grad in zip(model.parameters(), expected):
        torch.testing.assert_close(param.grad, grad / 2)  # divided by the accumulation steps
    model.zero_grad(set_to_none=True)


def test_cuda_graphs_only_where_safe(monkeypatch):
    cfg = TrainConfig(train=["x.csv"])
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert use_cuda_graphs(cfg, "cuda", "bf16") and use_cuda_graphs(cfg, "cuda", "fp32")
    assert not use_cuda_graphs(cfg, "cpu", "fp32")
    assert not use_cuda_graphs(cfg, "cuda", "fp16")  # loss scaling stays with accelerate
    assert not use_cuda_graphs(TrainConfig(train=["x.csv"], cuda_graphs=False), "cuda", "bf16")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not use_cuda_graphs(cfg, "cuda", "bf16")  # DDP


def test_train_under_torchrun_two_processes(tiny_model, sts_train_csv, tmp_path):
    """``torchrun -m kluekit train`` needs no code change: DDP over two CPU processes, one summary line."""
    rows = sts_train_csv.read_text(encoding="utf-8").splitlines()[:65]
    train = tmp_path / "train.csv"
    train.write_text("\n".join(rows) + "\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "kluekit", "train", "sts",
         "--model", str(tiny_model), "--train", str(train), "--dev", str(train), "--epochs", "1", "--batch-size", "8",
         "--no-swap-augment", "--output-dir", str(run_dir)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run directory:") == 1  # the main process reports; the other stays quiet
    info = json.loads((run_dir / "kluekit.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert info["world_size"] == 2 and info["cuda_graphs"] is False
    assert metrics["steps"] == 4  # 64 rows / (8 per process x 2 processes)
    assert metrics["train_examples_seen"] == 64


def test_bf16_predictions_come_from_an_fp32_head(tiny_sts):
    """Under bf16 autocast the encoder runs in bf16 but the head in fp32: regression scores are not bf16 values
    (8 bits of mantissa: steps of 1/32 near 5), and they match the head applied in fp32 to the bf16 states."""
    from kluekit.inference import autocast, fp32_heads, head_modules

    tokenizer, model, features = tiny_sts
    task, cpu = STSTask(), torch.device("cpu")
    batch = task.collator(tokenizer)(features * 8)
    assert [type(m).__name__ for m in head_modules(model)] == ["Linear"]  # BertForSequenceClassification.classifier
    with torch.no_grad():
        with autocast(cpu, "bf16"):
            rounded = task.forward(model, batch).logits
        with autocast(cpu, "bf16"), fp32_heads(model, cpu, "bf16"):
            scores = task.forward(model, batch).logits
            hidden = model.bert(**{k: v for k, v in batch.items() if k != "labels"}).pooler_output
        expected = model.classifier(hidden.float())
    assert rounded.dtype == torch.bfloat16 and scores.dtype == torch.float32
    torch.testing.assert_close(scores, expected)
    assert (scores != scores.to(torch.bfloat16).float()).any()  # not bf16-representable
    assert not model.classifier._forward_pre_hooks  # the hooks are gone afterwards
    assert head_modules(model.bert) == []  # a bare encoder has no head


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("multiple", [None, 8])
def test_pad_collator_matches_data_collator_with_padding(side, multiple):
    tokenizer = AutoTokenizer.from_pretrained(shared_path("models", "e5-small-ko"))
    tokenizer.padding_side = side
    texts = [("오늘 날씨가 좋다", "날씨가 맑다"), ("짧다", "아주 긴 문장이 여기에 하나 있어서 패딩이 많이 생긴다"), ("a", "b")]
    encoded = tokenizer([a for a, _ in texts], [b for _, b in texts], return_token_type_ids=True,
                        return_special_tokens_mask=True)
    items = [{name: encoded[name][i] for name in encoded} for i in range(len(texts))]
    for i, item in enumerate(items):
        item.update(label=float(i) / 2, weights=np.ones(2, dtype=np.float32) * i)
    without_mask = [{k: v for k, v in item.items() if k != "attention_mask"} for item in items]
    for batch_items in (items, without_mask, items[:1]):
        expected = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)(batch_items)
        got = PadCollator(tokenizer, multiple)(batch_items)
        assert sorted(got) == sorted(expected)
        for name in expected:
            assert got[name].dtype == expected[name].dtype, name
            torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)


def test_pad_collator_needs_a_padding_token():
    tokenizer = AutoTokenizer.from_pretrained(shared_path("models", "e5-small-ko"))
    tokenizer.pad_token = None
    with pytest.raises(KluekitError, match="no padding token"):
        PadCollator(tokenizer)([{"input_ids": [5, 6]}])


def updated_weights(update_kind: str, device: str, steps: int = 6) -> list[torch.Tensor]:
    """A small model's weights after ``steps`` AdamW updates with clipping and a linear schedule with warm-up:
    ``plain`` = clip_grad_norm_ + step + zero_grad, ``graphed`` = GraphedUpdate (replayed after 2 eager updates)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 1)).to(device)
    params = list(model.parameters())
    for param in params:
        param.grad = torch.zeros_like(param)
    optimizer = make_optimizer(model, 1e-2, 0.01, fused=device == "cuda")
    scheduler = make_scheduler(optimizer, "linear", 2, steps)
    update = GraphedUpdate(optimizer, params, max_grad_norm=0.5) if update_kind == "graphed" else None
    inputs = torch.randn(steps, 4, 8, device=device)
    for step in range(steps):
        (model(inputs[step]).square().mean() * 100).backward()  # large gradients: the clipping acts
        if update is None:
            torch.nn.utils.clip_grad_norm_(params, 0.5)
            optimizer.step()
            optimizer.zero_grad(set_to_none=False)
        else:
            update()
        scheduler.step()
    assert update is None or (update.graph is not None) == (device == "cuda")
    assert all(not param.grad.any() for param in params)
    assert all(isinstance(group["lr"], float) for group in optimizer.param_groups)  # the schedule sees numbers
    return [param.detach().cpu() for param in params]


def test_graphed_update_eager_matches_plain_update(monkeypatch):
    """Without a GPU (or before the capture) the update is clip + step + zero, as the eager trainer's."""
    monkeypatch.setattr(GraphedUpdate, "capture", lambda self: setattr(self, "failed", True))
    for got, expected in zip(updated_weights("graphed", "cpu"), updated_weights("plain", "cpu")):
        torch.testing.assert_close(got, expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_graphed_update_replays_the_plain_update():
    for got, expected in zip(updated_weights("graphed", "cuda"), updated_weights("plain", "cuda")):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
