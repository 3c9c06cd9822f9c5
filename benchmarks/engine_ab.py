"""Training speed of this checkout against another one (e.g. the commit before a change), on one machine.

    git archive 8cb57d6 | tar -x -C .carry/old
    python benchmarks/engine_ab.py --old .carry/old --shared .carry --rounds 2

Runs ``benchmarks/train_speed.py --models e5 --recipes kluekit`` from each tree in turn (new, old, new, old, ...:
the first process on a fresh machine is slower, alternating spreads that), then once each with
``--no-cuda-graphs``. Writes ``benchmarks/results/<name>.json``: pairs/s and dev Pearson per tree and round.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import ROOT, write_results


def speed(tree: Path, shared: str, name: str, recipe: str) -> dict:
    subprocess.run([sys.executable, str(tree / "benchmarks/train_speed.py"), "--shared", shared, "--epochs", "3",
                    "--models", "e5", "--name", name, "--recipes", recipe], check=True, capture_output=True)
    figures = json.loads((tree / "benchmarks/results" / f"{name}.json").read_text())
    (tree / "benchmarks/results" / f"{name}.json").unlink()
    key = "e5_" + recipe.split(":")[0].replace("-", "_")
    return {"pairs_per_s": figures[f"{key}_pairs_per_s"], "dev_pearson": figures[f"{key}_dev_pearson"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="a checkout of the other commit")
    parser.add_argument("--shared", required=True, help="folder holding models/e5-small-ko and data/klue_sts")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--name", default="engine_ab")
    args = parser.parse_args()
    shared = str(Path(args.shared).resolve())
    trees = {"new": ROOT, "old": Path(args.old).resolve()}
    figures = {}
    for round_ in range(1, args.rounds + 1):
        for label, tree in trees.items():
            figures[f"{label}_round{round_}"] = speed(tree, shared, f"ab_{label}_{round_}", "kluekit")
            print(label, round_, figures[f"{label}_round{round_}"], flush=True)
    for label, tree in trees.items():
        figures[f"{label}_eager"] = speed(tree, shared, f"ab_{label}_eager", "kluekit-eager:--no-cuda-graphs")
        print(label, "eager", figures[f"{label}_eager"], flush=True)
    write_results("engine_ab.py", args.name, figures)


if __name__ == "__main__":
    main()
