"""Task-adaptive pre-training (TAPT): does continuing e5-small-ko on a task's own text help its fine-tuning?

    python benchmarks/tapt.py --shared .carry --jobs 6                     # STS, RE, NER; 3 seeds each way
    python benchmarks/tapt.py --shared ../shared --tasks sts --seeds 1 --limit 300 --tiny -- --max-steps 4   # CPU check

For each task: ``kluekit pretrain mlm --from-task TASK`` on the text of its training file and of its unlabelled
evaluation file (no labels; TAPT as Gururangan et al. 2020 run it), once; then the task's fine-tuning recipe
from e5-small-ko and from the TAPT run, with each of ``--seeds``. The figure of a fine-tuning run is its dev
score after the last epoch (no epoch is picked on the set that is reported). Runs go ``--jobs`` at a time
(small models leave most of one GPU idle). Writes ``benchmarks/results/<name>.json``: per task the mean and
standard deviation over seeds with and without TAPT, and ``tapt_gain_<task>`` (mean with - mean without).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, SHARED, kluekit_env, write_results

# task -> (train file, labelled dev file, unlabelled text for TAPT, primary metric, fine-tuning options)
TASKS = {
    "sts": ("klue_sts/klue_sts_train.csv", "klue_sts/klue-sts-v1.1_dev.json", "klue_sts/klue-sts-v1.1_dev.json",
            "pearson", ["--epochs", "4", "--batch-size", "32", "--learning-rate", "1e-4", "--swap-augment"]),
    "re": ("klue_re/train_partial_union.csv", "klue_re/boostcamp_test_data_with_labels.csv",
           "klue_re/boostcamp_test_data.csv", "micro_f1",
           ["--epochs", "5", "--batch-size", "32", "--learning-rate", "1e-4", "--max-length", "256",
            "--pooling", "entity", "--loss", "focal"]),
    "ner": ("klue_ner/klue-ner-v1.1_train_first5000.tsv", "klue_ner/klue-ner-v1.1_dev.tsv",
            "klue_ner/klue-ner-v1.1_dev.tsv", "entity_f1",
            ["--epochs", "15", "--batch-size", "32", "--learning-rate", "1e-4"]),
}
TAPT = ["--epochs", "3", "--batch-size", "32", "--learning-rate", "1e-4", "--max-length", "128", "--dev-split", "0.05",
        "--whole-word-mask"]


def run_all(commands: dict[str, list[str]], jobs: int, logs: Path) -> None:
    """Run ``name -> argv`` at most ``jobs`` at a time; stop on the first failure (its log's tail printed)."""
    waiting, running = list(commands.items()), {}
    env = kluekit_env(TQDM_DISABLE="1")
    while waiting or running:
        while waiting and len(running) < jobs:
            name, argv = waiting.pop(0)
            handle = open(logs / f"{name}.log", "w")
            running[name] = (subprocess.Popen([sys.executable, "-m", "kluekit", *argv], stdout=handle,
                                              stderr=subprocess.STDOUT, env=env), handle)
        time.sleep(2)
        for name, (process, handle) in list(running.items()):
            if process.poll() is not None:
                handle.close()
                del running[name]
                if process.returncode:
                    print((logs / f"{name}.log").read_text()[-3000:])
                    raise SystemExit(f"{name} failed ({process.returncode})")
                print(f"done: {name}", flush=True)


def limited(path: Path, limit: int, folder: Path) -> Path:
    """``path``, or its first ``limit`` lines (a quick check) in ``folder``."""
    if not limit:
        return path
    out = folder / path.name
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if path.suffix == ".json":
        out.write_text(json.dumps(json.loads("".join(lines))[:limit], ensure_ascii=False), encoding="utf-8")
    else:
        out.write_text("".join(lines[:limit + 1]), encoding="utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(SHARED))
    parser.add_argument("--model", help="encoder (default: <shared>/models/e5-small-ko)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--limit", type=int, default=0, help="first N rows of every file (a quick check)")
    parser.add_argument("--name", default="tapt")
    parser.add_argument("extra", nargs="*", help="options for every run, after -- (e.g. --max-steps 4)")
    args = parser.parse_args()
    shared = Path(args.shared)
    model = args.model or str(shared / "models/e5-small-ko")
    work = ROOT / "runs" / f"bench-{args.name}"
    (work / "logs").mkdir(parents=True, exist_ok=True)
    (work / "data").mkdir(exist_ok=True)
    files = {task: [limited(shared / "data" / rel, args.limit, work / "data") for rel in TASKS[task][:3]]
             for task in args.tasks}
    tapt = {f"tapt-{task}": ["pretrain", "mlm", "--model", model, "--from-task", task, "--train", str(train), str(text),
                             "--output-dir", str(work / f"tapt-{task}"), "--overwrite", *TAPT, *args.extra]
            for task, (train, _, text) in files.items()}
    run_all(tapt, args.jobs, work / "logs")
    fine = {}
    for task, (train, dev, _) in files.items():
        for start, source in (("base", model), ("tapt", str(work / f"tapt-{task}"))):
            for seed in args.seeds:
                fine[f"{task}-{start}-{seed}"] = ["train", task, "--model", source, "--train", str(train), "--dev",
                                                  str(dev), "--output-dir", str(work / f"{task}-{start}-{seed}"),
                                                  "--overwrite", "--seed", str(seed), *TASKS[task][4], *args.extra]
    run_all(fine, args.jobs, work / "logs")

    figures = {"model": Path(model).name, "seeds": args.seeds, "tapt_options": " ".join(TAPT), "limit": args.limit or None}
    for task in args.tasks:
        metric = TASKS[task][3]
        scores = {start: [json.loads((work / f"{task}-{start}-{seed}" / "metrics.json").read_text())["history"][-1][metric]
                          for seed in args.seeds] for start in ("base", "tapt")}
        tapt_record = json.loads((work / f"tapt-{task}" / "metrics.json").read_text())
        for start, values in scores.items():
            figures[f"{task}_{start}_{metric}"] = [round(v, 2) for v in values]
            figures[f"{task}_{start}_mean"] = round(statistics.mean(values), 2)
            figures[f"{task}_{start}_std"] = round(statistics.stdev(values), 2) if len(values) > 1 else None
        figures[f"tapt_gain_{task}"] = round(figures[f"{task}_tapt_mean"] - figures[f"{task}_base_mean"], 2)
        figures[f"{task}_tapt_held_out_perplexity"] = round(tapt_record["best"]["perplexity"], 2)
        figures[f"{task}_fine_tune_options"] = " ".join(TASKS[task][4])
    write_results("tapt.py", args.name, figures)


if __name__ == "__main__":
    main()
