"""CPU inference: kluekit predict with torch, ONNX Runtime fp32 and ONNX Runtime int8 against
sentence-transformers' ``CrossEncoder.predict``, side by side in one process, on one trained STS run.

    python benchmarks/cpu_predict.py --run runs/cpu-bench-sts

- Threads: torch and ONNX Runtime both limited to --threads (2).
- Speed: the first --pairs (2,000) pairs of the KLUE-STS train file (the labelled dev has only 519), in file
  order. A kluekit path is what ``kluekit predict`` does once the model is loaded: tokenize (``task.encode``),
  ``predict_raw`` (batches of --batch-size, by default kluekit's CPU default of 16, sorted by length,
  dynamic padding) and ``task.outputs`` (0-5 clip). CrossEncoder: ``CrossEncoder(run, max_length=<the run's max_length>, activation_fn=Identity())``
  and ``predict(pairs)`` with its default batch size (32; it sorts by length too). A num_labels=1
  CrossEncoder applies a sigmoid by default; kluekit's STS head is a raw regression output clipped to
  0-5, so the identity keeps both on the same scale (its scores are clipped to 0-5 the same way).
- --compare-batch-size (128, the GPU default): torch and onnx-int8 are also timed at that batch size, to show
  what kluekit's CPU default of 16 buys.
- Timing: every model is loaded first (not timed); one warm-up pass over 64 pairs each; then --repeats
  passes over all pairs, the paths taking turns in each repeat; pairs/s from the median pass (all passes
  are in the results). The ONNX export and the int8 quantization are timed apart (from an empty cache
  <run>/onnx/, which this script clears first), never in the throughput.
- Quality: dev Pearson x100 (and F1) of each path on the labelled dev file, as ``kluekit evaluate``.

Writes benchmarks/results/<name>.json (default cpu_predict.json).
"""

from __future__ import annotations

import argparse
import inspect
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common import SHARED, write_results

PATHS = ("torch", "onnx", "onnx-int8", "crossencoder")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a 'kluekit train sts' run directory")
    parser.add_argument("--train", default=str(SHARED / "data/klue_sts/klue_sts_train.csv"), help="pairs to time")
    parser.add_argument("--dev", default=str(SHARED / "data/klue_sts/klue-sts-v1.1_dev.json"), help="labelled dev")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=0, help="kluekit's batch size (0: kluekit predict's default "
                                                                   "on the CPU, 16)")
    parser.add_argument("--compare-batch-size", type=int, default=128,
                        help="also time torch and onnx-int8 at this batch size (the GPU default), side by side; 0: no")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep-export", action="store_true", help="reuse <run>/onnx/ (export_seconds not measured)")
    parser.add_argument("--name", default="cpu_predict")
    args = parser.parse_args()

    import onnxruntime
    import sentence_transformers
    import torch
    from sentence_transformers import CrossEncoder

    from kluekit.inference import default_batch_size, predict_raw
    from kluekit.onnxrun import CACHE_DIR
    from kluekit.predictor import Predictor

    torch.set_num_threads(args.threads)
    batch_size = args.batch_size or default_batch_size(torch.device("cpu"))
    run = Path(args.run)
    task = Predictor(run, "sts").task
    max_length = Predictor(run, "sts").max_length
    pairs_frame = task.read(args.train, require_labels=False).head(args.pairs)
    dev = task.read(args.dev)
    gold = task.gold(dev)

    figures = {"run": str(run), "pairs": len(pairs_frame), "dev_pairs": len(dev), "threads": args.threads,
               "kluekit_batch_size": batch_size, "crossencoder_batch_size": inspect.signature(CrossEncoder.predict).parameters["batch_size"].default, "max_length": max_length,
               "repeats": args.repeats, "throughput_from": "median pass",
               "onnxruntime": onnxruntime.__version__, "sentence_transformers": sentence_transformers.__version__}
    if not args.keep_export:
        shutil.rmtree(run / CACHE_DIR, ignore_errors=True)
    models = {}
    for runtime in ("torch", "onnx", "onnx-int8"):
        started = time.perf_counter()
        models[runtime] = Predictor(run, "sts", precision="fp32", runtime=runtime).load()
        if runtime != "torch" and not args.keep_export:
            figures["export_seconds" if runtime == "onnx" else "quantize_seconds"] = round(time.perf_counter() - started, 2)
    for runtime, stem in (("onnx", "model"), ("onnx-int8", "model.int8")):
        figures[f"{runtime.replace('-', '_')}_file_mb"] = round((run / CACHE_DIR / f"{stem}.onnx").stat().st_size / 2**20, 1)
    cross = CrossEncoder(str(run), device="cpu", max_length=max_length, activation_fn=torch.nn.Identity())

    def predictor(path: str):
        path, _, size = path.partition("@")
        if path == "crossencoder":
            return lambda frame: np.clip(cross.predict(list(zip(frame["sentence1"], frame["sentence2"])),
                                                       show_progress_bar=False), 0.0, 5.0)
        tokenizer, model, device, precision = models[path]

        def predict(frame: pd.DataFrame) -> np.ndarray:
            features = task.encode(frame, tokenizer, max_length)
            logits = predict_raw(task, model, tokenizer, features, int(size or batch_size), device, precision,
                                 progress=False)
            return task.outputs(logits, features)
        return predict

    compared = [f"{path}@{args.compare_batch_size}" for path in ("torch", "onnx-int8")] if args.compare_batch_size else []
    predictors = {path: predictor(path) for path in (*PATHS, *compared)}
    dev_preds = {}
    for path, predict in predictors.items():
        predict(pairs_frame.head(64))  # warm-up
        if path in PATHS:
            dev_preds[path] = predict(dev)
            for metric, value in task.metrics(dev_preds[path], gold).items():
                figures[f"{path}_dev_{metric}"] = round(value, 2)
    seconds = {path: [] for path in predictors}
    for _ in range(args.repeats):
        for path, predict in predictors.items():
            started = time.perf_counter()
            predict(pairs_frame)
            seconds[path].append(time.perf_counter() - started)
    rate = {path: len(pairs_frame) / statistics.median(seconds[path]) for path in predictors}
    for path in predictors:
        name = path.replace("@", "_batch")
        figures[f"{name}_seconds_passes"] = [round(s, 3) for s in seconds[path]]
        figures[f"{name}_pairs_per_s"] = round(rate[path], 1)
    for path in ("torch", "onnx", "onnx-int8"):  # ratios of the unrounded rates, to 3 decimals
        name = "int8" if path == "onnx-int8" else path
        figures[f"cpu_{name}_vs_crossencoder"] = round(rate[path] / rate["crossencoder"], 3)
    for path in compared:  # what the CPU batch default buys
        default = path.split("@")[0]
        figures[f"{default}_batch{batch_size}_vs_{path.replace('@', '_batch')}"] = round(rate[default] / rate[path], 3)
    figures["cpu_int8_pearson_loss"] = round(figures["torch_dev_pearson"] - figures["onnx-int8_dev_pearson"], 2)
    figures["crossencoder_max_abs_diff_vs_torch"] = float(np.abs(dev_preds["crossencoder"] - dev_preds["torch"]).max())
    figures["onnx_max_abs_diff_vs_torch"] = float(np.abs(dev_preds["onnx"] - dev_preds["torch"]).max())
    figures["goal_met"] = rate["onnx-int8"] >= 2 * rate["crossencoder"] and figures["cpu_int8_pearson_loss"] <= 0.5
    write_results("cpu_predict.py", args.name, {k.replace("-", "_"): v for k, v in figures.items()})


if __name__ == "__main__":
    main()
