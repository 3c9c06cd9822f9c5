"""Loading a bi-encoder and turning texts into unit-length float32 vectors (so cosine = dot product)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import KluekitError, first_line
from ..modeling import _looks_local, check_model_path

log = logging.getLogger("kluekit")


def st_modules():
    """sentence-transformers' Transformer and Pooling modules (their import path moved in 5.4)."""
    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers < 5.4
        from sentence_transformers.models import Pooling, Transformer
    return Transformer, Pooling


def load_biencoder(path: str, device: str | None = None):
    """A SentenceTransformer from ``path``: a sentence-transformers directory (``modules.json``) loads as
    saved; any other encoder (HF id or directory) is wrapped as Transformer + mean pooling.

    Raises KluekitError naming ``--model`` when the path is missing or does not hold a loadable model.
    The source is kept as ``model.kluekit_source`` so an index can record which model built it.
    """
    from sentence_transformers import SentenceTransformer

    path = str(path)
    check_model_path(path)
    local = _looks_local(path)
    try:
        if local and (Path(path).expanduser() / "modules.json").is_file():
            model = SentenceTransformer(str(Path(path).expanduser()), device=device, local_files_only=True)
        else:
            Transformer, Pooling = st_modules()
            encoder = Transformer(str(Path(path).expanduser()) if local else path)
            dim = getattr(encoder, "get_embedding_dimension", None) or encoder.get_word_embedding_dimension
            pooling = Pooling(dim(), "mean")
            model = SentenceTransformer(modules=[encoder, pooling], device=device)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise KluekitError(f"--model: cannot load {path!r} as a sentence encoder: {first_line(error)}") from None
    model.kluekit_source = str(Path(path).expanduser().resolve()) if local else path
    return model


def embedding_dim(model) -> int:
    """The size of the model's sentence embeddings (the method was renamed in sentence-transformers 6)."""
    method = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(method())


def encode(model, texts: list[str], batch_size: int = 64, progress: bool = False,
           prompt: str | None = None) -> np.ndarray:
    """Embed ``texts`` in length-sorted batches: float32 (n, dim), rows L2-normalised; [] gives (0, dim).

    ``prompt`` is prepended to every text (e5 models expect "query: ").
    """
    if len(texts) == 0:
        return np.zeros((0, embedding_dim(model)), dtype=np.float32)
    vectors = model.encode(list(texts), batch_size=batch_size, show_progress_bar=progress, convert_to_numpy=True,
                           normalize_embeddings=True, prompt=prompt)
    return np.ascontiguousarray(vectors, dtype=np.float32)
