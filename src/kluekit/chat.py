"""``kluekit chat``: answers from a dialogue model (``kluekit train dialogue``), for a file of questions or typed on
the terminal.

    kluekit chat --model runs/dialogue --input questions.csv --output answers.csv
    kluekit chat --model runs/dialogue          # questions from stdin, one a line; quit or exit ends

A question is framed by the model's chat template (saved with its tokenizer by ``kluekit train dialogue``:
``<s> question <sep>``, as it was trained), and the answer is generated with ``generation.py``'s decoding options
until the end token.
"""

from __future__ import annotations

from dataclasses import dataclass

from .commands import Command
from .config import opt
from .causal import check_lengths, load_causal_lm
from .generation import DecodingOptions, check_decoding, generate_texts


@dataclass
class ChatOptions(DecodingOptions):
    """Options of ``kluekit chat``."""

    model: str = opt(None, "dialogue model directory ('kluekit train dialogue'): its tokenizer has a chat template",
                     required=True)
    input: str | None = opt(None, "file of questions: one per line, or a CSV/TSV/JSON column (--column; default Q "
                                  "where the table has it); default: read them from stdin")
    column: str | None = opt(None, "question column of a CSV/TSV/JSON --input")
    output: str | None = opt(None, "also write CSV: question, answer")
    min_new_tokens: int = opt(1, "fewest tokens of an answer before the end token may come (1: never an empty "
                                 "answer, which a small model gave to 13 of 1,143 held-out questions; 0: none)", minimum=0)



def chat_ids(tokenizer, questions: list[str]) -> list[list[int]]:
    """Token ids of each question framed by the tokenizer's chat template (which writes bos itself)."""
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                           tokenize=False) for q in questions]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def read_questions(path: str, column: str | None) -> list[str]:
    """The questions of a file: its ``--column``, else Q where a table has it (Chatbot_data), else the
    ``read_corpus`` rule."""
    from pathlib import Path

    from .data.columns import match_column
    from .data.tables import read_table
    from .data.text import TABLE_KINDS, read_corpus

    if column is None and Path(path).suffix.lower() in TABLE_KINDS:
        column = match_column(read_table(path).columns, "Q", path)
    return read_corpus(path, column)


def stdin_questions():
    """Questions typed or piped on stdin, one a line, until EOF or ``quit``/``exit``; blank lines skipped.
    The ``> `` prompt is shown only to a person at a terminal."""
    import sys

    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line or line.strip() in ("quit", "exit"):
            return
        if line.strip():
            yield line.strip()


def chat(cfg: ChatOptions) -> list[dict]:
    """Answer questions with a dialogue model: rows ``question, answer``, printed (and written with
    ``--output``); questions from ``--input``, else from stdin, answered one by one as they come."""
    import pandas as pd

    from .data.io import check_output_path, write_csv_atomic

    check_decoding(cfg)
    if cfg.output:
        check_output_path(cfg.output)
    questions = read_questions(cfg.input, cfg.column) if cfg.input else None
    tokenizer, model = load_causal_lm(cfg.model, dialogue=True)
    rows = []
    for batch in [questions] if questions is not None else ([q] for q in stdin_questions()):
        ids = chat_ids(tokenizer, batch)
        check_lengths(ids, model, cfg.max_new_tokens, noun="question", first=len(rows) + 1)
        for question, answer in zip(batch, generate_texts(model, tokenizer, ids, cfg)):
            rows.append({"question": question, "answer": answer})
            print(f"Q: {question}\nA: {answer}" if questions is not None else answer, flush=True)
    if cfg.output:
        write_csv_atomic(pd.DataFrame(rows, columns=["question", "answer"]), cfg.output)
        print(f"answers written to {cfg.output}")
    return rows


CHAT = Command(ChatOptions, "answer questions with a dialogue model (from a file, or typed on stdin)",
               "kluekit.chat:chat")
