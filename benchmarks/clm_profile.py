"""Where does a causal-LM pre-training step's time go? The parts of ``kluekit pretrain clm``'s step, timed apart
on one GPU, for the model of ``clm_speed.py`` (random GPT-2 6 x 512, 16,000 pieces, batch 16 x 512, bf16).

    python benchmarks/clm_profile.py [--compile] [--steps 200]

Prints ms per step for: forward + loss + backward replayed as a CUDA graph (kluekit's default; ``--compile``:
of the compiled forward), the same with gradient clipping, fused AdamW, the scheduler and zero_grad (the whole
GPU step), and the host's share: collating 16 packed blocks through the DataLoader as the engine does (pinned
memory) and copying them to the GPU. Then the 15 CUDA kernels that take most time in eager steps (torch.profiler).
Writes benchmarks/results/clm_profile.json.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import write_results
from step_profile import timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--block", type=int, default=512)
    args = parser.parse_args()
    from transformers import GPT2Config, GPT2LMHeadModel, get_linear_schedule_with_warmup

    from kluekit.batching import Features
    from kluekit.engine.graphs import GraphedSteps
    from kluekit.engine.optim import make_optimizer
    from kluekit.tasks.clm import CausalCollator, CLMTask

    device = torch.device("cuda")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=16000, n_positions=1024, n_layer=6, n_embd=512, n_head=8,
                                       bos_token_id=0, eos_token_id=2, pad_token_id=1)).to(device).train()
    print("attention:", model.config._attn_implementation)
    task = CLMTask()
    rows = 64 * args.batch
    features = Features({"input_ids": torch.randint(5, 16000, (rows, args.block)).tolist(),
                         "attention_mask": [[1] * args.block] * rows})
    collator = CausalCollator(type("T", (), {"pad_token_id": 1, "eos_token_id": 2})())
    batch = {k: v.to(device) for k, v in collator([features[i] for i in range(args.batch)]).items()}
    figures = {"model": "random GPT-2 6 x 512", "batch": f"{args.batch} x {args.block}", "compile": args.compile}
    optimizer = make_optimizer(model, 5e-4, 0.01, fused=True)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, 10 ** 6)
    forward = torch.compile(task.forward) if args.compile else task.forward
    graphed = GraphedSteps(model, forward, task.loss, args.batch, "bf16", plain_forward=task.forward)

    def gpu_step():
        graphed(batch)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=False)

    gpu_step()
    figures["graphed"] = bool(graphed.graphs)
    figures["fwd_bwd_ms"] = round(timed(lambda: graphed(batch), args.steps), 3)
    figures["gpu_step_ms"] = round(timed(gpu_step, args.steps), 3)
    loader = torch.utils.data.DataLoader(features, batch_size=args.batch, collate_fn=collator, pin_memory=True)
    started = time.perf_counter()
    count = 0
    for cpu_batch in loader:
        {k: v.to(device, non_blocking=True) for k, v in cpu_batch.items()}
        count += 1
    torch.cuda.synchronize()
    figures["host_batch_ms"] = round((time.perf_counter() - started) / count * 1000, 3)
    tokens = args.batch * args.block
    figures["gpu_bound_tokens_per_s"] = round(tokens / figures["gpu_step_ms"] * 1000, 1)

    def eager_step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = task.loss(task.forward(model, batch), batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)

    for _ in range(3):
        eager_step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            eager_step()
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=70)
    print(table)
    figures["eager_gpu_ms_per_step"] = round(sum(e.self_device_time_total for e in prof.key_averages()) / 5 / 1000, 3)
    for rank, event in enumerate(sorted(prof.key_averages(), key=lambda e: -e.device_time_total)[:15], 1):
        figures[f"kernel_{rank:02d}"] = f"{event.key[:80]}: {event.device_time_total / 5 / 1000:.3f} ms/step"
    write_results("clm_profile.py", "clm_profile_compile" if args.compile else "clm_profile", figures)


if __name__ == "__main__":
    main()
