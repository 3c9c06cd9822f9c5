"""Request and response bodies of the HTTP API, with descriptions and examples shown at /docs."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

COSINE = "cosine similarity of the two sentence embeddings, from -1 to 1"
SCORE = "cosine on the STS 0-5 scale: 5 * max(cosine, 0) (0: unrelated or opposite, 5: same meaning)"
RERANK = "the cross-encoder's STS score (0-5); only when rerank was asked for, else null"
SURROGATE = re.compile("[\ud800-\udfff]")


def valid_unicode(text: str) -> str:
    """The text itself; a ValueError (a 422 naming the field) if it holds an unpaired surrogate such as the
    JSON escape ``"\\ud800"``: no UTF-8 text can, and the tokenizer would fail on it."""
    if found := SURROGATE.search(text):
        raise ValueError(f"the text holds an unpaired surrogate (\\u{ord(found.group()):04x} at character "
                         f"{found.start()}), which is not Unicode text; send valid UTF-8")
    return text


Text = Annotated[str, AfterValidator(valid_unicode)]
"""A text field of a request body: any string but one with unpaired surrogates."""


class Pair(BaseModel):
    sentence1: Text = Field(description="first sentence", examples=["오늘 날씨가 정말 좋네요."])
    sentence2: Text = Field(description="second sentence", examples=["날씨가 아주 맑고 좋습니다."])


class SimilarityRequest(BaseModel):
    """One pair (``sentence1`` + ``sentence2``) or a batch (``pairs``), not both."""

    sentence1: Text | None = Field(None, description="first sentence (a single pair)")
    sentence2: Text | None = Field(None, description="second sentence (a single pair)")
    pairs: list[Pair] | None = Field(None, description="a batch of pairs (at most --max-pairs)")
    rerank: bool = Field(False, description="also score each pair with the cross-encoder (--cross-encoder)")

    model_config = {"json_schema_extra": {"examples": [
        {"sentence1": "오늘 날씨가 정말 좋네요.", "sentence2": "날씨가 아주 맑고 좋습니다."},
        {"pairs": [{"sentence1": "배송이 빨라요.", "sentence2": "물건이 금방 도착했어요."},
                   {"sentence1": "배송이 빨라요.", "sentence2": "가격이 비싸요."}], "rerank": False},
    ]}}

    @model_validator(mode="after")
    def one_form(self) -> "SimilarityRequest":
        single = self.sentence1 is not None or self.sentence2 is not None
        if single and self.pairs is not None:
            raise ValueError("give either sentence1 and sentence2, or pairs, not both")
        if self.pairs is None and (self.sentence1 is None or self.sentence2 is None):
            raise ValueError("give sentence1 and sentence2 (one pair) or pairs (a list of pairs)")
        return self

    def pair_list(self) -> list[tuple[str, str]]:
        if self.pairs is not None:
            return [(p.sentence1, p.sentence2) for p in self.pairs]
        return [(self.sentence1, self.sentence2)]


class PairScore(BaseModel):
    sentence1: str = Field(description="first sentence, as given")
    sentence2: str = Field(description="second sentence, as given")
    cosine: float = Field(description=COSINE, examples=[0.83])
    score: float = Field(description=SCORE, examples=[4.15])
    rerank_score: float | None = Field(None, description=RERANK, examples=[None])


class BatchSimilarityResponse(BaseModel):
    results: list[PairScore] = Field(description="one result per pair, in request order")


class RowScore(BaseModel):
    index: int = Field(description="0-based index of the data row in the file (the header is not a row)")
    text: str = Field(description="the row's text in the chosen column")
    cosine: float = Field(description=COSINE)
    score: float = Field(description=SCORE)


class CsvScoreResponse(BaseModel):
    sentence: str = Field(description="the base sentence every row was compared with")
    column: str = Field(description="the column that was scored")
    rows: int = Field(description="number of rows scored (non-empty cells of the column)")
    empty: int = Field(description="rows skipped because their cell was empty")
    results: list[RowScore] = Field(description="rows by score, best first (ties: lower index first), "
                                                "at most top_k of them")


class SearchHit(BaseModel):
    rank: int = Field(description="1 for the closest text")
    id: int = Field(description="0-based position of the text in the corpus")
    text: str = Field(description="the corpus text")
    cosine: float = Field(description=COSINE)
    score: float = Field(description=SCORE)


class SearchResponse(BaseModel):
    query: str
    k: int = Field(description="number of results asked for")
    results: list[SearchHit] = Field(description="closest corpus texts, best first")


class HealthResponse(BaseModel):
    status: str = Field(description="'ok' once the model is loaded", examples=["ok"])
    model: str = Field(description="bi-encoder path (--model)")
    dim: int = Field(description="embedding size")
    corpus: str | None = Field(description="corpus file (--corpus), if any")
    corpus_size: int | None = Field(description="texts in the search index, if any")
    index: str | None = Field(description="index kind: exact or faiss")
    cross_encoder: str | None = Field(description="cross-encoder run directory (--cross-encoder), if any")
    runtime: str = Field(description="what runs the models (--runtime): torch, onnx or onnx-int8 (ONNX Runtime, CPU)",
                         examples=["torch"])
    limits: dict[str, int] = Field(description="the limits this server enforces")
    batching: dict[str, int | float] = Field(description="micro-batching settings and counters since start: "
                                                   "requests, batches (model calls), texts encoded")
    versions: dict[str, str] = Field(description="library versions")


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong with the request and how to fix it",
                        examples=["sentence1: the text is empty"])


# -- ecosystem endpoints: OpenAI-compatible embeddings, text-embeddings-inference rerank -----------------
class EmbeddingsRequest(BaseModel):
    """OpenAI's ``POST /v1/embeddings`` body."""

    input: Text | list[Text] = Field(description="a text or a list of texts (at most 2 x --max-pairs)",
                                     examples=["오늘 날씨가 정말 좋네요."])
    model: str | None = Field(None, description="the served bi-encoder: the --model path or its folder name "
                                                "(default: that model); any other name is a 404")
    encoding_format: Literal["float", "base64"] = Field("float", description="float: lists of numbers; "
                                                        "base64: little-endian float32 bytes, base64-encoded")
    dimensions: int | None = Field(None, description="must be the model's embedding size if given")
    user: str | None = Field(None, description="accepted and ignored (OpenAI compatibility)")

    model_config = {"json_schema_extra": {"examples": [{"input": ["배송이 빨라요.", "가격이 비싸요."]}]}}


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int = Field(description="position of the text in ``input``")
    embedding: list[float] | str = Field(description="the unit-length sentence embedding (base64 with "
                                                     "encoding_format base64)")


