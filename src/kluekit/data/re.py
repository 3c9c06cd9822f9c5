"""Readers for relation extraction (KLUE-RE) files (label maps: ``load_label_map``, see data/labels.py).

Formats (detected from the file, or named with ``--format``):

- ``competition``: the Boostcamp CSV ``id,sentence,subject_entity,object_entity,label,source`` whose entity
  cells are Python-dict reprs (``{'word': '비틀즈', 'start_idx': 24, 'end_idx': 26, 'type': 'ORG'}``);
  test files carry the label ``100`` (no label);
- ``klue-json``: the official KLUE JSON list ``guid, sentence, subject_entity{word,start_idx,end_idx,type},
  object_entity{...}, label, source`` (an entity given as a dict-repr string is read as in the CSV).

Both give one DataFrame with columns ``COLUMNS`` + ``_row``: entity offsets are ints with ``end``
inclusive, ``label`` is the relation name ('' when absent) and ``label_id`` its index in ``labels``
(-1 when absent). Errors name columns as the file does (``subject_entity``, ``subject_entity.start_idx``,
``guid``).
"""

from __future__ import annotations

import ast
import re

import numpy as np
import pandas as pd

from ..errors import DataError
from .labels import read_label_file
from .tables import ROW, ensure_ids, file_column, read_table, rename_aliases, require_columns, warn_long_texts

load_label_map = read_label_file  # the one label-file reader (data/labels.py); this name kept for callers

FORMATS = ("auto", "competition", "klue-json")
COLUMNS = ["id", "sentence", "subj_word", "subj_start", "subj_end", "subj_type",
           "obj_word", "obj_start", "obj_end", "obj_type", "label", "label_id", "source"]
ALIASES = {"id": ("id", "guid"), "sentence": ("sentence",), "label": ("label",), "source": ("source",)}
ENTITIES = {"subj": "subject_entity", "obj": "object_entity"}
ENTITY_KEYS = ("word", "start_idx", "end_idx", "type")
# repr() of {'word': w, 'start_idx': i, 'end_idx': j, 'type': t} when w and t hold no quote or backslash
PLAIN_ENTITY = r"^\{'word': '([^'\\]*)', 'start_idx': (\d+), 'end_idx': (\d+), 'type': '([^'\\]*)'\}$"
NO_LABEL = ("", "100")  # 100: the competition's blind test label

# the competition's dict_label_to_num order (label id = position); NOT relation_list.json's order
COMPETITION_LABELS = (
    "no_relation", "org:top_members/employees", "org:members", "org:product", "per:title", "org:alternate_names",
    "per:employee_of", "org:place_of_headquarters", "per:product", "org:number_of_employees/members",
    "per:children", "per:place_of_residence", "per:alternate_names", "per:other_family", "per:colleagues",
    "per:origin", "per:siblings", "per:spouse", "org:founded", "org:political/religious_affiliation",
    "org:member_of", "per:parents", "org:dissolved", "per:schools_attended", "per:date_of_death",
    "per:date_of_birth", "per:place_of_birth", "per:place_of_death", "org:founded_by", "per:religion",
)


