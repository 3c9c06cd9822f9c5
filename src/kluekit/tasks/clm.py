"""Causal-language-model pre-training (GPT-2 style): from scratch or continued, on the training engine.

    kluekit tokenizer train --kind bpe --input corpus.txt --output-dir runs/bpe --vocab-size 32000
    kluekit pretrain clm --model-config small --tokenizer runs/bpe --train corpus.txt --dev-split 0.05 \\
        --output-dir runs/gpt2-small
    kluekit generate --model runs/gpt2-small --prompt "오늘 날씨가"

Every document is framed as ``<s> ... </s>`` (bos where the tokenizer has one, always eos), the documents are
joined into one stream and cut into blocks of ``--max-length`` tokens (``run_clm``'s ``group_texts``, except
that the last, shorter block is kept). Each token predicts the next; padding (only in a short last block)
predicts nothing. Held-out perplexity is over every predicted token of the held-out blocks.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import KluekitError
from .lm import LanguageModelTask

log = logging.getLogger("kluekit")


def frame_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """Each text's token ids between the tokenizer's bos (if it has one) and eos."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [([bos] if bos is not None else []) + row + [eos] for row in ids]


def pack_stream(documents: list[list[int]], max_length: int) -> dict[str, list]:
    """The framed documents joined and cut into blocks of ``max_length`` tokens (the last may be shorter)."""
    lengths = np.fromiter(map(len, documents), dtype=np.int64, count=len(documents))
    stream = np.fromiter(itertools.chain.from_iterable(documents), dtype=np.int64, count=int(lengths.sum()))
    blocks = [stream[i:i + max_length].tolist() for i in range(0, len(stream), max_length)]
    return {"input_ids": blocks, "attention_mask": [[1] * len(block) for block in blocks]}


class CausalCollator:
    """Pads blocks (right) with the pad token; ``labels`` are the items' own (dialogue: the answer only) or the
    input ids, -100 on padding."""

    def __init__(self, tokenizer, pad_to_multiple_of: int | None = None):
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.multiple = pad_to_multiple_of

    def pad(self, items: list[dict], key: str, value: int, length: int) -> torch.Tensor:
        out = np.full((len(items), length), value, dtype=np.int64)
        for row, item in zip(out, items):
            row[:len(item[key])] = item[key]
        return torch.from_numpy(out)

    def __call__(self, items: list[dict]) -> dict:
        length = max(len(item["input_ids"]) for item in items)
        if self.multiple:
            length = -(-length // self.multiple) * self.multiple
        ids, attention = self.pad(items, "input_ids", self.pad_id, length), self.pad(items, "attention_mask", 0, length)
        labels = self.pad(items, "labels", -100, length) if "labels" in items[0] else \
            torch.where(attention.bool(), ids, torch.full_like(ids, -100))
        return {"input_ids": ids, "attention_mask": attention, "labels": labels}


class CLMTask(LanguageModelTask):
    """Causal-language-model pre-training (GPT-2): held-out perplexity (lower is better)."""

    name = "clm"
    presets = {"small": ("GPT2Config", dict(n_layer=6, n_embd=512, n_head=8)),
               "base": ("GPT2Config", dict(n_layer=12, n_embd=768, n_head=12))}

    # ---- data -------------------------------------------------------------------------------------------
    def encode(self, examples, tokenizer, max_length):
        features = pack_stream(frame_ids(tokenizer, examples["text"].tolist()), max_length)
        log.info("%d documents packed into %d blocks of up to %d tokens", len(examples), len(features["input_ids"]),
                 max_length)
        return features

    # ---- model ------------------------------------------------------------------------------------------
    def model_class(self):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    def check_tokenizer(self, tokenizer, source):
        if tokenizer.eos_token_id is None:
            raise KluekitError(f"--tokenizer: {source} has no end token (eos, e.g. </s>); a causal language model "
                               "needs one to end documents and answers ('kluekit tokenizer train --kind bpe' has one)")

    # ---- batches ----------------------------------------------------------------------------------------
    def collator(self, tokenizer, pad_to_multiple_of=None):
        return CausalCollator(tokenizer, pad_to_multiple_of)

    def forward(self, model, batch):
        """Next-token logits of every position (the labels are not given to the model: the loss is the task's).

        No attention mask: batches are padded on the right, so under causal attention no real token sees
        padding, and padding predicts nothing (label -100). Without a mask SDPA takes its causal flash kernel;
        with one (even of all ones) transformers builds a 4-D mask whenever the step is compiled or captured
        in a CUDA graph, and attention falls back to a slower kernel."""
        return model(input_ids=batch["input_ids"]).logits

    def token_labels(self, batch):
        """Each position's next token: the labels shifted left, -100 at the last position."""
        return F.pad(batch["labels"][:, 1:], (0, 1), value=-100).reshape(-1)

    def token_losses(self, outputs, batch) -> torch.Tensor:
        """Cross-entropy of each position's next token (0 where it is padding or not predicted)."""
        return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]).float(), self.token_labels(batch),
                               ignore_index=-100, reduction="none")

    def rows_of(self, batch):
        rows, length = batch["labels"].shape
        return torch.arange(rows, device=batch["labels"].device).repeat_interleave(length)
