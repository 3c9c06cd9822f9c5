"""Korean morpheme boundaries from kiwipiepy, and the morpheme-shaped WordPiece vocabulary of
``kluekit tokenizer train --morphemes``.

The analyser shapes the vocabulary only: the saved tokenizer is a plain BERT WordPiece that splits raw text
greedily, longest piece first, so it loads with ``AutoTokenizer.from_pretrained`` and runs without kiwipiepy
(as KLUE's own tokenizers do). The method:

1. kiwi splits every document into morphemes; their spans in the raw text (surface forms, not lemmas) give cut
   points. A cut is kept only inside a space-separated word and only where no morpheme span crosses it (kiwi
   splits merged syllables such as 했 = 하 + 었 into overlapping spans); the text between two cuts is one segment,
   so characters kiwi drops or merges stay covered and the segments are substrings of the raw text.
2. The words are the units the saved tokenizer sees (BertNormalizer + BertPreTokenizer: split at spaces *and*
   punctuation, one unit per CJK ideograph), not eojeol: a morpheme after "…" or "(" starts a word at use
   time, so it is marked word-initial here too.
3. The WordPiece trainer learns its pieces on the segments as words: no piece crosses a morpheme boundary.
4. Each segment's pieces are re-marked by position: a segment inside a word gets its first piece as "##" + piece.
   Pieces are counted in these marked forms over the corpus; the vocabulary is the specials, the alphabet in
   both forms, then the most frequent marked pieces (count >= --min-frequency) up to --vocab-size.
"""

from __future__ import annotations

import logging
import re
import time
from bisect import bisect_left, bisect_right
from collections import Counter

from .errors import KluekitError

log = logging.getLogger("kluekit")
INSTALL = "pip install 'kluekit[korean]'"
MAX_WORD_CHARS = 100  # BertTokenizerFast's max_input_chars_per_word


def require_kiwi():
    """The kiwipiepy module, or one clear KluekitError naming the extra to install."""
    try:
        import kiwipiepy
    except ImportError:
        raise KluekitError(f"--morphemes needs the Korean morphological analyser kiwipiepy: {INSTALL}") from None
    return kiwipiepy


def kiwi_version() -> str:
    """``"kiwipiepy <version>"``, recorded with the tokenizer."""
    return f"kiwipiepy {require_kiwi().__version__}"


def morpheme_cuts(texts: list[str], num_workers: int = -1) -> list[list[int]]:
    """For each text, the sorted character positions inside its eojeol where a morpheme starts (see step 1)."""
    from tqdm.auto import tqdm

    kiwi = require_kiwi().Kiwi(num_workers=num_workers)
    began = time.perf_counter()
    analysed = tqdm(kiwi.tokenize(texts), total=len(texts), desc="morphemes", unit="doc", mininterval=2,
                    disable=None)
    cuts = [cuts_of(text, tokens) for text, tokens in zip(texts, analysed)]
    log.info("kiwipiepy split %d documents into %d morpheme cuts in %.1f s", len(texts), sum(map(len, cuts)),
             time.perf_counter() - began)
    return cuts


def cuts_of(text: str, tokens) -> list[int]:
    """The start positions of kiwi's tokens that no token span crosses, inside a space-separated word."""
    starts, crossed = set(), set()
    for token in tokens:
        starts.add(token.start)
        crossed.update(range(token.start + 1, token.start + token.len))
    return sorted(p for p in starts - crossed if 0 < p < len(text) and not text[p].isspace()
                  and not text[p - 1].isspace())


