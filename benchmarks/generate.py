"""A small Korean GPT-2 from scratch in a fixed time budget, a dialogue model fine-tuned from it, its answers,
and few-shot NSMC sentiment by prompting.

    python benchmarks/generate.py --shared .carry --minutes 10
    python benchmarks/generate.py --shared ../shared --minutes 0.1 --tiny     # a quick check on the CPU

1. ``kluekit tokenizer train --kind bpe`` (32,000 pieces, <s> <pad> </s> <unk> <mask>) on the Korean text of
   ``../shared/data`` (the documents of ``scratch_ynat.py``: KLUE-STS, YNAT, NSMC train, KLUE-RE, KLUE-NER,
   KorQuAD paragraphs; no chatbot pairs, no NSMC test reviews).
2. ``kluekit pretrain clm --model-config small`` (GPT-2, 6 layers x 512) on that text, 5% of the documents held out,
   256-token blocks: a 100-step probe measures the steady speed, then ``--max-steps`` is set so that training takes
   ``--minutes``; evaluated every epoch, the best kept, stopped early (``--patience 3``) once held-out perplexity
   stops falling: the shared text is about 2M tokens, which 10 minutes on an H200 would pass over about 150 times,
   and held-out perplexity rises long before that. Figure: held-out perplexity.
3. ``kluekit train dialogue`` from it on ``chatbot/ChatbotData.csv``, 90/10 split by answer (``GroupShuffleSplit``,
   seed 0: no dev answer is trained on). Figures: the dev answers' perplexity before fine-tuning (one step at
   rate 0) and after.
4. ``kluekit chat`` answers the dev questions (greedy, no-repeat 3-grams): distinct-1/2 (distinct word uni/bigrams
   over all answers, words = text between spaces) and 10 example answers (the first 10 dev questions).
5. ``kluekit generate --few-shot``: NSMC sentiment by prompting the pre-trained model (rank classification of
   "부정"/"긍정"), shots drawn from the NSMC training reviews of at most 60 characters, 1,000 queries drawn from ``ratings_test.txt`` with
   ``numpy.random.default_rng(0)``, at 0, 4 and 16 shots.
The throughput figures (``clm_tokens_per_s``, ``trainer_clm_tokens_per_s``) are copied from ``clm_speed.json``
with the command and device that measured them. Writes ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import ROOT, SHARED, kluekit, steps_in, write_results
from scratch_ynat import korean_text

SHOTS = (0, 4, 16)
# each shot written as a document of its own (pre-training framed every document <s> ... </s>; newlines never
# occurred in its one-line documents)
TEMPLATE = "리뷰: {text} 감정: {label}</s><s>"
WORDS = {"0": "부정", "1": "긍정"}


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def distinct(texts: list[str], n: int) -> float:
    """Distinct n-grams over all n-grams of the texts' words (Li et al. 2016)."""
    grams = [tuple(words[i:i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return round(len(set(grams)) / max(len(grams), 1), 4)


def chat_split(shared: Path, work: Path, tiny: bool) -> tuple[Path, Path]:
    import pandas as pd
    from sklearn.model_selection import GroupShuffleSplit

    pairs = pd.read_csv(shared / "data/chatbot/ChatbotData.csv")
    if tiny:
        pairs = pairs.head(600)
    train, dev = next(GroupShuffleSplit(1, test_size=0.1, random_state=0).split(pairs, groups=pairs["A"]))
    paths = work / "chat_train.csv", work / "chat_dev.csv"
    pairs.iloc[train].to_csv(paths[0], index=False)
    pairs.iloc[dev].to_csv(paths[1], index=False)
    return paths


def nsmc_shots(shared: Path, work: Path) -> Path:
    """The NSMC training reviews of at most 60 characters: the pool shots are drawn from (16 long reviews would
    not fit the model's 1,024 positions)."""
    import pandas as pd

    train = pd.read_csv(shared / "data/nsmc/ratings_train_first5000.txt", sep="\t", quoting=3, keep_default_na=False)
    path = work / "nsmc_shots.tsv"
    train[train["document"].str.strip().str.len().between(1, 60)].to_csv(path, sep="\t", index=False)
    return path


def nsmc_queries(shared: Path, work: Path, count: int) -> Path:
    import numpy as np
    import pandas as pd

    test = pd.read_csv(shared / "data/nsmc/ratings_test.txt", sep="\t", quoting=3, keep_default_na=False)
    test = test[test["document"].str.strip() != ""]
    rows = np.random.default_rng(0).choice(len(test), size=count, replace=False)
    path = work / "nsmc_queries.tsv"
    test.iloc[np.sort(rows)].to_csv(path, sep="\t", index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(SHARED))
    parser.add_argument("--minutes", type=float, default=10.0, help="pre-training time budget")
    parser.add_argument("--tiny", action="store_true", help="a 1-layer model and small vocabulary (CPU check)")
    parser.add_argument("--name", default="generate")
    args = parser.parse_args()
    import pandas as pd

    shared, work = Path(args.shared), ROOT / "runs" / f"bench-{args.name}"
    work.mkdir(parents=True, exist_ok=True)
    text = korean_text(shared, work / "corpus.txt")
    if args.tiny:
        text.write_text("\n".join(text.read_text(encoding="utf-8").splitlines()[:3000]) + "\n", encoding="utf-8")
    kluekit("tokenizer", "train", "--kind", "bpe", "--input", str(text), "--output-dir", str(work / "bpe"),
            "--overwrite", "--vocab-size", "2000" if args.tiny else "32000")
    size = work / "config.json"
    size.write_text(json.dumps({"model_type": "gpt2", "n_layer": 1, "n_embd": 64, "n_head": 2, "n_positions": 1024}
                               if args.tiny else {"model_type": "gpt2", "n_layer": 6, "n_embd": 512, "n_head": 8,
                                                  "n_positions": 1024}))
    pretrain = ["pretrain", "clm", "--model-config", str(size), "--tokenizer", str(work / "bpe"), "--train", str(text),
                "--dev-split", "0.05", "--max-length", "256", "--batch-size", "64", "--learning-rate", "6e-4",
                "--warmup", "0.02", "--scheduler", "cosine", "--overwrite", "--no-tensorboard"]
    kluekit(*pretrain, "--output-dir", str(work / "probe"), "--max-steps", "100" if not args.tiny else "12")
    probe = metrics(work / "probe")
    steps = steps_in(args.minutes, probe, 20)
    gpt = work / "gpt2"
    kluekit(*pretrain, "--output-dir", str(gpt), "--max-steps", str(steps), "--patience", "3")
    pre = metrics(gpt)

    train, dev = chat_split(shared, work, args.tiny)
    dialogue = ["train", "dialogue", "--model", str(gpt), "--train", str(train), "--dev", str(dev), "--max-length", "64",
                "--batch-size", "64", "--overwrite", "--no-tensorboard"]
    kluekit(*dialogue, "--output-dir", str(work / "chat0"), "--max-steps", "1", "--learning-rate", "0")
    kluekit(*dialogue, "--output-dir", str(work / "chat"), "--epochs", "1" if args.tiny else "5",
            "--learning-rate", "3e-4")
    chat = metrics(work / "chat")
    answers = work / "answers.csv"
    kluekit("chat", "--model", str(work / "chat"), "--input", str(dev), "--column", "Q", "--output", str(answers),
            "--max-new-tokens", "40", "--no-repeat-ngram-size", "3")
    replies = pd.read_csv(answers, keep_default_na=False)
    dev_pairs = pd.read_csv(dev)

    figures = {"tokenizer": "BPE " + ("2000" if args.tiny else "32000"), "model": json.loads(size.read_text()),
               "documents": len(text.read_text(encoding="utf-8").splitlines()), "pretrain_minutes": args.minutes,
               "pretrain_steps_budget": steps, "pretrain_steps": pre["steps"], "pretrain_stopped_early": pre["stopped_early"],
               "pretrain_train_seconds": pre["train_seconds"], "pretrain_tokens": round(pre["train_tokens_per_s"] * pre["train_seconds"]),
               "pretrain_tokens_per_s": pre.get("steady_tokens_per_s", pre["train_tokens_per_s"]),
               "heldout_perplexity": round(pre["best"]["perplexity"], 2), "heldout_best_step": pre["best_step"],
               "heldout_perplexity_history": " ".join(f"{h['step']}:{h['perplexity']:.1f}" for h in pre["history"]),
               "chat_train_pairs": len(pd.read_csv(train)), "chat_dev_pairs": len(dev_pairs),
               "chat_heldout_perplexity_before": round(metrics(work / "chat0")["history"][-1]["perplexity"], 2),
               "chat_heldout_perplexity": round(chat["best"]["perplexity"], 2),
               "distinct_1": distinct(replies["answer"].tolist(), 1), "distinct_2": distinct(replies["answer"].tolist(), 2),
               "empty_answers": int((replies["answer"].str.strip() == "").sum()),
               "most_common_answer_count": int(replies["answer"].value_counts().iloc[0])}
    for i, row in replies.head(10).iterrows():
        figures[f"example_{i + 1}"] = {"question": row["question"], "answer": row["answer"],
                                       "reference": dev_pairs["A"].iloc[i]}
    queries, pool = nsmc_queries(shared, work, 100 if args.tiny else 1000), nsmc_shots(shared, work)
    for shots in SHOTS:
        out = work / f"fewshot{shots}.csv"
        kluekit("generate", "--model", str(gpt), "--few-shot", str(pool),
                "--input", str(queries), "--text-column", "document", "--label-column", "label", "--shots", str(shots),
                "--template", TEMPLATE, "--label-words", *(f"{k}={v}" for k, v in WORDS.items()), "--output", str(out))
        predicted = pd.read_csv(out, keep_default_na=False)["prediction"].astype(str).to_numpy()
        gold = pd.read_csv(queries, sep="\t", keep_default_na=False)["label"].astype(str).map(WORDS).to_numpy()
        figures[f"fewshot{shots}_nsmc_accuracy"] = round(100 * float((predicted == gold).mean()), 2)
    figures["fewshot_majority_accuracy"] = round(100 * float(pd.Series(gold).value_counts(normalize=True).max()), 2)
    speed = ROOT / "benchmarks/results/clm_speed.json"
    if speed.exists():
        source = json.loads(speed.read_text())
        for key in ("clm_tokens_per_s", "trainer_clm_tokens_per_s", "clm_speedup", "clm_mfu"):
            figures[key] = source[key]
            figures[f"{key}_command"], figures[f"{key}_device"] = source["command"], source["device"]
    write_results("generate.py", args.name, figures)


if __name__ == "__main__":
    main()
