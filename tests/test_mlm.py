"""Masked-LM pre-training: packing boundaries, masking statistics (tokens and whole words), fixed held-out
masks, the head on masked positions only, a tiny model whose held-out perplexity falls, TAPT output that
``train sts`` accepts, and bad input as one line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from kluekit import cli
from kluekit.tasks.masking import MaskingCollator, capacity, fixed_masks, pack_blocks
from kluekit.tasks.mlm import MLMOptions, MLMTask

DOCS = ["오늘 날씨가 정말 좋네요.", "숙소 위치는 찾기 쉬웠습니다.", "호스트가 매우 친절했습니다. 다음에도 꼭 오고 싶어요."]


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def errors(capsys) -> list[str]:
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    return [line[line.index("kluekit:"):] if "kluekit:" in line else line for line in lines
            if "kluekit:" in line or "Traceback" in line]


def label_matrix(batch: dict) -> torch.Tensor:
    """The batch's masked positions as a (rows x length) matrix of labels, -100 elsewhere."""
    labels = torch.full_like(batch["input_ids"], -100)
    kept = batch["mask_labels"] != -100
    labels[batch["mask_rows"][kept], batch["mask_cols"][kept]] = batch["mask_labels"][kept]
    return labels


def test_packing_keeps_every_token_in_order_with_document_separators(tokenizer):
    blocks = pack_blocks(tokenizer, DOCS, max_length=8)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert all(len(b) <= 8 and b[0] == cls and b[-1] == sep for b in blocks["input_ids"])
    assert all(len(b) == 8 for b in blocks["input_ids"][:-1])  # only the last block is short
    stream = [t for b in blocks["input_ids"] for t in b[1:-1]]
    expected = [t for doc in DOCS for t in tokenizer(doc, add_special_tokens=False)["input_ids"] + [sep]][:-1]
    assert stream == expected
    assert [len(w) for w in blocks["word_starts"]] == [len(b) for b in blocks["input_ids"]]
    first = tokenizer(DOCS[0], add_special_tokens=False, return_offsets_mapping=True)
    words = [s for s, flag in zip(first["offset_mapping"], blocks["word_starts"][0][1:]) if flag]
    assert len(words) == len(DOCS[0].split())  # eojeol: one start per space-separated word


def test_dynamic_masking_statistics(tokenizer):
    rng = np.random.default_rng(0)
    items = [{"input_ids": [tokenizer.cls_token_id, *rng.integers(10, 900, 126).tolist(), tokenizer.sep_token_id],
              "attention_mask": [1] * 128, "word_starts": [1] * 128} for _ in range(400)]
    torch.manual_seed(0)
    batch = MaskingCollator(tokenizer, 0.15, whole_word=False)(items)
    original = torch.tensor([item["input_ids"] for item in items])
    assert batch["mask_labels"].shape == (capacity(400 * 128, 0.15, False),)  # a fixed size for the batch shape
    labels = label_matrix(batch)
    masked = labels != -100
    assert int(masked.sum()) == int((batch["mask_labels"] != -100).sum())  # no position twice
    assert masked[:, [0, -1]].sum() == 0  # [CLS] and [SEP] are never masked
    assert abs(masked.float().mean().item() * 128 / 126 - 0.15) < 0.005
    assert torch.equal(labels[masked], original[masked])
    to_mask = (batch["input_ids"] == tokenizer.mask_token_id)[masked].float().mean().item()
    kept = (batch["input_ids"] == original)[masked].float().mean().item()
    assert abs(to_mask - 0.8) < 0.01 and abs(kept - 0.1) < 0.01 + 0.002  # a random pick may equal the original
    assert torch.equal(batch["input_ids"][~masked], original[~masked])


def test_whole_word_masking_masks_every_piece_of_a_chosen_word(tokenizer):
    blocks = pack_blocks(tokenizer, DOCS * 50, max_length=64)
    items = [dict(zip(blocks, values)) for values in zip(*blocks.values())]
    torch.manual_seed(1)
    batch = MaskingCollator(tokenizer, 0.15, whole_word=True)(items)
    for item, labels in zip(items, label_matrix(batch).tolist()):
        word = np.cumsum(item["word_starts"])
        chosen = {w for w, label in zip(word, labels) if label != -100}
        special = set(tokenizer.all_special_ids)
        for w in chosen:  # every piece of a chosen word (bar special tokens) is predicted
            assert all(label != -100 for ww, label, tid in zip(word, labels, item["input_ids"])
                       if ww == w and tid not in special)