def segments(texts: list[str], cuts: list[list[int]], pipeline) -> tuple[list[str], Counter]:
    """The documents with their words split at the morpheme cuts (segments joined by spaces, for the trainer)
    and the count of each (normalised segment, starts a word) over them. ``pipeline``: a ``tokenizers``
    Tokenizer with the saved tokenizer's normalizer and pre-tokenizer (and any model), for the word spans."""
    from tokenizers import Tokenizer, models

    words = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    words.normalizer, words.pre_tokenizer = pipeline.normalizer, pipeline.pre_tokenizer
    normal = {}

    def norm(part: str) -> str:
        if part not in normal:
            normal[part] = "".join((pipeline.normalizer.normalize_str(part) if pipeline.normalizer else part).split())
        return normal[part]

    split, counts = [], Counter()
    for text, text_cuts, encoding in zip(texts, cuts, words.encode_batch(texts, add_special_tokens=False)):
        out = []
        for start, end in encoding.offsets:
            inner = text_cuts[bisect_right(text_cuts, start):bisect_left(text_cuts, end)]
            edges = [start, *inner, end]
            whole = norm(text[start:end])
            parts = [p for p in (norm(text[a:b]) for a, b in zip(edges, edges[1:])) if p] if inner else [whole]
            if "".join(parts) != whole:  # the normaliser moved characters across a cut: keep the word whole
                parts = [whole]
            parts = [p for p in parts if p]
            for i, part in enumerate(parts):
                counts[part, i == 0] += 1
            out.extend(parts)
        split.append(" ".join(out))
    return split, counts


def morpheme_wordpiece(fit, pipeline, texts: list[str], cuts: list[list[int]], specials: list[str],
                       alphabet: list[str], prefix: str, vocab_size: int, min_frequency: int):
    """The morpheme-shaped ``tokenizers`` WordPiece model of ``texts`` (steps 2-4). ``fit(documents)`` trains
    the WordPiece trainer on the segmented documents and returns its ``tokenizers.Tokenizer``; ``pipeline`` has
    the normalizer and pre-tokenizer the saved tokenizer uses.

    The vocabulary can come out smaller than ``vocab_size``: it keeps only pieces that the segments use at least
    ``min_frequency`` times, not the trainer's merge intermediates (65k KLUE-STS sentences and YNAT titles hold
    38k distinct morpheme segments and fill about 25,400 pieces of 32,000)."""
    from tokenizers import models

    documents, counts = segments(texts, cuts, pipeline)
    log.info("training WordPiece on %d morpheme segments (%d distinct)", sum(counts.values()), len(counts))
    vocab = morpheme_vocab(fit(documents).model, counts, specials, alphabet, prefix, vocab_size, min_frequency)
    if len(vocab) < vocab_size:
        log.warning("the morpheme pieces used at least --min-frequency %d times fill %d of --vocab-size %d: the text "
                    "has no more", min_frequency, len(vocab), vocab_size)
    return models.WordPiece(vocab, unk_token=specials[1], continuing_subword_prefix=prefix,
                            max_input_chars_per_word=MAX_WORD_CHARS)


def morpheme_vocab(model, counts: Counter, specials: list[str], alphabet: list[str], prefix: str, vocab_size: int,
                   min_frequency: int) -> dict[str, int]:
    """Specials, the alphabet in both forms, then the most frequent pieces of the segments as re-marked by
    position (step 4; ties by piece), up to ``vocab_size``. ``model``: the WordPiece the trainer learned."""
    unk, pieces = specials[1], Counter()
    for (segment, initial), n in counts.items():
        found = [token.value for token in model.tokenize(segment)]
        if not found or unk in found:
            continue
        if not initial:
            found[0] = prefix + found[0]
        for piece in found:
            pieces[piece] += n
    vocab = dict.fromkeys([*specials, *alphabet, *(prefix + c for c in alphabet)])
    for piece in sorted(pieces, key=lambda p: (-pieces[p], p)):
        if len(vocab) >= vocab_size or pieces[piece] < min_frequency:
            break
        vocab.setdefault(piece)
    return {piece: i for i, piece in enumerate(vocab)}


def aligned_share(tokenizer, texts: list[str], cuts: list[list[int]]) -> float | None:
    """The share of eojeol with at least one inner morpheme cut whose pieces have a boundary at every cut
    ("morpheme-aligned words"); None when no eojeol has a cut."""
    offsets = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    total = aligned = 0
    for text, text_cuts, spans in zip(texts, cuts, offsets):
        if not text_cuts:
            continue
        edges = {a for a, _ in spans} | {b for _, b in spans}
        starts = [m.start() for m in re.finditer(r"\S+", text)]
        words: dict[int, bool] = {}
        for c in text_cuts:
            word = bisect_right(starts, c) - 1
            words[word] = words.get(word, True) and c in edges
        total += len(words)
        aligned += sum(words.values())
    return round(aligned / total, 4) if total else None
