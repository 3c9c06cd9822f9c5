"""KorQuAD 1.0 dev split by article: kluekit against the transformers ``run_qa.py`` Trainer recipe, side by side.

    python benchmarks/mrc.py                                   # 3 seeds each; writes benchmarks/results/mrc.json
    python benchmarks/mrc.py --quick --seeds 1                 # CPU smoke test: a tiny slice, 1 epoch
    python benchmarks/mrc.py --select                          # choose a kluekit recipe (never reads the test articles)
    python benchmarks/mrc.py --data .carry/data/korquad/KorQuAD_v1.0_dev.json --model .carry/models/e5-small-ko

The split: the first 100 articles to train (4,055 questions), the last 40 to test (1,719). Both recipes are
scored with the official metrics (``kluekit.mrc_metrics``: KorQuAD exact match and character F1).

- ``trainer``: transformers' ``run_qa.py`` recipe rebuilt without the ``datasets`` package: its
  prepare_train_features / prepare_validation_features / postprocess_qa_predictions logic, max length 384,
  stride 128, batch 32, lr 5e-5, 3 epochs, padding to max length, fp32, n_best 20, max_answer_length 30;
  ``trainer_train_seconds`` is the Trainer's ``train_runtime``.
- ``kluekit``: ``kluekit train mrc`` then ``kluekit evaluate mrc`` through the CLI (no dev file: no epoch is
  picked on the test articles), with ``--learning-rate/--epochs/--batch-size/--max-length/--stride``;
  ``train_seconds`` is the run's ``train_seconds`` (optimizer steps only, as the Trainer's figure).
- ``--select``: the last 20 of the 100 training articles become a dev set; a few kluekit recipes (and the
  Trainer recipe, for reference) train on the first 80 and are compared there; the test articles are not read.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, SHARED, flatten

from kluekit.cli import run, setup_logging
from kluekit.mrc_metrics import mrc_metrics

TRAIN_ARTICLES, TEST_ARTICLES, SELECT_DEV = 100, 40, 20
SELECT_RECIPES = [  # (learning rate, epochs) at the --batch-size / --max-length / --stride given
    (5e-5, 3), (1e-4, 2), (1e-4, 3), (2e-4, 2), (2e-4, 3),
]
log = logging.getLogger("kluekit")


# ---- the Trainer recipe (run_qa.py's logic on plain Python lists) -------------------------------------------

def flat_questions(articles: list[dict]) -> list[dict]:
    return [{"id": qa["id"], "question": qa["question"].lstrip(), "context": p["context"], "answers": qa["answers"]}
            for a in articles for p in a["paragraphs"] for qa in p["qas"]]


def tokenize(tokenizer, rows, max_length, stride):
    return tokenizer([r["question"] for r in rows], [r["context"] for r in rows], truncation="only_second",
                     max_length=max_length, stride=stride, return_overflowing_tokens=True,
                     return_offsets_mapping=True, padding="max_length")


def prepare_train_features(tokenizer, rows, max_length, stride) -> dict:
    """run_qa.py's prepare_train_features: start/end token of the first answer, CLS where it is not inside."""
    enc = tokenize(tokenizer, rows, max_length, stride)
    starts, ends = [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        ids = enc["input_ids"][i]
        cls = ids.index(tokenizer.cls_token_id)
        seq = enc.sequence_ids(i)
        answers = rows[enc["overflow_to_sample_mapping"][i]]["answers"]
        if not answers:
            starts.append(cls), ends.append(cls)
            continue
        start_char = answers[0]["answer_start"]
        end_char = start_char + len(answers[0]["text"])
        token_start = 0
        while seq[token_start] != 1:
            token_start += 1
        token_end = len(ids) - 1
        while seq[token_end] != 1:
            token_end -= 1
        if not (offsets[token_start][0] <= start_char and offsets[token_end][1] >= end_char):
            starts.append(cls), ends.append(cls)
            continue
        while token_start < len(offsets) and offsets[token_start][0] <= start_char:
            token_start += 1
        starts.append(token_start - 1)
        while offsets[token_end][1] >= end_char:
            token_end -= 1
        ends.append(token_end + 1)
    keep = [k for k in enc.keys() if k not in ("offset_mapping", "overflow_to_sample_mapping")]
    return {**{k: enc[k] for k in keep}, "start_positions": starts, "end_positions": ends}


def prepare_validation_features(tokenizer, rows, max_length, stride):
    """run_qa.py's prepare_validation_features: inputs, the example of each feature, context-only offsets."""
    enc = tokenize(tokenizer, rows, max_length, stride)
    offsets = [[o if enc.sequence_ids(i)[k] == 1 else None for k, o in enumerate(spans)]
               for i, spans in enumerate(enc["offset_mapping"])]
    keep = [k for k in enc.keys() if k not in ("offset_mapping", "overflow_to_sample_mapping")]
    return {k: enc[k] for k in keep}, list(enc["overflow_to_sample_mapping"]), offsets


def postprocess_qa_predictions(rows, example_of, offsets, start_logits, end_logits, n_best=20, max_answer_length=30):
    """run_qa.py's postprocess_qa_predictions (SQuAD v1: no null answer): the best-scoring valid span."""
    import numpy as np

    features = {}
    for f, e in enumerate(example_of):
        features.setdefault(e, []).append(f)
    answers = []
    for e, row in enumerate(rows):
        candidates = []
        for f in features.get(e, []):
            spans = offsets[f]
            for s in np.argsort(start_logits[f])[-1:-n_best - 1:-1].tolist():
                for t in np.argsort(end_logits[f])[-1:-n_best - 1:-1].tolist():
                    if s >= len(spans) or t >= len(spans) or spans[s] is None or spans[t] is None \
                            or len(spans[s]) < 2 or len(spans[t]) < 2:
                        continue
                    if t < s or t - s + 1 > max_answer_length:
                        continue
                    candidates.append((start_logits[f][s] + end_logits[f][t], spans[s][0], spans[t][1]))
        best = max(candidates) if candidates else (0.0, 0, 0)
        answers.append(row["context"][best[1]:best[2]])
    return answers


class ListDataset:
    """A torch map-style dataset over a dict of equal-length lists (what ``datasets`` would hold)."""

    def __init__(self, columns: dict):
        self.columns = columns

    def __len__(self):
        return len(next(iter(self.columns.values())))

    def __getitem__(self, i):
        import torch

        return {k: torch.tensor(v[i]) for k, v in self.columns.items()}


def trainer_recipe(model_dir: str, train_articles, test_articles, seed: int, epochs: float, out: Path) -> dict:
    from transformers import (AutoModelForQuestionAnswering, AutoTokenizer, Trainer, TrainingArguments,
                              default_data_collator, set_seed)

    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir)
    train_rows, test_rows = flat_questions(train_articles), flat_questions(test_articles)
    train_set = ListDataset(prepare_train_features(tokenizer, train_rows, 384, 128))
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=32, per_device_eval_batch_size=128,
                             learning_rate=5e-5, num_train_epochs=epochs, seed=seed, save_strategy="no",
                             eval_strategy="no", report_to="none", logging_steps=50, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=train_set, data_collator=default_data_collator)
    seconds = trainer.train().metrics["train_runtime"]
    inputs, example_of, offsets = prepare_validation_features(tokenizer, test_rows, 384, 128)
    start_logits, end_logits = trainer.predict(ListDataset(inputs)).predictions[:2]
    answers = postprocess_qa_predictions(test_rows, example_of, offsets, start_logits, end_logits)
    scores = mrc_metrics(answers, [[a["text"] for a in r["answers"]] for r in test_rows])
    return {"em": scores["exact_match"], "f1": scores["f1"], "train_seconds": seconds}


