"""Extractive question answering (MRC) files: one row per question, with its context and gold answers.

Formats (detected from the file, or named with ``--format``):

- ``squad``: SQuAD-style JSON as KorQuAD 1.0 ships it, ``{"data": [{"title", "paragraphs": [{"context",
  "qas": [{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}``; KLUE-MRC's files are the same
  with ``guid`` for the id and ``is_impossible``, ``question_type`` (1-3) and ``plausible_answers`` per
  question (an unanswerable question has no answers; plausible answers are not used).
- ``table``: a CSV/TSV (or a JSON list of flat records; a JSON object is read as ``squad``) with
  ``id, context, question, answer_text, answer_start`` (answers optional for prediction; optional ``title``,
  ``question_type``, ``is_impossible``).

Every gold answer must be found in its context at ``answer_start`` (a character offset); one that is not is a
``file:row: problem`` error, or with ``skip_bad_rows`` a reported, skipped question. ``row`` is the line of a
table, the 1-based question number of a JSON file (its messages also name the question id).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError
from .io import read_text
from .tables import ROW, check_unique, file_column, loads_json, read_table, rename_aliases, require_columns

FORMATS = ("auto", "squad", "table")
COLUMNS = ["id", "title", "context", "question", "answers", "answer_starts", "is_impossible", "question_type", "group"]
ALIASES = {"id": ("id", "guid", "qid", "question_id"), "context": ("context", "passage", "paragraph"),
           "question": ("question", "query"), "answer_text": ("answer_text", "answer", "text"),
           "answer_start": ("answer_start", "start"), "title": ("title", "article"),
           "question_type": ("question_type", "type"), "is_impossible": ("is_impossible", "unanswerable")}
TRUE, FALSE = {"true", "1", "yes", "y"}, {"false", "0", "no", "n", ""}


def read_mrc(path, fmt: str = "auto", require_labels: bool = True, skip_bad_rows: bool = False) -> pd.DataFrame:
    """Read an MRC file into ``COLUMNS + [_row]``, checking every question.

    ``answers``/``answer_starts`` are lists (empty for an unlabelled or unanswerable question); ``group`` is
    what k-fold keeps together (the article's title, else its position; a table's title, else the context).
    ``attrs``: ``path``, ``format`` (``korquad``, ``klue`` or ``table``), ``has_ids``, ``has_answers``,
    ``has_types`` and ``skipped`` (the messages of skipped questions).
    """
    if fmt not in FORMATS:
        raise DataError(path, 0, "--format", f"unknown MRC format {fmt!r} (choose from {', '.join(FORMATS)})")
    if fmt == "auto":
        fmt = "squad" if _is_squad(path) else "table"
    frame, problems, kind, has_ids = _read_squad(path) if fmt == "squad" else _read_table(path, require_labels)
    for i, problem in enumerate(_check_answers(frame, require_labels)):
        problems[i] = problems[i] or problem
    messages = [str(DataError(path, int(row), *problem)) for row, problem in zip(frame[ROW], problems) if problem]
    bad = np.array([p is not None for p in problems], dtype=bool)
    if bad.any() and not skip_bad_rows:
        first = int(bad.argmax())
        raise DataError(path, int(frame[ROW].iloc[first]), *problems[first])
    if len(frame) == 0 or bad.all():
        raise DataError(path, int(frame[ROW].iloc[0]) if len(frame) else 1, None,
                        "no questions" + (" left: every question is bad" if len(frame) else " found"))
    frame = frame[~bad].reset_index(drop=True)
    check_unique(frame, path, "id")
    frame.attrs.update(path=str(path), format=kind, has_ids=has_ids, skipped=messages,
                       has_answers=bool(frame["answers"].map(len).any() or frame["is_impossible"].any()),
                       has_types=bool((frame["question_type"] != "").any()))
    return frame


def _is_squad(path) -> bool:
    """A JSON object (a table's JSON is a list of records)."""
    return read_text(path).lstrip().startswith("{")


def _question_id(qa: dict) -> str:
    value = qa.get("id", qa.get("guid", ""))
    return "" if value is None else str(value)


def _read_squad(path):
    """(frame, per-question problems, kind, has_ids) of a SQuAD-style JSON file; structure errors raise."""
    data = loads_json(path, read_text(path))
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataError(path, 1, None, 'expected a JSON object with a "data" list of articles (SQuAD format)')
    rows, problems, klue = [], [], False
    for a, article in enumerate(data["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise DataError(path, len(rows) + 1, None, f'data[{a}]: expected an article with a "paragraphs" list')
        title = str(article.get("title") or "")
        for p, paragraph in enumerate(paragraphs):
            where = f"data[{a}].paragraphs[{p}]"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list) \
                    or not isinstance(paragraph.get("context"), str):
                raise DataError(path, len(rows) + 1, None, f'{where}: expected "context" (text) and "qas" (a list)')
            for qa in paragraph["qas"]:
                if not isinstance(qa, dict):
                    raise DataError(path, len(rows) + 1, None, f"{where}: a question must be a JSON object")
                klue = klue or any(key in qa for key in ("guid", "is_impossible", "question_type"))
                answers = qa.get("answers", [])
                ok = isinstance(answers, list) and all(isinstance(x, dict) for x in answers)
                rows.append({"id": _question_id(qa), "title": title, "context": paragraph["context"],
                             "question": str(qa.get("question") or ""),
                             "answers": [x.get("text") for x in answers] if ok else [],
                             "answer_starts": [x.get("answer_start") for x in answers] if ok else [],
                             "is_impossible": qa.get("is_impossible", False),
                             "question_type": "" if qa.get("question_type") is None else str(qa["question_type"]),
                             "group": title or f"article {a}", ROW: len(rows) + 1})
                problems.append(None if ok else ("answers", "expected a list of {text, answer_start} objects"))
    frame = pd.DataFrame(rows, columns=COLUMNS + [ROW])
    for i, row in enumerate(rows):
        problem = (("id", "missing question id") if not row["id"] else
                   ("question", "empty question") if not row["question"].strip() else
                   ("is_impossible", "must be true or false") if not isinstance(row["is_impossible"], bool) else None)
        if problem:
            problems[i] = problems[i] or (problem[0], f"{problem[1]} (question {row['id'] or i + 1})")
    frame["is_impossible"] = frame["is_impossible"].map(lambda v: v is True)
    return frame, problems, "klue" if klue else "korquad", True


def _read_table(path, require_labels: bool):
    """(frame, per-row problems, "table", has_ids) of a CSV/TSV/JSON-list file."""
    table = rename_aliases(read_table(path), ALIASES, path)
    require_columns(table, path, ["context", "question"] + (["answer_text", "answer_start"] if require_labels
                                                             and "is_impossible" not in table else []), ALIASES)
    n, has_ids = len(table), "id" in table.columns
    column = lambda name: table[name].to_numpy() if name in table else np.full(n, "", dtype=object)  # noqa: E731
    texts, starts = column("answer_text"), column("answer_start")
    impossible_cells = pd.Series(column("is_impossible")).str.strip().str.lower()
    problems = [None] * n
    for i, cell in enumerate(impossible_cells):
        if cell not in TRUE | FALSE:
            problems[i] = (file_column(table, "is_impossible"), f"{cell!r} is not true/false (or 1/0)")
    parsed = [_int(cell) for cell in starts]
    frame = pd.DataFrame({
        "id": column("id") if has_ids else np.arange(n).astype(str),
        "title": column("title"), "context": table["context"].to_numpy(), "question": table["question"].to_numpy(),
        "answers": [[text] if text != "" else [] for text in texts],
        "answer_starts": [[start] if text != "" else [] for text, start in zip(texts, parsed)],
        "is_impossible": impossible_cells.isin(TRUE).to_numpy(),
        "question_type": pd.Series(column("question_type")).str.strip().to_numpy(),
        ROW: table[ROW].to_numpy()})
    frame["group"] = np.where(frame["title"].str.strip() != "", frame["title"], frame["context"])
    for i, (text, start, value) in enumerate(zip(texts, starts, parsed)):
        if problems[i] is None and text != "" and value is None:
            problems[i] = (file_column(table, "answer_start"), f"{start!r} is not a character offset (an integer)")
    for name in ("id", "context", "question"):
        empty = (frame[name].str.strip() == "").to_numpy() if name != "id" or has_ids else np.zeros(n, bool)
        for i in np.flatnonzero(empty):
            problems[i] = problems[i] or (file_column(table, name), "empty" + (" text" if name != "id" else " id"))
    frame.attrs["columns"] = table.attrs.get("columns", {})
    return frame, problems, "table", has_ids


def _int(cell):
    try:
        value = float(str(cell).strip())
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def _check_answers(frame: pd.DataFrame, require_labels: bool) -> list:
    """Per question: None, or (column, problem) for an answer not at its offset or a missing answer."""
    problems = []
    for row in frame.itertuples(index=False):
        problems.append(_answer_problem(row, require_labels))
    return problems


def _answer_problem(row, require_labels: bool):
    label = f" (question {row.id})" if row.id else ""
    if not str(row.context).strip():
        return "context", "empty context" + label
    if row.is_impossible and row.answers:
        return "answers", "is_impossible is true but answers are given" + label
    if require_labels and not row.answers and not row.is_impossible:
        return "answers", "no answer (mark an unanswerable question is_impossible: true)" + label
    for k, (text, start) in enumerate(zip(row.answers, row.answer_starts)):
        name = f"answers[{k}]" if len(row.answers) > 1 else "answer"
        if not isinstance(text, str) or not text.strip():
            return "answers", f"{name}: empty answer text" + label
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
            return "answers", f"{name}: answer_start {start!r} is not a character offset" + label
        if row.context[start:start + len(text)] != text or start < 0:
            found = row.context.find(text)
            where = f"it occurs at {found}" if found >= 0 else "the context does not contain it"
            return "answers", f"{name}: {text!r} is not at answer_start {start} of the context ({where})" + label
    return None
