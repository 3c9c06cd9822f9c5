"""Causal-LM pre-training speed: ``kluekit pretrain clm`` against the Hugging Face ``Trainer`` recipe that
``run_clm.py`` builds, side by side on one GPU, same model, tokenizer, text, blocks and number of tokens.

    python benchmarks/clm_speed.py --shared .carry --steps 800
    python benchmarks/clm_speed.py --shared ../shared --steps 6 --tiny     # a quick check on CPU

Tokenizer: ``kluekit tokenizer train --kind bpe`` (16,000 pieces; <s> <pad> </s> <unk> <mask>) on the text.
Model: a randomly initialised GPT-2 of the issue's size (6 layers x 512, 8 heads, 1,024 positions), the same
initial weights for both recipes. Text: the Korean sentences of the shared KLUE-STS, YNAT, NSMC and KLUE-NER
files, one document a line, each framed <s> ... </s>, joined and cut into ``--block``-token blocks; 2% of the
documents held out. Both recipes: batch ``--batch``, lr 5e-4, no warmup, bf16 on a GPU, ``--steps`` steps.
- ``trainer``: run_clm's ``group_texts`` blocks (labels = input ids), ``default_data_collator``,
  ``AutoModelForCausalLM`` (its own shifted loss), ``Trainer``;
- ``kluekit``: ``kluekit pretrain clm`` (CUDA graphs; the loss over the shifted logits without a host sync);
  ``kluekit_compile``: the same with ``--compile`` (GPU only). ``clm_tokens_per_s`` is the faster of the two
  (``clm_recipe`` names it).
Figures: tokens/s after the first 10 steps (start-up left out for both; ``overall_tokens_per_s`` keeps it), held-out
loss, MFU = 6 x non-embedding parameters x tokens/s over 989 TFLOP/s. Writes ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

from common import ROOT, SHARED, kluekit_env, write_results
from pretrain_speed import WARM_STEPS, SteadyClock, corpus, run_recipes


def tokenizer_and_model(text: Path, work: Path, tiny: bool) -> Path:
    """A BPE tokenizer trained on ``text`` and a random GPT-2 with it, saved in ``work/model``."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, set_seed

    out = work / "model"
    subprocess.run([sys.executable, "-m", "kluekit", "tokenizer", "train", "--kind", "bpe", "--input", str(text),
                    "--output-dir", str(out), "--overwrite", "--vocab-size", "2000" if tiny else "16000"],
                   check=True, env=kluekit_env())
    tokenizer = AutoTokenizer.from_pretrained(out)
    size = dict(n_layer=1, n_embd=64, n_head=2) if tiny else dict(n_layer=6, n_embd=512, n_head=8)
    set_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=1024, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **size)
    GPT2LMHeadModel(config).save_pretrained(out)
    return out


def body_parameters(model_dir: Path) -> int:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return sum(p.numel() for n, p in model.transformer.named_parameters() if not n.startswith(("wte", "wpe")))


