"""Training speed on one GPU: kluekit against the recipes people copy, same data, model and epochs.

    python benchmarks/train_speed.py --shared .carry                  # all recipes, both models
    python benchmarks/train_speed.py --models e5 --recipes kluekit "kluekit-eager:--no-cuda-graphs"

Recipes (each in its own process, so memory peaks and CUDA state do not mix):
- ``kluekit``: ``kluekit train sts`` through the CLI with its defaults (bf16, CUDA graphs, length-grouped
  dynamic padding, fused AdamW); ``NAME:OPTIONS`` adds train options (``kluekit-eager:--no-cuda-graphs``);
- ``trainer``: a plain Hugging Face ``Trainer`` as the text-classification examples use it: every pair
  padded to 128 tokens, fp32, the ``TrainingArguments`` defaults (lr 5e-5, no warmup); no checkpoints;
- ``crossencoder``: sentence-transformers' ``CrossEncoder.fit`` as its STS example uses it (labels / 5,
  binary cross-entropy, lr 2e-5, 10% warmup, fp32).
All train on KLUE-STS train for ``--epochs`` at batch ``--batch-size`` and are scored on KLUE-STS dev after
the last epoch (no epoch picked on dev), with max length 128.

Models: ``e5`` (../shared/models/e5-small-ko) and ``base``: a randomly initialised model of the
klue/roberta-base shape (RoBERTa, 12 layers, hidden 768, vocab 32000; e5-small-ko's tokenizer, same vocab
size), for speed; its Pearson after a few epochs from scratch means little.

Figures per model and recipe: pairs/s and real (unpadded) tokens/s over training time (evaluation and
loading excluded), wall seconds of the whole recipe (process start to scored), peak GPU memory, dev
Pearson x100, and model FLOPs utilisation: 6 x (matrix parameters) x tokens + 12 x layers x hidden x
length^2 per pair (attention), real tokens only, over the GPU's dense bf16 peak.
Writes benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, SHARED, kluekit_env, write_results

PEAK_BF16 = {"H100 80GB HBM3": 989.4e12, "H100 PCIe": 756.5e12, "H100": 989.4e12, "H200": 989.4e12,
             "A100": 312e12, "L40S": 362e12, "A10G": 70e12}  # dense, from the vendors' data sheets
RECIPES = ["kluekit", "trainer", "crossencoder"]
MAX_LENGTH = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(SHARED), help="folder holding models/e5-small-ko and data/klue_sts")
    parser.add_argument("--models", nargs="+", default=["e5", "base"], choices=["e5", "base"])
    parser.add_argument("--e5", help="the small model's folder (default: <shared>/models/e5-small-ko)")
    parser.add_argument("--train", help="training file (default: <shared>/data/klue_sts/klue_sts_train.csv)")
    parser.add_argument("--dev", help="dev file (default: <shared>/data/klue_sts/klue-sts-v1.1_dev.json)")
    parser.add_argument("--recipes", nargs="+", default=RECIPES, help="kluekit[-NAME:OPTIONS], trainer, crossencoder")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--name", default="train_speed")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one peer recipe, print its JSON
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    shared = Path(args.shared)
    train = Path(args.train or shared / "data/klue_sts/klue_sts_train.csv")
    dev = Path(args.dev or shared / "data/klue_sts/klue-sts-v1.1_dev.json")
    if args.one:
        print("RESULT " + json.dumps(PEERS[args.one](args.model_dir, train, dev, args.epochs, args.batch_size)))
        return

    figures = {"epochs": args.epochs, "batch_size": args.batch_size, "gpu": gpu_name(),
               "matmul_bf16_tflops": measure_matmul_tflops()}
    for model_key in args.models:
        model_dir = (args.e5 or str(shared / "models/e5-small-ko")) if model_key == "e5" else make_base_model(shared)
        work = pair_work(model_dir, train)
        for spec in args.recipes:
            name, _, options = spec.partition(":")
            print(f"=== {model_key} {name} {options}", flush=True)
            started = time.perf_counter()
            if name.startswith("kluekit"):
                result = run_kluekit(name, model_dir, train, dev, args.epochs, args.batch_size, options.split())
            else:
                result = run_peer(name, model_dir, train, dev, args.epochs, args.batch_size)
            result["wall_s"] = round(time.perf_counter() - started, 1)
            result.update(throughput(result, work, args.epochs))
            print(json.dumps(result), flush=True)
            figures[f"{model_key}_{name.replace('-', '_')}"] = result
            write_results("train_speed.py", args.name, figures, quiet=True)
    write_results("train_speed.py", args.name, figures)


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def peak_flops() -> float | None:
    name = gpu_name()
    return next((value for key, value in PEAK_BF16.items() if key in name), None)


def measure_matmul_tflops(n: int = 8192) -> float | None:
    """What a large bf16 matrix product reaches here (the practical ceiling, for reference)."""
    import torch

    if not torch.cuda.is_available():
        return None
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return round(2 * n**3 * 10 / (time.perf_counter() - started) / 1e12, 1)


def make_base_model(shared: Path) -> str:
    """A random RoBERTa of the klue/roberta-base shape with e5-small-ko's tokenizer (vocab 32000), saved once."""
    import torch
    from transformers import AutoTokenizer, RobertaConfig, RobertaModel

    out = ROOT / "runs/roberta-base-random"
    if (out / "config.json").is_file():
        return str(out)
    tokenizer = AutoTokenizer.from_pretrained(shared / "models/e5-small-ko")
    config = RobertaConfig(vocab_size=32000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                           intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1,
                           pad_token_id=tokenizer.pad_token_id, bos_token_id=0, eos_token_id=2)
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def pair_work(model_dir: str, train: Path) -> dict:
    """Real tokens and model FLOPs (forward + backward) of one epoch over ``train``."""
    import numpy as np
    import pandas as pd
    from transformers import AutoConfig, AutoTokenizer

    frame = pd.read_csv(train)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = tokenizer(frame["sentence1"].tolist(), frame["sentence2"].tolist(), truncation=True, max_length=MAX_LENGTH)
    lengths = np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.float64)
    config = AutoConfig.from_pretrained(model_dir)
    h, layers, inner = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    matrix_params = layers * (4 * h * h + 2 * h * inner) + h * h + h  # attention + FFN, pooler/dense head, output
    flops = 6 * matrix_params * lengths.sum() + 12 * layers * h * (lengths**2).sum()
    return {"pairs": len(frame), "tokens": float(lengths.sum()), "flops": float(flops)}


