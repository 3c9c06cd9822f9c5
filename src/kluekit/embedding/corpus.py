"""A corpus file (one sentence per row) read into texts, and turned into an index that is built once and reused.

Formats, by file name: ``.csv`` and ``.tsv`` (with a header; the text column is ``--column``, else the only
column, else ``sentence``, else ``text``: ``data.tables.text_column``), ``.json``/``.jsonl`` (records; same
column rule), anything else (``.txt``) one sentence per line; decoded as ``data.io.read_text`` does (UTF-8
with or without BOM, or CP949). Blank lines of a text file and blank rows of a table are skipped; an empty
text cell in a row that has other cells is an error. Row ids in search results count the kept texts from 0,
in file order.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ..data.io import file_sha256
from ..data.text import read_corpus, read_corpus_column  # noqa: F401  (read_corpus: imported from here too)
from ..errors import KluekitError
from .encoding import embedding_dim, encode, load_biencoder
from .index import EmbeddingIndex, read_meta

log = logging.getLogger("kluekit")


def model_source(model) -> str | None:
    """Where a loaded model came from (set by ``load_biencoder``; else the encoder's own record), or None."""
    source = getattr(model, "kluekit_source", None)
    if source is None:
        try:
            source = model[0].auto_model.config.name_or_path or None
        except (AttributeError, IndexError, TypeError, KeyError):
            return None
        source = str(Path(source).resolve()) if source and Path(source).is_dir() else source
    return source


def model_fingerprint(source: str) -> str:
    """A cheap fingerprint of a local model's weights (names, sizes, times), so a retrained model is not reused."""
    root = Path(source)
    if not root.is_dir():
        return source
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in (".safetensors", ".bin", ".pt", ".json") and "logs" not in path.parts:
            stat = path.stat()
            digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def build_index(model, corpus_path, column: str | None = None, kind: str = "exact", index_dir=None,
                batch_size: int = 64, progress: bool = True) -> EmbeddingIndex:
    """Embed a corpus into an index (saved in ``index_dir`` if given) or reuse the one already there.

    ``model`` is a model path (loaded only if the corpus must be encoded) or a model from ``load_biencoder``.
    An index in ``index_dir`` is reused when it was built from the same corpus bytes (sha256), column and
    model; if only the kind differs, its embeddings are reused and just the search structure is rebuilt.
    """
    if kind not in EmbeddingIndex.KINDS:
        raise KluekitError(f"--index: {kind!r} is not one of {', '.join(EmbeddingIndex.KINDS)}")
    texts, column = read_corpus_column(corpus_path, column)
    source = model if isinstance(model, str) else model_source(model)
    key = {"model": source, "model_fingerprint": model_fingerprint(source) if source else None,
           "corpus_sha256": file_sha256(corpus_path), "column": column}
    runtime = getattr(model, "kluekit_runtime", "torch")
    key["runtime"] = None if runtime == "torch" else runtime  # ONNX-built indexes apart (None: as before)
    old = reusable(index_dir, key) if source else None
    if old is not None and old.kind == kind:
        log.info("reusing the index in %s (%d texts, built from the same corpus, column and model)", index_dir, len(old))
        old.reused = True
        return old
    if old is not None:
        log.info("reusing the embeddings in %s; building the %s search structure", index_dir, kind)
        embeddings, seconds = np.array(old.embeddings), old.meta.get("encode_seconds", 0.0)
    else:
        if isinstance(model, str):
            model = load_biencoder(model)
        started = time.perf_counter()
        embeddings = encode(model, texts, batch_size=batch_size, progress=progress)
        seconds = time.perf_counter() - started
        log.info("encoded %d texts in %.1fs (%d dimensions)", len(texts), seconds, embedding_dim(model))
    meta = {**key, "corpus": str(Path(corpus_path).resolve()), "kluekit_version": __version__, "encode_seconds": round(seconds, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    index = EmbeddingIndex(embeddings, texts, kind, meta)
    if index_dir is not None:
        index.save(index_dir)
        log.info("index written to %s", index_dir)
    return index


def reusable(index_dir, key: dict) -> EmbeddingIndex | None:
    """The index in ``index_dir`` if it was built with ``key`` (and loads cleanly), else None."""
    if index_dir is None or not (Path(index_dir) / "index.json").is_file():
        return None
    try:
        meta = read_meta(index_dir)
        if any(meta.get(name) != value for name, value in key.items()):
            return None
        return EmbeddingIndex.load(index_dir)
    except KluekitError as error:
        log.warning("not reusing %s: %s", index_dir, error)
        return None