# ---- kluekit ---------------------------------------------------------------------------------------------

def kluekit_recipe(model_dir: str, train_file: Path, test_file: Path, seed: int, recipe: dict, run_dir: Path) -> dict:
    options = ["--epochs", recipe["epochs"], "--batch-size", recipe["batch_size"], "--learning-rate",
               recipe["lr"], "--max-length", recipe["max_length"], "--doc-stride", recipe["stride"],
               "--seed", seed, *recipe["extra"]]
    result = run(["train", "mrc", "--model", model_dir, "--train", str(train_file), "--output-dir", str(run_dir),
                  "--overwrite", *map(str, options)])
    scored = run(["evaluate", "mrc", "--model", str(run_dir), "--input", str(test_file)])
    return {"em": scored["metrics"]["exact_match"], "f1": scored["metrics"]["f1"],
            "train_seconds": result["train_seconds"], "options": " ".join(map(str, options))}


def summary(runs: list[dict], prefix: str) -> dict:
    out = {}
    for key in ("em", "f1", "train_seconds"):
        values = [r[key] for r in runs]
        out[f"{prefix}{key}"] = round(statistics.mean(values), 2)
        out[f"{prefix}{key}_std"] = round(statistics.stdev(values), 2) if len(values) > 1 else 0.0
        out[f"{prefix}{key}_per_seed"] = [round(v, 2) for v in values]
    return out