def throughput(result: dict, work: dict, epochs: int) -> dict:
    seconds = result["train_seconds"]
    out = {"pairs_per_s": round(work["pairs"] * epochs / seconds, 1),
           "tokens_per_s": round(work["tokens"] * epochs / seconds),
           "model_tflops": round(work["flops"] * epochs / seconds / 1e12, 1)}
    peak = peak_flops()
    if peak:
        out["mfu"] = round(work["flops"] * epochs / seconds / peak * 100, 1)
    return out


def run_kluekit(name: str, model_dir: str, train: Path, dev: Path, epochs: int, batch_size: int,
                options: list[str], launcher: list[str] | None = None) -> dict:
    """``kluekit train sts`` as a user runs it (``launcher``: e.g. torchrun's command instead of python)."""
    run_dir = ROOT / "runs" / f"speed-{name}"
    argv = [*(launcher or [sys.executable]), "-m", "kluekit", "train", "sts", "--model", model_dir, "--train", str(train),
            "--dev", str(dev), "--epochs", str(epochs), "--batch-size", str(batch_size), "--output-dir", str(run_dir),
            "--overwrite", *options]
    env = kluekit_env()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    info = json.loads((run_dir / "kluekit.json").read_text())
    last = metrics["history"][-1]
    return {"options": " ".join(options), "precision": info["precision"], "processes": info.get("world_size", 1),
            "cuda_graph_shapes": metrics.get("cuda_graph_shapes", 0),
            "train_seconds": round(metrics["train_seconds"], 2), "peak_gpu_memory_gb": metrics.get("peak_gpu_memory_gb"),
            "dev_pearson": round(last["pearson"], 2)}