def test_held_out_masks_are_fixed(tokenizer):
    blocks = pack_blocks(tokenizer, DOCS * 10, max_length=32)
    first, second = fixed_masks(blocks, tokenizer, 0.15, False), fixed_masks(blocks, tokenizer, 0.15, False)
    assert first == second and any(label != -100 for row in first["labels"] for label in row)
    batch = MaskingCollator(tokenizer, 0.15, False)([{"input_ids": i, "attention_mask": [1] * len(i), "labels": l}
                                                      for i, l in zip(first["input_ids"], first["labels"])])
    assert label_matrix(batch).tolist()[0][:len(first["labels"][0])] == first["labels"][0]  # kept, not masked again
    assert bool((batch["mask_labels"] != -100).all())  # held-out batches: exactly their masked positions


def test_every_held_out_block_has_a_masked_token(tokenizer):
    blocks = pack_blocks(tokenizer, ["가나", "다라", "마바"], max_length=4)  # tiny blocks: most draw no mask at 15%
    labels = fixed_masks(blocks, tokenizer, 0.15, False)["labels"]
    assert all(any(label != -100 for label in row) for row in labels)


def test_the_head_runs_on_masked_positions_only(tiny_model, tokenizer):
    task = MLMTask()
    model = AutoModelForMaskedLM.from_pretrained(tiny_model)
    blocks = pack_blocks(tokenizer, DOCS * 5, max_length=32)
    batch = task.collator(tokenizer)([dict(zip(blocks, values)) for values in zip(*blocks.values())])
    model.eval()
    logits = task.forward(model, batch)
    assert logits.shape == (len(batch["mask_labels"]), model.config.vocab_size)  # not (batch x length x vocabulary)
    full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(logits, full[batch["mask_rows"], batch["mask_cols"]], atol=1e-5, rtol=1e-5)
    labels = label_matrix(batch)
    expected = torch.nn.functional.cross_entropy(full[labels != -100], labels[labels != -100])
    torch.testing.assert_close(task.loss(logits, batch), expected)
    per_block = task.batch_outputs(logits, batch)
    assert per_block[:, 1].tolist() == (labels != -100).sum(dim=1).float().tolist()
    assert per_block[:, 0].sum() / per_block[:, 1].sum() == pytest.approx(expected.item(), rel=1e-5)


def test_capacity_holds_the_masks_of_a_batch():
    assert capacity(16, 0.15, False) == 16  # small batches: every slot
    size = capacity(256 * 128, 0.15, False)
    assert 256 * 128 * 0.15 + 7 * (256 * 128 * 0.15 * 0.85) ** 0.5 < size <= 256 * 128 * 0.2 and size % 64 == 0


@pytest.fixture(scope="module")
def sts_slice(tmp_path_factory, sts_train_csv):
    folder = tmp_path_factory.mktemp("mlm-data")
    pd.read_csv(sts_train_csv).head(600).to_csv(folder / "train.csv", index=False)
    return folder / "train.csv"