def read_re(path, labels, fmt: str = "auto", require_labels: bool = True,
            skip_bad_rows: bool = False) -> pd.DataFrame:
    """Read an RE file into the canonical table, checking every row.

    Raises DataError (file, row, the file's column, problem) for a missing column, duplicate or empty
    ids, and row problems: an empty sentence, an entity cell that is not a dict with int offsets,
    offsets outside the sentence or not spelling the word, an unknown label, a missing label (label
    ``100`` or empty) unless ``require_labels`` is False. With ``skip_bad_rows`` the row problems are
    collected as ``file:row: column: problem`` in ``attrs["skipped"]`` and those rows dropped.
    """
    if fmt not in FORMATS:
        raise DataError(path, 0, "--format", f"unknown RE format {fmt!r} (choose from {', '.join(FORMATS)})")
    frame = read_table(path, {"competition": "csv", "klue-json": "json"}.get(fmt, "auto"))
    if fmt == "auto":
        fmt = "klue-json" if frame.attrs.get("kind") == "json" else "competition"
    frame = rename_aliases(frame, ALIASES, path)
    require_columns(frame, path, ["sentence"], ALIASES)
    warn_long_texts(frame, path, ["sentence"])
    sources = {short: _entity_source(frame, path, column) for short, column in ENTITIES.items()}
    if require_labels:
        require_columns(frame, path, ["label"], ALIASES)
    has_ids = ensure_ids(frame, path)

    problems: list[tuple[str, str] | None] = [None] * len(frame)
    _note(problems, (frame["sentence"].str.strip() == "").to_numpy(), file_column(frame, "sentence"), "empty text")
    out = pd.DataFrame({"id": frame["id"].to_numpy(), "sentence": frame["sentence"].to_numpy()})
    for short, source in sources.items():
        values = _parse_entities(frame, source, problems)
        for key, column in zip(ENTITY_KEYS, ("word", "start", "end", "type")):
            out[f"{short}_{column}"] = values[key]
    for short, source in sources.items():
        _check_offsets(out, short, source[0], problems)
    out["label"], out["label_id"] = _labels(frame, labels, require_labels, problems)
    out["source"] = frame["source"].to_numpy() if "source" in frame.columns else ""
    out[ROW] = frame[ROW].to_numpy()

    bad = np.array([p is not None for p in problems], dtype=bool)
    messages = [str(DataError(path, row, *problem)) for row, problem in zip(out[ROW], problems) if problem]
    if bad.any() and not skip_bad_rows:
        first = int(bad.argmax())
        raise DataError(path, int(out[ROW].iloc[first]), *problems[first])
    if bad.all():
        row, (column, problem) = int(out[ROW].iloc[0]), problems[0]
        raise DataError(path, row, column, f"{problem} (and every other row is bad too: nothing left to read)")
    out = out[~bad].reset_index(drop=True)
    for column in ("subj_start", "subj_end", "obj_start", "obj_end", "label_id"):
        out[column] = out[column].astype(np.int64)
    out = out[COLUMNS + [ROW]]
    out.attrs.update(path=str(path), format=fmt, has_ids=has_ids, skipped=messages,
                     columns=frame.attrs.get("columns", {}))
    return out


def _note(problems: list, mask, column: str, problem) -> None:
    """Record ``problem`` (a string, or a function of the row index) for rows in ``mask`` that have none yet."""
    for i in np.flatnonzero(mask):
        if problems[i] is None:
            problems[i] = (column, problem if isinstance(problem, str) else problem(i))


def _entity_source(frame: pd.DataFrame, path, column: str) -> tuple[str, bool]:
    """(column, flattened): a JSON object flattened to ``column.word`` ..., or a column of dict reprs."""
    flat = [f"{column}.{key}" for key in ENTITY_KEYS]
    if any(name.startswith(column + ".") for name in frame.columns):
        require_columns(frame, path, flat)
        return column, True
    require_columns(frame, path, [column])
    return column, False


def _parse_entities(frame: pd.DataFrame, source: tuple[str, bool], problems: list) -> dict[str, list]:
    """The four entity fields per row (None where the row has a problem, recorded in ``problems``)."""
    column, flattened = source
    values: dict[str, list] = {key: [None] * len(frame) for key in ENTITY_KEYS}
    if flattened:
        cells = zip(*(frame[f"{column}.{key}"].to_numpy() for key in ENTITY_KEYS))
        entities = [{key: _json_value(key, cell) for key, cell in zip(ENTITY_KEYS, row) if cell != ""}
                    for row in cells]
    else:
        entities = _dict_cells(frame[column])
    for i, entity in enumerate(entities):
        if isinstance(entity, str):  # the cell could not be parsed: a message
            problems[i] = problems[i] or (column, entity)
            continue
        key, problem = _entity_problem(entity)
        if problem:
            problems[i] = problems[i] or (f"{column}.{key}" if flattened and key else column, problem)
            continue
        for key in ENTITY_KEYS:
            values[key][i] = entity[key]
    return values


