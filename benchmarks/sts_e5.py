"""Fine-tune e5-small-ko as an STS cross-encoder on the full KLUE-STS train; score on the dev set.

    python benchmarks/sts_e5.py                                  # the recipe reported in docs/benchmarks.md
    python benchmarks/sts_e5.py --name sts_e5_bf16 -- --precision bf16   # a variant (extra train options win)

Runs ``kluekit train sts`` exactly as a user would (through the CLI entry point), then prints and writes
``benchmarks/results/<name>.json``: dev Pearson/F1 (x100) of the best epoch, training throughput
(training pairs per second of training time, evaluation excluded) and the wall time of the whole command
(loading, tokenizing, training, evaluating, saving).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing (the GPU machine)

from kluekit.cli import run, setup_logging  # noqa: E402
from kluekit.rundir import device_name  # noqa: E402

SHARED = ROOT.parent / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(SHARED / "models/e5-small-ko"))
    parser.add_argument("--train", default=str(SHARED / "data/klue_sts/klue_sts_train.csv"))
    parser.add_argument("--dev", default=str(SHARED / "data/klue_sts/klue-sts-v1.1_dev.json"))
    parser.add_argument("--name", default="sts_e5", help="results file name (benchmarks/results/<name>.json)")
    parser.add_argument("--output-dir", default=None, help="run directory (default: runs/bench-<name>)")
    parser.add_argument("extra", nargs="*", help="more 'kluekit train sts' options, after --")
    args = parser.parse_args()
    setup_logging()

    # The peers' epochs and batch size; lr 1e-4 + swap augmentation won the sweep in docs/benchmarks.md;
    # fp32 because this small model is launch-bound on an H100 (autocast's casts cost more than they save).
    recipe = ["--epochs", "4", "--batch-size", "32", "--learning-rate", "1e-4", "--swap-augment", "--precision", "fp32"]
    argv = ["train", "sts", "--model", args.model, "--train", args.train, "--dev", args.dev,
            "--output-dir", args.output_dir or f"runs/bench-{args.name}", "--overwrite", *recipe, *args.extra]
    started = time.perf_counter()
    result = run(argv)
    wall = time.perf_counter() - started
    best = result["best"]
    figures = {
        "model": Path(args.model).name,
        "device": device_name(),
        "command": "python benchmarks/sts_e5.py " + shlex.join(sys.argv[1:]),
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
    out = ROOT / "benchmarks/results" / f"{args.name}.json"
    out.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
