"""Figures that one run measured, copied under the names other results files give them (issue 17's quality keys,
issue 20's throughput keys); every copied key comes with ``<key>_command`` and ``<key>_device`` from its source
(the copy changes no figure and runs nothing).

    python benchmarks/copy_keys.py

- ``ner_entity_f1`` (``_std``, ``_per_seed``): KLUE-NER dev entity F1 of the NER default (``--char-slots 4``),
  3 seeds, from ``quality_ner.json`` -> quality.json, classify_ner.json;
- ``re_micro_f1`` (``_std``, ``_per_seed``): KLUE-RE test micro F1 of the competition recipe's RE levers on the RE
  benchmark's options (typed markers, entity-start pooling, focal loss; R-Drop, 8 epochs, a weight average
  (``--ema-decay 0.999``) and ``--layer-decay 0.9``, chosen on a 10% split of train: quality_select_re.json,
  quality_select_re_rdrop_epochs.json, quality_select_re_ema.json, quality_select_re_levers.json), 3 seeds, from
  ``quality_re_layer_decay.json`` (variant ``rdrop_1_epochs_8_ema_0.999_layer_decay_0.9``) -> quality.json,
  re_e5.json; ``re_micro_f1_before_layer_decay`` (``_std``, ``_per_seed``): the recipe without the layer decay in
  the same call (in its own call before, ``quality_re_ema.json``: 56.95 +- 0.41); ``re_micro_f1_before_ema`` (``_std``,
  ``_per_seed``): the same without the average, from ``quality_re_rdrop_epochs8.json`` (R-Drop alone, 5 epochs:
  55.49 +- 0.57 in ``quality_re_rdrop.json``);
  ``re_micro_f1_defaults`` (``_std``): the RE benchmark's options alone (no R-Drop, 5 epochs), from
  ``quality_re.json`` (another call);
- ``biencoder_korsts_test_spearman``: KorSTS test Spearman of the fine-tuned bi-encoder, from ``biencoder.json``
  -> quality.json, biencoder.json;
- ``re_micro_f1_ensemble3`` (``_std``, ``_per_group``): the same recipe's runs averaged 3 at a time (``kluekit
  ensemble``), 3 groups of 3 seeds pooled from two calls by ``pool_runs.py``, from ``quality_re_ensemble_pooled.json``
  -> quality.json, re_e5.json (``re_micro_f1`` stays the single model's);
- ``korsts_speedup_vs_trainer`` (and ``korsts_sts_v3_speedup_vs_trainer``, the batch-32 defaults before): the STS
  defaults' (``--swap-augment``, 3 epochs, batch 64 at lr 1e-4) training speed over the ``Trainer`` recipe's, the
  fastest of 2 runs of each alone on the GPU, from ``quality_speed_korsts_v3.json``; ``klue_sts_speedup_vs_trainer``,
  ``nsmc_speedup_vs_trainer``: one run of each alone, the next call on the same machine, from
  ``quality_speed_klue_nsmc_v3.json`` -> quality.json;
- the STS defaults' and the ``Trainer``'s ``korsts_test_*`` / ``klue_sts_test_*`` figures and the issue's
  ``*_pearson_{defaults,trainer}_mean``: the STS report of the batch-64 defaults, both in one call, from
  ``quality_sts_v4.json``; the competition recipe's and ``competition_recipe_gain_sts`` (KLUE-STS, over the
  batch-64 defaults of its own call) from ``quality_sts_v5.json``; the batch-32 defaults, kept as ``*_sts_v3_*``,
  from ``quality_sts_v3.json``; the defaults before
  2026-12-02's fourth session (``--no-swap-augment``, 4 epochs) as ``*_sts_v2_*`` from ``quality_sts_swap3.json``
  -> quality.json. quality.json before these copies: ``quality_v5.json`` (before the competition recipe's re-run
  beside the batch-64 defaults and RE's weight average; before the batch-64 defaults: ``quality_v4.json``; before the
  graphed update's re-run: ``quality_v3.json``; before the 2026-12-02 fourth session's: ``quality_v2.json``; before
  the 2026-12-02 STS defaults: ``quality_v1.json``);
- ``clm_tokens_per_s``, ``trainer_clm_tokens_per_s``, ``clm_speedup``, ``clm_mfu``: causal-LM pre-training speed
  against the Trainer recipe, from ``clm_speed.json`` -> generate.json (``generate.py`` copies them too when it
  runs).
"""

from __future__ import annotations

import json

from common import ROOT

