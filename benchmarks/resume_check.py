"""Exact resume: a run killed with SIGKILL and continued with ``--resume`` against the uninterrupted run.

    python benchmarks/resume_check.py                       # e5-small-ko, KLUE-STS, the defaults of the device
    python benchmarks/resume_check.py --shared .carry -- --precision fp32

The setting of the fault report: 400 KLUE-STS training rows, dev 100, batch 16, max length 64, 36 steps,
evaluation every 8, seed 42; the kill lands at step 12 (``benchmarks/kill_at_step.py``). The same run twice
without a kill gives the floor of run-to-run differences on the machine (0 on a CPU; GPU kernels may add
float noise). Writes ``benchmarks/results/<name>.json``: the largest differences of dev Pearson and MSE over
the evaluations and of the final weights, for the rerun and for the resumed run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
from common import ROOT, SHARED, write_results

OPTIONS = ["--max-steps", "36", "--eval-steps", "8", "--batch-size", "16", "--max-length", "64", "--seed", "42"]


def kluekit(args: list[str], kill_at: int = 0) -> int:
    prefix = [str(ROOT / "benchmarks/kill_at_step.py"), str(kill_at)] if kill_at else ["-m", "kluekit"]
    return subprocess.run([sys.executable, *prefix, *args], env={"PYTHONPATH": str(ROOT / "src"),
                                                                 **__import__("os").environ}).returncode


def differences(a: Path, b: Path) -> dict:
    from safetensors.torch import load_file

    ha, hb = (json.loads((run / "metrics.json").read_text())["history"] for run in (a, b))
    wa, wb = (load_file(str(run / "model.safetensors")) for run in (a, b))
    return {"pearson": max(abs(x["pearson"] - y["pearson"]) for x, y in zip(ha, hb)),
            "mse": max(abs(x["mse"] - y["mse"]) for x, y in zip(ha, hb)),
            "weights": max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa),
            "steps": [x["step"] for x in hb] == [x["step"] for x in ha]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(SHARED))
    parser.add_argument("--name", default="resume_check")
    parser.add_argument("extra", nargs="*", help="more 'kluekit train' options, after --")
    args = parser.parse_args()
    shared, work = Path(args.shared), ROOT / "runs" / f"bench-{args.name}"
    work.mkdir(parents=True, exist_ok=True)
    frame = pd.read_csv(shared / "data/klue_sts/klue_sts_train.csv")
    frame.iloc[:400].to_csv(work / "train.csv", index=False)
    frame.iloc[400:500].to_csv(work / "dev.csv", index=False)
    base = ["train", "sts", "--model", str(shared / "models/e5-small-ko"), "--train", str(work / "train.csv"),
            "--dev", str(work / "dev.csv"), "--overwrite", *OPTIONS, *args.extra]
    runs = {name: work / name for name in ("whole", "again", "resumed")}
    for name in ("whole", "again"):
        assert kluekit([*base, "--output-dir", str(runs[name])]) == 0
    assert kluekit([*base, "--output-dir", str(runs["resumed"])], kill_at=12) == -9
    killed_at = json.loads((runs["resumed"] / "checkpoint/progress.json").read_text())["global_step"]
    assert kluekit([*base, "--output-dir", str(runs["resumed"]), "--resume"]) == 0
    rerun, resumed = differences(runs["whole"], runs["again"]), differences(runs["whole"], runs["resumed"])
    info = json.loads((runs["whole"] / "kluekit.json").read_text())
    write_results("resume_check.py", args.name, {
        "precision": info["precision"], "cuda_graphs": info["cuda_graphs"], "killed_at_step": 12,
        "resumed_from_step": killed_at, "rerun_max_diff": rerun, "resumed_max_diff": resumed,
        "resumed_exact": resumed["pearson"] == resumed["mse"] == resumed["weights"] == 0})


if __name__ == "__main__":
    main()
