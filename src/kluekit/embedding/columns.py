"""Bi-encoder batches: each text column tokenized on its own (``a_input_ids``, ``b_input_ids``, ...), padded
on its own, and embedded by the same sentence-transformers model, so the training engine sees one batch dict."""

from __future__ import annotations

import torch

PREFIXES = ("a_", "b_", "c_", "d_")


def encode_columns(tokenizer, columns: list[list[str]], max_length: int) -> dict[str, list]:
    """Features of several text columns (one batched tokenizer call each), keys prefixed ``a_``, ``b_``, ..."""
    features = {}
    for prefix, texts in zip(PREFIXES, columns):
        encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
        features.update({prefix + name: values for name, values in encoded.items()})
    return features


def column_prefixes(keys) -> list[str]:
    return [prefix for prefix in PREFIXES if prefix + "input_ids" in keys]


class ColumnCollator:
    """Pads each column of a batch of ``encode_columns`` items to its own longest text; labels become a tensor."""

    def __init__(self, tokenizer, pad_to_multiple_of: int | None = None):
        from ..batching import PadCollator

        self.pad = PadCollator(tokenizer, pad_to_multiple_of)

    def __call__(self, items: list[dict]) -> dict:
        batch = {}
        for prefix in column_prefixes(items[0]):
            rows = [{k[len(prefix):]: v for k, v in item.items() if k.startswith(prefix)} for item in items]
            padded = self.pad(rows)
            batch.update({prefix + name: tensor for name, tensor in padded.items()})
        if "labels" in items[0]:
            batch["labels"] = torch.tensor([item["labels"] for item in items], dtype=torch.float32)
        return batch


def embed_columns(model, batch: dict) -> list[torch.Tensor]:
    """The sentence embedding of every column of a batch, in column order."""
    return [model({k[len(prefix):]: v for k, v in batch.items() if k.startswith(prefix)})["sentence_embedding"]
            for prefix in column_prefixes(batch)]