RESULTS = ROOT / "benchmarks/results"
STATS = ("_mean", "_std", "_per_seed", "_train_seconds_mean")
# key: (source file, source key, files that get it)
KEYS = {
    "ner_entity_f1": ("quality_ner", "klue_ner_test_char_slots_4_mean", ("quality", "classify_ner")),
    "ner_entity_f1_std": ("quality_ner", "klue_ner_test_char_slots_4_std", ("quality", "classify_ner")),
    "ner_entity_f1_per_seed": ("quality_ner", "klue_ner_test_char_slots_4_per_seed", ("quality", "classify_ner")),
    **{f"re_micro_f1{part}": ("quality_re_layer_decay", f"klue_re_test_rdrop_1_epochs_8_ema_0.999_layer_decay_0.9{stat}",
                              ("quality", "re_e5"))
       for part, stat in (("", "_mean"), ("_std", "_std"), ("_per_seed", "_per_seed"))},
    **{f"re_micro_f1_before_layer_decay{part}": ("quality_re_layer_decay", f"klue_re_test_rdrop_1_epochs_8_ema_0.999{stat}",
                                                 ("quality", "re_e5"))
       for part, stat in (("", "_mean"), ("_std", "_std"), ("_per_seed", "_per_seed"))},
    **{f"re_micro_f1_before_ema{part}": ("quality_re_rdrop_epochs8", f"klue_re_test_rdrop_1_epochs_8{stat}",
                                         ("quality", "re_e5"))
       for part, stat in (("", "_mean"), ("_std", "_std"), ("_per_seed", "_per_seed"))},
    **{f"re_micro_f1_defaults{part}": ("quality_re", f"klue_re_test_defaults{stat}", ("quality", "re_e5"))
       for part, stat in (("", "_mean"), ("_std", "_std"))},
    **{f"re_micro_f1_ensemble3{part}": ("quality_re_ensemble_pooled", f"klue_re_test_rdrop_1_epochs_8_ensemble3{part}",
                                        ("quality", "re_e5")) for part in ("_mean", "_std", "_per_group")},
    "biencoder_korsts_test_spearman": ("biencoder", "korsts_test_spearman", ("quality", "biencoder")),
    "korsts_speedup_vs_trainer": ("quality_speed_korsts_v3", "korsts_speedup_vs_trainer", ("quality",)),
    # the STS defaults before 2026-12-03's second session (batch 32, lr 5e-5), timed in the same call
    "korsts_sts_v3_speedup_vs_trainer": ("quality_speed_korsts_v3", "korsts_sts_v3_speedup_vs_trainer", ("quality",)),
    **{f"{d}_speedup_vs_trainer": ("quality_speed_klue_nsmc_v3", f"{d}_speedup_vs_trainer", ("quality",))
       for d in ("klue_sts", "nsmc")},
    # the STS defaults before 2026-12-03's second session (batch 32, lr 5e-5) beside the competition recipe
    **{f"{prefix}_sts_v3{stat}": ("quality_sts_v3", f"{prefix}_defaults{stat}", ("quality",))
       for prefix in ("korsts_test", "klue_sts_test") for stat in STATS},
    # the defaults before 2026-12-02's fourth session (sts_v2) ran beside the swap_augment_epochs_3 variant, the
    # defaults since
    **{f"{prefix}_sts_v2{stat}": ("quality_sts_swap3", f"{prefix}_defaults{stat}", ("quality",))
       for prefix in ("korsts_test", "klue_sts_test") for stat in STATS},
    **{key: ("clm_speed", key, ("generate",))
       for key in ("clm_tokens_per_s", "trainer_clm_tokens_per_s", "clm_speedup", "clm_mfu")},
}


# (source file, key prefixes, files that get them): every key of the source with one of the prefixes. The STS
# defaults and the Trainer side by side in one call (quality_sts_v4, since the batch-64 defaults); the competition
# recipe and its gain over the (batch-64) defaults of its own call from quality_sts_v5
STS_PREFIXES = ("korsts_test", "klue_sts_test", "korsts_test_pearson", "klue_sts_dev_pearson")
STS_REPORT = tuple(f"{prefix}_{recipe}" for prefix in STS_PREFIXES for recipe in ("defaults", "trainer"))
PREFIXES = [("quality_sts_v5", (*(f"{prefix}_competition" for prefix in STS_PREFIXES), "competition_recipe_gain_sts"),
             ("quality",)),
            ("quality_sts_v4", STS_REPORT, ("quality",))]


def read(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))


def copies() -> dict:
    """key: (source file, source key, files that get it), for KEYS and PREFIXES."""
    found = dict(KEYS)
    for source, prefixes, names in PREFIXES:
        found.update({key: (source, key, names) for key in read(source) if key.startswith(prefixes)})
    return found


def main() -> None:
    targets: dict[str, dict] = {}
    for key, (source, source_key, names) in copies().items():
        figures = read(source)
        for name in names:
            target = targets.setdefault(name, read(name))
            target[key] = figures[source_key]
            target[f"{key}_command"], target[f"{key}_device"] = figures["command"], figures["device"]
        print(f"{key} = {figures[source_key]} ({source}.json: {source_key})")
    for name, figures in targets.items():
        path = RESULTS / f"{name}.json"
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        temporary.replace(path)
    print("wrote", ", ".join(f"{name}.json" for name in targets))


if __name__ == "__main__":
    main()
