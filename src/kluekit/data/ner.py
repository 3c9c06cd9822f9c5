"""Named entity recognition (KLUE-NER) files, and the alignment between characters and subword tokens.

Formats (detected from the file, or named with ``--format``):

- ``klue``: the official KLUE-NER v1.1 character-level TSV: leading ``## `` comment lines, then per sentence
  a line ``## <guid>\\t<sentence with inline <entity:TAG> marks>`` followed by one ``char\\tTAG`` line per
  character (a space is the line `` \\tO``), sentences separated by a blank line. For prediction input the
  tag may be left out (``char`` or ``char\\t``). A TAB or newline cannot be a character of this format.
- ``text``: one sentence per non-blank line, taken exactly as written (no tags); ids are ``line-<n>``.

Tags are ``O`` or ``B-<type>`` / ``I-<type>`` with any type, so a user's own tag set works; KLUE's is
``NER_LABELS``. Labels are predicted per character: a model tags subword tokens, ``token_labels`` gives a
token the tag of its first character for training, and ``char_probs`` spreads token probabilities back onto
every character, so every character gets a tag (spaces, characters the tokenizer dropped or mapped to
an unknown token, characters cut off by truncation).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..errors import DataError
from .io import read_text, write_text_atomic
from .tables import ROW, check_unique, warn_long_texts

FORMATS = ("auto", "klue", "text")
NER_LABELS = ("B-DT", "I-DT", "B-LC", "I-LC", "B-OG", "I-OG", "B-PS", "I-PS", "B-QT", "I-QT", "B-TI", "I-TI", "O")
# the 5 comment lines that open the official KLUE-NER v1.1 files, written back by write_ner
KLUE_HEADER = ("## 토큰, 레이블 구분자 : \\t\n## 토큰 구분자 : \\n\n## 문장 구분자 : \\n\\n\n"
               "## 주석 : ##\n## 컬럼명 : CHAR\tNE_TAG\n")
TAG = re.compile(r"O|[BI]-\S+")


def read_ner(path, fmt: str = "auto", require_labels: bool = True) -> pd.DataFrame:
    """Read an NER file into a table ``id, sentence, tags, _row``, checking every line.

    ``sentence`` is the characters joined ("".join(chars), spaces included), ``tags`` a list of one tag
    per character (all ``""`` when the file carries no tags, which needs ``require_labels=False``), ``_row``
    the line of the sentence's ``## guid`` line (text format: its own line). ``attrs`` holds ``path``,
    ``format`` and ``has_tags``. ``auto`` is ``klue`` when any line starts with ``## ``, else ``text``.

    A ``## `` line is a sentence header when a character line follows it, or when it holds a TAB and comes
    after the first character line (then a missing character line is an error); other ``## `` lines are
    comments, such as the official files' five header lines (``## 컬럼명 : CHAR\\tNE_TAG`` holds a TAB).
    Raises DataError naming the line for: no sentences, a sentence without characters, a character line
    outside a sentence or with other than one character before the TAB, a tag that is not ``O``/``B-X``/
    ``I-X``, a missing tag (when ``require_labels``, or when other lines of the file have tags), a duplicate id.
    """
    if fmt not in FORMATS:
        raise DataError(path, 0, "--format", f"unknown NER format {fmt!r} (choose from {', '.join(FORMATS)})")
    text = read_text(path)
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")  # not splitlines(): U+2028, U+0085 etc. are characters of a sentence here
    if lines[-1] == "":
        lines.pop()
    if fmt == "auto":
        fmt = "klue" if any(line.startswith("## ") for line in lines) else "text"
    if fmt == "klue":
        ids, rows, chars, tags = _parse_klue(path, lines)
    else:
        rows = [number for number, line in enumerate(lines, 1) if line.strip()]
        ids = [f"line-{row}" for row in rows]
        chars = [lines[row - 1] for row in rows]
        tags = [[""] * len(line) for line in chars]
    if not ids:
        raise DataError(path, 1, None, "no sentences found")
    has_tags = _check_tags(path, rows, tags, require_labels, fmt)
    frame = pd.DataFrame({"id": ids, "sentence": ["".join(c) for c in chars], "tags": tags, ROW: rows})
    check_unique(frame, path, "id")
    warn_long_texts(frame, path, ["sentence"])
    frame.attrs.update(path=str(path), format=fmt, has_tags=has_tags)
    return frame


def _parse_klue(path, lines: list[str]):
    """Sentence ids, header rows, character lists and tag lists of a KLUE-format file."""
    ids, rows, chars, tags = [], [], [], []
    sentence_chars = sentence_tags = None  # the open sentence's lists, None between sentences
    seen_chars = False
    for number, line in enumerate(lines, 1):
        if line.startswith("## "):
            following = lines[number] if number < len(lines) else ""
            if following == "" or following.startswith("## "):
                sentence_chars = None
                if not (seen_chars and "\t" in line):
                    continue  # a comment line
                raise DataError(path, number, None, "sentence has no character lines (expected 'char<TAB>tag' "
                                                    "lines after the '## id' line)")
            guid = line[3:].partition("\t")[0].strip()
            if not guid:
                raise DataError(path, number, None, "missing sentence id after '## '")
            sentence_chars, sentence_tags = [], []
            ids.append(guid)
            rows.append(number)
            chars.append(sentence_chars)
            tags.append(sentence_tags)
        elif line == "":
            sentence_chars = None
        else:
            if sentence_chars is None:
                raise DataError(path, number, None, "character line outside a sentence (no '## id' line before it)")
            char, _, tag = line.partition("\t")
            if len(char) != 1:
                raise DataError(path, number, None, f"expected one character before the TAB, got {char!r}")
            sentence_chars.append(char)
            sentence_tags.append(tag.strip())
            seen_chars = True
    return ids, rows, chars, tags


def _check_tags(path, rows: list[int], tags: list[list[str]], require_labels: bool, fmt: str) -> bool:
    """Fail on the first unknown or missing tag; True when the file carries tags."""
    unique = set().union(*map(set, tags))
    has_tags = bool(unique - {""})
    if not has_tags and not require_labels:
        return False
    if not has_tags and fmt == "text":
        raise DataError(path, rows[0], None, "a plain-text file has no tags (use the KLUE format, or read it "
                                             "for prediction without labels)")
    bad = {tag for tag in unique if not TAG.fullmatch(tag)}
    if bad:
        for row, sentence in zip(rows, tags):
            for offset, tag in enumerate(sentence, 1):
                if tag in bad:
                    problem = ("missing tag" if tag == "" else
                               f"unknown tag {tag!r} (expected O, B-<type> or I-<type>)")
                    raise DataError(path, row + offset, None, problem)
    return True


def ner_label_set(tag_lists) -> list[str]:
    """The label order for the tags used: ``NER_LABELS`` when they fit in it, else B/I per type, O last.

    Types are sorted by name; each type present gets both ``B-`` and ``I-`` (a model must be able to
    predict both), and ``O`` is always included.
    """
    used = set().union(*map(set, tag_lists)) - {""}
    bad = sorted(tag for tag in used if not TAG.fullmatch(tag))
    if bad:
        raise ValueError(f"unknown tag {bad[0]!r} (expected O, B-<type> or I-<type>)")
    if used <= set(NER_LABELS):
        return list(NER_LABELS)
    types = sorted({tag[2:] for tag in used if tag != "O"})
    return [f"{prefix}-{kind}" for kind in types for prefix in "BI"] + ["O"]


def entity_spans(tags) -> list[tuple[int, int, str]]:
    """``(start, end, type)`` spans (end exclusive) as written inline: a span starts at ``B-X``, or at an
    ``I-X`` that does not follow ``B-X``/``I-X`` (a stray ``I-X`` is shown, although strict IOB2 scoring
    ignores it), and continues over the ``I-X`` after it."""
    spans, kind = [], None
    for i, tag in enumerate(tags):
        inside = kind is not None and tag == f"I-{kind}"
        if kind is not None and not inside:
            spans[-1] = (spans[-1][0], i, kind)
            kind = None
        if tag != "O" and not inside:
            kind = tag[2:]
            spans.append((i, i, kind))
    if kind is not None:
        spans[-1] = (spans[-1][0], len(tags), kind)
    return spans


def mark_entities(sentence: str, tags) -> str:
    """The sentence with each entity span marked inline as ``<text:TYPE>``, as the KLUE files show it."""
    pieces, last = [], 0
    for start, end, kind in entity_spans(tags):
        pieces += [sentence[last:start], "<", sentence[start:end], ":", kind, ">"]
        last = end
    pieces.append(sentence[last:])
    return "".join(pieces)


def write_ner(path, ids, sentences, tag_lists) -> None:
    """Write sentences and their per-character tags atomically in the KLUE-NER TSV format.

    The official five comment lines, then per sentence ``## id<TAB>marked sentence`` (see
    ``mark_entities``), one ``char<TAB>tag`` line per character and a blank line. ValueError names the
    first sentence (0-based index) whose tags do not fit.
    """
    if not len(ids) == len(sentences) == len(tag_lists):
        raise ValueError(f"got {len(ids)} ids, {len(sentences)} sentences and {len(tag_lists)} tag lists")
    out = [KLUE_HEADER]
    for index, (guid, sentence, tags) in enumerate(zip(ids, sentences, tag_lists)):
        tags = list(tags)
        if len(tags) != len(sentence):
            raise ValueError(f"sentence {index} ({guid}): {len(sentence)} characters but {len(tags)} tags")
        bad = [tag for tag in tags if not TAG.fullmatch(tag)]
        if bad:
            raise ValueError(f"sentence {index} ({guid}): invalid tag {bad[0]!r}")
        if "\t" in sentence or "\n" in sentence or "\t" in str(guid) or "\n" in str(guid):
            raise ValueError(f"sentence {index} ({guid}): a TAB or newline cannot be written in the KLUE format")
        out.append(f"## {guid}\t{mark_entities(sentence, tags)}\n")
        out.append("".join(f"{char}\t{tag}\n" for char, tag in zip(sentence, tags)))
        out.append("\n")
    write_text_atomic(path, "".join(out))


def token_labels(offsets, char_tag_ids, ignore: int = -100) -> list[int]:
    """Per-token training labels: the tag id of the token's first character; ``ignore`` for tokens that
    cover no character (special tokens, whose offsets are (0, 0)).

    ``offsets`` is the tokenizer's ``offset_mapping`` for one sentence, ``char_tag_ids`` that sentence's
    tag ids per character.
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    tag_ids = np.asarray(char_tag_ids, dtype=np.int64)
    starts, real = offsets[:, 0], offsets[:, 1] > offsets[:, 0]
    if real.any() and starts[real].max() >= len(tag_ids):
        raise ValueError(f"a token starts at character {starts[real].max()} of a {len(tag_ids)}-character sentence")
    labels = np.full(len(offsets), ignore, dtype=np.int64)
    labels[real] = tag_ids[starts[real]]
    return labels.tolist()


