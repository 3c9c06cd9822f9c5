"""Collect the speed figures of issue 6 into benchmarks/results/speed.json and draw docs/speed.png.

    python benchmarks/speed_summary.py

Reads the results files written by the measuring scripts (each figure keeps the command and device of
the run it comes from, as ``<key>_command`` and ``<key>_device``):
- ``speed_e5.json``, ``speed_base.json``, ``speed_base_more.json``, ``speed_e5_first.json``
  (``benchmarks/train_speed.py``, one GPU);
- ``ddp2_e5.json`` (``benchmarks/ddp_speed.py``, two GPUs), when it exists;
- ``cpu_predict.json`` (``benchmarks/cpu_predict.py``, 2 CPU cores).
A figure whose run is missing is written as null.
"""

from __future__ import annotations

import json
from pathlib import Path

from common import ROOT

RESULTS = ROOT / "benchmarks/results"


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def main() -> None:
    e5, base, base_more = load("speed_e5"), load("speed_base"), load("speed_base_more")
    ddp, cpu = load("ddp2_e5"), load("cpu_predict")
    summary = {"command": "python benchmarks/speed_summary.py", "device": "per figure: <key>_device"}

    def put(key: str, source: dict | None, field: str, digits: int | None = None):
        value = None if source is None else source.get(field)
        summary[key] = value if value is None or digits is None else round(value, digits)
        summary[f"{key}_command"] = None if source is None else source["command"]
        summary[f"{key}_device"] = None if source is None else source["device"]

    put("kluekit_pairs_per_s", e5, "e5_kluekit_pairs_per_s")
    put("trainer_defaults_pairs_per_s", e5, "e5_trainer_pairs_per_s")
    put("crossencoder_fit_pairs_per_s", e5, "e5_crossencoder_pairs_per_s")
    put("kluekit_dev_pearson", e5, "e5_kluekit_dev_pearson")
    put("trainer_defaults_dev_pearson", e5, "e5_trainer_dev_pearson")
    put("crossencoder_fit_dev_pearson", e5, "e5_crossencoder_dev_pearson")
    if e5:
        put("kluekit_vs_trainer", {**e5, "ratio": e5["e5_kluekit_pairs_per_s"] / e5["e5_trainer_pairs_per_s"]},
            "ratio", 2)
    put("base_kluekit_pairs_per_s", base, "base_kluekit_pairs_per_s")
    put("base_trainer_defaults_pairs_per_s", base, "base_trainer_pairs_per_s")
    put("base_crossencoder_fit_pairs_per_s", base_more, "base_crossencoder_pairs_per_s")
    put("mfu_base", base, "base_kluekit_mfu")
    put("mfu_base_batch256", base_more, "base_kluekit_b256_mfu")
    put("ddp2_speedup", ddp, "ddp2_speedup")
    put("cpu_int8_vs_crossencoder", cpu, "cpu_int8_vs_crossencoder")
    put("cpu_int8_pearson_loss", cpu, "cpu_int8_pearson_loss")
    out = RESULTS / "speed.json"
    out.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in summary.items() if not k.endswith(("_command", "_device"))}, indent=2))
    print(f"wrote {out}")
    plot(e5, base, base_more, load("speed_e5_first"), cpu, ROOT / "docs/speed.png")


def bars(ax, title: str, rows: list[tuple[str, float | None]], unit: str) -> None:
    rows = [(label, value) for label, value in rows if value is not None]
    labels, values = [r[0] for r in rows], [r[1] for r in rows]
    colors = ["#d9534f" if label.startswith("kluekit") else "#9aa5b1" for label in labels]
    ax.barh(labels, values, color=colors)
    for y, value in enumerate(values):
        ax.text(value, y, f" {value:,.0f}", va="center", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(unit, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(values) * 1.25 if values else 1)


def plot(e5, base, base_more, first, cpu, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def get(source, key):
        return None if source is None else source.get(key)

    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5))
    bars(axes[0, 0], "e5-small-ko, KLUE-STS, 3 epochs, batch 32 (H100, one run)", [
        ("HF Trainer defaults (pad 128, fp32)", get(e5, "e5_trainer_pairs_per_s")),
        ("CrossEncoder.fit (fp32)", get(e5, "e5_crossencoder_pairs_per_s")),
        ("kluekit fp32", get(e5, "e5_kluekit_fp32_pairs_per_s")),
        ("kluekit defaults (bf16)", get(e5, "e5_kluekit_pairs_per_s"))], "training pairs/s")
    bars(axes[0, 1], "random klue/roberta-base shape, same data (H100)", [
        ("HF Trainer defaults (pad 128, fp32)", get(base, "base_trainer_pairs_per_s")),
        ("CrossEncoder.fit (fp32)", get(base_more, "base_crossencoder_pairs_per_s")),
        ("kluekit fp32", get(base, "base_kluekit_fp32_pairs_per_s")),
        ("kluekit defaults (bf16)", get(base, "base_kluekit_pairs_per_s")),
        ("kluekit batch 128", get(base_more, "base_kluekit_b128_pairs_per_s")),
        ("kluekit batch 256", get(base_more, "base_kluekit_b256_pairs_per_s"))], "training pairs/s")
    bars(axes[1, 0], "e5-small-ko: eager vs CUDA graphs (H100, an earlier run)", [
        ("HF Trainer defaults", get(first, "e5_trainer_pairs_per_s")),
        ("kluekit eager bf16", get(first, "e5_kluekit_eager_pairs_per_s")),
        ("kluekit eager fp32", get(first, "e5_kluekit_eager_fp32_pairs_per_s")),
        ("kluekit graphs (first version) fp32", get(first, "e5_kluekit_fp32_pairs_per_s"))], "training pairs/s")
    bars(axes[1, 1], "CPU prediction, 2 cores, 2,000 KLUE-STS pairs", [
        ("CrossEncoder.predict", get(cpu, "crossencoder_pairs_per_s")),
        ("kluekit torch fp32", get(cpu, "torch_pairs_per_s")),
        ("kluekit ONNX fp32", get(cpu, "onnx_pairs_per_s")),
        ("kluekit ONNX int8", get(cpu, "onnx_int8_pairs_per_s"))], "pairs/s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
