"""A bi-encoder through ONNX Runtime (``kluekit serve --runtime onnx`` / ``onnx-int8``).

The sentence-transformers model's transformer is exported once (its last hidden state) into
``<model>/onnx/encoder.onnx`` (``encoder.int8.onnx``); texts are prepared by the model's own preprocessing
(prompt, truncation) and pooled and normalised in numpy as its Pooling and Normalize modules say, so the
vectors equal ``encode``'s with torch (cosine within 1e-4 in fp32)::

    model = OnnxSentenceEncoder(load_biencoder("runs/biencoder", device="cpu"), "onnx-int8")
    vectors = encode(model, ["첫 문장", "둘째 문장"])   # the same call as for the torch model
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch

from ..errors import KluekitError
from ..onnxrun import OnnxModel, cached_onnx, check_runtime, export_onnx
from .encoding import embedding_dim

POOLINGS = ("mean", "cls", "max", "mean_sqrt_len_tokens")
LEGACY_POOLING = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                  "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                  "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}


def pooling_of(model) -> tuple[str, bool, bool]:
    """(pooling mode, whether a Normalize module follows, whether the pooling includes prompt tokens) of a
    Transformer + Pooling (+ Normalize) model; KluekitError for any other layout."""
    kinds = [type(module).__name__ for module in model]
    if kinds[:2] != ["Transformer", "Pooling"] or any(kind != "Normalize" for kind in kinds[2:]):
        raise KluekitError(f"--runtime onnx runs Transformer + Pooling (+ Normalize) bi-encoders; this one has "
                           f"{' + '.join(kinds)}: use --runtime torch")
    config = model[1].get_config_dict()
    modes = config.get("pooling_mode") or [mode for key, mode in LEGACY_POOLING.items() if config.get(key)]
    modes = [modes] if isinstance(modes, str) else list(modes)
    if len(modes) != 1 or modes[0] not in POOLINGS:
        raise KluekitError(f"--runtime onnx: pooling {'+'.join(modes)} is not supported (only one of "
                           f"{', '.join(POOLINGS)}): use --runtime torch")
    if getattr(model, "truncate_dim", None):
        raise KluekitError("--runtime onnx: a bi-encoder with truncate_dim is not supported: use --runtime torch")
    return modes[0], len(kinds) > 2, bool(config.get("include_prompt", True))


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """Sentence vectors from token states (batch, tokens, dim) and the attention mask, as ST's Pooling."""
    mask = mask[..., None].astype(hidden.dtype)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return np.where(mask > 0, hidden, -1e9).max(axis=1)
    total, count = (hidden * mask).sum(axis=1), np.maximum(mask.sum(axis=1), 1e-9)
    return total / (np.sqrt(count) if mode == "mean_sqrt_len_tokens" else count)


def normalize(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


class OnnxSentenceEncoder:
    """Stands in for a loaded SentenceTransformer wherever kluekit encodes (``encoding.encode``, the corpus
    index, the API): ``encode``, ``get_embedding_dimension`` and ``kluekit_source`` as that model has them.

    ``model`` is the SentenceTransformer (from ``load_biencoder``, on the CPU) of a local directory; its
    transformer's weights are dropped once the ONNX graph is loaded: only its preprocessing is kept.
    """

    def __init__(self, model, runtime: str):
        check_runtime(runtime)
        self.mode, self.normalize, self.include_prompt = pooling_of(model)
        source = getattr(model, "kluekit_source", None)
        if not source or not Path(source).is_dir():
            raise KluekitError(f"--runtime {runtime} needs the bi-encoder in a local directory (not {source!r})")
        self.kluekit_source, self.kluekit_runtime = source, runtime
        self.dim = embedding_dim(model)
        self.default_prompt = (model.prompts or {}).get(model.default_prompt_name) if model.default_prompt_name else None
        self.model = model
        path = cached_onnx(source, "encoder", runtime, self._export)
        self.session = OnnxModel(path, output="last_hidden_state")
        model.to("meta")  # frees the torch weights; preprocessing needs none

    def _features(self, texts: list[str], prompt: str | None) -> dict:
        if hasattr(self.model, "preprocess"):  # sentence-transformers >= 5.4
            features = self.model.preprocess(texts, prompt=prompt) if prompt else self.model.preprocess(texts)
        else:
            features = self.model.tokenize([prompt + text for text in texts] if prompt else texts)
        return {name: value for name, value in features.items() if isinstance(value, torch.Tensor)}

    def _export(self, path: Path) -> None:
        transformer = self.model[0]
        inner = transformer.model if isinstance(getattr(transformer, "model", None), torch.nn.Module) \
            else transformer.auto_model
        accepted = inspect.signature(inner.forward).parameters
        sample = self._features(["예시 문장입니다", "짧은 문장"], None)
        inputs = {name: value for name, value in sample.items() if name in accepted}
        export_onnx(inner, inputs, "last_hidden_state", path)

    def get_embedding_dimension(self) -> int:
        return self.dim

    def encode(self, texts: list[str], batch_size: int = 32, show_progress_bar: bool = False,
               convert_to_numpy: bool = True, normalize_embeddings: bool = False, prompt: str | None = None,
               **kwargs) -> np.ndarray:
        """float32 (n, dim) sentence vectors of ``texts``, batches of similar lengths (``prompt``: default as
        the model's ``default_prompt_name``)."""
        prompt = self.default_prompt if prompt is None else prompt
        if prompt and not self.include_prompt:
            raise KluekitError(f"--runtime {self.kluekit_runtime}: pooling without the prompt tokens "
                               "(include_prompt false) is not supported: use --runtime torch")
        order = np.argsort([-len(text) for text in texts], kind="stable")
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            features = self._features([texts[i] for i in rows], prompt)
            hidden = self.session.run({k: v for k, v in features.items() if k in self.session.input_names})
            pooled = pool(hidden, features["attention_mask"].numpy(), self.mode)
            vectors[rows] = normalize(pooled) if self.normalize or normalize_embeddings else pooled
        return vectors