def trainer_recipe(model_dir: Path, text: Path, args, precision: str) -> dict:
    """The run_clm recipe: frame and tokenize, group_texts into blocks, 2% of documents held out, Trainer."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, default_data_collator

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    docs = text.read_text(encoding="utf-8").splitlines()
    order = np.random.default_rng(42).permutation(len(docs))
    held = set(order[: int(round(len(docs) * 0.02))].tolist())
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id

    def blocks(part):  # run_clm's group_texts: concatenate, cut into blocks, drop the remainder; labels = ids
        rows = tokenizer(part, add_special_tokens=False)["input_ids"]
        ids = [t for row in rows for t in [bos, *row, eos]]
        return [{"input_ids": ids[i:i + args.block], "labels": ids[i:i + args.block]}
                for i in range(0, len(ids) - args.block + 1, args.block)]

    train = blocks([d for i, d in enumerate(docs) if i not in held])
    dev = blocks([d for i, d in enumerate(docs) if i in held])
    targs = TrainingArguments(output_dir=str(ROOT / "runs/bench-clm-trainer"), per_device_train_batch_size=args.batch,
                              per_device_eval_batch_size=args.batch, max_steps=args.steps, learning_rate=5e-4,
                              warmup_steps=0, bf16=precision == "bf16", save_strategy="no", report_to=[],
                              logging_steps=50, dataloader_drop_last=True, seed=42, disable_tqdm=True)
    clock = SteadyClock()
    trainer = Trainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=targs, train_dataset=train,
                      eval_dataset=dev, data_collator=default_data_collator, callbacks=[clock])
    torch.manual_seed(0)
    output = trainer.train()
    loss = trainer.evaluate()["eval_loss"]
    tokens = args.steps * args.batch * args.block
    steady = (args.steps - WARM_STEPS) * args.batch * args.block / (clock.end - clock.warm) if clock.warm else None
    return {"tokens_per_s": round(steady, 1) if steady else None,
            "overall_tokens_per_s": round(tokens / output.metrics["train_runtime"], 1),
            "train_seconds": round(output.metrics["train_runtime"], 2), "held_out_loss": round(loss, 4)}


def kluekit_recipe(model_dir: Path, text: Path, args, precision: str, *options: str) -> dict:
    out = ROOT / "runs/bench-clm-kluekit"
    argv = [sys.executable, "-m", "kluekit", "pretrain", "clm", "--model", str(model_dir), "--train", str(text),
            "--dev-split", "0.02", "--output-dir", str(out), "--overwrite", "--max-length", str(args.block),
            "--batch-size", str(args.batch), "--max-steps", str(args.steps), "--eval-steps", str(args.steps),
            "--precision", precision, "--learning-rate", "5e-4", "--warmup", "0", "--no-tensorboard", *options]
    subprocess.run(argv, check=True, env=kluekit_env())
    metrics = json.loads((out / "metrics.json").read_text())
    return {"tokens_per_s": metrics.get("steady_tokens_per_s"), "overall_tokens_per_s": metrics["train_tokens_per_s"],
            "train_seconds": metrics["train_seconds"], "held_out_loss": round(metrics["history"][-1]["loss"], 4),
            "peak_gpu_memory_gb": metrics.get("peak_gpu_memory_gb")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(SHARED))
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--block", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--tiny", action="store_true", help="a 1-layer model, for a check on the CPU")
    parser.add_argument("--name", default="clm_speed")
    args = parser.parse_args()
    import torch

    work = ROOT / "runs/bench-clm"
    work.mkdir(parents=True, exist_ok=True)
    text = corpus(Path(args.shared), work / "corpus.txt")
    model_dir = tokenizer_and_model(text, work, args.tiny)
    precision = "bf16" if torch.cuda.is_available() else "fp32"
    figures = {"model": "tiny" if args.tiny else "random GPT-2 6 x 512", "steps": args.steps, "batch": args.batch,
               "block": args.block, "precision": precision, "documents": len(text.read_text().splitlines())}
    recipes = {"kluekit": kluekit_recipe, "trainer": trainer_recipe}
    if torch.cuda.is_available():  # the same run with --compile (CUDA graphs over the compiled step)
        recipes["kluekit_compile"] = lambda *a: kluekit_recipe(*a, "--compile")
    body = run_recipes(recipes, figures, body_parameters, model_dir, text, args, precision)
    best = max((name for name in recipes if name.startswith("kluekit")), key=lambda n: figures[n]["tokens_per_s"])
    figures.update(clm_recipe=best, clm_tokens_per_s=figures[best]["tokens_per_s"],
                   trainer_clm_tokens_per_s=figures["trainer"]["tokens_per_s"],
                   clm_speedup=round(figures[best]["tokens_per_s"] / figures["trainer"]["tokens_per_s"], 3),
                   clm_mfu=figures[best]["mfu"], trainer_clm_mfu=figures["trainer"]["mfu"], body_parameters=body,
                   clm_held_out_loss=figures[best]["held_out_loss"],
                   held_out_perplexity_kluekit=round(math.exp(figures["kluekit"]["held_out_loss"]), 2),
                   held_out_perplexity_trainer=round(math.exp(figures["trainer"]["held_out_loss"]), 2))
    write_results("clm_speed.py", args.name, figures)


if __name__ == "__main__":
    main()
