"""Scaling over several GPUs: ``kluekit train sts`` under torchrun (DDP) against the same run on one GPU.

    python benchmarks/ddp_speed.py --shared .carry --gpus 2                 # e5-small-ko
    python benchmarks/ddp_speed.py --shared .carry --gpus 2 --model base    # random klue/roberta-base shape

Same data (KLUE-STS train, scored on dev after the last epoch), epochs and global batch: one GPU at
``--batch-size``, N GPUs at ``--batch-size / N`` each, so both take the same optimizer steps. One GPU is
run twice, with kluekit's defaults (CUDA graphs) and with ``--no-cuda-graphs`` (eager, as DDP runs), so
the speed-up over each shows. Writes benchmarks/results/<name>.json with ``ddp<N>_speedup`` (N GPUs over
one GPU with the defaults) and ``ddp<N>_speedup_vs_eager``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common import SHARED, write_results
from train_speed import gpu_name, make_base_model, pair_work, run_kluekit, throughput


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(SHARED), help="folder holding models/e5-small-ko and data/klue_sts")
    parser.add_argument("--model", choices=["e5", "base"], default="e5")
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch (per GPU: this / --gpus)")
    parser.add_argument("--name", help="results file name (default: ddp<gpus>_<model>)")
    args = parser.parse_args()
    if args.batch_size % args.gpus:
        parser.error("--batch-size must divide by --gpus")
    shared = Path(args.shared)
    train, dev = shared / "data/klue_sts/klue_sts_train.csv", shared / "data/klue_sts/klue-sts-v1.1_dev.json"
    model_dir = str(shared / "models/e5-small-ko") if args.model == "e5" else make_base_model(shared)
    work = pair_work(model_dir, train)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.gpus)]
    runs = {"one_gpu": (args.batch_size, [], None),
            "one_gpu_eager": (args.batch_size, ["--no-cuda-graphs"], None),
            f"ddp{args.gpus}": (args.batch_size // args.gpus, [], torchrun)}
    figures = {"model": args.model, "gpu": gpu_name(), "gpus": args.gpus, "epochs": args.epochs,
               "global_batch": args.batch_size}
    for name, (batch, options, launcher) in runs.items():
        print(f"=== {name}", flush=True)
        started = time.perf_counter()
        result = run_kluekit(f"ddp-{name}", model_dir, train, dev, args.epochs, batch, options, launcher)
        result["wall_s"] = round(time.perf_counter() - started, 1)
        result.update(throughput(result, work, args.epochs))
        print(json.dumps(result), flush=True)
        figures[name] = result
    many = figures[f"ddp{args.gpus}"]["pairs_per_s"]
    figures[f"ddp{args.gpus}_speedup"] = round(many / figures["one_gpu"]["pairs_per_s"], 2)
    figures[f"ddp{args.gpus}_speedup_vs_eager"] = round(many / figures["one_gpu_eager"]["pairs_per_s"], 2)
    write_results("ddp_speed.py", args.name or f"ddp{args.gpus}_{args.model}", figures)


if __name__ == "__main__":
    main()
