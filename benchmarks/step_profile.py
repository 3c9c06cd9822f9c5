"""Where does a training step's time go? Times fwd/bwd/optimizer variants of an STS cross-encoder on one GPU.

    python benchmarks/step_profile.py --model PATH [--compile] [--train FILE] [--batch-size 32 --length 48 --steps 100]

Prints ms per step for: fp32, bf16 autocast, and each again under torch.compile, with and without the
optimizer step, so the per-step overhead of each part shows (a launch-bound small model shows it most);
then a whole step (clip + AdamW included) with forward, loss and backward replayed as a CUDA graph (kluekit's
default, ``kluekit.graphs``).
With ``--train`` (an STS file) it also times kluekit's collator (dynamic padding) on that file's batches.
Writes benchmarks/results/step_profile.json.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import write_results
from transformers import AutoModelForSequenceClassification


def timed(fn, steps: int) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=48)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--train", help="an STS file: also time collating its length-grouped batches")
    args = parser.parse_args()
    figures = {"model": args.model.rstrip("/").split("/")[-1], "batch": f"{args.batch_size} x {args.length}"}
    device = torch.device("cuda")
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=1).to(device)
    print("attention:", model.config._attn_implementation)
    batch = {"input_ids": torch.randint(5, 1000, (args.batch_size, args.length), device=device),
             "attention_mask": torch.ones(args.batch_size, args.length, dtype=torch.long, device=device)}
    labels = torch.rand(args.batch_size, device=device) * 5
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    variants = [("eager", model)]
    if args.compile:
        variants.append(("compiled", torch.compile(model, dynamic=True)))
    for name, net in variants:
        for precision in ("fp32", "bf16"):
            def forward():
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
                    with torch.no_grad():
                        net(**batch)

            def backward(step=False, clip=False):
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
                    logits = net(**batch).logits
                loss = torch.nn.functional.mse_loss(logits.squeeze(-1).float(), labels)
                loss.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                if step:
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                else:
                    model.zero_grad(set_to_none=True)

            for part, fn in (("forward", forward), ("fwd_bwd", backward), ("step", lambda: backward(True, True))):
                figures[f"{name}_{precision}_{part}_ms"] = round(timed(fn, args.steps), 2)
    for precision in ("fp32", "bf16"):
        figures[f"graphed_{precision}_step_ms"] = round(timed(graphed_step(model, optimizer, batch, labels, precision),
                                                              args.steps), 2)
    if args.train:
        figures["collate_ms"] = round(collate_ms(args.model, args.train, args.batch_size), 2)
    write_results("step_profile.py", "step_profile", figures)


def graphed_step(model, optimizer, batch, labels, precision: str):
    """A training step as kluekit runs it with CUDA graphs (forward, loss, backward replayed; clip + AdamW)."""
    from kluekit.engine.graphs import GraphedSteps
    from kluekit.tasks.sts import STSTask

    task = STSTask()
    graphed = GraphedSteps(model, task.forward, task.loss, len(labels), precision)
    full = {**batch, "labels": labels}

    def step():
        graphed(full)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)

    step()
    if not graphed.graphs:
        raise SystemExit("CUDA graph capture failed")
    return step


def collate_ms(model: str, train: str, batch_size: int) -> float:
    """Mean ms to collate one training batch of ``train`` with kluekit's collator (length-grouped order)."""
    from transformers import AutoTokenizer

    from kluekit.batching import Features, train_batches
    from kluekit.tasks.sts import STSTask

    tokenizer = AutoTokenizer.from_pretrained(model)
    task = STSTask()
    dataset = Features(task.encode(task.read(train), tokenizer, 128))
    batches = train_batches(dataset.lengths, batch_size, seed=42, epoch=0)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches,
                                         collate_fn=task.collator(tokenizer, 8))
    started = time.perf_counter()
    for _ in loader:
        pass
    return (time.perf_counter() - started) / len(batches) * 1000


if __name__ == "__main__":
    main()
