"""CUDA graphs of many batch shapes with one shared memory pool against one pool per shape: the same training steps
must give the same losses and weights, with less GPU memory.

    python benchmarks/graph_pool.py --shared .carry      # GPU machine (under a minute)

e5-small-ko with a 30-way classification head (RE's size), batch 32, fp32 and bf16, random token ids of 8 lengths
between 32 and 256 (8 captured shapes), 48 steps (AdamW after each) in one shuffled order that every run follows.
Per run: the losses, the memory reserved after the run and its peak; per precision: the largest loss and weight
difference between the shared pool and one pool per shape, and between two runs with one pool per shape (what
the GPU's own non-determinism gives). Results: ``graph_pool.json``.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from common import SHARED, write_results
from transformers import AutoModelForSequenceClassification

from kluekit.engine.graphs import GraphedSteps

LENGTHS = (32, 64, 96, 128, 160, 192, 224, 256)


def run(model_dir: str, precision: str, share: bool, steps: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=30).cuda().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    graphed = GraphedSteps(model, lambda m, b: m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]),
                           lambda out, b: F.cross_entropy(out.logits.float(), b["labels"]), 32, precision)
    graphed.share_pool = share
    order = random.Random(seed).choices(LENGTHS, k=steps)
    generator = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_reserved()
    losses = []
    for length in order:
        batch = {"input_ids": torch.randint(5, vocab, (32, length), generator=generator),
                 "attention_mask": torch.ones(32, length, dtype=torch.long),
                 "labels": torch.randint(0, 30, (32,), generator=generator)}
        loss = graphed({k: v.cuda() for k, v in batch.items()})
        losses.append(loss.clone())  # read before the next replay is queued, as the trainer does
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
    torch.cuda.synchronize()
    result = {"losses": torch.stack(losses).cpu(), "weights": torch.cat([p.detach().flatten().cpu()
                                                                         for p in model.parameters()]),
              "reserved_gb": (torch.cuda.memory_reserved() - before) / 2**30,
              "peak_gb": torch.cuda.max_memory_reserved() / 2**30, "shapes": len(graphed.graphs),
              "failed": graphed.failed}
    graphed.release()
    del model, optimizer, graphed
    torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(SHARED))
    parser.add_argument("--steps", type=int, default=48)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("graph_pool.py: needs a CUDA GPU")
    model_dir = str(Path(args.shared) / "models/e5-small-ko")
    figures = {"steps": args.steps, "batch_size": 32, "shapes": len(LENGTHS), "model": "e5-small-ko"}
    for precision in ("fp32", "bf16"):
        separate, again, shared = (run(model_dir, precision, share, args.steps) for share in (False, False, True))
        for name, result in (("separate", separate), ("shared", shared)):
            figures[f"{precision}_{name}_reserved_gb"] = round(result["reserved_gb"], 3)
            figures[f"{precision}_{name}_peak_gb"] = round(result["peak_gb"], 3)
            figures[f"{precision}_{name}_graph_shapes"] = result["shapes"]
            figures[f"{precision}_{name}_capture_failed"] = result["failed"]
        for name, other in (("shared_vs_separate", shared), ("separate_vs_separate", again)):
            figures[f"{precision}_{name}_max_loss_diff"] = float((other["losses"] - separate["losses"]).abs().max())
            figures[f"{precision}_{name}_max_weight_diff"] = float((other["weights"] - separate["weights"]).abs().max())
        print(f"{precision}: reserved {figures[f'{precision}_separate_reserved_gb']} GB with a pool per shape, "
              f"{figures[f'{precision}_shared_reserved_gb']} GB shared; max loss difference "
              f"{figures[f'{precision}_shared_vs_separate_max_loss_diff']:.3g} (two separate runs: "
              f"{figures[f'{precision}_separate_vs_separate_max_loss_diff']:.3g})", flush=True)
    write_results("graph_pool.py", "graph_pool", figures)


if __name__ == "__main__":
    main()
