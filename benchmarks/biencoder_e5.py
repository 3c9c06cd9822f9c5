"""e5-small-ko as a bi-encoder: zero-shot, then fine-tuned on KLUE-STS train + KorSTS train (CoSENT).

    python benchmarks/biencoder_e5.py                               # the recipe in docs/biencoder.md
    python benchmarks/biencoder_e5.py --shared .carry               # model and data under .carry/ (GPU machine)
    python benchmarks/biencoder_e5.py --limit 200 -- --epochs 1     # a quick end-to-end check on CPU
    python benchmarks/biencoder_e5.py --name biencoder_lr2e-5 -- --learning-rate 2e-5   # a variant
    python benchmarks/biencoder_e5.py --shared .carry --nli         # NLI stage first (results: biencoder_nli.json)
    python benchmarks/biencoder_e5.py --nli --limit 120 -- --epochs 1 --nli-epochs 1   # its quick check on CPU
    python benchmarks/biencoder_e5.py --shared .carry --augment 40000   # Augmented SBERT (biencoder_augsbert.json)
    python benchmarks/biencoder_e5.py --augment 300 --limit 100 --cross-epochs 1 -- --epochs 1   # its CPU check

Zero-shot: cosine of mean-pooled embeddings, with and without e5's "query: " prefix. Fine-tuned: runs
``kluekit train biencoder`` as a user would (through the CLI entry point), keeping the best epoch by Spearman
on KLUE-STS dev (KorSTS dev is scored too, for information; KorSTS test is only scored at the end), then scores
the saved run on KLUE-STS dev (Pearson/Spearman) and KorSTS test (Spearman). Figures (x100) go to
``benchmarks/results/<name>.json`` with the command and device.

With ``--nli``, the training first runs the NLI stage (``--nli`` of ``kluekit train biencoder``) on KLUE-NLI dev
+ KorNLI's XNLI dev and test (3,500 (premise, entailment, contradiction) triplets; the only Korean NLI data
here: XNLI test is training data for this purpose since only STS is evaluated), then the same STS recipe.

With ``--augment N`` (Augmented SBERT, in-domain, as sentence-transformers documents it): a cross-encoder is
trained first on the same gold pairs (``kluekit train sts --recipe competition``, best epoch on KLUE-STS dev);
N new pairs are drawn from the training files' own sentences by semantic-search sampling (each sentence with its
nearest other sentences under the zero-shot bi-encoder with the "query: " prompt, pairs already labelled left
out), labelled by the cross-encoder (``kluekit predict sts``), and the bi-encoder trains on gold + silver pairs.
KorSTS test stays unseen by every step.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

from common import SHARED, benchmark_parser, write_results

from kluekit.cli import run, setup_logging

FILES = {"train": "klue_sts/klue_sts_train.csv", "dev": "klue_sts/klue-sts-v1.1_dev.json",
         "korsts_train": "korsts/sts-train.tsv", "korsts_dev": "korsts/sts-dev.tsv", "korsts_test": "korsts/sts-test.tsv"}
PREFIX = "query: "
# 4 epochs, batch 32 and CoSENT as sentence-transformers' STS examples; lr 5e-5 for a small (33M) encoder;
# fp32 because this small model is launch-bound on an H100 (see benchmarks/sts_e5.py); plain random batches
# (no length grouping) so that CoSENT ranks KLUE and KorSTS pairs of all lengths against each other;
# the "query: " prompt that e5 was trained with.
RECIPE = ["--epochs", "4", "--batch-size", "32", "--learning-rate", "5e-5", "--warmup", "0.1", "--loss", "cosent",
          "--precision", "fp32", "--no-group-by-length", "--prompt", PREFIX]
NLI_FILES = {"klue_nli": "klue_nli/klue-nli-v1.1_dev.json", "xnli_dev": "kornli/xnli.dev.ko.tsv",
             "xnli_test": "kornli/xnli.test.ko.tsv"}
# One epoch of in-batch negatives at batch 64 (SBERT's NLI recipes use large batches, 1 epoch); the STS
# recipe's learning rate. Options after -- override these (e.g. -- --nli-epochs 3).
NLI_RECIPE = ["--nli-epochs", "1", "--nli-batch-size", "64", "--nli-learning-rate", "5e-5"]


def parse_args():
    parser = benchmark_parser(__doc__, FILES["train"], FILES["dev"], "biencoder")
    parser.add_argument("--shared", help="folder holding models/e5-small-ko and data/ (default: ../shared); "
                                         "sets the defaults of every path option")
    for key in ("korsts_train", "korsts_dev", "korsts_test"):
        parser.add_argument("--" + key.replace("_", "-"))
    parser.add_argument("--no-korsts-train", action="store_true", help="fine-tune on KLUE-STS train only")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N rows of every file (a quick check)")
    parser.add_argument("--nli", action="store_true", help="run the NLI stage before STS on KLUE-NLI dev + XNLI "
                                                           "dev/test (results name: biencoder_nli unless --name)")
    parser.add_argument("--augment", type=int, default=0, help="Augmented SBERT: this many silver pairs labelled by "
                                                               "a cross-encoder (results name: biencoder_augsbert)")
    parser.add_argument("--neighbours", type=int, default=3, help="--augment: nearest sentences paired with each")
    parser.add_argument("--cross-epochs", type=float, default=0, help="--augment: the cross-encoder's epochs "
                                                                      "(0: kluekit's default)")
    parser.set_defaults(model=None, train=None, dev=None)  # filled in from --shared below
    args = parser.parse_args()
    root = Path(args.shared) if args.shared else SHARED
    args.model = args.model or str(root / "models/e5-small-ko")
    for key, rel in FILES.items():
        setattr(args, key, getattr(args, key) or str(root / "data" / rel))
    args.nli_files = {key: str(root / "data" / rel) for key, rel in NLI_FILES.items()} if args.nli else {}
    if args.name == "biencoder":  # a variant never overwrites the recipe's results unless --name says so
        args.name += ("_nli" if args.nli else "") + ("_augsbert" if args.augment else "") + \
            (f"_limit{args.limit}" if args.limit else "")
    return args


def limited(path: str, limit: int, folder: Path) -> str:
    """``path`` itself, or with ``limit`` a copy of its first ``limit`` rows (same format) in ``folder``."""
    if not limit:
        return path
    from kluekit.data.sts import read_sts

    frame = read_sts(path).head(limit)
    out = folder / (Path(path).stem + ".csv")
    frame[["sentence1", "sentence2", "label"]].to_csv(out, index=False)
    return str(out)


def limited_nli(path: str, limit: int, folder: Path) -> str:
    """``path`` itself, or with ``limit`` its first ``limit`` rows as a premise,hypothesis,gold_label CSV."""
    if not limit:
        return path
    from kluekit.data.nli_pairs import read_nli

    out = folder / (Path(path).stem + ".nli.csv")
    read_nli(path).head(limit).rename(columns={"label": "gold_label"})[["premise", "hypothesis", "gold_label"]].to_csv(
        out, index=False)
    return str(out)


def silver_pairs(args, train_files: list[str], dev: str, work: Path) -> dict:
    """Augmented SBERT's silver data: a cross-encoder on the gold pairs labels ``--augment`` new pairs drawn by
    semantic-search sampling from the training sentences; returns the silver CSV's path and figures."""
    import numpy as np
    import pandas as pd

    from kluekit.data.sts import read_sts
    from kluekit.embedding.encoding import encode, load_biencoder
    from kluekit.embedding.index import exact_search

    cross = run(["train", "sts", "--model", args.model, "--train", *train_files, "--dev", dev, "--output-dir",
                 str(work / "cross"), "--overwrite", "--recipe", "competition",
                 *(["--epochs", str(args.cross_epochs)] if args.cross_epochs else [])])
    gold = pd.concat([read_sts(path) for path in train_files])
    sentences = list(dict.fromkeys(gold["sentence1"].tolist() + gold["sentence2"].tolist()))
    vectors = encode(load_biencoder(args.model), sentences, batch_size=128, prompt=PREFIX)
    _, nearest = exact_search(vectors, vectors, args.neighbours + 1)  # each sentence's own row among them
    labelled = set(zip(gold["sentence1"], gold["sentence2"])) | set(zip(gold["sentence2"], gold["sentence1"]))
    pairs, seen = [], set()
    for row, neighbours in enumerate(nearest):
        for other in [n for n in neighbours if n != row][:args.neighbours]:
            key = (min(row, other), max(row, other))
            pair = (sentences[key[0]], sentences[key[1]])
            if key not in seen and pair not in labelled:
                seen.add(key)
                pairs.append(pair)
    order = np.random.default_rng(0).permutation(len(pairs))[:args.augment]
    unlabelled = pd.DataFrame([pairs[i] for i in order], columns=["sentence1", "sentence2"])
    unlabelled.insert(0, "id", [f"silver-{i}" for i in range(len(unlabelled))])
    unlabelled.to_csv(work / "silver_unlabelled.csv", index=False)
    run(["predict", "sts", "--model", cross["run_dir"], "--input", str(work / "silver_unlabelled.csv"), "--output",
         str(work / "silver_scores.csv")])
    scores = pd.read_csv(work / "silver_scores.csv")
    silver = unlabelled.merge(scores, on="id").rename(columns={"target": "label"})[["sentence1", "sentence2", "label"]]
    silver.to_csv(work / "silver.csv", index=False)
    return {"path": str(work / "silver.csv"), "augment_pairs": len(silver), "augment_candidates": len(pairs),
            "augment_neighbours": args.neighbours, "augment_label_mean": round(float(silver["label"].mean()), 3),
            "cross_encoder_klue_dev_pearson": round(cross["best"]["pearson"], 2)}


