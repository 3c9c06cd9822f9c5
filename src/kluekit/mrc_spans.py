"""Windows over long contexts and answer spans back in characters, for extractive question answering.

``encode_windows`` encodes ``question [SEP] context`` with the fast tokenizer's own windowing
(``return_overflowing_tokens`` with ``stride`` tokens of overlap, ``return_offsets_mapping``,
``sequence_ids``): a context longer than ``max_length`` becomes several windows, each holding the whole
question. A window's training label is the (start, end) token of the first gold answer when the answer lies
wholly inside it, else its ``[CLS]`` token ("no answer here"), as transformers' ``run_qa.py`` does.

``char_scores`` turns each window's start/end logits into one array per question over the characters of
its context: a character's start score is the best start logit, over all windows, of a context token that
starts there, its end score the best end logit of a token that ends there, plus a token-start marker and
the question's null score (the lowest ``[CLS]`` start + end over its windows). These arrays are what
k-fold and ensembles average. ``best_spans`` picks per question the best valid span from the ``n_best``
starts and ends (start <= end, at most ``max_answer_length`` tokens), and the null answer where allowed and
its score beats the best span's by more than ``null_threshold``.
"""

from __future__ import annotations

import logging

import numpy as np

from .batching import ragged
from .errors import KluekitError

log = logging.getLogger("kluekit")
NEG = -1e4  # the score of a character no token starts or ends at (finite: ensembles multiply by weights)


def resolve_stride(doc_stride: int, max_length: int) -> int:
    """``--doc-stride`` (0: a third of ``max_length``, transformers' 128 of 384)."""
    return doc_stride or max_length // 3


def cut_questions(questions: list[str], tokenizer, max_tokens: int) -> tuple[list[str], int]:
    """Questions cut after their first ``max_tokens`` tokens (KLUE-baseline's max_query_length), and the
    number cut."""
    encoded = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    out, cut = [], 0
    for text, offsets in zip(questions, encoded["offset_mapping"]):
        if len(offsets) > max_tokens:
            text, cut = text[:offsets[max_tokens - 1][1]], cut + 1
        out.append(text)
    return out, cut


def encode_windows(questions: list[str], contexts: list[str], tokenizer, max_length: int, doc_stride: int,
                   max_question_tokens: int) -> dict[str, list]:
    """Model inputs of every window, with ``_example`` (the question each came from), ``_offsets`` ((T, 2)
    character offsets into the context; -1 for question and special tokens) and ``_cls`` (the null position)."""
    if not tokenizer.is_fast:
        raise KluekitError("mrc needs a fast tokenizer (character offsets); this model has a slow one")
    questions, cut = cut_questions([q.lstrip() for q in questions], tokenizer, max_question_tokens)
    if cut:
        log.warning("%d of %d questions are longer than --max-question-length %d tokens and were cut",
                    cut, len(questions), max_question_tokens)
    longest = max((len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]), default=0)
    room = max_length - longest - tokenizer.num_special_tokens_to_add(pair=True)
    if room <= doc_stride:
        raise KluekitError(f"--doc-stride {doc_stride} must be smaller than the context tokens a window holds "
                           f"(--max-length {max_length} less the longest question's {longest} tokens and the special "
                           f"tokens: {room}); lower --doc-stride or --max-question-length, or raise --max-length")
    encoded = tokenizer(questions, contexts, truncation="only_second", max_length=max_length, stride=doc_stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True)
    offsets, cls = [], []
    for w, spans in enumerate(encoded["offset_mapping"]):
        spans = np.asarray(spans, dtype=np.int32).reshape(-1, 2)
        context = np.array([s == 1 for s in encoded.sequence_ids(w)])
        spans[~context] = -1
        offsets.append(spans)
        ids = encoded["input_ids"][w]
        cls.append(ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0)
    features = {k: v for k, v in encoded.items() if k not in ("offset_mapping", "overflow_to_sample_mapping")}
    features.update(_example=list(encoded["overflow_to_sample_mapping"]), _offsets=offsets, _cls=cls)
    return features


