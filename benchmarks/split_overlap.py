"""How much a ``--dev-split`` of an STS training file shares with the part that trains: the share of held-out
pairs with a sentence that also occurs in the training part, and the share whose normalised pair (both sentences
with spaces and punctuation removed) occurs there, for KLUE-STS and KorSTS train, seeds 1-3 (CPU, seconds).
Also how KLUE-STS train and dev differ: the share of pairs in each half-point label bin (lowest and highest), and
how well the two sentences' character-bigram overlap (Jaccard, spaces removed) alone follows the label (Pearson x100),
with its mean over the pairs labelled below 1.

    python benchmarks/split_overlap.py
"""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path

from common import SHARED, write_results

from kluekit.config import TrainConfig
from kluekit.tasks import get_task_class
from kluekit.training import split_off

FILES = {"klue_sts": "klue_sts/klue_sts_train.csv", "korsts": "korsts/sts-train.tsv"}
KLUE_DEV = "klue_sts/klue-sts-v1.1_dev.json"


def normal(text: str) -> str:
    return re.sub(r"[\W_]+", "", text)


def overlap(kept, held) -> tuple[float, float]:
    seen = set(kept["sentence1"]) | set(kept["sentence2"])
    shared = held["sentence1"].isin(seen) | held["sentence2"].isin(seen)
    pairs = {frozenset((normal(a), normal(b))) for a, b in zip(kept["sentence1"], kept["sentence2"])}
    same = [frozenset((normal(a), normal(b))) in pairs for a, b in zip(held["sentence1"], held["sentence2"])]
    return 100 * float(shared.mean()), 100 * sum(same) / len(same)


def bigrams(text: str) -> set[str]:
    text = text.replace(" ", "")
    return {text[i:i + 2] for i in range(len(text) - 1)}


def jaccard(first: set, second: set) -> float:
    return len(first & second) / max(1, len(first | second))


def shape(examples) -> dict:
    """Label-bin shares (%) and the bigram-overlap baseline of one STS file."""
    import numpy as np

    gold = examples["label"].to_numpy(dtype=float)
    share = 100 * np.bincount(np.minimum((gold / 0.5).astype(int), 9), minlength=10) / len(gold)
    overlap = np.array([jaccard(bigrams(a), bigrams(b)) for a, b in zip(examples["sentence1"], examples["sentence2"])])
    return {"label_bin_0_pct": round(float(share[0]), 1), "label_bin_min_pct": round(float(share.min()), 1),
            "label_bin_max_pct": round(float(share.max()), 1),
            "bigram_overlap_label_pearson": round(100 * float(np.corrcoef(overlap, gold)[0, 1]), 1),
            "bigram_overlap_mean_below_1": round(float(overlap[gold < 1].mean()), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(SHARED))
    parser.add_argument("--dev-split", type=float, default=0.1)
    args = parser.parse_args()
    task = get_task_class("sts")()
    figures = {"dev_split": args.dev_split, "seeds": [1, 2, 3]}
    for name, rel in FILES.items():
        examples = task.read(Path(args.shared) / "data" / rel)
        runs = [overlap(*split_off(task, examples, TrainConfig(train=["x"], dev_split=args.dev_split, seed=seed),
                                   has_dev=False)) for seed in (1, 2, 3)]
        figures[f"{name}_pairs"] = len(examples)
        figures[f"{name}_held_out_sharing_a_sentence_pct"] = round(statistics.mean(r[0] for r in runs), 2)
        figures[f"{name}_held_out_same_normalised_pair_pct"] = round(statistics.mean(r[1] for r in runs), 2)
    for part, rel in (("train", FILES["klue_sts"]), ("dev", KLUE_DEV)):
        for key, value in shape(task.read(Path(args.shared) / "data" / rel)).items():
            figures[f"klue_sts_{part}_{key}"] = value
    write_results("split_overlap.py", "split_overlap", figures)


if __name__ == "__main__":
    main()
