"""Readers for labelled NLI pairs, and the (premise, entailment, contradiction) triplets built from them.

Formats (detected from the file):

- KLUE-NLI JSON: a list of ``{guid, premise, hypothesis, gold_label, ...}``;
- KorNLI TSV (``sentence1<TAB>sentence2<TAB>gold_label``, bare quotes in text), or any CSV/TSV/JSON with
  premise/sentence1 and hypothesis/sentence2 columns and a gold_label/label column.

Labels are ``entailment``, ``neutral``, ``contradiction`` (any case); ``-`` (no annotator majority, as in
SNLI/MNLI) is accepted and the row is left out. Errors name the file, row and column as the file does.
"""

from __future__ import annotations

import pandas as pd

from ..errors import DataError
from .tables import (ROW, check_not_empty, file_column, first_bad, read_table, rename_aliases, require_columns,
                     warn_long_texts)

LABELS = ("entailment", "neutral", "contradiction")
NO_LABEL = "-"
ALIASES = {
    "premise": ("premise", "sentence1", "sentence_1"),
    "hypothesis": ("hypothesis", "sentence2", "sentence_2"),
    "label": ("gold_label", "label"),
}


def read_nli(path) -> pd.DataFrame:
    """Read an NLI file into ``premise, hypothesis, label, _row`` (label lower-cased; ``-`` rows dropped).

    Raises DataError for a missing column, an empty sentence, or a label that is not an NLI label.
    """
    frame = rename_aliases(read_table(path), ALIASES, path)
    require_columns(frame, path, ["premise", "hypothesis", "label"], ALIASES)
    check_not_empty(frame, path, ["premise", "hypothesis"])
    warn_long_texts(frame, path, ["premise", "hypothesis"])
    frame["label"] = frame["label"].str.strip().str.lower()
    wrong = ~frame["label"].isin(LABELS + (NO_LABEL,))
    row = first_bad(frame, wrong)
    if row is not None:
        value = frame["label"].to_numpy()[wrong.to_numpy().argmax()]
        raise DataError(path, row, file_column(frame, "label"),
                        f"{value!r} is not an NLI label (expected one of {', '.join(LABELS)})")
    out = frame.loc[frame["label"] != NO_LABEL, ["premise", "hypothesis", "label", ROW]].reset_index(drop=True)
    out.attrs.update(path=str(path), rows=len(frame))
    return out


def nli_triplets(frame: pd.DataFrame) -> tuple[list[tuple[str, str, str]], dict]:
    """(premise, entailed hypothesis, contradicting hypothesis) triplets of one NLI table, and counts.

    Per premise (in file order), its i-th entailment is paired with its i-th contradiction, the shorter
    list cycled, so a premise with e entailments and c contradictions gives max(e, c) triplets (one, in
    KLUE-NLI and XNLI). Premises without an entailment or without a contradiction give none: they are
    counted as skipped (a triplet needs both; neutral hypotheses are not used).
    """
    hypotheses: dict[str, dict[str, dict[str, None]]] = {}  # premise -> label -> hypotheses (ordered, unique)
    for premise, hypothesis, label in zip(frame["premise"], frame["hypothesis"], frame["label"]):
        hypotheses.setdefault(premise, {}).setdefault(label, {})[hypothesis] = None
    triplets, skipped = [], 0
    for premise, by_label in hypotheses.items():
        positives, negatives = list(by_label.get("entailment", ())), list(by_label.get("contradiction", ()))
        if not positives or not negatives:
            skipped += 1
            continue
        for i in range(max(len(positives), len(negatives))):
            triplets.append((premise, positives[i % len(positives)], negatives[i % len(negatives)]))
    return triplets, {"rows": frame.attrs.get("rows", len(frame)), "triplets": len(triplets),
                      "premises_skipped": skipped}
