"""Why the bi-encoder trains slower than the cross-encoder: the same KLUE-STS pairs, the same number of steps,
batch 32, no dev set, through ``kluekit train``; each variant alone, one after another.

    python benchmarks/biencoder_speed.py --shared .carry            # GPU machine (about 2 minutes)
    python benchmarks/biencoder_speed.py --steps 6 --variants cross_fp32 bi_fp32   # a CPU check

Variants: the cross-encoder (``sts``) in fp32, the bi-encoder (``biencoder``, CoSENT) in fp32 (its benchmark
recipe), the bi-encoder without CUDA graphs, and in bf16. Per variant: pairs/s over the run and after its first
steps (``steady_tokens_per_s`` over the tokens of a pair), whether CUDA graphs ran, how many shapes were
captured and how many captures failed. Results: ``biencoder_speed.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import ROOT, SHARED, kluekit, write_results

VARIANTS = {
    "cross_fp32": ("sts", ["--precision", "fp32"]),
    "bi_fp32": ("biencoder", ["--precision", "fp32", "--prompt", "query: "]),
    "bi_fp32_no_graphs": ("biencoder", ["--precision", "fp32", "--prompt", "query: ", "--no-cuda-graphs"]),
    "bi_bf16": ("biencoder", ["--precision", "bf16", "--prompt", "query: "]),
}
KEYS = ("train_seconds", "steps", "train_examples_per_s", "train_tokens_per_s", "steady_tokens_per_s",
        "cuda_graphs", "cuda_graph_shapes", "cuda_graphs_failed", "precision")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(SHARED))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--name", default="biencoder_speed")
    args = parser.parse_args()
    shared, work = Path(args.shared), ROOT / "runs/bench-bispeed"
    figures = {"steps": args.steps, "batch_size": 32, "model": "e5-small-ko"}
    for name in args.variants:
        task, options = VARIANTS[name]
        run = work / name
        kluekit("train", task, "--model", str(shared / "models/e5-small-ko"), "--train",
                str(shared / "data/klue_sts/klue_sts_train.csv"), "--output-dir", str(run), "--overwrite",
                "--max-steps", str(args.steps), "--batch-size", "32", "--no-group-by-length", "--no-tensorboard",
                *options)
        record = json.loads((run / "metrics.json").read_text())
        for key in KEYS:
            if key in record:
                figures[f"{name}_{key}"] = record[key]
        if "steady_tokens_per_s" in record and record.get("train_tokens_per_s"):
            pair_tokens = record["train_tokens_per_s"] / record["train_examples_per_s"]
            figures[f"{name}_steady_pairs_per_s"] = round(record["steady_tokens_per_s"] / pair_tokens, 1)
        print(f"{name}: {figures.get(f'{name}_train_examples_per_s')} pairs/s", flush=True)
        write_results("biencoder_speed.py", args.name, figures, quiet=True)  # kept if a later variant is cut off
    write_results("biencoder_speed.py", args.name, figures)


if __name__ == "__main__":
    main()