def window_labels(offsets, cls: list[int], example: list[int], starts: list[int | None], ends: list[int | None]) \
        -> list[list[int]]:
    """Per window, ``[start token, end token]`` of its question's answer (characters ``starts[q]`` to
    ``ends[q]``, end exclusive; None: no answer), or ``[cls, cls]`` where the answer is not wholly inside."""
    labels = []
    for spans, null, q in zip(offsets, cls, example):
        start, end = starts[q], ends[q]
        inside = spans[:, 0] >= 0
        if start is None or not inside.any() or spans[inside, 0].min() > start or spans[inside, 1].max() < end:
            labels.append([null, null])
            continue
        first = np.flatnonzero(inside & (spans[:, 0] <= start))[-1]
        last = np.flatnonzero(inside & (spans[:, 1] >= end))[0]
        labels.append([int(first), int(last)] if first <= last else [null, null])
    return labels


def char_scores(raw, features: dict, n_chars: list[int]) -> np.ndarray:
    """Per question a float32 (characters + 1, 3) array: columns start score, end score, token-start marker;
    the last row holds the null score in its first column (see the module docstring)."""
    scores = [np.zeros((n + 1, 3), np.float32) for n in n_chars]
    for s in scores:
        s[:-1, :2] = NEG
        s[-1, 0] = np.inf
    for logits, spans, null, q in zip(raw, features["_offsets"], features["_cls"], features["_example"]):
        out, n = scores[q], n_chars[q]
        logits = np.asarray(logits, np.float32)[:len(spans)]
        real = (spans[:, 0] >= 0) & (spans[:, 1] > spans[:, 0]) & (spans[:, 1] <= n)
        first, last = spans[real, 0], spans[real, 1] - 1
        np.maximum.at(out[:, 0], first, logits[real, 0])
        np.maximum.at(out[:, 1], last, logits[real, 1])
        out[first, 2] = 1.0
        out[-1, 0] = min(out[-1, 0], logits[null, 0] + logits[null, 1])
    for s in scores:
        if not np.isfinite(s[-1, 0]):
            s[-1, 0] = 0.0
    return ragged(scores)


def best_spans(preds, n_best: int = 20, max_answer_length: int = 30, allow_null: bool = False,
               null_threshold: float = 0.0) -> dict[str, np.ndarray]:
    """Per question: ``start``/``end`` characters of the best span (end exclusive; -1/-1 for the null
    answer), its ``score`` (start + end) and ``prob`` (softmax over the candidate spans and null)."""
    n = len(preds)
    out = {"start": np.full(n, -1, np.int64), "end": np.full(n, -1, np.int64),
           "score": np.zeros(n), "prob": np.zeros(n)}
    for i, array in enumerate(preds):
        array = np.asarray(array, np.float64)
        start, end, marks, null = array[:-1, 0], array[:-1, 1], array[:-1, 2], array[-1, 0]
        k = min(n_best, len(start))
        tops = [np.argpartition(-v, k - 1)[:k] if k else np.zeros(0, int) for v in (start, end)]
        s, e = (t[v[t] > NEG / 2] for t, v in zip(tops, (start, end)))
        tokens = np.concatenate([[0.0], np.cumsum(marks)])
        length = tokens[e[None, :] + 1] - tokens[s[:, None]]
        total = start[s][:, None] + end[e][None, :]
        valid = (e[None, :] >= s[:, None]) & (length <= max_answer_length) & (length >= 0.5)
        candidates = total[valid]
        options = np.concatenate([candidates, [null]]) if allow_null else candidates
        if candidates.size:
            best = int(np.argmax(np.where(valid, total, -np.inf)))
            a, b = s[best // len(e)], e[best % len(e)]
            out["start"][i], out["end"][i], out["score"][i] = a, b + 1, total.flat[best]
        if not candidates.size or (allow_null and null - out["score"][i] > null_threshold):
            out["start"][i] = out["end"][i] = -1
            out["score"][i] = null
        if options.size:
            weights = np.exp(options - options.max())
            out["prob"][i] = float(np.exp(out["score"][i] - options.max()) / weights.sum())
    return out


def span_texts(contexts, starts, ends) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The answer texts ``context[start:end]`` with surrounding whitespace moved out of the span (and the
    moved offsets); ``""`` for the null answer."""
    texts, starts, ends = [], np.array(starts).copy(), np.array(ends).copy()
    for i, context in enumerate(contexts):
        if starts[i] < 0:
            texts.append("")
            continue
        piece = context[starts[i]:ends[i]]
        starts[i] += len(piece) - len(piece.lstrip())
        ends[i] -= len(piece) - len(piece.rstrip())
        texts.append(context[starts[i]:ends[i]])
    return texts, starts, ends