def test_tapt_lowers_held_out_perplexity_and_train_sts_accepts_the_run(tiny_model, sts_slice, tmp_path):
    run = tmp_path / "tapt"
    assert cli.main(["pretrain", "mlm", "--model", str(tiny_model), "--from-task", "sts", "--train", str(sts_slice),
                     "--dev-split", "0.1", "--output-dir", str(run), "--epochs", "3", "--batch-size", "16",
                     "--max-length", "64", "--learning-rate", "1e-3", "--whole-word-mask"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    perplexities = [h["perplexity"] for h in metrics["history"]]
    assert perplexities[-1] < 0.7 * perplexities[0], perplexities
    assert metrics["train_tokens_per_s"] > 0
    info = json.loads((run / "kluekit.json").read_text())
    assert info["task"] == "mlm" and info["task_options"]["from_task"] == "sts" and info["data"]["dev"]["rows"] == 120
    AutoModelForMaskedLM.from_pretrained(run)  # loads as a masked LM
    assert cli.main(["train", "sts", "--model", str(run), "--train", str(sts_slice), "--output-dir",
                     str(tmp_path / "sts"), "--max-steps", "4", "--max-length", "64"]) == 0


def test_from_scratch_with_a_size_config(tiny_model, sts_slice, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1,
                                  "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64}))
    run = tmp_path / "scratch"
    assert cli.main(["pretrain", "mlm", "--model-config", str(config), "--tokenizer", str(tiny_model),
                     "--from-task", "sts", "--train", str(sts_slice), "--dev-split", "0.1", "--output-dir", str(run),
                     "--max-steps", "10", "--max-length", "64"]) == 0
    model = AutoModelForMaskedLM.from_pretrained(run)
    assert model.config.hidden_size == 32 and model.config.vocab_size == len(AutoTokenizer.from_pretrained(run))


def test_bad_inputs_are_one_line_and_write_nothing(tiny_model, sts_slice, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n", encoding="utf-8")
    base = ["pretrain", "mlm", "--output-dir", str(tmp_path / "run")]
    cases = [
        ([*base, "--model", str(tiny_model), "--train", str(empty)], f"{empty}:1: file is empty"),
        ([*base, "--model", str(tiny_model), "--train", str(sts_slice), "--from-task", "sts", "--max-length", "512"],
         "--max-length: blocks of 512 tokens are longer than the model's 256 positions"),
        ([*base, "--model-config", "small", "--train", str(sts_slice), "--from-task", "sts"],
         "--model-config trains from scratch: give the tokenizer with --tokenizer DIR (e.g. one made by "
         "'kluekit tokenizer train')"),
        ([*base, "--model", str(tiny_model), "--train", str(sts_slice)], f"{sts_slice}:1: several columns "
         "(sentence1, sentence2, label) and none named sentence or text: choose one with --column"),
    ]
    for args, message in cases:
        assert cli.main(args) == 2
        assert errors(capsys) == [f"kluekit: error: {message}"], args
        assert not (tmp_path / "run").exists()


def test_a_tokenizer_without_a_mask_token_or_of_another_vocabulary_is_refused(tiny_model, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    bigger = tmp_path / "bigger"
    tokenizer.add_tokens([f"새토큰{i}" for i in range(50)])
    tokenizer.save_pretrained(bigger)
    from kluekit.errors import KluekitError

    with pytest.raises(KluekitError, match="they do not belong together"):
        MLMTask(MLMOptions(tokenizer=str(bigger))).build_model(str(tiny_model))
    no_mask = tmp_path / "no-mask"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.mask_token = None
    tokenizer.save_pretrained(no_mask)
    with pytest.raises(KluekitError, match="has no mask token"):
        MLMTask(MLMOptions(tokenizer=str(no_mask))).build_model(str(tiny_model))


def test_fill_mask_prints_and_writes_top_k(tiny_model, tmp_path, capsys):
    out = tmp_path / "fill.csv"
    assert cli.main(["fill-mask", "--model", str(tiny_model), "--text", "오늘 [MASK] 좋다", "숙소가 [MASK] [MASK]",
                     "--k", "3", "--output", str(out)]) == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["text_id", "mask", "rank", "token", "score", "sequence"]
    assert len(frame) == 3 + 2 * 3 and set(frame["rank"]) == {1, 2, 3}
    assert (frame.groupby(["text_id", "mask"])["score"].apply(lambda s: s.is_monotonic_decreasing)).all()
    assert "0: 오늘 [MASK] 좋다" in capsys.readouterr().out
    assert cli.main(["fill-mask", "--model", str(tiny_model), "--text", "오늘 [MASK] 좋다", "--k", "2",
                     "--output", str(out)]) == 0  # one sentence: the pipeline answers it unwrapped
    assert len(pd.read_csv(out)) == 2
    assert cli.main(["fill-mask", "--model", str(tiny_model), "--text", "마스크가 없다"]) == 2
    assert "--text 1: no mask token ([MASK]) in '마스크가 없다'" in capsys.readouterr().err


def test_dev_split_holds_out_a_stratified_share(tmp_path, capsys):
    from kluekit.config import TrainConfig
    from kluekit.tasks.classify import ClassifyTask
    from kluekit.training import split_off

    task = ClassifyTask()
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(200)], "label": ["a"] * 150 + ["b"] * 50, "id": range(200)})
    task.fit(frame)
    kept, held = split_off(task, frame, TrainConfig(train=["x"], dev_split=0.2, seed=1), has_dev=False)
    assert len(held) == 40 and (held["label"] == "b").sum() == 10  # the label shares kept
    again = split_off(task, frame, TrainConfig(train=["x"], dev_split=0.2, seed=1), has_dev=False)[1]
    assert again["id"].tolist() == held["id"].tolist() and not set(kept["id"]) & set(held["id"])
    from kluekit.errors import KluekitError

    with pytest.raises(KluekitError, match="give --dev or --dev-split, not both"):
        split_off(task, frame, TrainConfig(train=["x"], dev_split=0.2), has_dev=True)


def test_a_killed_pretraining_resumes_to_the_same_model(tiny_model, sts_slice, tmp_path):
    """Dynamic masks come from torch's generator, which the checkpoint restores: SIGKILL, --resume, same end."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    args = ["pretrain", "mlm", "--model", str(tiny_model), "--from-task", "sts", "--train", str(sts_slice),
            "--dev-split", "0.1", "--max-steps", "24", "--eval-steps", "8", "--batch-size", "16", "--max-length", "64"]
    assert cli.main([*args, "--output-dir", str(tmp_path / "whole")]) == 0
    kill = Path(__file__).resolve().parents[1] / "benchmarks" / "kill_at_step.py"
    killed = subprocess.run([sys.executable, str(kill), "12", *args, "--output-dir", str(tmp_path / "run")],
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert cli.main([*args, "--output-dir", str(tmp_path / "run"), "--resume"]) == 0
    whole, resumed = (json.loads((tmp_path / name / "metrics.json").read_text())["history"] for name in ("whole", "run"))
    assert resumed == whole and len(whole) == 3
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()
