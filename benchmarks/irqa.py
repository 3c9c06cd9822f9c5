"""Retrieval QA over ChatbotData: a character TF-IDF retriever, the e5-small-ko bi-encoder (zero-shot and fine-tuned
on the stored pairs) and bi-encoder + verifier through ``kluekit answer``.

    python benchmarks/irqa.py                       # the issue's split; writes benchmarks/results/irqa.json
    python benchmarks/irqa.py --quick               # a small slice, a few steps: a check that it runs

The split (the issue's): among the rows whose answer occurs at least twice, 1,182 rows (10% of the file) drawn
with ``numpy.random.default_rng(0).choice(..., replace=False)``; the 1,013 of them whose answer still belongs to a
row not drawn are the queries; every other row is stored (10,810). A query is answered correctly when the
returned answer equals its own.

Nothing is chosen on the queries: the models and the threshold come from the stored rows only. The stored rows are
split the same way (seed 1) into a fitting part and pseudo-queries; ``kluekit mine-negatives`` makes question
pairs from the fitting part (questions sharing an answer = 1, hard negatives by embedding similarity = 0), on
which the bi-encoder (``kluekit train biencoder``) and the verifier (``kluekit train classify`` on pairs) train;
the retriever under the verifier (zero-shot or fine-tuned) is the one whose verified top-1 on the pseudo-queries is
higher, and the threshold the lowest verifier probability at which their answered precision reaches 90%.
Then every query is answered over all stored rows.

(a) ``tfidf_top1``: scikit-learn ``TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)`` fit on
the stored questions, top-1 by cosine; (b) ``biencoder_zeroshot_top1`` / ``biencoder_top1``: the top-1 stored
question of e5-small-ko / of the fine-tuned bi-encoder; (c) ``verified_top1``: the best of the top 5 by the
verifier; ``answered_rate`` and ``answered_precision`` at the chosen threshold.

What bounds precision (figures from the data and the zero-shot run, no choice made on them):
``exact_question_own_answer`` -- of the queries whose exact question text is stored, the share whose own answer is
the majority of that text's stored answers (ChatbotData gives one question different answers, e.g. "고양이 키우고
싶어" -> "가족들과 상의해보세요." and "자신을 먼저 키우세요."); ``zeroshot_precision_topNpct`` -- top-1 precision
among the N% of queries with the most similar best candidate; ``zeroshot_recall5`` -- the share whose own answer is
among the top 5. ``reranked_top1``: the zero-shot top 5 re-scored by ``mix`` x cosine + (1 - ``mix``) x char
TF-IDF cosine + ``prior`` x log(how often the answer is stored), ``mix`` and ``prior`` chosen on the
pseudo-queries (``pseudo_rerank_top1`` holds the grid).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import ROOT, SHARED, kluekit, write_results

DRAW, TARGET_PRECISION = 1182, 90.0


def split(frame: pd.DataFrame, draw: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(queries, stored): ``draw`` rows among those whose answer repeats; the drawn rows whose answer a row not
    drawn still has are the queries, every other row is stored."""
    repeats = frame["A"].map(frame["A"].value_counts()).to_numpy() >= 2
    drawn = np.random.default_rng(seed).choice(np.flatnonzero(repeats), size=draw, replace=False)
    kept_answers = set(frame["A"].to_numpy()[np.setdiff1d(np.arange(len(frame)), drawn)])
    queries = np.sort([i for i in drawn if frame["A"].iat[i] in kept_answers])
    return frame.iloc[queries].reset_index(drop=True), frame.drop(frame.index[queries]).reset_index(drop=True)


