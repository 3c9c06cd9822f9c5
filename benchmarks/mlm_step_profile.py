"""Where does a masked-LM pre-training step's time go? One GPU, the klue/roberta-base shape of
``pretrain_speed.py``, real packed blocks from the shared Korean text.

    python benchmarks/mlm_step_profile.py --shared .carry [--batch-sizes 64 256] [--steps 30]
    python benchmarks/mlm_step_profile.py --shared ../shared --tiny --steps 3      # a check on CPU

Times, per batch size: the collator (masking a batch of blocks on the host: the DataLoader's work), and whole
training steps (forward, masked-position loss, backward, clip, fused AdamW, zero) on one collated batch kept on
the GPU, for the variants kluekit can run: eager autocast, CUDA graphs (kluekit's default), CUDA graphs with
``torch.compile``, each with and without the attention mask (packed blocks are full, so it is all ones).
Then a ``torch.profiler`` table of the default variant's GPU kernels. MFU = 6 x non-embedding parameters x
tokens/s over 989 TFLOP/s. Writes ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import ROOT, SHARED, write_results
from pretrain_speed import BLOCK, PEAK_BF16, body_parameters, corpus, initial_model


def timed(fn, steps: int, sync) -> float:
    """Milliseconds per call of ``fn`` after 3 warm-up calls."""
    for _ in range(3):
        fn()
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return (time.perf_counter() - started) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(SHARED))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--name", default="mlm_step_profile")
    args = parser.parse_args()
    import pandas as pd
    import torch
    from transformers import AutoModelForMaskedLM

    from kluekit.batching import Features
    from kluekit.engine.graphs import GraphedSteps
    from kluekit.engine.optim import make_optimizer
    from kluekit.tasks.mlm import MLMOptions, MLMTask

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    work = ROOT / "runs/bench-mlm-profile"
    work.mkdir(parents=True, exist_ok=True)
    text = corpus(Path(args.shared), work / "corpus.txt")
    model_dir = initial_model(Path(args.shared) / "models/e5-small-ko", work / "model", args.tiny)
    task = MLMTask(MLMOptions())
    tokenizer, _ = task.build_model(str(model_dir))
    docs = text.read_text(encoding="utf-8").splitlines()[:20000]
    examples = task.augment(pd.DataFrame({"text": docs}))
    dataset = Features(task.encode(examples, tokenizer, BLOCK))
    collate = task.collator(tokenizer)
    body = body_parameters(model_dir)
    figures = {"model": "tiny" if args.tiny else "random klue/roberta-base shape", "block": BLOCK,
               "body_parameters": body}
    variants = [("eager", False, False, True), ("graphs", True, False, True), ("graphs_nomask", True, False, False)]
    if cuda and not args.no_compile:
        variants += [("compile_graphs", True, True, True), ("compile_graphs_nomask", True, True, False)]
    for size in args.batch_sizes:
        items = [dataset[i] for i in range(size)]
        figures[f"b{size}_collate_ms"] = round(timed(lambda: collate(items), args.steps, lambda: None), 2)
        batch = {k: v.to(device) for k, v in collate(items).items()}
        tokens = int(batch["attention_mask"].sum())
        for name, graphs, compile_, with_mask in variants:
            if graphs and not cuda:
                continue
            torch.manual_seed(0)
            model = AutoModelForMaskedLM.from_pretrained(model_dir).to(device).train()
            optimizer = make_optimizer(model, 1e-4, 0.01, fused=cuda)
            step_batch = dict(batch) if with_mask else {k: v for k, v in batch.items() if k != "attention_mask"}
            forward = torch.compile(task.forward) if compile_ else task.forward
            graphed = GraphedSteps(model, forward, task.loss, size, "bf16" if cuda else "fp32") if graphs else None

            def step():
                if graphed is not None:
                    graphed(step_batch)
                else:
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                        loss = task.loss(forward(model, step_batch), step_batch)
                    loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=graphed is None)

            try:
                ms = timed(step, args.steps, sync)
            except Exception as error:  # a variant that cannot run here is reported, not fatal
                print(f"b{size} {name}: failed: {str(error).splitlines()[0]}", flush=True)
                figures[f"b{size}_{name}_error"] = str(error).splitlines()[0][:200]
                continue
            figures[f"b{size}_{name}_step_ms"] = round(ms, 2)
            figures[f"b{size}_{name}_tokens_per_s"] = round(tokens / ms * 1000, 1)
            figures[f"b{size}_{name}_mfu"] = round(6 * body * tokens / ms * 1000 / PEAK_BF16, 4)
            print(f"b{size} {name}: {ms:.2f} ms/step, {tokens / ms * 1000:,.0f} tokens/s, "
                  f"MFU {6 * body * tokens / ms * 1000 / PEAK_BF16:.1%}", flush=True)
            if cuda and name == "graphs" and size == max(args.batch_sizes):
                from torch.profiler import ProfilerActivity, profile

                with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                    for _ in range(5):
                        step()
                    sync()
                table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=25)
                print(table, flush=True)
                (work / "profile.txt").write_text(table)
            del model, optimizer, graphed
            if cuda:
                torch.cuda.empty_cache()
    write_results("mlm_step_profile.py", args.name, figures)


if __name__ == "__main__":
    main()
