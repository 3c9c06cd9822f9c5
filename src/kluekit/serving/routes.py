"""The endpoints: each one reads the request, calls the service, and returns its answer as a schema."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile

from .errors import invalid
from .schemas import (BatchSimilarityResponse, CsvScoreResponse, ErrorResponse, HealthResponse, PairScore,
                      SearchResponse, SimilarityRequest)
from .service import SimilarityService
from .uploads import column_texts, decode, parse_table, pick_column, read_limited

ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in {
    409: "the server was started without what the request needs (--corpus, --cross-encoder)",
    413: "over a size limit (upload bytes, rows)",
    415: "the upload is not UTF-8 or CP949 text",
    422: "a value is unusable: empty or too long text, unknown column, k out of range",
}.items()}


def get_service(request: Request) -> SimilarityService:
    return request.app.state.service


Service = Annotated[SimilarityService, Depends(get_service)]


def build_router(body_limit: int, csv_body_limit: int) -> APIRouter:
    """The routes; ``body_limit`` bounds JSON bodies, ``csv_body_limit`` the multipart body of /similarity/csv."""
    router = APIRouter()

    @router.get("/health", response_model=HealthResponse, tags=["status"],
                summary="Is the server ready, and what did it load")
    async def health(service: Service):
        return service.health()

    @router.get("/similarity", response_model=PairScore, responses=ERRORS, tags=["similarity"],
                summary="Similarity of one sentence pair")
    async def similarity_get(
        service: Service,
        sentence1: Annotated[str, Query(description="first sentence", examples=["오늘 날씨가 정말 좋네요."])],
        sentence2: Annotated[str, Query(description="second sentence", examples=["날씨가 아주 맑고 좋습니다."])],
        rerank: Annotated[bool, Query(description="also score with the cross-encoder (--cross-encoder)")] = False,
    ):
        return (await service.similarity([(sentence1, sentence2)], rerank, batch=False))[0]

    @router.post("/similarity", response_model=PairScore | BatchSimilarityResponse, responses=ERRORS,
                 tags=["similarity"], summary="Similarity of one pair or of a batch of pairs", max_body_size=body_limit,
                 description="A single pair (sentence1, sentence2) answers one result; `pairs` answers "
                             "`{\"results\": [...]}` in request order.")
    async def similarity_post(service: Service, body: SimilarityRequest):
        results = await service.similarity(body.pair_list(), body.rerank, batch=body.pairs is not None)
        return results[0] if body.pairs is None else {"results": results}

    @router.post("/similarity/csv", response_model=CsvScoreResponse, responses=ERRORS, tags=["similarity"],
                 summary="Score one column of an uploaded CSV against a sentence", max_body_size=csv_body_limit)
    async def similarity_csv(
        service: Service,
        file: Annotated[UploadFile, File(description="CSV or TSV with a header row; UTF-8 (BOM ok) or CP949")],
        sentence: Annotated[str | None, Form(description="the base sentence every row is compared with "
                                                         "(required)")] = None,
        column: Annotated[str | None, Form(description="column to score (default: the only column, "
                                                       "else 'sentence' or 'text')")] = None,
        top_k: Annotated[int, Form(description="return the best top_k rows (0: all rows)")] = 10,
    ):
        settings = service.settings
        service.check_text(sentence or "", "sentence")  # an empty form field arrives as None
        service.check_k(top_k, "top_k", allow_zero=True)
        raw = await read_limited(file, settings.max_upload_bytes)
        frame = parse_table(decode(raw), file.filename, settings.max_rows)
        name = pick_column(frame, column)
        rows, empty = column_texts(frame, name)
        if not rows:
            raise invalid(f"file: column {name!r} has no non-empty text")
        results = await service.score_rows(sentence, rows, top_k)
        return {"sentence": sentence, "column": name, "rows": len(rows), "empty": empty, "results": results}

    @router.get("/search", response_model=SearchResponse, responses=ERRORS, tags=["search"],
                summary="The corpus texts closest to a query (--corpus)")
    async def search(
        service: Service,
        q: Annotated[str, Query(description="query text", examples=["배송이 빨라요"])],
        k: Annotated[int, Query(description="number of results (1 to --max-k)")] = 10,
    ):
        return {"query": q, "k": k, "results": await service.search(q, k)}

    return router
