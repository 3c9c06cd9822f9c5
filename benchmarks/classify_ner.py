"""Fine-tune e5-small-ko on YNAT, NSMC and KLUE-NER and score each as the issue asks.

    python benchmarks/classify_ner.py                       # data under ../shared/data, model ../shared/models/e5-small-ko
    python benchmarks/classify_ner.py --data .carry/data --model .carry/models/e5-small-ko   # the GPU machine

Runs the CLI as a user would (``kluekit train/evaluate``):
- YNAT: train on the full train file, dev scored every epoch; reported: macro-F1 of the LAST epoch (no
  epoch picked on dev) and the best epoch's for reference.
- NSMC: train on the first 5,000 training rows with no dev file (the test set is never used to pick an
  epoch), then ``evaluate`` once on the 50,000-row test file.
- KLUE-NER: train on the first 5,000 training sentences, dev scored every epoch; last-epoch entity and
  character F1 reported (best for reference).
Writes ``benchmarks/results/<name>.json`` (default ``classify_ner``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import SHARED, write_results

from kluekit.cli import run, setup_logging

RECIPES = {  # epochs, batch size, learning rate, max tokens (YNAT titles are short; NER sentences long)
    "ynat": ["--epochs", "3", "--batch-size", "64", "--learning-rate", "1e-4", "--max-length", "64"],
    "nsmc": ["--epochs", "3", "--batch-size", "32", "--learning-rate", "5e-5", "--max-length", "128"],
    "ner": ["--epochs", "15", "--batch-size", "32", "--learning-rate", "1e-4", "--max-length", "128"],
}


def timed(argv: list[str]):
    started = time.perf_counter()
    result = run(argv)
    return result, round(time.perf_counter() - started, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(SHARED / "models/e5-small-ko"))
    parser.add_argument("--data", default=str(SHARED / "data"), help="folder holding klue_ynat/, nsmc/, klue_ner/")
    parser.add_argument("--name", default="classify_ner", help="results file name (benchmarks/results/<name>.json)")
    parser.add_argument("--only", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--runs", default="runs", help="where the run directories go")
    args = parser.parse_args()
    setup_logging()
    data, runs = Path(args.data), Path(args.runs)
    figures: dict = {"model": Path(args.model).name}

    if "ynat" in args.only:
        argv = ["train", "classify", "--preset", "ynat", "--model", args.model,
                "--train", str(data / "klue_ynat/ynat_train.tsv"), "--dev", str(data / "klue_ynat/ynat_dev.tsv"),
                "--output-dir", str(runs / "bench-ynat"), "--overwrite", *RECIPES["ynat"]]
        result, wall = timed(argv)
        figures.update({"ynat_dev_macro_f1": round(result["history"][-1]["macro_f1"], 2),
                        "ynat_dev_accuracy": round(result["history"][-1]["accuracy"], 2),
                        "ynat_best_dev_macro_f1": round(result["best"]["macro_f1"], 2),
                        "ynat_history_macro_f1": [round(h["macro_f1"], 2) for h in result["history"]],
                        "ynat_train_options": " ".join(argv[2:]), "ynat_train_examples_per_s": result["train_examples_per_s"],
                        "ynat_wall_s": wall})
    if "nsmc" in args.only:
        run_dir = runs / "bench-nsmc"
        argv = ["train", "classify", "--preset", "nsmc", "--model", args.model,
                "--train", str(data / "nsmc/ratings_train_first5000.txt"),
                "--output-dir", str(run_dir), "--overwrite", *RECIPES["nsmc"]]
        result, wall = timed(argv)
        scored, eval_wall = timed(["evaluate", "classify", "--model", str(run_dir),
                                   "--input", str(data / "nsmc/ratings_test.txt")])
        figures.update({"nsmc_test_accuracy": round(scored["metrics"]["accuracy"], 2),
                        "nsmc_test_macro_f1": round(scored["metrics"]["macro_f1"], 2),
                        "nsmc_train_options": " ".join(argv[2:]), "nsmc_train_examples_per_s": result["train_examples_per_s"],
                        "nsmc_wall_s": wall, "nsmc_test_wall_s": eval_wall})
    if "ner" in args.only:
        argv = ["train", "ner", "--model", args.model,
                "--train", str(data / "klue_ner/klue-ner-v1.1_train_first5000.tsv"),
                "--dev", str(data / "klue_ner/klue-ner-v1.1_dev.tsv"),
                "--output-dir", str(runs / "bench-ner"), "--overwrite", *RECIPES["ner"]]
        result, wall = timed(argv)
        last = result["history"][-1]
        figures.update({"ner_dev_entity_f1": round(last["entity_f1"], 2), "ner_dev_char_f1": round(last["char_f1"], 2),
                        "ner_dev_char_f1_with_o": round(last["char_f1_with_o"], 2),
                        "ner_best_dev_entity_f1": round(result["best"]["entity_f1"], 2),
                        "ner_history_entity_f1": [round(h["entity_f1"], 2) for h in result["history"]],
                        "ner_train_options": " ".join(argv[2:]), "ner_train_examples_per_s": result["train_examples_per_s"],
                        "ner_wall_s": wall})
    write_results("classify_ner.py", args.name, figures)


if __name__ == "__main__":
    main()
