"""What the HTTP API does, without HTTP: pair similarity, scoring a column against a sentence, corpus search.

Scores: ``cosine`` is the cosine similarity of the two unit-length embeddings (-1 to 1); ``score`` maps it
onto the STS 0-5 scale as ``5 * max(cosine, 0)`` (unrelated or opposite sentences are 0, identical ones 5).
With a cross-encoder loaded, ``rerank`` adds its own 0-5 STS score for each pair.

    service = load_service(ServeSettings(model="runs/biencoder"))
    await service.start()
    await service.similarity([("오늘 날씨 어때?", "오늘 날씨가 어떤가요?")])
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import asdict
from functools import partial

import numpy as np

from .batcher import BatcherBusy, MicroBatcher, estimate_tokens
from .errors import invalid, overloaded, timed_out, unavailable
from .settings import ServeSettings

logger = logging.getLogger("kluekit")
# Korean sentences of the kinds served (reviews, questions, news), to measure the tokenizer's tokens per character
SAMPLE = ["오늘 날씨가 정말 좋네요.", "배송이 빨라서 만족합니다.", "이 영화는 너무 지루했다.", "가격이 조금 비싼 편이에요.",
          "내일은 비가 온다고 합니다.", "직원분들이 친절했어요.", "정부는 내년 예산안을 국회에 제출했다.",
          "회원가입은 어디에서 할 수 있나요?", "주말에 가족과 함께 등산을 다녀왔습니다.", "환불 규정이 어떻게 되나요?"]


@asynccontextmanager
async def deadline(settings: ServeSettings, what: str):
    """The model work inside, bounded by --request-timeout (504) and --max-queue (503); ``what`` starts the
    message (the route's field or name). Every route that waits for a micro-batcher goes through here."""
    timeout = settings.request_timeout or None
    try:
        async with asyncio.timeout(timeout):
            yield
    except TimeoutError:
        raise timed_out(f"{what}: not done within {timeout:g} s (--request-timeout); the server is busy or the "
                        "request too large: retry later or send less") from None
    except BatcherBusy as error:
        raise overloaded(f"{what}: the server is busy: {error}; retry shortly") from None


def to_score(cosine: np.ndarray) -> np.ndarray:
    """Cosine (-1..1) on the STS 0-5 scale: ``5 * max(cosine, 0)``."""
    return 5.0 * np.clip(np.asarray(cosine, dtype=np.float64), 0.0, 1.0)


class SimilarityService:
    """The loaded bi-encoder (behind a micro-batcher), the optional corpus index and cross-encoder."""

    def __init__(self, settings: ServeSettings, model, index=None, cross_encoder=None):
        from ..embedding.encoding import embedding_dim, encode

        self.settings, self.model, self.index, self.cross_encoder = settings, model, index, cross_encoder
        self.dim = embedding_dim(model)
        batch_size = encode_batch_size(settings)
        self.chunk_texts = settings.upload_chunk_texts or batch_size
        self.tokens_per_char = tokens_per_char(model)
        self.batcher = MicroBatcher(lambda texts: encode(model, texts, batch_size=batch_size),
                                    max_texts=settings.batch_max_texts, max_wait_ms=settings.batch_wait_ms,
                                    max_tokens=settings.batch_max_tokens, max_queue=settings.max_queue,
                                    count_tokens=partial(estimate_tokens, tokens_per_char=self.tokens_per_char))

    async def start(self) -> None:
        await self.batcher.start()

    async def close(self) -> None:
        await self.batcher.close()

    def deadline(self, what: str):
        """The model work inside, bounded by --request-timeout (504) and --max-queue (503): :func:`deadline`."""
        return deadline(self.settings, what)

    # -- checks -------------------------------------------------------------------------------------
    def check_text(self, text: str, where: str) -> str:
        """The text itself; 422 naming ``where`` if it is empty, blank or longer than --max-text-chars."""
        if not text or not text.strip():
            raise invalid(f"{where}: the text is empty")
        if len(text) > self.settings.max_text_chars:
            raise invalid(f"{where}: the text is {len(text)} characters long; the limit is "
                          f"{self.settings.max_text_chars} (--max-text-chars)")
        return text

    def check_k(self, k: int, where: str, allow_zero: bool = False) -> int:
        low = 0 if allow_zero else 1
        if not low <= k <= self.settings.max_k:
            raise invalid(f"{where}: {k} is out of range; it must be between {low} and {self.settings.max_k} "
                          "(--max-k)" + (" (0: all rows)" if allow_zero else ""))
        return k

    # -- pair similarity ------------------------------------------------------------------------------
    async def similarity(self, pairs: list[tuple[str, str]], rerank: bool = False, batch: bool = True) -> list[dict]:
        """One dict per pair: sentence1, sentence2, cosine, score (0-5) and, with ``rerank``, rerank_score.

        ``batch``: errors name ``pairs[i].sentence1`` (else just ``sentence1``)."""
        if not pairs:
            raise invalid("pairs: give at least one pair")
        if len(pairs) > self.settings.max_pairs:
            raise invalid(f"pairs: {len(pairs)} pairs; the limit is {self.settings.max_pairs} (--max-pairs)")
        for i, (a, b) in enumerate(pairs):
            self.check_text(a, f"pairs[{i}].sentence1" if batch else "sentence1")
            self.check_text(b, f"pairs[{i}].sentence2" if batch else "sentence2")
        if rerank and self.cross_encoder is None:
            raise unavailable("rerank: no cross-encoder loaded; start the server with --cross-encoder RUN_DIR "
                              "(a 'kluekit train sts' run directory)")
        async with self.deadline("similarity"):
            vectors = await self.batcher.encode([text for pair in pairs for text in pair])
            rerank_scores = await self.batcher.run(self.cross_encoder, list(pairs)) if rerank else None
        cosine = np.einsum("ij,ij->i", vectors[0::2].astype(np.float64), vectors[1::2].astype(np.float64))
        cosine = np.clip(cosine, -1.0, 1.0)
        return [{"sentence1": a, "sentence2": b, "cosine": float(c), "score": float(s),
                 "rerank_score": None if rerank_scores is None else float(rerank_scores[i])}
                for i, ((a, b), c, s) in enumerate(zip(pairs, cosine, to_score(cosine)))]

    # -- a column against one sentence ---------------------------------------------------------------
    async def score_rows(self, sentence: str, rows: list[tuple[int, str]], top_k: int) -> list[dict]:
        """``rows`` ((row index, text)) scored against ``sentence``, best first (ties: lower index first),
        cut to ``top_k`` (0: all). The rows go through the batcher in chunks of --upload-chunk-texts, so
        requests that arrive meanwhile are served between chunks."""
        self.check_text(sentence, "sentence")
        self.check_k(top_k, "top_k", allow_zero=True)
        for index, text in rows:
            self.check_text(text, f"file: row index {index}")
        if not rows:
            raise invalid("file: the column has no non-empty text")
        async with self.deadline("file"):
            base, vectors = await asyncio.gather(
                self.batcher.encode([sentence]), self.batcher.encode([text for _, text in rows], chunk=self.chunk_texts))
        cosine = np.clip(vectors.astype(np.float64) @ base[0].astype(np.float64), -1.0, 1.0)
        order = np.lexsort((np.array([i for i, _ in rows]), -cosine))
        if top_k:
            order = order[:top_k]
        scores = to_score(cosine)
        return [{"index": rows[j][0], "text": rows[j][1], "cosine": float(cosine[j]), "score": float(scores[j])}
                for j in order]

    # -- corpus search --------------------------------------------------------------------------------
    async def search(self, query: str, k: int) -> list[dict]:
        """The ``k`` corpus texts closest to ``query``: rank, id (row in the corpus), text, cosine, score."""
        if self.index is None:
            raise unavailable("no corpus: start the server with --corpus FILE to use /search")
        self.check_text(query, "q")
        self.check_k(k, "k")
        async with self.deadline("search"):
            vector = await self.batcher.encode([query])
            scores, ids = await self.batcher.run(self.index.search, vector, k)
        hits = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
        return [{"rank": rank, "id": i, "text": self.index.texts[i], "cosine": min(max(s, -1.0), 1.0),
                 "score": float(to_score(s))} for rank, (i, s) in enumerate(hits, start=1)]

    # -- status ---------------------------------------------------------------------------------------
    def health(self) -> dict:
        from .. import __version__
        from ..rundir import versions

        limits = {name: getattr(self.settings, name) for name in
                  ("max_text_chars", "max_pairs", "max_upload_bytes", "max_rows", "max_k")}
        try:
            import fastapi
            import sentence_transformers
            extra = {"sentence_transformers": sentence_transformers.__version__, "fastapi": fastapi.__version__}
        except ImportError:  # pragma: no cover - both are dependencies
            extra = {}
        return {
            "status": "ok",
            "model": self.settings.model,
            "dim": self.dim,
            "corpus": self.settings.corpus,
            "corpus_size": None if self.index is None else len(self.index),
            "index": None if self.index is None else self.index.kind,
            "cross_encoder": None if self.cross_encoder is None else self.cross_encoder.run_dir,
            "runtime": self.settings.runtime,
            "limits": limits,
            "batching": {"max_texts": self.settings.batch_max_texts, "max_wait_ms": self.settings.batch_wait_ms,
                         "max_tokens": self.settings.batch_max_tokens, "upload_chunk_texts": self.chunk_texts,
                         "tokens_per_char": round(self.tokens_per_char, 3), "max_queue": self.settings.max_queue,
                         "request_timeout_s": self.settings.request_timeout, **self.batcher.stats.as_dict()},
            "versions": {**versions(), **extra, "kluekit": __version__},
        }


def tokens_per_char(model, default: float = 0.6) -> float:
    """The tokenizer's tokens per character on :data:`SAMPLE` (special tokens left out), for the batcher's cheap
    token estimate (e5-small-ko: 0.54 on KLUE-STS dev); ``default`` when the model has no tokenizer to ask."""
    tokenizer = getattr(model, "tokenizer", None) or getattr(getattr(model, "model", None), "tokenizer", None)
    return tokenizer_tokens_per_char(tokenizer, default)


def tokenizer_tokens_per_char(tokenizer, default: float = 0.6) -> float:
    """:func:`tokens_per_char` of a tokenizer itself (a task model's, from its predictor)."""
    try:
        ids = tokenizer(SAMPLE, add_special_tokens=False)["input_ids"]
    except Exception:  # noqa: BLE001 - an estimate: never a reason not to start
        return default
    return max(sum(map(len, ids)) / sum(map(len, SAMPLE)), 0.05)


def encode_batch_size(settings: ServeSettings) -> int:
    """--encode-batch-size, or by device: 8 on CPU (merged requests differ in length; on 2 cores batches of 8
    served 30 requests/s where 16 served 27 and 32 served 18; ONNX runtimes run on the CPU), 64 on GPU."""
    if settings.encode_batch_size:
        return settings.encode_batch_size
    import torch

    return 64 if torch.cuda.is_available() and settings.runtime == "torch" else 8


def load_service(settings: ServeSettings) -> SimilarityService:
    """Load the bi-encoder, index the corpus (or reuse --index-dir) and load the cross-encoder; slow, blocking."""
    from ..embedding.corpus import build_index
    from ..embedding.encoding import load_biencoder

    logger.info("loading the bi-encoder %s", settings.model)
    if settings.runtime == "torch":
        model = load_biencoder(settings.model)
    else:
        from ..embedding.onnxencoder import OnnxSentenceEncoder

        model = OnnxSentenceEncoder(load_biencoder(settings.model, device="cpu"), settings.runtime)
    index = None
    if settings.corpus:
        logger.info("indexing the corpus %s", settings.corpus)
        index = build_index(model, settings.corpus, column=settings.column, kind=settings.index,
                            index_dir=settings.index_dir, batch_size=encode_batch_size(settings), progress=False)
    cross_encoder = None
    if settings.cross_encoder:
        from .rerank import CrossEncoderScorer

        logger.info("loading the cross-encoder %s", settings.cross_encoder)
        cross_encoder = CrossEncoderScorer(settings.cross_encoder, settings.rerank_max_length,
                                           encode_batch_size(settings), settings.runtime)
    logger.debug("settings: %s", {**asdict(settings), "api_key": "***" if settings.api_key else None})  # never the key
    return SimilarityService(settings, model, index, cross_encoder)
