"""Masked-LM data: documents packed into fixed-length blocks, and masks drawn over tokens or whole words.

``pack_blocks`` tokenizes every document once (one batched call), joins them with the separator token between and cuts
the stream into blocks of ``max_length`` (``[CLS] ... [SEP]``); each token records whether it starts a word
(the text before it is a space: Korean eojeol boundaries). ``mask_tokens`` picks ``probability`` of the
tokens (or of the words) that are not special, and replaces 80% of them with the mask token, 10% with a
random token and keeps 10%, as BERT did; ``MaskingCollator`` does it anew for every training batch.

A batch carries its masked positions as three flat tensors (``mask_rows``, ``mask_cols``, ``mask_labels``), so
the language-model head runs on those positions only. For training they are padded to a fixed ``capacity`` of
the batch's shape (the mean count plus 8 standard deviations), so every full batch has the same shapes: CUDA
graphs can replay the step and nothing waits for the GPU to count the masks. Padding entries point at (0, 0)
with label -100 (ignored); a batch that drew more masks than its capacity (beyond 8 standard deviations) loses
the labels of the last ones.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import KluekitError


def pack_blocks(tokenizer, texts: list[str], max_length: int) -> dict[str, list]:
    """Blocks of at most ``max_length`` tokens over all documents, with ``word_starts`` flags."""
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls is None or sep is None:
        raise KluekitError("the tokenizer has no [CLS]/[SEP] (or <s>/</s>) tokens to frame blocks with")
    if not tokenizer.is_fast:
        raise KluekitError("masked-LM packing needs a fast tokenizer (character offsets for word boundaries)")
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    starts = np.concatenate([word_starts(spans) for spans in offsets]) if len(flat) else np.zeros(0, bool)
    ends = np.cumsum(lengths)
    stream = np.insert(flat, ends[:-1], sep)  # a separator between documents
    flags = np.insert(starts, ends[:-1], True)
    content = max_length - 2
    if content < 1:
        raise KluekitError(f"--max-length: {max_length} leaves no room between [CLS] and [SEP]")
    cuts = range(0, len(stream), content)
    blocks = [[cls, *stream[i:i + content].tolist(), sep] for i in cuts]
    return {"input_ids": blocks, "attention_mask": [[1] * len(block) for block in blocks],
            "word_starts": [[1, *flags[i:i + content].astype(int).tolist(), 1] for i in cuts]}


def word_starts(spans) -> np.ndarray:
    """For one document's token offsets: True where a token starts a word (the first token, or a gap before it)."""
    spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    flags = np.ones(len(spans), dtype=bool)
    flags[1:] = spans[1:, 0] > spans[:-1, 1]
    return flags


def mask_tokens(input_ids: torch.Tensor, word_start: torch.Tensor, special: torch.Tensor, mask_id: int, vocab: int,
                probability: float, whole_word: bool, generator: torch.Generator | None = None):
    """(masked input ids, labels with -100 where nothing is predicted) for a padded batch."""
    rows, length = input_ids.shape
    if whole_word:
        word = torch.cumsum(word_start.long(), dim=1)  # the word index of every token, from 1
        chosen = torch.rand(rows, length + 1, generator=generator) < probability
        masked = chosen.gather(1, word)
    else:
        masked = torch.rand(rows, length, generator=generator) < probability
    masked &= ~special
    labels = torch.where(masked, input_ids, torch.full_like(input_ids, -100))
    draw = torch.rand(rows, length, generator=generator)
    random_ids = torch.randint(vocab, (rows, length), generator=generator)
    ids = torch.where(masked & (draw < 0.8), torch.full_like(input_ids, mask_id), input_ids)
    ids = torch.where(masked & (draw >= 0.8) & (draw < 0.9), random_ids, ids)
    return ids, labels