def run_peer(name: str, model_dir: str, train: Path, dev: Path, epochs: int, batch_size: int) -> dict:
    argv = [sys.executable, str(Path(__file__).resolve()), "--one", name, "--model-dir", str(Path(model_dir).resolve()), "--epochs",
            str(epochs), "--batch-size", str(batch_size), "--train", str(train.resolve()), "--dev", str(dev.resolve())]
    cwd = ROOT / "runs"  # where the libraries write their own checkpoint folders
    cwd.mkdir(exist_ok=True)
    out = subprocess.run(argv, check=True, stdout=subprocess.PIPE, text=True, cwd=cwd).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])


def read_pairs(train: Path, dev: Path):
    import pandas as pd

    from kluekit.data.sts import read_sts

    return pd.read_csv(train), read_sts(dev)


def pearson(pred, gold) -> float:
    from scipy.stats import pearsonr

    return round(float(pearsonr(pred, gold)[0]) * 100, 2)


def peak_memory_gb() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if torch.cuda.is_available() else None


def trainer_recipe(model_dir: str, train: Path, dev: Path, epochs: int, batch_size: int) -> dict:
    """Hugging Face Trainer as run_glue.py uses it: pad_to_max_length (128), fp32, TrainingArguments defaults."""
    import numpy as np
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    train_frame, dev_frame = read_pairs(train, dev)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def dataset(frame, labels):
        enc = tokenizer(frame["sentence1"].tolist(), frame["sentence2"].tolist(), padding="max_length",
                        max_length=MAX_LENGTH, truncation=True)
        return [{**{k: v[i] for k, v in enc.items()}, "labels": float(labels[i])} for i in range(len(frame))]

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    args = TrainingArguments(output_dir=str(ROOT / "runs/speed-trainer"), per_device_train_batch_size=batch_size,
                             num_train_epochs=epochs, save_strategy="no", report_to="none", disable_tqdm=True, seed=42)
    trainer = Trainer(model=model, args=args, train_dataset=dataset(train_frame, train_frame["label"].to_numpy()))
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    preds = trainer.predict(dataset(dev_frame, dev_frame["label"].to_numpy())).predictions
    return {"options": f"padding max_length {MAX_LENGTH}, fp32, optim {getattr(args.optim, 'value', args.optim)}, lr {args.learning_rate}",
            "precision": "fp32", "train_seconds": round(seconds, 2), "peak_gpu_memory_gb": peak_memory_gb(),
            "dev_pearson": pearson(np.asarray(preds).reshape(-1), dev_frame["label"].to_numpy())}


def crossencoder_recipe(model_dir: str, train: Path, dev: Path, epochs: int, batch_size: int) -> dict:
    """sentence-transformers CrossEncoder.fit as its STS example uses it."""
    import math

    import torch
    from sentence_transformers import InputExample
    from sentence_transformers.cross_encoder import CrossEncoder

    train_frame, dev_frame = read_pairs(train, dev)
    model = CrossEncoder(model_dir, num_labels=1, max_length=MAX_LENGTH)
    examples = [InputExample(texts=[a, b], label=float(y) / 5) for a, b, y in
                zip(train_frame["sentence1"], train_frame["sentence2"], train_frame["label"])]
    loader = torch.utils.data.DataLoader(examples, shuffle=True, batch_size=batch_size)
    warmup = math.ceil(len(loader) * epochs * 0.1)
    started = time.perf_counter()
    model.fit(train_dataloader=loader, epochs=epochs, warmup_steps=warmup, show_progress_bar=False)
    seconds = time.perf_counter() - started
    preds = model.predict(list(zip(dev_frame["sentence1"], dev_frame["sentence2"])), show_progress_bar=False)
    return {"options": f"fit, BCE on label/5, lr 2e-5, warmup {warmup} steps, fp32", "precision": "fp32",
            "train_seconds": round(seconds, 2), "peak_gpu_memory_gb": peak_memory_gb(),
            "dev_pearson": pearson(preds, dev_frame["label"].to_numpy())}


PEERS = {"trainer": trainer_recipe, "crossencoder": crossencoder_recipe}


if __name__ == "__main__":
    main()
