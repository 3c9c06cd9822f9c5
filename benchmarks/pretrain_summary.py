"""The pre-training figures in one file: ``benchmarks/results/pretrain.json`` from the results of
``pretrain_speed.py``, ``tapt.py`` and ``scratch_ynat.py`` (each figure with the command and device that measured it).

    python benchmarks/pretrain_summary.py
"""

from __future__ import annotations

import json
import sys

from common import ROOT, write_results

SOURCES = {  # results file -> the keys taken from it
    "pretrain_speed": ["mlm_tokens_per_s", "trainer_mlm_tokens_per_s", "mlm_mfu", "trainer_mfu", "speedup",
                       "held_out_perplexity_kluekit", "held_out_perplexity_trainer", "kluekit_b64_tokens_per_s",
                       "speedup_b64", "kluekit_options"],
    "tapt": ["tapt_gain_sts", "tapt_gain_re", "tapt_gain_ner", "sts_base_mean", "sts_base_std", "sts_tapt_mean",
             "sts_tapt_std", "re_base_mean", "re_base_std", "re_tapt_mean", "re_tapt_std", "ner_base_mean",
             "ner_base_std", "ner_tapt_mean", "ner_tapt_std"],
    "scratch_ynat": ["scratch_ynat_macro_f1", "e5_ynat_macro_f1", "scratch_held_out_perplexity", "pretrain_steps",
                     "pretrain_train_seconds"],
}


def main() -> None:
    figures = {}
    for name, keys in SOURCES.items():
        path = ROOT / "benchmarks/results" / f"{name}.json"
        if not path.exists():
            sys.exit(f"pretrain_summary: {path} is missing: run benchmarks/{name}.py first")
        source = json.loads(path.read_text(encoding="utf-8"))
        for key in keys:
            if key in source:
                figures[key] = source[key]
                figures[f"{key}_command"], figures[f"{key}_device"] = source["command"], source["device"]
    devices = {figures[k] for k in figures if k.endswith("_device")}
    write_results("pretrain_summary.py", "pretrain", {"measured_on": " / ".join(sorted(devices)), **figures})


if __name__ == "__main__":
    main()
