"""Fine-tune e5-small-ko as an STS cross-encoder on the full KLUE-STS train; score on the dev set.

    python benchmarks/sts_e5.py                                  # the recipe reported in docs/benchmarks.md
    python benchmarks/sts_e5.py --name sts_e5_bf16 -- --precision bf16   # a variant (extra train options win)

Runs ``kluekit train sts`` exactly as a user would (through the CLI entry point), then prints and writes
``benchmarks/results/<name>.json``: dev Pearson/F1 (x100) of the best epoch, training throughput
(training pairs per second of training time, evaluation excluded) and the wall time of the whole command
(loading, tokenizing, training, evaluating, saving).
"""

from __future__ import annotations

import time
from pathlib import Path

from common import benchmark_parser, write_results

from kluekit.cli import run, setup_logging


def main() -> None:
    parser = benchmark_parser(__doc__, "klue_sts/klue_sts_train.csv", "klue_sts/klue-sts-v1.1_dev.json", "sts_e5")
    args = parser.parse_args()
    setup_logging()

    # The peers' epochs and batch size; lr 1e-4 + swap augmentation won the sweep in docs/benchmarks.md;
    # fp32 because this small model is launch-bound on an H100 (autocast's casts cost more than they save).
    recipe = ["--epochs", "4", "--batch-size", "32", "--learning-rate", "1e-4", "--swap-augment", "--precision", "fp32"]
    argv = ["train", "sts", "--model", args.model, "--train", args.train, "--dev", args.dev,
            "--output-dir", f"runs/bench-{args.name}", "--overwrite", *recipe, *args.extra]
    started = time.perf_counter()
    result = run(argv)
    wall = time.perf_counter() - started
    best = result["best"]
    figures = {
        "model": Path(args.model).name,
        "train_options": " ".join(argv[2:]),
        "dev_pearson": round(best["pearson"], 2),
        "dev_f1": round(best["f1"], 2),
        "dev_spearman": round(best["spearman"], 2),
        "best_step": result["best_step"],
        "steps": result["steps"],
        "train_pairs_per_s": round(result["train_examples_per_s"], 1),
        "train_seconds": round(result["train_seconds"], 1),
        "wall_s": round(wall, 1),
        "history_pearson": [round(h["pearson"], 2) for h in result["history"]],
    }
    write_results("sts_e5.py", args.name, figures)


if __name__ == "__main__":
    main()