class Usage(BaseModel):
    prompt_tokens: int = Field(description="tokens the bi-encoder read (its tokenizer, special tokens "
                                           "included, after truncation to its max_seq_length)")
    total_tokens: int = Field(description="the same as prompt_tokens")


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding] = Field(description="one embedding per input text, in order")
    model: str = Field(description="the served model's name (its folder name)")
    usage: Usage


class RerankRequest(BaseModel):
    """text-embeddings-inference's ``POST /rerank`` body."""

    query: Text = Field(description="the query", examples=["배송이 빠른가요?"])
    texts: list[Text] = Field(description="texts to score against the query (at most --max-pairs)",
                              examples=[["배송이 빨라서 만족합니다.", "가격이 조금 비싼 편이에요."]])
    raw_scores: bool = Field(False, description="true: the scorer's own score (cross-encoder 0-5, bi-encoder "
                                                "cosine -1..1); false: scaled to 0-1")
    return_text: bool = Field(False, description="include each text in its result")
    truncate: bool = Field(False, description="cut texts longer than --max-text-chars instead of refusing them")
    truncation_direction: Literal["right", "left", "Right", "Left"] = Field(
        "right", description="with truncate: which end to keep cutting from (right: keep the start)")


class RerankResult(BaseModel):
    index: int = Field(description="position of the text in ``texts``")
    score: float = Field(description="higher is more relevant; see raw_scores")
    text: str | None = Field(None, description="the text, with return_text")
