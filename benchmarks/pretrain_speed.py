"""Masked-LM pre-training speed: ``kluekit pretrain mlm`` against the Hugging Face ``Trainer`` recipe that
``run_mlm.py`` builds, side by side on one GPU, same model, text, blocks and number of tokens.

    python benchmarks/pretrain_speed.py --shared .carry --steps 1200 --rates 5e-4,1e-3   # the figures in pretrain_speed.json
    python benchmarks/pretrain_speed.py --shared ../shared --steps 8 --tiny     # a quick check on CPU

Model: a randomly initialised encoder of the klue/roberta-base shape (RoBERTa, 12 layers x 768, vocabulary
32,000: e5-small-ko's tokenizer), the same initial weights for both recipes. Text: the Korean sentences of the
shared KLUE-STS, YNAT, NSMC and KLUE-NER files, one document a line, packed into 128-token blocks; 2% of the
documents held out. Every recipe sees the same number of tokens (``--steps`` x 64 blocks), no warmup, and is
scored on the held-out blocks (masked-token loss). Recipes:
- ``trainer``: ``DataCollatorForLanguageModeling`` (15%) over blocks grouped as ``run_mlm``'s ``group_texts``,
  ``AutoModelForMaskedLM`` (vocabulary-sized logits for every token), ``Trainer`` with ``--bf16``, batch 64,
  lr 5e-5 (run_mlm's defaults), ``--steps`` steps;
- ``kluekit_b64``: ``kluekit pretrain mlm`` with the same batch, rate and steps (bf16, CUDA graphs, the LM head
  on masked positions): the loop against the loop;
- ``kluekit``: ``kluekit pretrain mlm --batch-size 256 --compile``, ``--steps / 4`` steps: the same tokens in
  larger steps. Fewer, larger steps need a larger rate: it is chosen among ``--rates`` by held-out loss with
  ``--seed 1`` (other held-out documents and masks than the reported run's seed 42).
Figures: tokens/s over the training time after the first 10 steps (compilation, CUDA-graph capture and library
start-up left out, for every recipe alike; ``overall_tokens_per_s`` keeps them in), held-out loss, MFU = 6 x non-embedding parameters x tokens/s over the
GPU's dense bf16 peak (989 TFLOP/s for H100/H200). Writes ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, SHARED, kluekit_env, task_texts, write_results

PEAK_BF16 = 989.4e12
WARM_STEPS = 10  # steps left out of the speed (start-up, compilation, graph capture), as kluekit's engine does
BLOCK, BATCH = 128, 64
TEXT_FILES = {"klue_sts/klue_sts_train.csv": ("sts", None), "klue_ynat/ynat_train.tsv": ("classify", "ynat"),
              "nsmc/ratings_train_first5000.txt": ("classify", "nsmc"),
              "klue_ner/klue-ner-v1.1_train_first5000.tsv": ("ner", None)}


def corpus(shared: Path, out: Path) -> Path:
    """The Korean text of the shared task files, one document a line."""
    texts = task_texts(shared, TEXT_FILES)
    out.write_text("\n".join(t.replace("\n", " ") for t in texts if t.strip()) + "\n", encoding="utf-8")
    return out


def initial_model(tokenizer_dir: Path, out: Path, tiny: bool) -> Path:
    from transformers import AutoTokenizer, RobertaConfig, RobertaForMaskedLM, set_seed

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    size = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128) if tiny else \
        dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    set_seed(0)
    config = RobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=BLOCK + 2 + tokenizer.pad_token_id,
                           pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
                           eos_token_id=tokenizer.sep_token_id, **size)
    RobertaForMaskedLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def body_parameters(model_dir: Path) -> int:
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(model_dir)
    embeddings = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    return sum(p.numel() for n, p in model.base_model.named_parameters()) - embeddings


def trainer_recipe(model_dir: Path, text: Path, steps: int, precision: str) -> dict:
    """The run_mlm recipe: tokenize, group_texts into blocks, random 2% of documents held out, Trainer."""
    import numpy as np
    import torch
    from transformers import (AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                              TrainingArguments)

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    docs = text.read_text(encoding="utf-8").splitlines()
    order = np.random.default_rng(42).permutation(len(docs))
    held = set(order[: int(round(len(docs) * 0.02))].tolist())

    def blocks(part):  # run_mlm's group_texts: concatenate, cut into BLOCK-token blocks, drop the remainder
        ids = [t for row in tokenizer(part)["input_ids"] for t in row]
        return [{"input_ids": ids[i:i + BLOCK]} for i in range(0, len(ids) - BLOCK + 1, BLOCK)]

    train = blocks([d for i, d in enumerate(docs) if i not in held])
    dev = blocks([d for i, d in enumerate(docs) if i in held])
    args = TrainingArguments(output_dir=str(ROOT / "runs/bench-pretrain-trainer"), per_device_train_batch_size=BATCH,
                             per_device_eval_batch_size=BATCH, max_steps=steps, learning_rate=5e-5,
                             bf16=precision == "bf16", save_strategy="no", report_to=[], logging_steps=50,
                             dataloader_drop_last=True, seed=42, disable_tqdm=True)
    clock = SteadyClock()
    trainer = Trainer(model=AutoModelForMaskedLM.from_pretrained(model_dir), args=args, train_dataset=train,
                      eval_dataset=dev, data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15),
                      callbacks=[clock])
    torch.manual_seed(0)
    output = trainer.train()
    loss = trainer.evaluate()["eval_loss"]
    steady = (steps - WARM_STEPS) * BATCH * BLOCK / (clock.end - clock.warm) if clock.warm else None
    return {"tokens_per_s": round(steady, 1) if steady else None,
            "overall_tokens_per_s": round(steps * BATCH * BLOCK / output.metrics["train_runtime"], 1),
            "train_seconds": round(output.metrics["train_runtime"], 2), "held_out_loss": round(loss, 4)}


def SteadyClock():
    """A Trainer callback that notes the time after ``WARM_STEPS`` steps and at the end (the GPU's queue drained)."""
    import torch
    from transformers import TrainerCallback

    def now() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    class Clock(TrainerCallback):
        warm = end = None

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == WARM_STEPS:
                self.warm = now()

        def on_train_end(self, args, state, control, **kwargs):
            self.end = now()

    return Clock()


def kluekit_recipe(model_dir: Path, text: Path, steps: int, precision: str, scale: int = 1, *extra: str,
                   rate: float = 5e-5, seed: int = 42) -> dict:
    """``kluekit pretrain mlm`` with batches ``scale`` times larger, for ``steps / scale`` steps: the same tokens."""
    out = ROOT / f"runs/bench-pretrain-kluekit-{scale}"
    steps = max(1, steps // scale)
    argv = [sys.executable, "-m", "kluekit", "pretrain", "mlm", "--model", str(model_dir), "--train", str(text),
            "--dev-split", "0.02", "--output-dir", str(out), "--overwrite", "--max-length", str(BLOCK),
            "--batch-size", str(BATCH * scale), "--max-steps", str(steps), "--eval-steps", str(steps),
            "--precision", precision, "--learning-rate", str(rate), "--warmup", "0", "--seed", str(seed),
            "--eval-batch-size", str(BATCH), "--no-tensorboard", *extra]
    subprocess.run(argv, check=True, env=kluekit_env())
    metrics = json.loads((out / "metrics.json").read_text())
    return {"tokens_per_s": metrics.get("steady_tokens_per_s"), "overall_tokens_per_s": metrics["train_tokens_per_s"],
            "train_seconds": metrics["train_seconds"],
            "held_out_loss": round(metrics["history"][-1]["loss"], 4), "peak_gpu_memory_gb": metrics.get("peak_gpu_memory_gb")}


def run_recipes(recipes: dict, figures: dict, count_body, model_dir: Path, *args) -> int:
    """Run each recipe (``recipe(model_dir, *args)``) one after the other into ``figures[name]``, with its wall time,
    steady tokens/s (the overall figure where there is no steady one) and MFU; returns the body's parameter count."""
    for name, recipe in recipes.items():
        started = time.perf_counter()
        figures[name] = recipe(model_dir, *args)
        figures[name]["wall_s"] = round(time.perf_counter() - started, 1)
        print(name, figures[name], flush=True)
    body = count_body(model_dir)
    for name in recipes:
        figures[name]["tokens_per_s"] = figures[name]["tokens_per_s"] or figures[name]["overall_tokens_per_s"]
        figures[name]["mfu"] = round(6 * body * figures[name]["tokens_per_s"] / PEAK_BF16, 4)
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(SHARED))
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model, for a check on the CPU")
    parser.add_argument("--name", default="pretrain_speed")
    parser.add_argument("--no-compile", action="store_true", help="the large-batch kluekit recipe without --compile")
    parser.add_argument("--rates", default="2e-4,5e-4,1e-3", help="rates tried for the large-batch recipe (seed 1)")
    args = parser.parse_args()
    import torch

    shared, work = Path(args.shared), ROOT / "runs/bench-pretrain"
    work.mkdir(parents=True, exist_ok=True)
    text = corpus(shared, work / "corpus.txt")
    model_dir = initial_model(shared / "models/e5-small-ko", work / "model", args.tiny)
    precision = "bf16" if torch.cuda.is_available() else "fp32"
    compile_flag = ("--compile",) if torch.cuda.is_available() and not args.no_compile else ()
    figures = {"model": "random klue/roberta-base shape" if not args.tiny else "tiny", "steps": args.steps,
               "batch": BATCH, "block": BLOCK, "precision": precision, "documents": len(text.read_text().splitlines())}
    losses = {}
    for rate in map(float, args.rates.split(",")):  # the large-batch rate, chosen with another seed's held-out blocks
        losses[rate] = kluekit_recipe(model_dir, text, args.steps, precision, 4, *compile_flag, rate=rate, seed=1)["held_out_loss"]
        figures[f"kluekit_select_lr_{rate:g}_held_out_loss"] = losses[rate]
        print(f"select lr {rate:g}: held-out loss {losses[rate]}", flush=True)
    rate = min(losses, key=lambda r: losses[r] if math.isfinite(losses[r]) else math.inf)
    figures["kluekit_options"] = f"--batch-size {4 * BATCH} --learning-rate {rate:g} " + " ".join(compile_flag)
    recipes = {"kluekit": lambda *a: kluekit_recipe(*a, 4, *compile_flag, rate=rate), "kluekit_b64": kluekit_recipe,
               "trainer": trainer_recipe}
    body = run_recipes(recipes, figures, body_parameters, model_dir, text, args.steps, precision)
    figures.update(mlm_tokens_per_s=figures["kluekit"]["tokens_per_s"], trainer_mlm_tokens_per_s=figures["trainer"]["tokens_per_s"],
                   mlm_mfu=figures["kluekit"]["mfu"], speedup=round(figures["kluekit"]["tokens_per_s"]
                                                                    / figures["trainer"]["tokens_per_s"], 3),
                   speedup_b64=round(figures["kluekit_b64"]["tokens_per_s"] / figures["trainer"]["tokens_per_s"], 3),
                   held_out_perplexity_kluekit_b64=round(math.exp(figures["kluekit_b64"]["held_out_loss"]), 2),
                   body_parameters=body, held_out_perplexity_kluekit=round(math.exp(figures["kluekit"]["held_out_loss"]), 2),
                   held_out_perplexity_trainer=round(math.exp(figures["trainer"]["held_out_loss"]), 2))
    write_results("pretrain_speed.py", args.name, figures)


if __name__ == "__main__":
    main()
