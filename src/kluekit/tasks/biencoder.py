"""Bi-encoder: a siamese sentence encoder (shared encoder, mean pooling) whose cosine similarity scores a pair.

Each sentence is embedded on its own, so one sentence can be compared with thousands (``kluekit encode``,
``kluekit search``, ``kluekit serve``). Trained on STS pairs with CoSENT (or cosine MSE), optionally after an
NLI stage on (premise, entailment, contradiction) triplets (``--nli``); read, scored and written as STS (the
prediction is 5 x cosine). The run directory loads with ``SentenceTransformer(run_dir)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F

from ..config import opt
from ..errors import KluekitError
from .base import TaskOptions
from .sts import CHARS_PER_TOKEN, STSTask, swap_augment_option

LOSSES = ("cosent", "cosine")


@dataclass
class BiencoderOptions(TaskOptions):
    loss: str = opt("cosent", "cosent: rank pairs within a batch by cosine (default); "
                              "cosine: mean squared error of cosine vs label/5", choices=list(LOSSES))
    swap_augment: bool = swap_augment_option()
    prompt: str = opt("", "text put before every sentence in training and evaluation, saved as the model's "
                          "default prompt (e5 models were trained with 'query: ')")
    nli: list[str] = opt([], "NLI file(s) (KLUE-NLI JSON, KorNLI TSV, or CSV/TSV/JSON with premise, hypothesis, "
                             "gold_label): first train on (premise, entailment, contradiction) triplets with "
                             "MultipleNegativesRankingLoss, then on the STS pairs")
    nli_epochs: int = opt(1, "epochs of the NLI stage (with --nli)", minimum=1)
    nli_batch_size: int = opt(64, "triplets per NLI batch: every other hypothesis in the batch is a negative, "
                                  "so larger batches give more negatives", minimum=1)
    nli_learning_rate: float = opt(5e-5, "peak learning rate of the NLI stage (its own AdamW and warmup; "
                                         "--warmup and --weight-decay apply)", minimum=0)


class BiencoderTask(STSTask):
    """Bi-encoder (siamese, mean pooling, cosine) for similarity and search: Spearman x100 of 5 x cosine."""

    name = "biencoder"
    primary_metric = "spearman"
    Options = BiencoderOptions
    # not the cross-encoder's 3 epochs (those go with its --swap-augment default): random batches, 4 epochs
    train_defaults = {"group_by_length": False}

    def __init__(self, options=None, labels=None):
        super().__init__(options, labels)
        self._loss = None
        self._triplets = None

    def fit(self, train_examples):
        """Read the NLI files before any model is loaded (a bad one stops the run at once)."""
        from ..embedding.nli import read_triplets

        self._triplets = read_triplets(self.options.nli)

    def build_model(self, name):
        from ..embedding.encoding import load_biencoder
        from ..embedding.losses import make_loss

        model = load_biencoder(name)
        if self.options.prompt:
            set_default_prompt(model, self.options.prompt)
        self._loss = make_loss(model, self.options.loss)
        return model.tokenizer, model

    def max_length(self, model, max_length):
        model.max_seq_length = min(max_length, model.max_seq_length or max_length)  # not past the positions
        return model.max_seq_length

    def serve_spec(self, limits):
        """None: ``kluekit serve`` serves a bi-encoder with its own routes (/similarity, /search), not as a task model."""
        return None

    def load_model(self, run_dir, device):
        from ..embedding.encoding import load_biencoder

        model = load_biencoder(str(run_dir), device=str(device)).eval()
        return model.tokenizer, model

    def save_model(self, model, tokenizer, folder):
        model.save(str(folder), create_model_card=False)

    def stages(self, cfg, tokenizer, model, max_length):
        """The NLI stage, when ``--nli`` files are given."""
        from ..embedding.nli import nli_stage

        triplets, _ = self._triplets or ([], [])
        return [nli_stage(model, tokenizer, cfg, self.options, triplets, max_length)] if triplets else []

    def data_record(self) -> dict:
        """The NLI files used (path, hash, rows, triplets), for the run record."""
        records = (self._triplets or ([], []))[1]
        return {"nli": records, "nli_triplets": sum(r["triplets"] for r in records)} if records else {}

    def encode(self, examples, tokenizer, max_length):
        from ..embedding.columns import encode_columns

        from ..data.io import clip_text

        prompt, limit = self.options.prompt or "", max_length * CHARS_PER_TOKEN
        columns = [[prompt + text for text in clip_text(examples[name].tolist(), limit)] for name in ("sentence1", "sentence2")]
        features = encode_columns(tokenizer, columns, max_length)
        if examples["label"].notna().all():
            features["labels"] = (examples["label"].to_numpy(dtype=np.float32) / 5.0).tolist()
        return features

    def collator(self, tokenizer, pad_to_multiple_of=None):
        from ..embedding.columns import ColumnCollator

        return ColumnCollator(tokenizer, pad_to_multiple_of)

    def forward(self, model, batch):
        from ..embedding.columns import embed_columns

        return embed_columns(model, batch)

    def loss(self, outputs, batch):
        if self._loss is None:
            from ..embedding.losses import make_loss

            self._loss = make_loss(None, self.options.loss)
        return self._loss.compute_loss_from_embeddings(outputs, batch["labels"])

    def batch_outputs(self, outputs, batch):
        return F.cosine_similarity(outputs[0].float(), outputs[1].float(), dim=-1)[:, None].detach().cpu().numpy()

    def inference_features(self, examples, tokenizer, max_length):
        return self.encode(examples, tokenizer, max_length)  # the cosine is symmetric: one order is enough

    def init_head(self, model, train_examples):
        """No regression head to start at the labels' mean: the scores are cosines."""

    def outputs(self, raw, features=None):
        """5 x cosine similarity (not clipped: the correlations see the raw scores)."""
        return 5.0 * np.asarray(raw, dtype=np.float64).reshape(len(raw), -1)[:, 0]

    def write_predictions(self, preds, examples, path, sample_submission=None):
        super().write_predictions(np.clip(preds, 0.0, 5.0), examples, path, sample_submission)

    def sample_inputs(self, tokenizer):
        raise KluekitError("--runtime onnx for a bi-encoder run: 'kluekit serve --runtime onnx' and the "
                           "encode/search commands run it through ONNX Runtime; use --runtime torch here")


def set_default_prompt(model, prompt: str) -> None:
    """Make ``prompt`` the model's default prompt, saved with it, so ``model.encode`` always puts it first."""
    name = next((name for name, text in model.prompts.items() if text == prompt), "kluekit")
    model.prompts = {**model.prompts, name: prompt}
    model.default_prompt_name = name
