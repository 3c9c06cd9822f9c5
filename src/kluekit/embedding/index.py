"""Top-k cosine search over unit-length embeddings, exact or approximate, saved to and loaded from a directory.

An index directory holds ``index.json`` (meta: model, dim, count, kind, corpus and its sha256, column,
kluekit version), ``embeddings.npy`` (float32, memory-mapped on load), ``texts.json`` and, for the
``faiss`` kind, ``faiss.index`` (an HNSW graph over inner products; see docs/biencoder.md for why).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .. import __version__
from ..data.io import apply_umask, write_error
from ..errors import KluekitError

META = "index.json"
FORMAT = "kluekit-embedding-index"
HNSW_M = 32                # neighbours per node: recall vs memory (M * 8 bytes per vector)
HNSW_EF_CONSTRUCTION = 80  # build-time beam: better graph, slower build
HNSW_EF_SEARCH = 128       # query-time beam (raised to k when k is larger)
QUERY_CHUNK_FLOATS = 1 << 24  # exact search: at most this many scores in memory at once (64 MB)


class EmbeddingIndex:
    """Texts and their L2-normalised embeddings; ``search`` returns cosine scores (descending) and row ids.

    >>> index = EmbeddingIndex(np.eye(3, dtype=np.float32), ["a", "b", "c"])
    >>> index.search(np.eye(3, dtype=np.float32)[:1], k=2)[1].tolist()
    [[0, 1]]
    """

    KINDS = ("exact", "faiss")

    def __init__(self, embeddings: np.ndarray, texts: list[str], kind: str = "exact", meta: dict | None = None,
                 _faiss=None):
        if kind not in self.KINDS:
            raise KluekitError(f"--index: {kind!r} is not one of {', '.join(self.KINDS)}")
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(texts):
            raise KluekitError(f"index: {embeddings.shape} embeddings for {len(texts)} texts (need one row per text)")
        self.embeddings = embeddings if embeddings.dtype == np.float32 else embeddings.astype(np.float32)
        self.texts = list(texts)
        self.kind = kind
        self.meta = {**(meta or {}), "kind": kind, "dim": int(embeddings.shape[1]), "count": len(texts)}
        self._faiss = _faiss if kind == "faiss" and _faiss is not None else (
            build_hnsw(self.embeddings) if kind == "faiss" else None)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows for each query: (scores (m, k') float32, ids (m, k') int64), k' = min(k, len)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise KluekitError(f"query embeddings have {queries.shape[1]} dimensions, the index {self.dim}: "
                               "search with the model that built the index")
        k = min(int(k), len(self))
        if k <= 0 or len(queries) == 0:
            return np.zeros((len(queries), max(k, 0)), np.float32), np.zeros((len(queries), max(k, 0)), np.int64)
        if self.kind == "faiss":
            self._faiss.hnsw.efSearch = max(HNSW_EF_SEARCH, k)
            scores, ids = self._faiss.search(queries, k)
            return scores.astype(np.float32), ids.astype(np.int64)
        return exact_search(self.embeddings, queries, k)

    def save(self, directory) -> None:
        """Write the index into ``directory`` atomically: a reader sees the old index or the whole new one.

        Refuses to replace a non-empty directory that is not an index.
        """
        directory = Path(directory)
        if directory.is_file() or (directory.is_dir() and any(directory.iterdir())
                                   and not (directory / META).is_file()):
            raise KluekitError(f"--index-dir: {directory} exists and is not a kluekit index; choose another directory")
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
        try:
            np.save(tmp / "embeddings.npy", self.embeddings)
            (tmp / "texts.json").write_text(json.dumps(self.texts, ensure_ascii=False), encoding="utf-8")
            if self._faiss is not None:
                import faiss

                faiss.write_index(self._faiss, str(tmp / "faiss.index"))
            meta = {"format": FORMAT, "kluekit_version": __version__, **self.meta}
            (tmp / META).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            apply_umask(tmp)  # mkdtemp made it private
            old = None
            if directory.exists():
                old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
                os.replace(directory, old)
            os.replace(tmp, directory)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except OSError as error:
            raise write_error(directory, error) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def load(cls, directory) -> "EmbeddingIndex":
        """Read an index saved by ``save``; KluekitError if the directory is missing, not an index or corrupt."""
        directory = Path(directory)
        meta = read_meta(directory)
        try:
            embeddings = np.load(directory / "embeddings.npy", mmap_mode="r")
            texts = json.loads((directory / "texts.json").read_text(encoding="utf-8"))
            index = None
            if meta.get("kind") == "faiss":
                import faiss

                index = faiss.read_index(str(directory / "faiss.index"))
        except (OSError, ValueError, RuntimeError) as error:
            raise KluekitError(f"--index-dir: {directory} is a damaged index ({type(error).__name__}: "
                               f"{str(error).splitlines()[0] if str(error) else ''}); rebuild it with 'kluekit encode'") from None
        if not isinstance(texts, list) or len(texts) != meta.get("count") or embeddings.shape != (meta["count"], meta.get("dim")) \
                or (index is not None and index.ntotal != meta["count"]):
            raise KluekitError(f"--index-dir: {directory} is a damaged index (its files disagree on the number of rows); "
                               "rebuild it with 'kluekit encode'")
        return cls(embeddings, texts, meta.get("kind", "exact"), meta, _faiss=index)


def read_meta(directory) -> dict:
    """The ``index.json`` of an index directory, checked to be one."""
    directory = Path(directory)
    if not directory.is_dir():
        raise KluekitError(f"--index-dir: no such directory {str(directory)!r}; build an index with 'kluekit encode'")
    path = directory / META
    if not path.is_file():
        raise KluekitError(f"--index-dir: {directory} is not a kluekit index (no {META}); build one with 'kluekit encode'")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise KluekitError(f"--index-dir: {path} is damaged: {error}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("kind") not in EmbeddingIndex.KINDS:
        raise KluekitError(f"--index-dir: {path} is not a kluekit index meta file")
    return meta


def exact_search(embeddings: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k by inner product, a chunk of queries at a time so memory stays bounded."""
    n = len(embeddings)
    chunk = max(1, QUERY_CHUNK_FLOATS // max(n, 1))
    all_scores, all_ids = [], []
    for start in range(0, len(queries), chunk):
        scores = queries[start:start + chunk] @ np.asarray(embeddings).T
        ids = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(scores), 1))
        top = np.take_along_axis(scores, ids, axis=1)
        order = np.lexsort((ids, -top), axis=1)  # score descending, then row id: deterministic ties
        all_ids.append(np.take_along_axis(ids, order, axis=1))
        all_scores.append(np.take_along_axis(top, order, axis=1))
    return np.concatenate(all_scores).astype(np.float32), np.concatenate(all_ids).astype(np.int64)


def build_hnsw(embeddings: np.ndarray):
    """A FAISS HNSW graph over inner products (= cosine for unit vectors): no training, any corpus size."""
    import faiss

    index = faiss.IndexHNSWFlat(embeddings.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    if len(embeddings):
        index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
    return index
