"""Fine-tune e5-small-ko for KLUE-RE with the baseline input and with typed entity markers; score the dev set.

    python benchmarks/re_e5.py                        # both styles, writes benchmarks/results/re_e5.json
    python benchmarks/re_e5.py -- --loss weighted_ce  # more 'kluekit train re' options for both runs

Each run is ``kluekit train re`` through the CLI entry point, on the partial KLUE-RE train
(train_partial_union.csv, 17,875 rows) with the labelled dev (boostcamp_test_data_with_labels.csv,
7,765 rows); figures are the best epoch's dev micro-F1 (no_relation excluded) and AUPRC, x100.
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
    parser.add_argument("--train", default=str(SHARED / "data/klue_re/train_partial_union.csv"))
    parser.add_argument("--dev", default=str(SHARED / "data/klue_re/boostcamp_test_data_with_labels.csv"))
    parser.add_argument("--name", default="re_e5", help="results file name (benchmarks/results/<name>.json)")
    parser.add_argument("--styles", default="baseline,typed", help="entity styles to run, comma-separated")
    parser.add_argument("extra", nargs="*", help="more 'kluekit train re' options, after --")
    args = parser.parse_args()
    setup_logging()

    recipe = ["--epochs", "5", "--batch-size", "32", "--learning-rate", "1e-4", "--max-length", "256",
              "--precision", "fp32"]
    figures = {"model": Path(args.model).name, "device": device_name(),
               "command": "python benchmarks/re_e5.py " + shlex.join(sys.argv[1:])}
    for style in args.styles.split(","):
        argv = ["train", "re", "--model", args.model, "--train", args.train, "--dev", args.dev,
                "--output-dir", f"runs/bench-{args.name}-{style}", "--overwrite", "--entity-style", style,
                *recipe, *args.extra]
        started = time.perf_counter()
        result = run(argv)
        best = result["best"]
        figures.update({f"{style}_micro_f1": round(best["micro_f1"], 2), f"{style}_auprc": round(best["auprc"], 2),
                        f"{style}_accuracy": round(best["accuracy"], 2),
                        f"{style}_best_step": result["best_step"], f"{style}_steps": result["steps"],
                        f"{style}_train_examples_per_s": round(result["train_examples_per_s"], 1),
                        f"{style}_wall_s": round(time.perf_counter() - started, 1),
                        f"{style}_history_micro_f1": [round(h["micro_f1"], 2) for h in result["history"]],
                        f"{style}_train_options": " ".join(argv[2:])})
    out = ROOT / "benchmarks/results" / f"{args.name}.json"
    out.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
