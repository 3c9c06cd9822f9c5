"""What the language-model tasks share (masked LM, causal LM, dialogue): documents in, held-out perplexity out.

Documents are the lines of a text file, a table's text column, or with ``--from-task`` the input texts of a
task's files (labels left out). A model is continued from ``--model`` or built from scratch from
``--model-config`` (a size preset or a config.json) and ``--tokenizer``. Every held-out block contributes the
summed loss of its predicted tokens and their count (``batch_outputs``), so perplexity is the exponential of
the mean loss over all held-out tokens, not a mean of per-block perplexities.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..config import opt
from ..errors import DataError, KluekitError
from .base import Task, TaskOptions

log = logging.getLogger("kluekit")
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert")  # position ids start after the padding index


@dataclass
class LMOptions(TaskOptions):
    from_task: str | None = opt(None, "read --train/--dev with this task's reader (sts, re, classify, ner, ...) and "
                                      "pre-train on their input text without the labels (TAPT on train + dev + test)")
    column: str | None = opt(None, "text column of CSV/TSV/JSON inputs (default: the only column, else sentence, "
                                   "else text); text files are one document a line")
    model_config: str | None = opt(None, "pre-train from scratch: a size preset or a config.json; needs --tokenizer. "
                                         "Presets: mlm small (BERT 4 layers x 256), base (12 x 768); clm small "
                                         "(GPT-2 6 x 512), base (12 x 768). Default: continue --model (--config is "
                                         "the file of options, as for every command)")
    tokenizer: str | None = opt(None, "tokenizer directory (default: --model's own)")


class LanguageModelTask(Task):
    """Base of the language-model tasks: held-out perplexity (lower is better). Subclasses give ``presets``
    (size name -> config class and fields), ``model_class``, ``encode``, ``collator``, ``forward`` and
    ``token_losses`` (with ``rows_of``: the block of each loss entry)."""

    primary_metric = "perplexity"
    greater_is_better = False
    Options = LMOptions
    verbs = ("pretrain",)
    fills_sample_submission = False
    presets: dict[str, tuple[str, dict]] = {}  # name -> (transformers config class name, its size fields)

    def __init__(self, options=None, labels=None):
        super().__init__(options, labels)
        if getattr(self.options, "from_task", None) is not None:
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

    def texts(self, examples):
        return examples["text"].tolist()

    def gold(self, examples):
        return np.zeros(len(examples))

    # ---- model ------------------------------------------------------------------------------------------
    def new_config(self, tokenizer):
        """The config of a model pre-trained from scratch: ``--model-config`` (a preset or a config.json) with
        the tokenizer's vocabulary size and special-token ids."""
        import transformers

        preset = self.presets.get(self.options.model_config)
        if preset:
            config = getattr(transformers, preset[0])(**preset[1])
        else:
            config = transformers.AutoConfig.from_pretrained(self.options.model_config)
        config.vocab_size, config.pad_token_id = len(tokenizer), tokenizer.pad_token_id
        for role in ("bos_token_id", "eos_token_id"):
            if getattr(tokenizer, role) is not None:
                setattr(config, role, getattr(tokenizer, role))
        return config

    def build_model(self, name):
        from transformers import AutoTokenizer

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
                model = self.model_class().from_config(self.new_config(tokenizer))
            else:
                check_model_path(name)
                model = self.model_class().from_pretrained(name)
        except (OSError, ValueError) as error:
            raise KluekitError(f"--model: cannot load {source!r}: {first_line(error)}") from None
        self.check_tokenizer(tokenizer, source)
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            raise KluekitError(f"--tokenizer: {source} has {len(tokenizer)} pieces but the model's vocabulary has "
                               f"{model.get_input_embeddings().num_embeddings}: they do not belong together")
        return tokenizer, model

    def check_tokenizer(self, tokenizer, source: str) -> None:
        """KluekitError when the tokenizer lacks a token this kind of model needs."""

    def max_length(self, model, max_length):
        from ..modeling import max_positions

        config = model.config
        positions = max_positions(config)
        if positions is None:
            return max_length
        offset = (config.pad_token_id or 0) + 1 if config.model_type in OFFSET_POSITIONS else 0
        limit = positions - offset
        if max_length > limit:
            raise KluekitError(f"--max-length: blocks of {max_length} tokens are longer than the model's {limit} "
                               "positions")
        return max_length

    # ---- losses -----------------------------------------------------------------------------------------
    def token_losses(self, outputs, batch) -> torch.Tensor:
        """Cross-entropy of every predicted token (0 where the label is -100)."""
        raise NotImplementedError

    def token_labels(self, batch) -> torch.Tensor:
        """The labels ``token_losses`` scores, in the same flat order (-100: not predicted)."""
        raise NotImplementedError

    def rows_of(self, batch) -> torch.Tensor:
        """The block (batch row) of each entry of ``token_losses``."""
        raise NotImplementedError

    def loss(self, outputs, batch):
        counted = (self.token_labels(batch) != -100).sum().clamp(min=1)  # no host sync: CUDA graphs replay this
        return self.token_losses(outputs, batch).sum() / counted

    def batch_outputs(self, outputs, batch):
        """Per block: (summed loss of its predicted tokens, their count)."""
        rows, counted = self.rows_of(batch), (self.token_labels(batch) != -100).float()
        result = torch.zeros(len(batch["input_ids"]), 2, device=counted.device)
        result[:, 0].index_add_(0, rows, self.token_losses(outputs, batch).float())
        result[:, 1].index_add_(0, rows, counted)
        return result.detach().cpu().numpy()

    # ---- predictions ------------------------------------------------------------------------------------
    def outputs(self, raw, features=None):
        return np.asarray(raw, dtype=np.float64)

    def metrics(self, preds, gold):
        """Mean loss over every predicted token of the held-out blocks, and its exponential."""
        loss = float(preds[:, 0].sum() / max(preds[:, 1].sum(), 1.0))
        return {"perplexity": float(np.exp(min(loss, 50.0))), "loss": loss}

    def prediction_columns(self, preds):
        return {"loss": np.round(preds[:, 0] / np.maximum(preds[:, 1], 1.0), 6), "tokens": preds[:, 1].astype(int)}

    def write_predictions(self, preds, examples, path, sample_submission=None):
        raise KluekitError(f"a {self.name} run has no submission file: use it with 'kluekit fill-mask', "
                           "'kluekit generate' or 'kluekit chat', or fine-tune it with 'kluekit train <task> --model RUN'")

    def sample_inputs(self, tokenizer):
        raise KluekitError("--runtime onnx exports task models, not language models")
