"""Question/answer tables (ChatbotData's ``Q,A,label`` and the like), read for dialogue training and for answering
from a stored QA set."""

from __future__ import annotations

import pandas as pd

from ..errors import DataError
from .columns import ROW, match_column
from .tables import check_not_empty, read_table


def read_qa_table(path, question_column: str, answer_column: str, fmt: str = "auto",
                  require_answers: bool = True) -> pd.DataFrame:
    """``question`` (and ``answer`` where the file has that column; it must with ``require_answers``) and ``_row``,
    stripped; DataError naming missing columns (and the ones the file has), an empty file or an empty cell."""
    frame = read_table(path, fmt)
    found = {name: match_column(frame.columns, name, path) for name in (question_column, answer_column)}
    needed = [question_column, answer_column] if require_answers else [question_column]
    missing = [name for name in needed if found[name] is None]
    if missing:
        columns = ", ".join(str(c) for c in frame.columns if c != ROW)
        raise DataError(path, 1, None, f"no column {', '.join(missing)} (columns: {columns}; name them with "
                                       "--question-column / --answer-column)")
    if frame.empty:
        raise DataError(path, 1, None, "no question/answer rows")
    present = [column for column in found.values() if column is not None]
    check_not_empty(frame, path, present)
    out = pd.DataFrame({"question": frame[found[question_column]].str.strip(), ROW: frame[ROW]})
    if found[answer_column] is not None:
        out["answer"] = frame[found[answer_column]].str.strip()
    out.attrs["path"] = str(path)
    return out.reset_index(drop=True)
