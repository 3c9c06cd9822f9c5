"""Whether clipping STS scores to the 0-5 scale (what ``kluekit`` scores and writes) costs Pearson: a run trained
with ``--dev-split`` predicts the rows it held out (rebuilt with kluekit's own split, from its record's seed and
split seed), and the Pearson of the clipped and of the unclipped scores are compared, with the share of unclipped
scores outside [0, 5] and the same with every half-point label bin weighted alike (quality.py's ``flat_pearson``).

    kluekit train sts --model ../shared/models/e5-small-ko --train ../shared/data/klue_sts/klue_sts_train.csv \\
        --dev-split 0.1 --output-dir runs/clip-split --epochs 1 --learning-rate 1e-4 --group-by-length --seed 1
    python benchmarks/sts_clip.py --run runs/clip-split
"""

from __future__ import annotations

import argparse

import numpy as np

from common import write_results
from quality import flat_pearson

from kluekit.config import TrainConfig
from kluekit.inference import default_batch_size, predict_raw
from kluekit.predictor import Predictor
from kluekit.training import read_files, split_off


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="an STS run directory trained with --dev-split")
    parser.add_argument("--name", default="sts_clip")
    args = parser.parse_args()
    predictor = Predictor(args.run, expected="sts", progress=False)
    recorded = predictor.run.info["train_config"]
    cfg = TrainConfig(**{k: v for k, v in recorded.items() if k in TrainConfig.__dataclass_fields__})
    if not cfg.dev_split:
        raise SystemExit(f"{args.run}: trained without --dev-split, so it has no held-out rows")
    task = predictor.task
    held = split_off(task, read_files(task, cfg.train, cfg.format), cfg, has_dev=False)[1]
    tokenizer, model, device, precision = predictor.load()
    features = task.inference_features(held, tokenizer, predictor.max_length)
    raw = predict_raw(task, model, tokenizer, features, default_batch_size(device), device, precision, progress=False)
    unclipped, clipped, gold = task.unclipped(raw, features), task.outputs(raw, features), task.gold(held)
    figures = {"run": args.run, "held_out_pairs": len(held), "swap_average": bool(task.options.swap_average),
               "outside_0_5_pct": round(100 * float(np.mean((unclipped < 0) | (unclipped > 5))), 2)}
    for name, preds in (("clipped", clipped), ("unclipped", unclipped)):
        figures[f"split_pearson_{name}"] = round(flat_pearson(preds, gold, weighted=False), 3)
        figures[f"split_flat_pearson_{name}"] = round(flat_pearson(preds, gold), 3)
    for kind in ("", "flat_"):
        gain = figures[f"split_{kind}pearson_clipped"] - figures[f"split_{kind}pearson_unclipped"]
        figures[f"clip_gain{'_flat' if kind else ''}"] = round(gain, 3)
    write_results("sts_clip.py", args.name, figures)


if __name__ == "__main__":
    main()
