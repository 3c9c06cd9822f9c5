"""The one label-file reader: label names in model order (label id = position), for every task.

Forms: a JSON list of names; a JSON object name -> id (ids 0..C-1, the competition's
``dict_label_to_num.json``) or id -> name (a model config's ``id2label``); KLUE's ``relation_list.json``
(``{"relations": [names]}``); a text file with one label per non-blank line. Errors are
``file:row: problem`` with the row the label's position in the list or object (the line in a text file).
"""

from __future__ import annotations

import re

from ..errors import DataError
from .io import read_text
from .tables import loads_json

INTEGER = re.compile(r"[+-]?\d+")


class _Pairs(list):
    """A JSON object's (key, value) pairs in file order, so that a repeated key is seen, not dropped."""


def read_label_file(path) -> list[str]:
    """Label names in order from a label file in any of the forms above."""
    text = read_text(path)
    if str(path).lower().endswith(".json") or text.lstrip()[:1] in ("[", "{"):
        value = loads_json(path, text, object_pairs_hook=_Pairs)
        if isinstance(value, _Pairs) and [key for key, _ in value] == ["relations"] and isinstance(value[0][1], list):
            value = value[0][1]  # KLUE's relation_list.json
        if isinstance(value, _Pairs):
            labels = _labels_by_id(path, value)
        elif isinstance(value, list):
            labels = [(row, _label_name(path, row, name)) for row, name in enumerate(value, 1)]
        else:
            raise DataError(path, 1, None, "expected a JSON list of label names or an object name -> id")
    else:
        labels = [(row, line.strip()) for row, line in enumerate(text.split("\n"), 1) if line.strip()]
    if not labels:
        raise DataError(path, 1, None, "no labels in the file")
    first: dict[str, int] = {}
    for row, name in labels:
        if name in first:
            raise DataError(path, row, None, f"duplicate label {name!r} (first at row {first[name]})")
        first[name] = row
    return [name for _, name in labels]


def _shown(value):
    """A JSON value as Python shows it, objects as dicts."""
    return dict(value) if isinstance(value, _Pairs) else value


def _label_name(path, row: int, value) -> str:
    """A label name from JSON: a non-empty string, or an integer written as one."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise DataError(path, row, None, f"label {_shown(value)!r} is not a non-empty name")
    return str(value).strip()


def _labels_by_id(path, pairs: list) -> list[tuple[int, str]]:
    """(row, name) pairs of a JSON object name -> id (or id -> name), ordered by id; ids must be 0..C-1."""
    if pairs and all(isinstance(v, str) for _, v in pairs) and all(INTEGER.fullmatch(k.strip()) for k, _ in pairs):
        pairs = [(v, int(k)) for k, v in pairs]  # id2label: {"0": "IT과학", ...}
    by_id: dict[int, tuple[int, str]] = {}
    names: dict[str, int] = {}
    for row, (name, number) in enumerate(pairs, 1):
        name = _label_name(path, row, name)
        if name in names:
            raise DataError(path, row, None, f"duplicate label {name!r} (first at row {names[name]})")
        names[name] = row
        if isinstance(number, bool) or not isinstance(number, int):
            raise DataError(path, row, None, f"id {_shown(number)!r} of label {name!r} is not an integer")
        if number in by_id:
            raise DataError(path, row, None, f"id {number} is given to both {by_id[number][1]!r} and {name!r}")
        by_id[number] = (row, name)
    gaps = sorted(set(range(len(by_id))) - set(by_id))
    if gaps:
        raise DataError(path, 1, None, f"label ids must be 0..{len(by_id) - 1} without gaps: no label has id "
                                       f"{gaps[0]} (ids given: {', '.join(map(str, sorted(by_id)))})")
    return [by_id[number] for number in range(len(by_id))]
