"""Masked-language-model pre-training: continue a pretrained encoder on your text (TAPT/DAPT) or pre-train one
from scratch, on the training engine.

    kluekit pretrain mlm --model ../shared/models/e5-small-ko --from-task sts --train train.csv dev.csv test.csv \\
        --dev-split 0.05 --output-dir runs/tapt-sts
    kluekit pretrain mlm --model-config small --tokenizer runs/wordpiece --train corpus.txt --output-dir runs/bert-small

Documents (lines of a text file, a table's text column, or with ``--from-task`` the input texts of a task's
files, labels left out) are tokenized once and packed into blocks of ``--max-length`` tokens
(``[CLS] ... [SEP]``, documents separated by ``[SEP]``). Masks are drawn anew for every batch (dynamic
masking: ``--mlm-probability`` of the tokens, 80% replaced by the mask token, 10% by a random token, 10%
kept), optionally over whole words (eojeol: the pieces between spaces). Held-out blocks get one fixed set of
masks, so their perplexity is comparable between evaluations. The language-model head runs on the masked
positions only (the encoder's states at those positions), never on every token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import opt
from ..errors import KluekitError
from .lm import LanguageModelTask, LMOptions
from .masking import MaskingCollator, fixed_masks, pack_blocks

log = logging.getLogger("kluekit")


@dataclass
class MLMOptions(LMOptions):
    mlm_probability: float = opt(0.15, "share of the tokens masked (80%% mask token, 10%% random token, 10%% kept)",
                                 minimum=0.01)
    whole_word_mask: bool = opt(False, "mask every piece of a chosen word (the text between spaces) together")


class MLMTask(LanguageModelTask):
    """Masked-language-model pre-training: held-out perplexity (lower is better)."""

    name = "mlm"
    Options = MLMOptions
    presets = {"small": ("BertConfig", dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                                            intermediate_size=1024)),
               "base": ("BertConfig", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                           intermediate_size=3072))}

    def __init__(self, options=None, labels=None):
        super().__init__(options, labels)
        if self.options.mlm_probability >= 1:
            raise KluekitError(f"--mlm-probability: {self.options.mlm_probability} must be below 1")

    # ---- data -------------------------------------------------------------------------------------------
    def augment(self, examples):
        """Training documents: masked anew in every batch (held-out ones get fixed masks in ``encode``)."""
        examples = examples.copy()
        examples.attrs["dynamic_masks"] = True
        return examples

    def encode(self, examples, tokenizer, max_length):
        features = pack_blocks(tokenizer, examples["text"].tolist(), max_length)
        log.info("%d documents packed into %d blocks of up to %d tokens", len(examples), len(features["input_ids"]),
                 max_length)
        if not examples.attrs.get("dynamic_masks"):
            features.update(fixed_masks(features, tokenizer, self.options.mlm_probability,
                                        self.options.whole_word_mask))
        return features

    # ---- model ------------------------------------------------------------------------------------------
    def model_class(self):
        from transformers import AutoModelForMaskedLM

        return AutoModelForMaskedLM

    def check_tokenizer(self, tokenizer, source):
        if tokenizer.mask_token_id is None:
            raise KluekitError(f"--tokenizer: {source} has no mask token; masked-LM pre-training needs one")

    # ---- batches ----------------------------------------------------------------------------------------
    def collator(self, tokenizer, pad_to_multiple_of=None):
        return MaskingCollator(tokenizer, self.options.mlm_probability, self.options.whole_word_mask,
                               pad_to_multiple_of)

    def forward(self, model, batch):
        """The encoder on the whole batch, the language-model head on its masked positions only."""
        rows, cols = batch["mask_rows"], batch["mask_cols"]
        head = getattr(model, "cls", None) or getattr(model, "lm_head", None)
        if head is None:  # a masked-LM class of another layout: its own forward (vocabulary-sized for every token)
            return model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits[rows, cols]
        hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"))
        return head(hidden.last_hidden_state[rows, cols])

    def token_losses(self, outputs, batch) -> torch.Tensor:
        """Cross-entropy of every masked position (0 for the padding entries)."""
        return F.cross_entropy(outputs.float(), batch["mask_labels"], ignore_index=-100, reduction="none")

    def token_labels(self, batch):
        return batch["mask_labels"]

    def rows_of(self, batch):
        return batch["mask_rows"]
