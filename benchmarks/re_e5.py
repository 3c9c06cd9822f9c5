"""Fine-tune e5-small-ko for KLUE-RE with the baseline input and with typed entity markers; score the dev set.

    python benchmarks/re_e5.py                        # both styles, writes benchmarks/results/re_e5.json
    python benchmarks/re_e5.py -- --loss weighted_ce  # more 'kluekit train re' options for both runs

Each run is ``kluekit train re`` through the CLI entry point, on the partial KLUE-RE train
(train_partial_union.csv, 17,875 rows) with the labelled dev (boostcamp_test_data_with_labels.csv,
7,765 rows); figures are the best epoch's dev micro-F1 (no_relation excluded) and AUPRC, x100.

The train set has 30% no_relation, the dev 60%. To see how much of the gap that shift explains, the best
model's dev probabilities (``kluekit predict re``) are re-scored with log(prior) added to no_relation's
log-probability for a few values (``{style}_micro_f1_no_relation_shift_{shift}``: the shift that Bayes' rule
gives for the dev's prior is log((0.6/0.3)/(0.4/0.7)) = 1.25).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import benchmark_parser, write_results

from kluekit.cli import run, setup_logging

SHIFTS = (0.0, 0.5, 1.0, 1.25, 1.5, 2.0)


def no_relation_shift(run_dir: str, dev: str) -> dict[str, float]:
    """Dev micro-F1 of the run's best model with each of SHIFTS added to no_relation's log-probability."""
    from kluekit.data.re import read_re
    from kluekit.metrics import re_metrics

    out = Path(run_dir) / "dev_predictions.csv"
    run(["predict", "re", "--model", run_dir, "--input", dev, "--output", str(out), "--precision", "fp32"])
    probs = np.array([json.loads(p) for p in pd.read_csv(out)["probs"]])
    labels = json.loads((Path(run_dir) / "config.json").read_text())["id2label"]
    labels = [labels[str(i)] for i in range(len(labels))]
    gold = read_re(dev, labels)["label_id"].to_numpy()
    scores = {}
    for shift in SHIFTS:
        logp = np.log(np.clip(probs, 1e-12, 1))
        logp[:, labels.index("no_relation")] += shift
        scores[str(shift)] = round(re_metrics(np.exp(logp), gold, labels)["micro_f1"], 2)
    return scores


def main() -> None:
    parser = benchmark_parser(__doc__, "klue_re/train_partial_union.csv", "klue_re/boostcamp_test_data_with_labels.csv", "re_e5")
    parser.add_argument("--styles", default="baseline,typed", help="entity styles to run, comma-separated")
    args = parser.parse_args()
    setup_logging()

    recipe = ["--epochs", "5", "--batch-size", "32", "--learning-rate", "1e-4", "--max-length", "256",
              "--precision", "fp32"]
    figures = {"model": Path(args.model).name}
    for style in args.styles.split(","):
        argv = ["train", "re", "--model", args.model, "--train", args.train, "--dev", args.dev,
                "--output-dir", f"runs/bench-{args.name}-{style}", "--overwrite", "--entity-style", style,
                *recipe, *args.extra]
        started = time.perf_counter()
        result = run(argv)
        best = result["best"]
        shifted = no_relation_shift(result["run_dir"], args.dev)
        figures.update({f"{style}_micro_f1": round(best["micro_f1"], 2), f"{style}_auprc": round(best["auprc"], 2),
                        f"{style}_accuracy": round(best["accuracy"], 2),
                        f"{style}_best_step": result["best_step"], f"{style}_steps": result["steps"],
                        f"{style}_train_examples_per_s": round(result["train_examples_per_s"], 1),
                        f"{style}_wall_s": round(time.perf_counter() - started, 1),
                        f"{style}_history_micro_f1": [round(h["micro_f1"], 2) for h in result["history"]],
                        **{f"{style}_micro_f1_no_relation_shift_{k}": v for k, v in shifted.items()},
                        f"{style}_train_options": " ".join(argv[2:])})
    write_results("re_e5.py", args.name, figures)


if __name__ == "__main__":
    main()