def _dict_cells(cells: pd.Series) -> list[dict | str]:
    """Dict-repr cells parsed: the exact repr Python prints for a plain entity is matched by a regex
    (vectorised, same values as ``ast.literal_eval``); anything else goes through ``ast.literal_eval``."""
    parts = cells.str.extract(PLAIN_ENTITY).to_numpy(dtype=object)
    return [_literal_dict(cell) if pd.isna(word) else
            {"word": word, "start_idx": int(start), "end_idx": int(end), "type": type_}
            for cell, (word, start, end, type_) in zip(cells.to_numpy(), parts)]


def _literal_dict(cell: str) -> dict | str:
    """A dict literal cell parsed, or a message saying why it is not one."""
    try:
        value = ast.literal_eval(cell.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = None
    if not isinstance(value, dict):
        shown = cell if len(cell) <= 60 else cell[:57] + "..."
        return f"not an entity dict like {{'word': ..., 'start_idx': ..., 'end_idx': ..., 'type': ...}}: {shown!r}"
    return value


def _json_value(key: str, cell: str):
    """A flattened JSON cell (read as text) back to an int for offsets ('24' or '24.0' from a float column)."""
    if key in ("start_idx", "end_idx") and re.fullmatch(r"-?\d+(\.0+)?", cell.strip()):
        return int(float(cell))
    return cell


def _entity_problem(entity: dict) -> tuple[str | None, str | None]:
    """(key, problem) for the first thing wrong with a parsed entity, or (None, None)."""
    missing = [key for key in ENTITY_KEYS if key not in entity]
    if missing:
        return missing[0], f"entity has no {', '.join(missing)}"
    for key in ("word", "type"):
        if not isinstance(entity[key], str) or not entity[key].strip():
            return key, f"{key} {entity[key]!r} is not a non-empty text"
    for key in ("start_idx", "end_idx"):
        value = entity[key]
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            return key, f"{key} {value!r} is not an integer"
        if abs(value) >= 2**31:
            return key, f"{key} {value} is far outside any sentence"
    return None, None


def _check_offsets(out: pd.DataFrame, short: str, column: str, problems: list) -> None:
    """Offsets inside the sentence (end inclusive) and spelling the entity's word."""
    parsed = out[f"{short}_start"].notna().to_numpy()
    start = out[f"{short}_start"].where(parsed, 0).to_numpy(dtype=np.int64)
    end = out[f"{short}_end"].where(parsed, 0).to_numpy(dtype=np.int64)
    length = out["sentence"].str.len().to_numpy()
    outside = parsed & ((start < 0) | (end >= length))
    _note(problems, outside, column, lambda i: f"offsets {start[i]}-{end[i]} are outside the sentence "
                                               f"(length {length[i]})")
    reversed_ = parsed & ~outside & (end < start)
    _note(problems, reversed_, column, lambda i: f"end_idx {end[i]} is before start_idx {start[i]}")
    check = parsed & ~outside & ~reversed_
    words, sentences = out[f"{short}_word"].to_numpy(), out["sentence"].to_numpy()
    spans = [sentences[i][start[i]:end[i] + 1] if check[i] else None for i in range(len(out))]
    wrong = check & np.array([span != word for span, word in zip(spans, words)], dtype=bool)
    _note(problems, wrong, column, lambda i: f"word {words[i]!r} does not match the sentence at "
                                             f"{start[i]}-{end[i]}: {spans[i]!r}")


def _labels(frame: pd.DataFrame, labels, require_labels: bool, problems: list) -> tuple[np.ndarray, np.ndarray]:
    """Label names ('' when absent) and ids (-1 when absent or unknown: unknown ones are problems)."""
    if "label" not in frame.columns:
        return np.full(len(frame), "", dtype=object), np.full(len(frame), -1, dtype=np.int64)
    ids = {name: i for i, name in enumerate(labels)}
    cells = frame["label"].str.strip()
    absent = cells.isin(NO_LABEL).to_numpy()
    label_id = cells.map(ids).fillna(-1).to_numpy(dtype=np.int64)
    column = file_column(frame, "label")
    if require_labels:
        _note(problems, absent, column, "missing label (100 or empty)")
    unknown = ~absent & (label_id < 0)
    values = cells.to_numpy()
    _note(problems, unknown, column, lambda i: f"unknown label {values[i]!r} (not one of the {len(ids)} labels)")
    return np.where(absent, "", values).astype(object), np.where(absent, -1, label_id)
