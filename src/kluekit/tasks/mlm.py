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

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..config import opt
from ..errors import DataError, KluekitError
from .base import Task, TaskOptions
from .masking import MaskingCollator, fixed_masks, pack_blocks

log = logging.getLogger("kluekit")
PRESETS = {"small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
           "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)}
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert")  # position ids start after the padding index


@dataclass
class MLMOptions(TaskOptions):
    from_task: str | None = opt(None, "read --train/--dev with this task's reader (sts, re, classify, ner, ...) and "
                                      "pre-train on their input text without the labels (TAPT on train + dev + test)")
    column: str | None = opt(None, "text column of CSV/TSV/JSON inputs (default: the only column, else sentence, "
                                   "else text); text files are one document a line")
    model_config: str | None = opt(None, "pre-train from scratch: a size preset (small: 4 layers x 256, base: 12 x 768, "
                                         "BERT) or a config.json; needs --tokenizer. Default: continue --model "
                                         "(--config is the file of options, as for every command)")
    tokenizer: str | None = opt(None, "tokenizer directory (default: --model's own)")
    mlm_probability: float = opt(0.15, "share of the tokens masked (80%% mask token, 10%% random token, 10%% kept)",
                                 minimum=0.01)
    whole_word_mask: bool = opt(False, "mask every piece of a chosen word (the text between spaces) together")


class MLMTask(Task):
    """Masked-language-model pre-training: held-out perplexity (lower is better)."""

    name = "mlm"
    primary_metric = "perplexity"
    greater_is_better = False
    Options = MLMOptions
    verbs = ("pretrain",)
    fills_sample_submission = False

    def __init__(self, options=None, labels=None):
        super().__init__(options, labels)
        if self.options.mlm_probability >= 1:
            raise KluekitError(f"--mlm-probability: {self.options.mlm_probability} must be below 1")
        if self.options.from_task is not None:
            from . import get_task_class

            if self.options.from_task == self.name:
                raise KluekitError("--from-task: name the task whose files these are (sts, re, classify, ner, ...)")
            self.source = get_task_class(self.options.from_task)()

    # ---- data -------------------------------------------------------------------------------------------
    def read(self, path, fmt="auto", require_labels=True):
        if self.options.from_task is not None:
            texts = self.source.texts(self.source.read(path, fmt, require_labels=False))
        else:
            from ..data.text import read_corpus

            texts = read_corpus(path, self.options.column)
        texts = [text for text in texts if text.strip()]
        if not texts:
            raise DataError(path, 1, None, "no text to pre-train on")
        frame = pd.DataFrame({"text": texts, "_row": np.arange(1, len(texts) + 1)})
        frame.attrs["path"] = str(path)
        return frame

    def augment(self, examples):
        """Training documents: masked anew in every batch (held-out ones get fixed masks in ``encode``)."""
        examples = examples.copy()
        examples.attrs["dynamic_masks"] = True
        return examples

    def texts(self, examples):
        return examples["text"].tolist()

    def encode(self, examples, tokenizer, max_length):
        features = pack_blocks(tokenizer, examples["text"].tolist(), max_length)
        log.info("%d documents packed into %d blocks of up to %d tokens", len(examples), len(features["input_ids"]),
                 max_length)
        if not examples.attrs.get("dynamic_masks"):
            features.update(fixed_masks(features, tokenizer, self.options.mlm_probability,
                                        self.options.whole_word_mask))
        return features

    def gold(self, examples):
        return np.zeros(len(examples))

    # ---- model ------------------------------------------------------------------------------------------
    def model_class(self):
        from transformers import AutoModelForMaskedLM

        return AutoModelForMaskedLM

    def build_model(self, name):
        from transformers import AutoConfig, AutoTokenizer, BertConfig

        from ..errors import first_line
        from ..modeling import check_model_path

        source = self.options.tokenizer or (None if self.options.model_config else name)
        if source is None:
            raise KluekitError("--model-config trains from scratch: give the tokenizer with --tokenizer DIR "
                               "(e.g. one made by 'kluekit tokenizer train')")
        check_model_path(source)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
            if self.options.model_config:
                preset = PRESETS.get(self.options.model_config)
                config = BertConfig(**preset) if preset else AutoConfig.from_pretrained(self.options.model_config)
                config.vocab_size, config.pad_token_id = len(tokenizer), tokenizer.pad_token_id
                model = self.model_class().from_config(config)
            else:
                check_model_path(name)
                model = self.model_class().from_pretrained(name)
        except (OSError, ValueError) as error:
            raise KluekitError(f"--model: cannot load {source!r}: {first_line(error)}") from None
        if tokenizer.mask_token_id is None:
            raise KluekitError(f"--tokenizer: {source} has no mask token; masked-LM pre-training needs one")
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            raise KluekitError(f"--tokenizer: {source} has {len(tokenizer)} pieces but the model's vocabulary has "
                               f"{model.get_input_embeddings().num_embeddings}: they do not belong together")
        return tokenizer, model

    def max_length(self, model, max_length):
        config = model.config
        offset = (config.pad_token_id or 0) + 1 if config.model_type in OFFSET_POSITIONS else 0
        limit = config.max_position_embeddings - offset
        if max_length > limit:
            raise KluekitError(f"--max-length: blocks of {max_length} tokens are longer than the model's {limit} "
                               "positions")
        return max_length

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

    def token_losses(self, logits, batch) -> torch.Tensor:
        """Cross-entropy of every masked position (0 for the padding entries)."""
        return F.cross_entropy(logits.float(), batch["mask_labels"], ignore_index=-100, reduction="none")

    def loss(self, outputs, batch):
        counted = (batch["mask_labels"] != -100).sum().clamp(min=1)  # no host sync: CUDA graphs replay this
        return self.token_losses(outputs, batch).sum() / counted

    def batch_outputs(self, outputs, batch):
        """Per block: (summed loss of its masked tokens, their count)."""
        rows, counted = batch["mask_rows"], (batch["mask_labels"] != -100).float()
        result = torch.zeros(len(batch["input_ids"]), 2, device=outputs.device)
        result[:, 0].index_add_(0, rows, self.token_losses(outputs, batch))
        result[:, 1].index_add_(0, rows, counted)
        return result.detach().cpu().numpy()

    # ---- predictions ------------------------------------------------------------------------------------
    def outputs(self, raw, features=None):
        return np.asarray(raw, dtype=np.float64)

    def metrics(self, preds, gold):
        """Mean loss over every masked token of the held-out blocks, and its exponential."""
        loss = float(preds[:, 0].sum() / max(preds[:, 1].sum(), 1.0))
        return {"perplexity": float(np.exp(min(loss, 50.0))), "loss": loss}

    def write_predictions(self, preds, examples, path, sample_submission=None):
        raise KluekitError("a masked-LM run has no submission: use 'kluekit fill-mask', or fine-tune it with "
                           "'kluekit train <task> --model RUN'")

    def sample_inputs(self, tokenizer):
        raise KluekitError("--runtime onnx exports task models; fine-tune this masked-LM run first")