def main() -> None:
    args = parse_args()
    setup_logging()
    import torch

    from kluekit.inference import predict_raw
    from kluekit.predictor import Predictor
    from kluekit.tasks.biencoder import BiencoderOptions, BiencoderTask

    work = Path(f"runs/bench-{args.name}")
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    paths = {key: limited(getattr(args, key), args.limit, data) for key in FILES}
    evals = {"klue_dev": paths["dev"], "korsts_test": paths["korsts_test"]}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def score(task, tokenizer, model) -> dict:
        """Pearson and Spearman x100 of 5 x cosine (fp32) on KLUE-STS dev and KorSTS test."""
        scores = {}
        for name, path in evals.items():
            frame = task.read(path)
            features = task.encode(frame, tokenizer, 128)
            raw = predict_raw(task, model, tokenizer, features, 128, device, "fp32", progress=False)
            metrics = task.metrics(task.outputs(raw), task.gold(frame))
            scores[name] = {"pearson": metrics["pearson"], "spearman": metrics["spearman"]}
        return scores

    zero = {}
    for variant, prompt in (("plain", ""), ("query_prefix", PREFIX)):
        task = BiencoderTask(BiencoderOptions(prompt=prompt))
        zero[variant] = score(task, *task.load_model(args.model, device))

    train_files = [paths["train"]] + ([] if args.no_korsts_train else [paths["korsts_train"]])
    augmented = silver_pairs(args, train_files, paths["dev"], work) if args.augment else None
    if augmented:
        train_files.append(augmented["path"])
    nli_files = [limited_nli(path, args.limit, data) for path in args.nli_files.values()]
    nli = ["--nli", *nli_files, *NLI_RECIPE] if nli_files else []
    argv = ["train", "biencoder", "--model", args.model, "--train", *train_files,
            "--dev", paths["dev"], paths["korsts_dev"], "--output-dir", str(work / "run"), "--overwrite",
            *RECIPE, *nli, *args.extra]
    started = time.perf_counter()
    result = run(argv)
    wall = time.perf_counter() - started
    run_task = Predictor(result["run_dir"], "biencoder").task  # the saved best epoch, with its prompt
    tuned = score(run_task, *run_task.load_model(result["run_dir"], device))

    r = lambda value: round(value, 2)  # noqa: E731
    nli_record = result.get("stages", {}).get("nli")
    history = (nli_record["history"] if nli_record else []) + result["history"]
    figures = {
        "model": Path(args.model).name,
        "train_options": shlex.join(argv[2:]),
        "train_files": [Path(p).name for p in train_files],
        "limit": args.limit or None,
        "klue_dev_pearson": r(tuned["klue_dev"]["pearson"]),
        "klue_dev_spearman": r(tuned["klue_dev"]["spearman"]),
        "korsts_test_spearman": r(tuned["korsts_test"]["spearman"]),
        "korsts_test_pearson": r(tuned["korsts_test"]["pearson"]),
        "zero_shot_klue_dev_pearson": r(zero["query_prefix"]["klue_dev"]["pearson"]),
        "zero_shot_prefix": PREFIX,
        **{f"zero_shot_{variant}_{name}_{k}": r(v) for variant, scores in zero.items()
           for name, m in scores.items() for k, v in m.items()},
        "best_step": result["best_step"],
        "history_stage": [h.get("stage", "sts") for h in history],
        "history_klue_dev_spearman": [r(h["spearman"]) for h in history],
        "history_korsts_dev_spearman": [r(h[f"{Path(paths['korsts_dev']).name}/spearman"]) for h in history],
        "train_pairs_per_s": round(result["train_examples_per_s"], 1),
        "train_seconds": round(result["train_seconds"], 1),
        "wall_s": round(wall, 1),
    }
    if augmented:
        figures.update({k: v for k, v in augmented.items() if k != "path"})
    if nli_files:
        info = json.loads((Path(result["run_dir"]) / "kluekit.json").read_text(encoding="utf-8"))
        figures.update({
            "nli_files": [{k: Path(v).name if k == "path" else v for k, v in f.items()} for f in info["nli"]],
            "nli_triplets": info["nli_triplets"],
            "nli_epochs": info["task_options"]["nli_epochs"],
            "nli_steps": nli_record["steps"],
            "nli_train_seconds": round(nli_record["train_seconds"], 1),
            "nli_triplets_per_s": round(nli_record["train_examples_per_s"], 1),
        })
    write_results("biencoder_e5.py", args.name, figures)


if __name__ == "__main__":
    main()