def char_tfidf(questions: pd.Series):
    """The lexical baseline's vectorizer, fit on ``questions``."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True).fit(questions)


def tfidf_top1(stored: pd.DataFrame, queries: pd.DataFrame) -> float:
    vectorizer = char_tfidf(stored["Q"])
    matrix = vectorizer.transform(stored["Q"])
    best = np.asarray((vectorizer.transform(queries["Q"]) @ matrix.T).argmax(axis=1)).ravel()
    return round(100 * float(np.mean(stored["A"].to_numpy()[best] == queries["A"].to_numpy())), 2)


def ambiguity(stored: pd.DataFrame, queries: pd.DataFrame) -> dict:
    """How often the data itself gives one question two answers: the queries whose exact question text is stored,
    and the share of them whose own answer is the one a majority vote over that text's stored answers picks
    (ties to the first stored), the best any retriever can do on those queries."""
    stored_answers = stored.groupby("Q", sort=False)["A"].agg(lambda a: a.value_counts().index[0])
    exact = queries[queries["Q"].isin(stored_answers.index)]
    agree = exact["A"].to_numpy() == stored_answers.loc[exact["Q"]].to_numpy()
    return {"exact_question_queries": len(exact),
            "exact_question_own_answer": round(100 * float(agree.mean()), 2) if len(exact) else None}


def precision_by_confidence(rows: list[dict], queries: pd.DataFrame, shares=(5, 10, 20, 50)) -> dict:
    """Top-1 precision among the ``share`` % of queries whose best candidate is the most similar: what a
    threshold on the retrieval score alone could reach."""
    scores = np.array([max(c["retrieval_score"] for c in r["candidates"]) for r in rows])
    best = [max(r["candidates"], key=lambda c: c["retrieval_score"])["answer"] for r in rows]
    correct = (np.asarray(best) == queries["A"].to_numpy())[np.argsort(-scores)]
    return {f"zeroshot_precision_top{share}pct": round(100 * float(correct[:max(1, len(rows) * share // 100)].mean()), 2)
            for share in shares}


def recall(rows: list[dict], queries: pd.DataFrame) -> float:
    """Share of the queries whose own answer is among their candidates (the top 5)."""
    return round(100 * float(np.mean([a in {c["answer"] for c in r["candidates"]} for r, a in zip(rows, queries["A"])])), 2)


def reranked_top1(rows: list[dict], queries: pd.DataFrame, table: pd.DataFrame, mix: float, prior: float) -> float:
    """Top-1 after re-scoring each query's candidates by ``mix`` x their cosine + (1 - ``mix``) x the char
    TF-IDF cosine of the two questions (the baseline's vectorizer, fit on ``table``) + ``prior`` x log(how often
    the candidate's answer is stored in ``table``)."""
    vectorizer = char_tfidf(table["Q"])
    counts = table["A"].value_counts()
    asked = vectorizer.transform(queries["Q"])
    picks = []
    for i, row in enumerate(rows):
        candidates = row["candidates"]
        lexical = (vectorizer.transform([c["question"] for c in candidates]) @ asked[i].T).toarray().ravel()
        scores = [mix * c["retrieval_score"] + (1 - mix) * lex + prior * np.log(counts[c["answer"]])
                  for c, lex in zip(candidates, lexical)]
        picks.append(candidates[int(np.argmax(scores))]["answer"])
    return round(100 * float(np.mean(np.asarray(picks) == queries["A"].to_numpy())), 2)


MIXES, PRIORS = (0.6, 0.8, 0.9, 1.0), (0.0, 0.005, 0.01, 0.02)


def answers(stored: Path, queries: pd.DataFrame, work: Path, model: str, verifier: str | None = None) -> list[dict]:
    """``kluekit answer`` over ``stored`` for every query (threshold -1: the best candidate is always returned)."""
    from kluekit.answering import AnswerOptions, answer

    questions = work / f"questions-{len(queries)}.txt"
    questions.write_text("\n".join(queries["Q"]) + "\n", encoding="utf-8")
    return answer(AnswerOptions(qa_set=str(stored), model=model, verifier=verifier, input=str(questions),
                                threshold=-1.0, top_n=5))


def top1(rows: list[dict], queries: pd.DataFrame, key: str = "retrieval_score") -> float:
    """Accuracy of the best candidate by ``key`` (the retrieval's top-1, or the verifier's choice)."""
    best = [max(r["candidates"], key=lambda c: (c[key], c["retrieval_score"]))["answer"] for r in rows]
    return round(100 * float(np.mean(np.asarray(best) == queries["A"].to_numpy())), 2)


def choose_threshold(rows: list[dict], queries: pd.DataFrame) -> tuple[float, float, float]:
    """(threshold, answered %, precision %): the lowest verifier probability at which the answered rows'
    precision reaches the target (the highest-precision point if none does)."""
    scores = np.array([r["verifier_score"] for r in rows])
    correct = np.array([r["answer"] == a for r, a in zip(rows, queries["A"])])
    order = np.argsort(-scores)
    precision = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    passing = np.flatnonzero(precision >= TARGET_PRECISION / 100)
    cut = passing.max() if len(passing) else int(precision.argmax())
    return float(scores[order][cut]), 100 * (cut + 1) / len(rows), 100 * float(precision[cut])


def at_threshold(rows: list[dict], queries: pd.DataFrame, threshold: float) -> tuple[float, float]:
    answered = np.array([r["verifier_score"] >= threshold for r in rows])
    correct = np.array([r["answer"] == a for r, a in zip(rows, queries["A"])])
    precision = 100 * float(correct[answered].mean()) if answered.any() else 0.0
    return round(100 * float(answered.mean()), 2), round(precision, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(SHARED))
    parser.add_argument("--model", default=None, help="default: <shared>/models/e5-small-ko")
    parser.add_argument("--epochs", type=float, default=2.0, help="bi-encoder and verifier epochs")
    parser.add_argument("--margin", type=float, default=0.02, help="mine-negatives --margin")
    parser.add_argument("--negatives", type=int, default=3, help="mine-negatives --num-negatives")
    parser.add_argument("--max-length", type=int, default=32, help="tokens per question (they are short)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--name", default="irqa")
    args = parser.parse_args()
    shared, work = Path(args.shared), ROOT / "runs/bench-irqa"
    work.mkdir(parents=True, exist_ok=True)
    model = args.model or str(shared / "models/e5-small-ko")
    frame = pd.read_csv(shared / "data/chatbot/ChatbotData.csv", keep_default_na=False)
    queries, stored = split(frame, DRAW, 0)
    if args.quick:
        queries, stored = queries.head(40), pd.concat([stored.head(400), queries.head(40).assign(Q=lambda f: f["Q"] + "요")])
    pseudo, fitting = split(stored, min(DRAW, len(stored) // 10), 1)
    stored_file, fitting_file = work / "stored.csv", work / "fitting.csv"
    stored.to_csv(stored_file, index=False)
    fitting.to_csv(fitting_file, index=False)
    started = time.perf_counter()
    figures = {"model": Path(model).name, "rows": len(frame), "queries": len(queries), "stored": len(stored),
               "fitting": len(fitting), "pseudo_queries": len(pseudo), "tfidf_top1": tfidf_top1(stored, queries)}
    print("tfidf", figures["tfidf_top1"], flush=True)
    zeroshot = answers(stored_file, queries, work, model)
    figures["biencoder_zeroshot_top1"] = top1(zeroshot, queries)
    figures.update(ambiguity(stored, queries), **precision_by_confidence(zeroshot, queries),
                   zeroshot_recall5=recall(zeroshot, queries))
    print("zero-shot", figures["biencoder_zeroshot_top1"], flush=True)

    pairs = work / "pairs.csv"
    kluekit("mine-negatives", "--input", str(fitting_file), "--text-column", "Q", "--group-column", "A", "--model", model,
            "--output", str(pairs), "--num-negatives", str(args.negatives), "--margin", str(args.margin))
    mined = pd.read_csv(pairs, keep_default_na=False)
    scored = work / "pairs_scored.csv"  # the bi-encoder trains on STS-style scores: 5 = same question, 0 = not
    mined.assign(label=mined["label"] * 5.0).to_csv(scored, index=False)
    quick = ["--max-steps", "6"] if args.quick else ["--epochs", str(args.epochs)]
    kluekit("train", "biencoder", "--model", model, "--train", str(scored), "--output-dir", str(work / "bienc"),
            "--overwrite", "--batch-size", "64", "--learning-rate", "5e-5", "--max-length", str(args.max_length), *quick)
    kluekit("train", "classify", "--model", model, "--train", str(pairs), "--text-column", "sentence1",
            "--text-pair-column", "sentence2", "--label-column", "label", "--output-dir", str(work / "verifier"),
            "--overwrite", "--batch-size", "64", "--learning-rate", "5e-5", "--max-length", str(args.max_length), *quick)
    figures.update(mined_pairs=len(mined), mined_positives=int((mined["label"] == 1).sum()))
    bienc, verifier = str(work / "bienc"), str(work / "verifier")
    # choices on the pseudo-queries only: the retriever for (c), then the threshold
    pseudo_rows = {name: answers(fitting_file, pseudo, work, path, verifier) for name, path in
                   (("zeroshot", model), ("finetuned", bienc))}
    for name, rows in pseudo_rows.items():
        figures[f"pseudo_{name}_top1"], figures[f"pseudo_{name}_verified_top1"] = \
            top1(rows, pseudo), top1(rows, pseudo, "verifier_score")
    # re-scoring the zero-shot top 5 (TF-IDF mixed in, a prior on frequent answers): chosen on the pseudo-queries
    grid = {(mix, prior): reranked_top1(pseudo_rows["zeroshot"], pseudo, fitting, mix, prior)
            for mix in MIXES for prior in PRIORS}
    figures["pseudo_rerank_top1"] = " ".join(f"{mix}/{prior}:{top:.2f}" for (mix, prior), top in grid.items())
    (mix, prior), _ = max(grid.items(), key=lambda item: (item[1], item[0][0], -item[0][1]))  # ties: the plainer
    figures.update(rerank_mix=mix, rerank_prior=prior, reranked_top1=reranked_top1(zeroshot, queries, stored, mix, prior))
    chosen = max(pseudo_rows, key=lambda name: figures[f"pseudo_{name}_verified_top1"])
    figures["verified_retriever"] = chosen
    figures["threshold"], figures["pseudo_answered_rate"], figures["pseudo_answered_precision"] = (
        round(v, 4) for v in choose_threshold(pseudo_rows[chosen], pseudo))
    figures["biencoder_top1"] = top1(answers(stored_file, queries, work, bienc), queries)
    rows = answers(stored_file, queries, work, model if chosen == "zeroshot" else bienc, verifier)
    figures["verified_top1"] = top1(rows, queries, "verifier_score")
    figures["answered_rate"], figures["answered_precision"] = at_threshold(rows, queries, figures["threshold"])
    figures["goal_verified_minus_tfidf"] = round(figures["verified_top1"] - figures["tfidf_top1"], 2)
    figures["wall_s"] = round(time.perf_counter() - started, 1)
    write_results("irqa.py", args.name if not args.quick else "irqa_quick", figures)


if __name__ == "__main__":
    main()
