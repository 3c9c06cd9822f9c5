"""A Korean BERT from scratch in a fixed time budget, then fine-tuned on YNAT, next to e5-small-ko.

    python benchmarks/scratch_ynat.py --shared .carry --minutes 10
    python benchmarks/scratch_ynat.py --shared ../shared --minutes 0.2 --tiny     # a quick check on the CPU

1. ``kluekit tokenizer train``: WordPiece (32,000 pieces) on the Korean text of ``../shared/data`` (KLUE-STS,
   YNAT titles, NSMC reviews, KLUE-RE and KLUE-NER sentences, KorQuAD contexts; the YNAT dev titles are left out).
2. ``kluekit pretrain mlm --model-config small`` (BERT, 4 layers x 256) on the same text, 2% held out: a
   100-step probe measures the steady speed, then ``--max-steps`` is set so that training takes ``--minutes``.
3. ``kluekit train classify --preset ynat`` from that model and from e5-small-ko (both at once), the recipe of
   ``classify_ner.py``; the figure is the dev macro-F1 after the last epoch.
Writes ``benchmarks/results/<name>.json`` (``scratch_ynat_macro_f1``, held-out perplexity, the e5 figure).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import ROOT, SHARED, kluekit, steps_in, task_texts, write_results

YNAT = ["--preset", "ynat", "--epochs", "3", "--batch-size", "64", "--learning-rate", "1e-4", "--max-length", "64"]
SOURCES = {"klue_sts/klue_sts_train.csv": ("sts", None), "klue_ynat/ynat_train.tsv": ("classify", "ynat"),
           "nsmc/ratings_train_first5000.txt": ("classify", "nsmc"), "klue_re/train_partial_union.csv": ("re", None),
           "klue_ner/klue-ner-v1.1_train_first5000.tsv": ("ner", None)}


def korean_text(shared: Path, out: Path) -> Path:
    """One document a line: the task files' input texts and the KorQuAD paragraphs."""
    texts = task_texts(shared, SOURCES)
    korquad = json.loads((shared / "data/korquad/KorQuAD_v1.0_dev.json").read_text(encoding="utf-8"))
    texts += [p["context"] for article in korquad["data"] for p in article["paragraphs"]]
    out.write_text("\n".join(" ".join(t.split()) for t in texts if t.strip()) + "\n", encoding="utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(SHARED))
    parser.add_argument("--minutes", type=float, default=10.0, help="pre-training time budget")
    parser.add_argument("--tiny", action="store_true", help="a 1-layer model and small vocabulary (CPU check)")
    parser.add_argument("--name", default="scratch_ynat")
    args = parser.parse_args()
    shared, work = Path(args.shared), ROOT / "runs" / f"bench-{args.name}"
    work.mkdir(parents=True, exist_ok=True)
    text = korean_text(shared, work / "corpus.txt")
    kluekit("tokenizer", "train", "--input", str(text), "--output-dir", str(work / "wordpiece"), "--overwrite",
            "--vocab-size", "2000" if args.tiny else "32000")
    size = work / "config.json"
    size.write_text(json.dumps({"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                                "intermediate_size": 128} if args.tiny else {"model_type": "bert", "hidden_size": 256,
                                "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024}))
    pretrain = ["pretrain", "mlm", "--model-config", str(size), "--tokenizer", str(work / "wordpiece"), "--train",
                str(text), "--dev-split", "0.02", "--max-length", "128", "--batch-size", "128", "--learning-rate",
                "5e-4", "--whole-word-mask", "--overwrite", "--no-tensorboard"]
    kluekit(*pretrain, "--output-dir", str(work / "probe"), "--max-steps", "100")
    probe = json.loads((work / "probe/metrics.json").read_text())
    # the probe's steady speed (after its first 10 steps: graph capture and start-up left out)
    steps = steps_in(args.minutes, probe, 100)
    kluekit(*pretrain, "--output-dir", str(work / "bert"), "--max-steps", str(steps), "--eval-steps", str(max(1, steps // 5)))
    pretrained = json.loads((work / "bert/metrics.json").read_text())
    runs = {name: kluekit("train", "classify", "--model", str(model), "--train",
                          str(shared / "data/klue_ynat/ynat_train.tsv"), "--dev", str(shared / "data/klue_ynat/ynat_dev.tsv"),
                          "--output-dir", str(work / f"ynat-{name}"), "--overwrite", *YNAT, wait=False)
            for name, model in (("scratch", work / "bert"), ("e5", shared / "models/e5-small-ko"))}  # side by side
    if any(process.wait() for process in runs.values()):
        raise SystemExit("a YNAT fine-tuning run failed")
    scores = {name: json.loads((work / f"ynat-{name}/metrics.json").read_text())["history"][-1] for name in runs}
    write_results("scratch_ynat.py", args.name, {
        "tokenizer": "WordPiece " + ("2000" if args.tiny else "32000"), "model": json.loads(size.read_text()),
        "documents": len(text.read_text(encoding="utf-8").splitlines()), "pretrain_minutes": args.minutes,
        "pretrain_steps": steps, "pretrain_train_seconds": pretrained["train_seconds"],
        "pretrain_tokens_per_s": pretrained["train_tokens_per_s"],
        # the kept (fine-tuned) model is the best evaluation's; a long run on this small corpus can overfit after it
        "scratch_held_out_perplexity": round(pretrained["best"]["perplexity"], 2),
        "scratch_best_step": pretrained["best_step"],
        "scratch_last_held_out_perplexity": round(pretrained["history"][-1]["perplexity"], 2),
        "scratch_perplexity_history": " ".join(f"{h['step']}:{h['perplexity']:.1f}" for h in pretrained["history"]),
        "scratch_ynat_macro_f1": round(scores["scratch"]["macro_f1"], 2),
        "e5_ynat_macro_f1": round(scores["e5"]["macro_f1"], 2), "ynat_options": " ".join(YNAT)})


if __name__ == "__main__":
    main()