def write_split(folder: Path, name: str, articles: list[dict]) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"version": f"KorQuAD_v1.0_dev {name} split", "data": articles}, ensure_ascii=False),
                    encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(SHARED / "models/e5-small-ko"))
    parser.add_argument("--data", default=str(SHARED / "data/korquad/KorQuAD_v1.0_dev.json"),
                        help="KorQuAD_v1.0_dev.json, or the folder holding it")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", default=None, help="results file (default benchmarks/results/mrc.json; "
                                                    "mrc_select.json with --select, mrc_quick.json with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 4 training and 2 test articles, 1 epoch")
    parser.add_argument("--select", action="store_true", help="compare kluekit recipes on the last 20 training "
                                                               "articles (trained on the first 80)")
    parser.add_argument("--lr", type=float, default=1e-4, help="kluekit learning rate")
    parser.add_argument("--epochs", type=float, default=3, help="kluekit epochs")
    parser.add_argument("--batch-size", type=int, default=32, help="kluekit batch size")
    parser.add_argument("--max-length", type=int, default=384, help="kluekit --max-length")
    parser.add_argument("--stride", type=int, default=128, help="kluekit --doc-stride")
    parser.add_argument("--no-trainer", action="store_true", help="skip the Trainer recipe")
    parser.add_argument("--runs", default="runs", help="where the kluekit run directories go")
    parser.add_argument("extra", nargs="*", help="more 'kluekit train mrc' options, after --")
    args = parser.parse_args()
    setup_logging()
    data = Path(args.data)
    data = data / "KorQuAD_v1.0_dev.json" if data.is_dir() else data
    articles = json.loads(data.read_text(encoding="utf-8"))["data"]
    train_articles, test_articles = articles[:TRAIN_ARTICLES], articles[-TEST_ARTICLES:]
    if args.select:  # the test articles are never looked at
        train_articles, test_articles = train_articles[:-SELECT_DEV], train_articles[-SELECT_DEV:]
    trainer_epochs = 3.0
    if args.quick:
        train_articles, test_articles, trainer_epochs = train_articles[:4], test_articles[:2], 1.0
        args.epochs = 1.0
    base = {"lr": args.lr, "epochs": args.epochs, "batch_size": args.batch_size, "max_length": args.max_length,
            "stride": args.stride, "extra": args.extra}
    recipes = [base] if not args.select else [{**base, "lr": lr, "epochs": 1.0 if args.quick else epochs}
                                              for lr, epochs in SELECT_RECIPES]
    count = lambda part: sum(len(p["qas"]) for a in part for p in a["paragraphs"])  # noqa: E731
    figures = {"model": Path(args.model).name, "split": "select (80 -> 20 training articles)" if args.select else
               "first 100 articles -> last 40", "train_questions": count(train_articles),
               "test_questions": count(test_articles), "seeds": args.seeds, "quick": args.quick}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train_file, test_file = write_split(tmp, "train", train_articles), write_split(tmp, "test", test_articles)
        if not args.no_trainer:
            runs = [trainer_recipe(args.model, train_articles, test_articles, seed, trainer_epochs, tmp / f"hf-{seed}")
                    for seed in args.seeds]
            figures.update(summary(runs, "trainer_"))
        for index, recipe in enumerate(recipes):
            runs = [kluekit_recipe(args.model, train_file, test_file, seed, recipe,
                                   Path(args.runs) / f"bench-mrc-{'select-' if args.select else ''}{index}-s{seed}")
                    for seed in args.seeds]
            prefix = f"recipe{index}_" if args.select else ""
            scores = summary(runs, prefix)
            if not args.select:
                scores = {("korquad_test_" + k if k.startswith(("em", "f1")) else k): v for k, v in scores.items()}
            figures.update(scores, **{f"{prefix}kluekit_options": runs[0]["options"]})
    figures["wall_s"] = round(time.perf_counter() - started, 1)
    if not args.select and "trainer_f1" in figures:
        figures["speedup_vs_trainer"] = round(figures["trainer_train_seconds"] / max(figures["train_seconds"], 1e-9), 2)
    write(args, figures)


def write(args, figures: dict) -> None:
    from kluekit.rundir import device_name

    name = "mrc_select" if args.select else "mrc_quick" if args.quick else "mrc"
    out = Path(args.out) if args.out else ROOT / "benchmarks/results" / f"{name}.json"
    figures = {"device": device_name(), "command": "python benchmarks/mrc.py " + shlex.join(sys.argv[1:]),
               **flatten(figures)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
