"""The pre-training figures in one file: ``benchmarks/results/pretrain.json`` from the results of
``pretrain_speed.py``, ``tapt.py`` and ``scratch_ynat.py`` (each figure with the command and device that measured it).

    python benchmarks/pretrain_summary.py
"""

from __future__ import annotations

import json
import sys

from common import ROOT, write_results

SOURCES = {  # results file -> {key here: key there}
    # kluekit's headline is its loop on the Trainer recipe's own batch, rate and steps (``kluekit_b64``): the
    # batch-256 --compile recipe that pretrain_speed.py also runs is faster but, with 4x fewer updates for the
    # same tokens, ends at a higher held-out loss (its figures are kept beside)
    "pretrain_speed": {"mlm_tokens_per_s": "kluekit_b64_tokens_per_s", "trainer_mlm_tokens_per_s": "trainer_tokens_per_s",
                       "mlm_mfu": "kluekit_b64_mfu", "trainer_mlm_mfu": "trainer_mfu", "mlm_speedup": "speedup_b64",
                       "mlm_held_out_loss": "kluekit_b64_held_out_loss", "trainer_held_out_loss": "trainer_held_out_loss",
                       "mlm_b256_compile_tokens_per_s": "kluekit_tokens_per_s",
                       "mlm_b256_compile_held_out_loss": "kluekit_held_out_loss", "mlm_b256_compile_mfu": "kluekit_mfu",
                       "mlm_b256_compile_speedup": "speedup"},
    "tapt": {key: key for key in ["tapt_gain_sts", "tapt_gain_re", "tapt_gain_ner"] + [
        f"{task}_{start}_{figure}" for task in ("sts", "re", "ner") for start in ("base", "tapt")
        for figure in ("mean", "std")]},
    "scratch_ynat": {key: key for key in ["scratch_ynat_macro_f1", "e5_ynat_macro_f1", "scratch_held_out_perplexity",
                                          "scratch_last_held_out_perplexity", "scratch_best_step",
                                          "pretrain_steps", "pretrain_train_seconds"]},
}


def main() -> None:
    figures = {}
    for name, keys in SOURCES.items():
        path = ROOT / "benchmarks/results" / f"{name}.json"
        if not path.exists():
            sys.exit(f"pretrain_summary: {path} is missing: run benchmarks/{name}.py first")
        source = json.loads(path.read_text(encoding="utf-8"))
        for key, there in keys.items():
            if there in source:
                figures[key] = source[there]
                figures[f"{key}_command"], figures[f"{key}_device"] = source["command"], source["device"]
    devices = {figures[k] for k in figures if k.endswith("_device")}
    # the machine that measured the figures (this script only gathers them)
    write_results("pretrain_summary.py", "pretrain", {"device": " / ".join(sorted(devices)), **figures})


if __name__ == "__main__":
    main()
