"""Endpoints in other tools' shapes: OpenAI's ``POST /v1/embeddings`` and text-embeddings-inference's
``POST /rerank``, so their clients (the ``openai`` SDK, LangChain, LlamaIndex, TEI rerank clients) work unchanged.

    curl -s localhost:8000/v1/embeddings -H 'content-type: application/json' -d '{"input": ["배송이 빨라요"]}'
    curl -s localhost:8000/rerank -H 'content-type: application/json' -d '{"query": "배송", "texts": ["a", "b"]}'
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Response

from .errors import RequestError, invalid
from .routes import ERRORS, Service
from .schemas import EmbeddingsRequest, EmbeddingsResponse, RerankRequest, RerankResult
from .service import SimilarityService

NOT_FOUND = {404: {"model": ERRORS[422]["model"], "description": "the asked-for model is not served here"}}
SCORER_HEADER = "X-Rerank-Scorer"


def served_names(service: SimilarityService) -> tuple[str, list[str]]:
    """The served model's name (its folder name) and every name a request may give for it."""
    path = service.settings.model
    name = Path(path).name or path
    return name, [name, path, str(Path(path))]


def count_tokens(model, texts: list[str]) -> int:
    """Tokens the bi-encoder reads for ``texts``: its own preprocessing (special tokens, truncation)."""
    source = model.model if hasattr(model, "session") else model  # the ONNX encoder keeps the model's tokenizer
    features = source.preprocess(texts) if hasattr(source, "preprocess") else source.tokenize(texts)
    return int(features["attention_mask"].sum())


def _check_texts(service: SimilarityService, texts: list[str], where: str, limit: int, truncate: bool = False,
                 keep_end: bool = False, many: bool = True) -> list[str]:
    """The texts (cut to --max-text-chars with ``truncate``); 422 naming ``where[i]`` for an unusable one."""
    if not texts:
        raise invalid(f"{where}: give at least one text")
    if len(texts) > limit:
        raise invalid(f"{where}: {len(texts)} texts; the limit is {limit} (--max-pairs)")
    most = service.settings.max_text_chars
    if truncate:
        texts = [text[-most:] if keep_end else text[:most] for text in texts]
    return [service.check_text(text, f"{where}[{i}]" if many else where) for i, text in enumerate(texts)]


def build_ecosystem_router() -> APIRouter:
    router = APIRouter(tags=["ecosystem"])

    @router.post("/v1/embeddings", response_model=EmbeddingsResponse, responses={**ERRORS, **NOT_FOUND},
                 summary="Sentence embeddings, OpenAI-compatible",
                 description="The bi-encoder's unit-length embeddings in OpenAI's response shape; `usage` counts "
                             "the bi-encoder tokenizer's tokens.")
    async def embeddings(service: Service, body: EmbeddingsRequest):
        name, names = served_names(service)
        if body.model is not None and body.model not in names:
            raise RequestError(404, f"model: {body.model!r} is not served here; this server serves {name!r} "
                                    "(--model); leave model out or give that name")
        if body.dimensions is not None and body.dimensions != service.dim:
            raise invalid(f"dimensions: {body.dimensions} is not available; this model's embeddings have "
                          f"{service.dim} dimensions (leave dimensions out)")
        single = isinstance(body.input, str)
        texts = _check_texts(service, [body.input] if single else body.input, "input",
                             2 * service.settings.max_pairs, many=not single)
        vectors = await service.batcher.encode(texts)
        tokens = await service.batcher.run(count_tokens, service.model, texts)
        vectors = np.asarray(vectors, dtype=np.float32)
        if body.encoding_format == "base64":
            data = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
        else:
            data = vectors.tolist()
        return {"object": "list", "model": name, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(data)]}

    @router.post("/rerank", response_model=list[RerankResult], response_model_exclude_none=True, responses=ERRORS,
                 summary="Texts scored against a query, best first (text-embeddings-inference shape)",
                 description="Scores come from the cross-encoder when the server has one (--cross-encoder), "
                             f"else from the bi-encoder's cosine; the `{SCORER_HEADER}` header says which.")
    async def rerank(service: Service, body: RerankRequest, response: Response):
        query = body.query[:service.settings.max_text_chars] if body.truncate else body.query
        service.check_text(query, "query")
        texts = _check_texts(service, body.texts, "texts", service.settings.max_pairs, body.truncate,
                             keep_end=body.truncation_direction.lower() == "left")
        if service.cross_encoder is not None:
            raw = np.asarray(await service.batcher.run(service.cross_encoder, [(query, t) for t in texts]),
                             dtype=np.float64)
            scores, scorer = (raw if body.raw_scores else np.clip(raw / 5.0, 0.0, 1.0)), "cross-encoder"
        else:
            vectors = np.asarray(await service.batcher.encode([query] + texts), dtype=np.float64)
            raw = np.clip(vectors[1:] @ vectors[0], -1.0, 1.0)
            scores, scorer = (raw if body.raw_scores else np.clip(raw, 0.0, 1.0)), "bi-encoder"
        response.headers[SCORER_HEADER] = scorer
        order = np.lexsort((np.arange(len(texts)), -scores))
        return [{"index": int(i), "score": float(scores[i]), "text": texts[i] if body.return_text else None}
                for i in order]

    return router