def capacity(tokens: int, probability: float, whole_word: bool) -> int:
    """Masked positions kept for a batch of ``tokens`` token slots: mean + 8 standard deviations (x3 for whole
    words, whose counts spread more), rounded up to a multiple of 64, at most ``tokens``."""
    spread = 8 * math.sqrt(tokens * probability * (1 - probability)) * (3 if whole_word else 1)
    return min(tokens, -(-math.ceil(tokens * probability + spread) // 64) * 64)


def masked_positions(labels: torch.Tensor, size: int | None = None) -> dict[str, torch.Tensor]:
    """Rows, columns and labels of the positions of ``labels`` that are not -100, padded (or cut) to ``size``."""
    rows, cols = (labels != -100).nonzero(as_tuple=True)
    targets = labels[rows, cols]
    if size is not None:
        extra = size - len(rows)
        rows, cols, targets = (F.pad(t[:size], (0, max(extra, 0)), value=v)
                               for t, v in ((rows, 0), (cols, 0), (targets, -100)))
    return {"mask_rows": rows, "mask_cols": cols, "mask_labels": targets}


class MaskingCollator:
    """Pads a batch of blocks; masks it dynamically (the torch generator: exact on resume), or keeps the fixed
    masks and labels that held-out blocks carry."""

    def __init__(self, tokenizer, probability: float, whole_word: bool, pad_to_multiple_of: int | None = None):
        self.tokenizer, self.probability, self.whole_word = tokenizer, probability, whole_word
        self.multiple = pad_to_multiple_of
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)))

    def pad(self, items: list[dict], key: str, value: int) -> torch.Tensor:
        length = max(len(item[key]) for item in items)
        if self.multiple:
            length = -(-length // self.multiple) * self.multiple
        return torch.tensor([item[key] + [value] * (length - len(item[key])) for item in items])

    def __call__(self, items: list[dict]) -> dict:
        pad = self.tokenizer.pad_token_id or 0
        ids, attention = self.pad(items, "input_ids", pad), self.pad(items, "attention_mask", 0)
        if "labels" in items[0]:  # held-out blocks: their fixed masks, every position counted
            return {"input_ids": ids, "attention_mask": attention, **masked_positions(self.pad(items, "labels", -100))}
        special = torch.isin(ids, self.special) | (attention == 0)
        ids, labels = mask_tokens(ids, self.pad(items, "word_starts", 1), special, self.tokenizer.mask_token_id,
                                  len(self.tokenizer), self.probability, self.whole_word)
        size = capacity(ids.numel(), self.probability, self.whole_word)
        return {"input_ids": ids, "attention_mask": attention, **masked_positions(labels, size)}


def fixed_masks(features: dict[str, list], tokenizer, probability: float, whole_word: bool, seed: int = 0) -> dict:
    """One set of masks for held-out blocks (the same in every evaluation): masked ``input_ids`` and ``labels``."""
    collator = MaskingCollator(tokenizer, probability, whole_word)
    items = [dict(zip(features, values)) for values in zip(*features.values())]
    if not items:
        return {"labels": []}
    ids, attention = collator.pad(items, "input_ids", tokenizer.pad_token_id or 0), collator.pad(items, "attention_mask", 0)
    special = torch.isin(ids, collator.special) | (attention == 0)
    generator = torch.Generator().manual_seed(seed)
    masked, labels = mask_tokens(ids, collator.pad(items, "word_starts", 1), special, tokenizer.mask_token_id,
                                 len(tokenizer), probability, whole_word, generator)
    empty = ((labels != -100).sum(dim=1) == 0) & (~special).any(dim=1)  # a short block that drew no mask
    if empty.any():  # gets its first token masked, so that every held-out block counts
        rows = empty.nonzero()[:, 0]
        first = (~special[rows]).float().argmax(dim=1)
        labels[rows, first] = ids[rows, first]
        masked[rows, first] = tokenizer.mask_token_id
    lengths = [len(block) for block in features["input_ids"]]
    return {"input_ids": [row[:n] for row, n in zip(masked.tolist(), lengths)],
            "labels": [row[:n] for row, n in zip(labels.tolist(), lengths)]}
