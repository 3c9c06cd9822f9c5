"""``kluekit answer``: answers from a stored QA set (the course's retrieval QA chatbot).

    kluekit answer --qa-set ChatbotData.csv --model runs/bienc --verifier runs/verifier --question "배고파"
    kluekit answer --qa-set faq.csv --model runs/bienc --verifier runs/verifier --input questions.txt \\
        --output answers.csv --index-dir runs/faq-index

The stored questions (``--question-column``, default Q) are embedded once by the bi-encoder (``--index-dir``
keeps the index and reuses it while the QA set, column and model are unchanged, as ``kluekit encode`` does).
For each user question: the ``--top-n`` stored questions closest to it (cosine), then the ``--verifier`` (a pair
classifier: ``kluekit train classify`` on question pairs labelled 1 = the same question, e.g. made by ``kluekit
mine-negatives``) scores each (user question, stored question) pair; the best pair's stored answer is returned
when its probability reaches ``--threshold``. Without a verifier the retrieval cosine is compared instead.
When nothing passes, the answer is empty and ``answered`` false, with the candidates; with ``--generator`` (a
``kluekit train dialogue`` run) a generated answer is given instead, marked ``generated``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np

from .commands import Command
from .config import opt
from .errors import KluekitError

log = logging.getLogger("kluekit")


@dataclass
class AnswerOptions:
    """Options of ``kluekit answer``."""

    qa_set: str = opt(None, "the stored QA set: CSV/TSV/JSON with a question and an answer column", required=True)
    model: str = opt(None, "bi-encoder that embeds questions (a sentence-transformers directory, a 'kluekit train "
                           "biencoder' run or any encoder)", required=True)
    verifier: str | None = opt(None, "pair classifier run that checks the candidates ('kluekit train classify' with "
                                     "--text-pair-column on question pairs; label --positive-label = same question)")
    question: list[str] = opt([], "question(s) to answer")
    input: str | None = opt(None, "file of questions: one per line, or a CSV/TSV/JSON column (--column)")
    column: str | None = opt(None, "question column of a CSV/TSV/JSON --input (default: Q where the table has it)")
    question_column: str = opt("Q", "the QA set's question column")
    answer_column: str = opt("A", "the QA set's answer column")
    top_n: int = opt(5, "stored questions retrieved per question (the verifier checks each)", minimum=1)
    threshold: float = opt(0.5, "answer when the verifier's probability (without --verifier: the cosine) reaches this")
    positive_label: str = opt("1", "the verifier's label meaning 'asks the same thing'")
    generator: str | None = opt(None, "dialogue model run ('kluekit train dialogue'): when no candidate passes, "
                                      "generate an answer (marked generated)")
    index_dir: str | None = opt(None, "keep the QA set's embeddings here and reuse them (default: embed each time)")
    output: str | None = opt(None, "also write CSV: question_id, question, answered, answer, matched_question, "
                                   "retrieval_score, verifier_score, generated, candidates (JSON)")
    batch_size: int = opt(64, "questions per encoding batch", minimum=1)


def read_qa_set(path: str, question_column: str, answer_column: str):
    """(questions, answers) of the QA set; DataError naming missing columns or an empty cell."""
    from .data.qa import read_qa_table

    table = read_qa_table(path, question_column, answer_column)
    return table["question"].tolist(), table["answer"].tolist()


class Verifier:
    """A pair classifier run scoring (question, candidate) pairs: the probability of ``positive_label``."""

    def __init__(self, run: str, positive_label: str):
        from .predictor import Predictor
        from .tasks.base import ServeLimits

        self.predictor = Predictor(run, verb="verify", progress=False)
        self.spec = self.predictor.task.serve_spec(ServeLimits(max_text_chars=10_000))
        fields = list(self.spec.item.model_fields) if self.spec is not None else []
        if len(fields) != 2:
            raise KluekitError(f"--verifier: {run} is not a pair classifier (train one with 'kluekit train classify "
                               "--text-pair-column ...' on question pairs)")
        if positive_label not in self.predictor.task.labels:
            raise KluekitError(f"--positive-label: {positive_label!r} is not one of the verifier's labels "
                               f"({', '.join(self.predictor.task.labels)})")
        self.fields, self.positive = fields, self.predictor.task.labels.index(positive_label)

    def scores(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        if not pairs:
            return np.zeros(0)
        items = [self.spec.item(**dict(zip(self.fields, pair))) for pair in pairs]
        return np.asarray(self.predictor.predict(self.spec.examples(items)))[:, self.positive]


class QASet:
    """The stored QA set behind a bi-encoder index, answering questions (``answer``); ``model``: the bi-encoder
    of ``cfg.model`` already loaded (the server's), else it is loaded here."""

    def __init__(self, cfg: AnswerOptions, model=None):
        from .embedding.corpus import build_index
        from .embedding.encoding import load_biencoder

        self.cfg = cfg
        self.questions, self.answers = read_qa_set(cfg.qa_set, cfg.question_column, cfg.answer_column)
        self.model = model if model is not None else load_biencoder(cfg.model)
        self.index = build_index(self.model, cfg.qa_set, cfg.question_column, "exact", cfg.index_dir, cfg.batch_size,
                                 progress=False)
        self.verifier = Verifier(cfg.verifier, cfg.positive_label) if cfg.verifier else None
        self.generator = None
        if cfg.generator:
            from .causal import load_causal_lm

            self.generator = load_causal_lm(cfg.generator, dialogue=True)

    def answer(self, questions: list[str]) -> list[dict]:
        """One answer row per question (see the module docstring)."""
        from .embedding.encoding import encode

        scores, ids = self.index.search(encode(self.model, questions, batch_size=self.cfg.batch_size),
                                        min(self.cfg.top_n, len(self.questions)))
        pairs = [(q, self.questions[j]) for q, row in zip(questions, ids) for j in row if j >= 0]
        checks = self.verifier.scores(pairs) if self.verifier else None
        rows, offset = [], 0
        for number, (question, row_scores, row_ids) in enumerate(zip(questions, scores, ids)):
            kept = [(float(s), int(j)) for s, j in zip(row_scores, row_ids) if j >= 0]
            verified = checks[offset:offset + len(kept)] if checks is not None else None
            offset += len(kept)
            rows.append(self.choose(number, question, kept, verified))
        self.fallback(rows)
        return rows

    def choose(self, number: int, question: str, kept: list[tuple[float, int]], verified) -> dict:
        """The best candidate (by the verifier where there is one, else by cosine) and whether it passes."""
        candidates = [{"question": self.questions[j], "answer": self.answers[j], "retrieval_score": round(s, 6),
                       **({"verifier_score": round(float(v), 6)} if verified is not None else {})}
                      for (s, j), v in zip(kept, verified if verified is not None else [None] * len(kept))]
        key = "verifier_score" if verified is not None else "retrieval_score"
        best = max(candidates, key=lambda c: (c[key], c["retrieval_score"])) if candidates else None
        answered = best is not None and best[key] >= self.cfg.threshold
        return {"question_id": number, "question": question, "answered": answered,
                "answer": best["answer"] if answered else "", "matched_question": best["question"] if best else "",
                "retrieval_score": best["retrieval_score"] if best else None,
                "verifier_score": best.get("verifier_score") if best else None, "generated": False,
                "candidates": candidates}

    def fallback(self, rows: list[dict]) -> None:
        """Generated answers (marked) for the unanswered rows, with ``--generator``."""
        missing = [row for row in rows if not row["answered"]]
        if self.generator is None or not missing:
            return
        from .causal import check_lengths
        from .chat import chat_ids
        from .generation import DecodingOptions, generate_texts

        tokenizer, model = self.generator
        decoding = DecodingOptions(model=self.cfg.generator, max_new_tokens=48, no_repeat_ngram_size=3)
        ids = chat_ids(tokenizer, [row["question"] for row in missing])
        check_lengths(ids, model, decoding.max_new_tokens, noun="question")
        for row, text in zip(missing, generate_texts(model, tokenizer, ids, decoding)):
            row.update(answer=text, generated=True)


def read_questions(cfg: AnswerOptions) -> list[str]:
    if bool(cfg.question) == bool(cfg.input):
        raise KluekitError("answer: give questions with either --question or --input FILE (not both)")
    if cfg.input:
        from .chat import read_questions as read_file

        return read_file(cfg.input, cfg.column)
    for number, question in enumerate(cfg.question, 1):
        if not question.strip():
            raise KluekitError(f"--question {number}: empty question")
    return [q.strip() for q in cfg.question]


def answer(cfg: AnswerOptions) -> list[dict]:
    """Run ``kluekit answer``: print each question's answer (or that there is none), write ``--output``."""
    import pandas as pd

    from .data.io import check_output_path, write_csv_atomic

    if cfg.output:
        check_output_path(cfg.output)
    questions = read_questions(cfg)
    rows = QASet(cfg).answer(questions)
    for row in rows:
        shown = row["answer"] if row["answered"] else (f"(generated) {row['answer']}" if row["generated"]
                                                       else "(no stored answer passes)")
        score = row["verifier_score"] if row["verifier_score"] is not None else row["retrieval_score"]
        print(f"Q{row['question_id']}: {row['question']}\n  => {shown}  [{row['matched_question']} {score:.3f}]")
    answered = sum(row["answered"] for row in rows)
    print(f"answered {answered} of {len(rows)} from {cfg.qa_set}")
    if cfg.output:
        table = pd.DataFrame(rows).assign(candidates=lambda f: [json.dumps(c, ensure_ascii=False) for c in f["candidates"]])
        write_csv_atomic(table, cfg.output)
        print(f"answers written to {cfg.output}")
    return rows


ANSWER = Command(AnswerOptions, "answer questions from a stored QA set: retrieve, verify, answer or say there is none",
                 "kluekit.answering:answer")
