"""Causal-LM pre-training and dialogue fine-tuning: framing and packing, the next-token loss against the model's
own, answer-only labels, a tiny GPT-2 whose held-out perplexity falls, a dialogue run whose tokenizer carries
its chat template, and bad inputs as one line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import shared_path
from kluekit import cli
from kluekit.batching import Features
from kluekit.tasks.clm import CLMTask, frame_ids, pack_stream
from kluekit.tasks.dialogue import DialogueOptions, DialogueTask
from tiny_model import build_tiny_gpt2, sts_texts


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory, sts_train_csv):
    return build_tiny_gpt2(sts_texts(sts_train_csv)[:3000], tmp_path_factory.mktemp("gpt2") / "model")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, sts_train_csv):
    path = tmp_path_factory.mktemp("clm-data") / "corpus.txt"
    path.write_text("\n".join(sts_texts(sts_train_csv)[:800]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def chat_pairs(tmp_path_factory):
    path = tmp_path_factory.mktemp("chat") / "pairs.csv"
    pd.read_csv(shared_path("data", "chatbot", "ChatbotData.csv")).head(400).to_csv(path, index=False)
    return path


def test_documents_are_framed_and_packed_into_blocks(tiny_gpt2):
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    docs = frame_ids(tokenizer, ["오늘 날씨가 좋다", "배가 고프다"])
    assert all(d[0] == tokenizer.bos_token_id and d[-1] == tokenizer.eos_token_id for d in docs)
    assert tokenizer.eos_token_id not in docs[0][1:-1]
    blocks = pack_stream(docs, 5)["input_ids"]
    assert sum(blocks, []) == docs[0] + docs[1]  # nothing lost or added
    assert all(len(b) == 5 for b in blocks[:-1]) and 0 < len(blocks[-1]) <= 5


def test_next_token_loss_matches_the_models_own(tiny_gpt2):
    tokenizer, model = AutoTokenizer.from_pretrained(tiny_gpt2), AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    task = CLMTask()
    features = task.encode(pd.DataFrame({"text": ["오늘 날씨가 좋다", "배가 고프다", "짧다"]}), tokenizer, 7)
    batch = task.collator(tokenizer)([Features(features)[i] for i in range(len(features["input_ids"]))])
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()  # the short last block's padding
    with torch.no_grad():
        ours = task.loss(task.forward(model, batch), batch)
        theirs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        per_block = task.batch_outputs(task.forward(model, batch), batch)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert per_block[:, 1].tolist() == (batch["labels"][:, 1:] != -100).sum(dim=1).tolist()
    assert per_block[:, 0].sum() / per_block[:, 1].sum() == pytest.approx(ours.item(), rel=1e-5)


def test_tiny_gpt2_from_scratch_lowers_held_out_perplexity(tiny_gpt2, corpus, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 64}))
    run = tmp_path / "scratch"
    assert cli.main(["pretrain", "clm", "--model-config", str(config), "--tokenizer", str(tiny_gpt2), "--train",
                     str(corpus), "--dev-split", "0.1", "--output-dir", str(run), "--epochs", "3", "--batch-size", "16",
                     "--max-length", "64", "--learning-rate", "3e-3", "--warmup", "0"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    perplexities = [h["perplexity"] for h in metrics["history"]]
    assert perplexities[-1] < 0.7 * perplexities[0], perplexities
    model = AutoModelForCausalLM.from_pretrained(run)
    assert model.config.n_layer == 2 and model.config.eos_token_id == AutoTokenizer.from_pretrained(run).eos_token_id


def test_dialogue_labels_only_the_answer(tiny_gpt2):
    task = DialogueTask(DialogueOptions())
    tokenizer, model = task.build_model(str(tiny_gpt2))
    sep = tokenizer.convert_tokens_to_ids("<sep>")
    assert sep != tokenizer.unk_token_id and model.get_input_embeddings().num_embeddings >= len(tokenizer)
    examples = pd.DataFrame({"question": ["밥 먹었어?", "오늘 " * 40], "answer": ["네 먹었어요.", "그렇군요."]})
    features = task.encode(examples, tokenizer, 32)
    for ids, labels, answer in zip(features["input_ids"], features["labels"], examples["answer"]):
        assert len(ids) <= 32 and ids[0] == tokenizer.bos_token_id
        start = ids.index(sep) + 1
        assert labels[:start] == [-100] * start and labels[start:] == ids[start:]
        assert tokenizer.decode(ids[start:-1]) == answer and ids[-1] == tokenizer.eos_token_id
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "밥 먹었어?"}], add_generation_prompt=True,
                                           tokenize=False)
    first = features["input_ids"][0]
    assert tokenizer(prompt, add_special_tokens=False)["input_ids"] == first[: first.index(sep) + 1]  # chat's prompt
    assert prompt.endswith("<sep>")


def test_dialogue_run_keeps_answers_apart_and_saves_its_chat_template(tiny_gpt2, chat_pairs, tmp_path):
    run = tmp_path / "chat"
    assert cli.main(["train", "dialogue", "--model", str(tiny_gpt2), "--train", str(chat_pairs), "--dev-split", "0.1",
                     "--output-dir", str(run), "--epochs", "2", "--batch-size", "16", "--max-length", "64",
                     "--learning-rate", "2e-3"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["history"][-1]["perplexity"] < metrics["history"][0]["perplexity"] * 1.05
    tokenizer = AutoTokenizer.from_pretrained(run)
    assert "<sep>" in tokenizer.chat_template and "<sep>" in tokenizer.all_special_tokens
    info = json.loads((run / "kluekit.json").read_text())
    pairs = pd.read_csv(chat_pairs)
    dev_rows = info["data"]["dev"]["rows"]
    assert 0 < dev_rows < len(pairs)
    result = cli.main(["evaluate", "dialogue", "--model", str(run), "--input", str(chat_pairs), "--output-dir",
                       str(tmp_path / "eval")])
    assert result == 0
    table = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    assert {"question", "answer", "loss", "tokens"} <= set(table.columns) and len(table) == len(pairs)
    assert np.isfinite(table["loss"]).all()


def test_bad_inputs_are_one_line(tiny_gpt2, chat_pairs, corpus, tmp_path, capsys):
    no_eos = tmp_path / "no-eos"
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    tokenizer.eos_token = None
    tokenizer.save_pretrained(no_eos)
    cases = [
        (["pretrain", "clm", "--model", str(tiny_gpt2), "--tokenizer", str(no_eos), "--train", str(corpus)],
         "has no end token"),
        (["pretrain", "clm", "--model", str(tiny_gpt2), "--train", str(corpus), "--max-length", "512"],
         "--max-length: blocks of 512 tokens are longer than the model's 128 positions"),
        (["train", "dialogue", "--model", str(tiny_gpt2), "--train", str(chat_pairs), "--answer-column", "reply"],
         "no column reply (columns: Q, A, label"),
    ]
    for args, message in cases:
        out = tmp_path / f"run{len(args)}"
        assert cli.main([*args, "--output-dir", str(out)]) != 0
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
        assert not (out / "config.json").exists()