def token_slot_labels(offsets, char_tag_ids, slots: int, ignore: int = -100) -> np.ndarray:
    """Per-token, per-character training labels ``(T, slots)`` (``--char-slots``): slot ``k`` of a token holds the
    tag id of its ``k``-th character, the last slot that of the character at ``slots - 1`` (later characters share
    it, see :func:`char_probs`); ``ignore`` past a token's end and for tokens that cover no character."""
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    tag_ids = np.asarray(char_tag_ids, dtype=np.int64)
    starts, ends = offsets[:, 0], np.minimum(offsets[:, 1], len(tag_ids))
    if ((offsets[:, 1] > starts) & (starts >= len(tag_ids))).any():
        raise ValueError(f"a token starts past the end of a {len(tag_ids)}-character sentence")
    position = starts[:, None] + np.arange(slots)[None, :]
    inside = position < ends[:, None]
    labels = np.full((len(offsets), slots), ignore, dtype=np.int64)
    labels[inside] = tag_ids[position[inside]]
    return labels


def char_probs(token_probs, offsets, n_chars: int, labels) -> np.ndarray:
    """Per-character class probabilities ``(n_chars, C)`` from per-token ones ``(T, C)`` of one sentence.

    A character covered by a token takes that token's probabilities (the first token, where several
    cover it), but past the token's first character each ``B-X`` mass moves to ``I-X``: inside a token
    only the first character can begin an entity. With per-character slots (``token_probs`` of shape
    ``(T, P, C)``, ``--char-slots P``) the ``k``-th character of a token takes slot ``min(k, P - 1)`` as it is:
    a token may end an entity and start the next, or hold a name's last syllable and the particle after it.
    A character no token covers (a space, a character the
    tokenizer's normaliser dropped, one cut off by truncation) continues whatever the next covered
    character continues: it gets that character's ``I-X`` probabilities and ``O`` for the rest (``O`` = 1
    when no covered character follows). ``labels`` must hold ``O`` and an ``I-X`` for every ``B-X``.
    Rows of ``token_probs`` after the last offset (right padding of a batch) are ignored.
    """
    labels = list(labels)
    if "O" not in labels:
        raise ValueError("labels must include 'O'")
    begin = [i for i, name in enumerate(labels) if name.startswith("B-")]
    missing = [labels[i] for i in begin if "I-" + labels[i][2:] not in labels]
    if missing:
        raise ValueError(f"label {missing[0]!r} has no I- label")
    inner = np.array([labels.index("I-" + labels[i][2:]) for i in begin], dtype=np.int64)
    begin = np.array(begin, dtype=np.int64)
    inside = np.array([name.startswith("I-") for name in labels])

    probs = np.asarray(token_probs, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    if probs.ndim not in (2, 3) or probs.shape[0] < len(offsets) or probs.shape[-1] != len(labels):
        raise ValueError(f"token_probs must be ({len(offsets)}, {len(labels)}) or ({len(offsets)}, slots, "
                         f"{len(labels)}) for {len(offsets)} offsets and {len(labels)} labels (or have padding "
                         f"rows after them), got shape {probs.shape}")
    starts, ends = offsets[:, 0], np.minimum(offsets[:, 1], n_chars)
    tokens = np.flatnonzero(ends > starts)
    lengths = ends[tokens] - starts[tokens]
    token_of = np.repeat(tokens, lengths)
    step = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    owner = np.full(n_chars, len(offsets), dtype=np.int64)
    np.minimum.at(owner, starts[token_of] + step, token_of)  # the first token, where tokens overlap
    covered = owner < len(offsets)
    first = np.zeros(n_chars, dtype=bool)
    first[covered] = starts[owner[covered]] == np.flatnonzero(covered)

    out = np.zeros((n_chars, len(labels)))
    if probs.ndim == 3:  # per-character slots: the k-th character of its token reads slot min(k, P - 1)
        slot = np.minimum(np.flatnonzero(covered) - starts[owner[covered]], probs.shape[1] - 1)
        out[covered] = probs[owner[covered], slot]
    else:
        out[covered] = probs[owner[covered]]
        rows = np.flatnonzero(covered & ~first)[:, None]
        out[rows, inner] += out[rows, begin]
        out[rows, begin] = 0.0

    position = np.where(covered, np.arange(n_chars), n_chars)
    following = np.minimum.accumulate(position[::-1])[::-1]  # the next covered character at or after each one
    gaps = np.flatnonzero(~covered & (following < n_chars))
    out[gaps[:, None], np.flatnonzero(inside)] = out[following[gaps][:, None], np.flatnonzero(inside)]
    out[~covered, labels.index("O")] = np.clip(1.0 - out[~covered][:, inside].sum(axis=1), 0.0, 1.0)
    return out
