"""Entity-aware model inputs for relation extraction: how the subject and object reach the model.

Styles (``STYLES``), shown for subject 조지 해리슨 (PER) and object 비틀즈 (ORG):

- ``baseline`` (the competition baseline): a text pair, ``조지 해리슨</s>비틀즈`` (the tokenizer's sep
  token between the words) and the sentence;
- ``marker``: ``... [E1] 조지 해리슨 [/E1]이 쓰고 [E2] 비틀즈 [/E2]가 ...`` (``MARKER_TOKENS`` must be
  special tokens of the tokenizer: the caller adds them and resizes the embeddings);
- ``typed`` (typed entity markers with punctuation, Zhou & Chen 2021): ``@ * PER * 조지 해리슨 @`` and
  ``# ^ ORG ^ 비틀즈 #``; plain text, nothing to add to the tokenizer.

Markers go in at the character offsets (never found by string search); a marker's own space separates
it from the entity, nothing is added outside it. All four boundaries are placed by position; at one
position closing markers come before opening ones (touching entities: ``[/E1][E2]``), an outer span
opens before and closes after an inner one (nested entities), and for the same span the subject is
the outer one. Crossing spans (each holds one end of the other) get each marker at its own offset,
so their markers cross: ``[E1] ab[E2] cd [/E1]ef [/E2]``.

Rows longer than ``max_length`` are windowed, never cut blindly (see ``encode_relations``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import KluekitError

log = logging.getLogger("kluekit")
STYLES = ("baseline", "marker", "typed")
MARKER_TOKENS = ("[E1]", "[/E1]", "[E2]", "[/E2]")
ELISION = " ... "  # joins the two kept pieces when the text between far-apart entities is cut
NEEDED = ["sentence", "subj_word", "subj_start", "subj_end", "subj_type", "obj_word", "obj_start", "obj_end",
          "obj_type"]


@dataclass
class _Input:
    first: str | None  # the first text of a pair (baseline), else None
    text: str  # the (marked) sentence
    regions: list[tuple[int, int]]  # [start, end) in ``text`` of each entity with its markers, merged, sorted
    entities: list[tuple[str, str, str]]  # (opening marker, word, closing marker) in position order
    words: tuple[str, str]  # (subject, object)


def markers(style: str, subj_type: str = "", obj_type: str = "") -> tuple[tuple[str, str], tuple[str, str]]:
    """((subject open, subject close), (object open, object close)) as inserted, spaces included."""
    if style == "marker":
        return ("[E1] ", " [/E1]"), ("[E2] ", " [/E2]")
    if style == "typed":
        return (f"@ * {subj_type} * ", " @"), (f"# ^ {obj_type} ^ ", " #")
    return ("", ""), ("", "")


def mark_entities(sentence: str, subj: tuple[int, int, str], obj: tuple[int, int, str], style: str) -> str:
    """The sentence with the markers of ``style`` around subject and object, each ``(start, end
    inclusive, type)``; e.g. ``mark_entities("A와 B", (0, 0, "PER"), (2, 2, "ORG"), "marker")`` is
    ``"[E1] A [/E1]와 [E2] B [/E2]"``. The baseline style returns the sentence as it is."""
    _check_style(style)
    return _mark(sentence, subj, obj, style)[0]


def _mark(sentence: str, subj, obj, style: str) -> tuple[str, list[tuple[int, int]], list[tuple[str, str, str]]]:
    """(marked text, merged regions of the marked entities, entities in position order)."""
    (s0, s1, stype), (o0, o1, otype) = subj, obj
    (sopen, sclose), (oopen, oclose) = markers(style, stype, otype)
    # (position, closes first, inner first, subject outer on a tie, entity, marker)
    events = sorted([(s1 + 1, 0, -s0, 1, 0, sclose), (o1 + 1, 0, -o0, 0, 1, oclose),
                     (s0, 1, -s1, 0, 0, sopen), (o0, 1, -o1, 1, 1, oopen)])
    pieces, length, last = [], 0, 0
    spans = [[0, 0], [0, 0]]
    for position, closing, _, _, entity, marker in events:
        pieces.append(sentence[last:position])
        length += position - last
        last = position
        if closing == 1:  # opening marker
            spans[entity][0] = length
        pieces.append(marker)
        length += len(marker)
        if closing == 0:
            spans[entity][1] = length
    pieces.append(sentence[last:])
    words = [(sopen, sentence[s0:s1 + 1], sclose), (oopen, sentence[o0:o1 + 1], oclose)]
    order = [0, 1] if (s0, -s1) <= (o0, -o1) else [1, 0]
    return "".join(pieces), _merge([tuple(span) for span in spans]), [words[i] for i in order]


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted spans, those that overlap or touch merged into one."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def entity_texts(frame: pd.DataFrame, style: str, sep_token: str | None = None) -> tuple[list[str] | None, list[str]]:
    """(first texts or None, texts) as the model sees them before any windowing: for ``baseline`` the
    pair ``subject + sep_token + object`` / sentence, else (None, the marked sentences)."""
    inputs = _inputs(frame, style, sep_token)
    return ([i.first for i in inputs] if style == "baseline" else None), [i.text for i in inputs]


def _inputs(frame: pd.DataFrame, style: str, sep_token: str | None) -> list[_Input]:
    _check_style(style)
    missing = [c for c in NEEDED if c not in frame.columns]
    if missing:
        raise KluekitError(f"relation inputs need the columns of read_re; missing: {', '.join(missing)}")
    if style == "baseline" and not sep_token:
        raise KluekitError("the baseline entity style needs a tokenizer with a sep token")
    inputs = []
    for row in zip(*(frame[c].to_numpy() for c in NEEDED)):
        sentence, sw, s0, s1, stype, ow, o0, o1, otype = row
        subj, obj = (int(s0), int(s1), stype), (int(o0), int(o1), otype)
        text, regions, entities = _mark(sentence, subj, obj, style)
        first = f"{sw}{sep_token}{ow}" if style == "baseline" else None
        inputs.append(_Input(first, text, regions, entities, (sw, ow)))
    return inputs


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise KluekitError(f"unknown entity style {style!r} (choose from {', '.join(STYLES)})")


def encode_relations(frame: pd.DataFrame, tokenizer, max_length: int, style: str) -> dict[str, list]:
    """Tokenize RE rows (a ``read_re`` table) with the entities shown as ``style``, at most ``max_length``
    tokens each, in one batched call of a fast tokenizer; returns input_ids, attention_mask (and
    token_type_ids where the tokenizer makes them), unpadded.

    Truncation never cuts an entity out. A row that is too long is windowed: the text from the first
    entity's start (its opening marker) to the last one's end is kept whole, with as many context tokens
    as fit split evenly between both sides (the cut falls on token boundaries; one side takes what the
    other cannot use). If that span does not fit, the two entities are kept with context from the text
    between them (half after the first, half before the second), joined by ``" ... "``. For
    ``baseline`` the entities are whole in the first text anyway, so if even that does not fit, the
    sentence is cut to the tokens that fit around the entities' middle. Only if the marked entities
    alone do not fit (entity words of hundreds of tokens, or a tiny ``max_length``), the text becomes
    just the marked entities joined by ``" ... "`` (nested or crossing ones side by side), each word
    cut to the same number of characters, as many as fit: the markers always survive. If even one
    character per word does not fit, KluekitError.
    """
    _check_style(style)
    if not getattr(tokenizer, "is_fast", False):
        raise KluekitError("encode_relations needs a fast (Rust) tokenizer: it windows long rows by offsets")
    if not isinstance(max_length, (int, np.integer)) or max_length < 1:
        raise KluekitError(f"max_length must be a positive integer, not {max_length!r}")
    if style == "marker":
        _check_marker_tokens(tokenizer)
    inputs = _inputs(frame, style, tokenizer.sep_token)
    encoded = _encode(tokenizer, inputs, [(i.first, i.text) for i in inputs])
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
    out = {k: list(encoded[k]) for k in keys}
    long = [i for i, ids in enumerate(out["input_ids"]) if len(ids) > max_length]
    if long:
        ids = frame["id"].to_numpy() if "id" in frame.columns else np.arange(len(frame))
        fitted = _fit(tokenizer, [inputs[i] for i in long], max_length, [ids[i] for i in long])
        for i, features in zip(long, fitted):
            for k in keys:
                out[k][i] = features[k]
    return out


def _check_marker_tokens(tokenizer) -> None:
    pieces = tokenizer(list(MARKER_TOKENS), add_special_tokens=False)["input_ids"]
    split = [t for t, ids in zip(MARKER_TOKENS, pieces) if len(ids) != 1]
    if split:
        raise KluekitError(f"the marker entity style needs {', '.join(MARKER_TOKENS)} as special tokens of the "
                           f"tokenizer ({', '.join(split)} is not one token): add MARKER_TOKENS first")


def _encode(tokenizer, inputs: list[_Input], texts: list[tuple[str | None, str]]):
    """One batched tokenizer call, as pairs for the baseline style."""
    if inputs and inputs[0].first is not None:
        return tokenizer([first for first, _ in texts], [text for _, text in texts], truncation=False)
    return tokenizer([text for _, text in texts], truncation=False)


def _fit(tokenizer, inputs: list[_Input], max_length: int, ids: list) -> list[dict]:
    """Encodings of at most ``max_length`` tokens for rows that are too long (see encode_relations)."""
    pair = inputs[0].first is not None
    specials = tokenizer.num_special_tokens_to_add(pair=pair)
    elision = len(tokenizer(ELISION, add_special_tokens=False)["input_ids"])
    firsts = tokenizer([i.first for i in inputs], add_special_tokens=False)["input_ids"] if pair else None
    offsets = tokenizer([i.text for i in inputs], add_special_tokens=False, return_offsets_mapping=True)
    budgets = [max_length - specials - (len(firsts[n]) if pair else 0) for n in range(len(inputs))]
    results: list[dict | None] = [None] * len(inputs)
    pending = list(range(len(inputs)))
    for _ in range(4):  # re-tokenizing a cut text can differ by a token or two: shrink and retry
        texts = {n: _window(inputs[n], offsets["offset_mapping"][n], budgets[n], elision) for n in pending}
        pending = [n for n in pending if texts[n] is not None]
        if not pending:
            break
        encoded = _encode(tokenizer, inputs, [(inputs[n].first, texts[n]) for n in pending])
        retry = []
        for k, n in enumerate(pending):
            over = len(encoded["input_ids"][k]) - max_length
            if over > 0:
                budgets[n] -= over
                retry.append(n)
            else:
                results[n] = {key: encoded[key][k] for key in encoded.keys()}
        pending = retry
    for n, result in enumerate(results):
        if result is None:
            results[n] = _squeeze(tokenizer, inputs[n], max_length, ids[n])
    return results


def _window(row: _Input, offsets, budget: int, elision: int) -> str | None:
    """The text cut to about ``budget`` tokens around the entity regions, or None if they do not fit."""
    starts = np.array([s for s, _ in offsets], dtype=np.int64)
    ends = np.array([e for _, e in offsets], dtype=np.int64)
    n = len(offsets)
    tokens = []  # (first, last) token of each region; last < first when it has no token
    for a, b in row.regions:
        after = np.flatnonzero(ends > a)
        before = np.flatnonzero(starts < b)
        tokens.append((int(after[0]) if len(after) else n, int(before[-1]) if len(before) else -1))
    (a, _), (_, b) = row.regions[0], row.regions[-1]
    first, last = tokens[0][0], tokens[-1][1]
    core = max(0, last - first + 1)

    def cut(lo: int, hi: int, start: int, end: int) -> str:  # tokens lo..hi, never less than chars start..end
        left = min(start, int(starts[lo])) if 0 <= lo < n else start
        right = max(end, int(ends[hi])) if 0 <= hi < n else end
        return row.text[left:right]

    if core <= budget:
        extra = budget - core
        lo_room, hi_room = first, n - 1 - last
        left = min(lo_room, extra // 2)
        right = min(hi_room, extra - left)
        left = min(lo_room, extra - right)
        return cut(first - left, last + right, a, b)
    if len(row.regions) == 2:
        (i0, i1), (j0, j1) = tokens
        extra = budget - max(0, i1 - i0 + 1) - max(0, j1 - j0 + 1) - elision
        if extra >= 0:
            after_first, before_second = extra // 2, extra - extra // 2
            (a0, b0), (a1, b1) = row.regions
            return cut(i0, i1 + after_first, a0, b0) + ELISION + cut(j0 - before_second, j1, a1, b1)
    if row.first is None or budget < 1:
        return None
    # baseline: the entities are whole in the first text; the sentence keeps what fits around their middle
    middle = (first + last) // 2
    lo = max(0, min(middle - budget // 2, n - budget))
    return row.text[int(starts[lo]):int(ends[min(n, lo + budget) - 1])]


def _squeeze(tokenizer, row: _Input, max_length: int, row_id) -> dict:
    """Last resort: only the marked entities, each word cut to as many characters as fit."""
    def encode(size: int):
        words = [(opening, word[:size], closing) for opening, word, closing in row.entities]
        text = ELISION.join(f"{o}{w}{c}" for o, w, c in words)
        if row.first is None:
            return tokenizer(text, truncation=False)
        subj, obj = row.words  # the first text, subject + sep + object, cut the same way
        return tokenizer(f"{subj[:size]}{tokenizer.sep_token}{obj[:size]}", text, truncation=False)

    low, high = 1, max(len(word) for _, word, _ in row.entities)
    if len(encode(low)["input_ids"]) > max_length:
        raise KluekitError(f"max_length {max_length} is too small for the row with id {row_id!r}: its entities and "
                           f"their markers do not fit even cut to one character each")
    while low < high:  # the longest cut that fits
        middle = (low + high + 1) // 2
        if len(encode(middle)["input_ids"]) <= max_length:
            low = middle
        else:
            high = middle - 1
    encoded = encode(low)
    return {key: encoded[key] for key in encoded.keys()}


def _piece_ids(tokenizer, text: str) -> set[int]:
    """Ids of the vocabulary pieces that are ``text`` with or without a word-boundary mark (▁, Ġ, ##)."""
    return {i for piece, i in tokenizer.get_vocab().items()
            if piece == text or piece.lstrip("▁Ġ").removeprefix("##") == text}


def _opening_patterns(tokenizer, style: str) -> list[list[set[int]]]:
    """Token patterns that start the subject's and the object's opening marker."""
    if style not in ("marker", "typed"):
        raise KluekitError(f"entity pooling needs marked entities: entity style 'marker' or 'typed', not {style!r}")
    # "[E1]" and "[E2]"; typed: "@ * TYPE *" and "# ^ TYPE ^"
    texts = [["[E1]"], ["[E2]"]] if style == "marker" else [["@", "*"], ["#", "^"]]
    patterns = [[_piece_ids(tokenizer, text) for text in pattern] for pattern in texts]
    missing = [text for pattern, ids in zip(texts, patterns) for text, found in zip(pattern, ids) if not found]
    if missing:
        raise KluekitError(f"the tokenizer has no piece for {missing[0]!r} (it becomes unknown), so the {style} "
                           f"markers cannot be found: choose another --entity-style or --pooling cls")
    return patterns


def entity_positions(input_ids: list[list[int]], tokenizer, style: str) -> list[list[int]]:
    """``[subject, object]`` token index of each entity's opening marker in encoded rows (the first
    occurrence of the marker's pieces; encode_relations keeps every marker, also in windowed rows).
    A row where a marker cannot be found (it never should) points at the first token."""
    patterns = [[np.fromiter(allowed, dtype=np.int64) for allowed in pattern]
                for pattern in _opening_patterns(tokenizer, style)]
    positions, lost = [], 0
    for ids in input_ids:
        ids = np.asarray(ids)
        row = []
        for pattern in patterns:
            hit = np.ones(max(0, len(ids) - len(pattern) + 1), dtype=bool)
            for offset, allowed in enumerate(pattern):
                hit &= np.isin(ids[offset:len(ids) - len(pattern) + 1 + offset], allowed)
            found = np.flatnonzero(hit)
            row.append(int(found[0]) if len(found) else 0)
            lost += not len(found)
        positions.append(row)
    if lost:
        log.warning("%d entity marker(s) not found in the encoded rows: those rows read the first token instead", lost)
    return positions
