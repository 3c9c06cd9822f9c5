"""The ecosystem endpoints (OpenAI /v1/embeddings, TEI /rerank, Prometheus /metrics), the API key, CORS, the
shutdown 503s, and the fuzzer's findings (lone surrogates, non-UTF-8 bodies, Windows-1252 uploads)."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient

from kluekit.embedding.encoding import encode, load_biencoder
from kluekit.serving import ServeSettings
from kluekit.serving.app import create_app
from kluekit.serving.security import exposure_warning, is_loopback, resolve_api_key

LIMITS = dict(max_text_chars=200, max_pairs=8, max_upload_bytes=20_000, max_rows=50, max_k=20, batch_wait_ms=5)
TEXTS = ["배송이 빨라서 만족합니다.", "가격이 조금 비싼 편이에요.", "오늘 날씨가 정말 좋네요.", "물건이 금방 도착했어요."]


@pytest.fixture(scope="module")
def model(tiny_biencoder):
    return load_biencoder(str(tiny_biencoder))


def make_client(tiny_biencoder, **options) -> TestClient:
    return TestClient(create_app(ServeSettings(model=str(tiny_biencoder), **LIMITS, **options)))


@pytest.fixture(scope="module")
def client(tiny_biencoder):
    with make_client(tiny_biencoder) as client:
        yield client


def post_json(client, path: str, text: str | bytes, **kwargs):
    """A raw JSON body, so that it can hold what json= cannot send (lone surrogates, other encodings)."""
    return client.post(path, content=text if isinstance(text, bytes) else text.encode(),
                       headers={"content-type": "application/json", **kwargs.pop("headers", {})}, **kwargs)


# -- POST /v1/embeddings --------------------------------------------------------------------------------
def test_openai_embeddings_shape_vectors_and_usage(client, model, tiny_biencoder):
    answer = client.post("/v1/embeddings", json={"input": TEXTS[:3], "model": tiny_biencoder.name})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "list" and body["model"] == tiny_biencoder.name
    assert [(d["object"], d["index"]) for d in body["data"]] == [("embedding", 0), ("embedding", 1), ("embedding", 2)]
    expected = encode(model, TEXTS[:3])
    np.testing.assert_allclose(np.array([d["embedding"] for d in body["data"]]), expected, atol=1e-5)
    ids = model.tokenizer(TEXTS[:3], truncation=True, max_length=model.max_seq_length)["input_ids"]
    tokens = sum(len(i) for i in ids)
    assert tokens > 3 * 2 and body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}

    one = client.post("/v1/embeddings", json={"input": TEXTS[0], "encoding_format": "base64",
                                              "model": str(tiny_biencoder)}).json()
    vector = np.frombuffer(base64.b64decode(one["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vector, expected[0], atol=1e-6)
    assert one["usage"]["prompt_tokens"] == len(ids[0])
    assert client.post("/v1/embeddings", json={"input": TEXTS[0]}).status_code == 200  # model may be left out


@pytest.mark.parametrize("body, status, message", [
    ({"input": "가", "model": "text-embedding-3-small"}, 404, "model: 'text-embedding-3-small' is not served here"),
    ({"input": "가", "dimensions": 7}, 422, "dimensions: 7 is not available"),
    ({"input": []}, 422, "input: give at least one text"),
    ({"input": ["가", " "]}, 422, "input[1]: the text is empty"),
    ({"input": "가" * 201}, 422, "input: the text is 201 characters long"),
    ({"input": ["가"] * 17}, 422, "input: 17 texts; the limit is 16"),
    ({"input": "가", "encoding_format": "int8"}, 422, "encoding_format"),
])
def test_openai_embeddings_errors_name_the_field(client, body, status, message):
    answer = client.post("/v1/embeddings", json=body)
    assert answer.status_code == status and message in answer.json()["detail"], answer.text


# -- POST /rerank -------------------------------------------------------------------------------------------
def test_rerank_with_the_bi_encoder_sorts_by_cosine(client, model):
    query = "배송이 빠른가요?"
    answer = client.post("/rerank", json={"query": query, "texts": TEXTS, "return_text": True})
    assert answer.status_code == 200 and answer.headers["x-rerank-scorer"] == "bi-encoder"
    vectors = encode(model, [query] + TEXTS)
    cosine = vectors[1:] @ vectors[0]
    results = answer.json()
    assert [r["index"] for r in results] == list(np.argsort(-cosine, kind="stable"))
    assert [r["score"] for r in results] == pytest.approx(sorted(np.clip(cosine, 0, 1), reverse=True), abs=1e-5)
    assert [r["text"] for r in results] == [TEXTS[r["index"]] for r in results]
    raw = client.post("/rerank", json={"query": query, "texts": TEXTS, "raw_scores": True}).json()
    assert {r["index"]: r["score"] for r in raw} == pytest.approx(dict(enumerate(cosine.tolist())), abs=1e-5)
    assert all("text" not in r for r in raw)


def test_rerank_limits_truncate_and_the_cross_encoder(tiny_biencoder):
    with make_client(tiny_biencoder) as client:
        too_long = {"query": "가", "texts": ["나" * 201]}
        refused = client.post("/rerank", json=too_long)
        assert refused.status_code == 422 and "texts[0]: the text is 201 characters long" in refused.json()["detail"]
        assert client.post("/rerank", json={**too_long, "truncate": True}).status_code == 200
        assert "texts: 9 texts; the limit is 8" in client.post("/rerank", json={"query": "가", "texts": ["나"] * 9}).text
        asked = []

        def cross_encoder(pairs):  # stands in for a CrossEncoderScorer: 0-5 STS scores, one per pair
            asked.extend(pairs)
            return np.array([1.0, 4.5, 2.5, 0.0])[:len(pairs)]

        client.app.state.service.cross_encoder = cross_encoder
        answer = client.post("/rerank", json={"query": "질문", "texts": TEXTS})
        assert answer.headers["x-rerank-scorer"] == "cross-encoder" and asked == [("질문", t) for t in TEXTS]
        assert [(r["index"], r["score"]) for r in answer.json()] == [(1, 0.9), (2, 0.5), (0, 0.2), (3, 0.0)]
        raw = client.post("/rerank", json={"query": "질문", "texts": TEXTS, "raw_scores": True}).json()
        assert [r["score"] for r in raw] == [4.5, 2.5, 1.0, 0.0]


# -- GET /metrics ---------------------------------------------------------------------------------------
def sample(text: str, name: str, **labels) -> float | None:
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            return float(match.group(2))
    return None


def test_metrics_count_requests_latency_batches_and_not_themselves(tiny_biencoder):
    with make_client(tiny_biencoder) as client:
        for _ in range(3):
            assert client.post("/similarity", json={"sentence1": "가", "sentence2": "나"}).status_code == 200
        assert client.post("/similarity", json={"sentence1": ""}).status_code == 422
        assert client.get("/no/such/path").status_code == 404
        client.get("/metrics")
        answer = client.get("/metrics")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
        text = answer.text
    ok = dict(method="POST", route="/similarity", status="200")
    assert sample(text, "kluekit_http_requests_total", **ok) == 3
    assert sample(text, "kluekit_http_requests_total", method="POST", route="/similarity", status="422") == 1
    assert sample(text, "kluekit_http_requests_total", route="unmatched", status="404") == 1
    assert sample(text, "kluekit_http_request_duration_seconds_count", **ok) == 3
    assert sample(text, "kluekit_http_request_duration_seconds_bucket", le="+Inf", **ok) == 3
    assert "/metrics" not in text and "/no/such/path" not in text
    assert sample(text, "kluekit_batch_size_count") >= 1 and sample(text, "kluekit_batch_size_sum") == 6
    assert sample(text, "kluekit_batcher_requests_total") == 3 and sample(text, "kluekit_batcher_texts_total") == 6
    assert sample(text, "kluekit_batcher_queue_depth") == 0 and sample(text, "kluekit_http_requests_in_flight") == 0


# -- API key, CORS, the exposure warning ----------------------------------------------------------------
def test_api_key_required_except_health_and_metrics(tiny_biencoder, monkeypatch):
    monkeypatch.setenv("KLUEKIT_API_KEY", "from-env")
    assert resolve_api_key(None) == "from-env" and resolve_api_key("opt") == "opt"
    pair = {"sentence1": "가", "sentence2": "나"}
    with make_client(tiny_biencoder, api_key="s3cret") as client:
        missing = client.post("/similarity", json=pair)
        assert missing.status_code == 401 and "missing API key" in missing.json()["detail"]
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = client.post("/v1/embeddings", json={"input": "가"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong API key"
        assert client.post("/similarity", json=pair, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.post("/rerank", json={"query": "가", "texts": ["나"]},
                           headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/health").status_code == 200 and client.get("/metrics").status_code == 200
        assert 'status="401"' in client.get("/metrics").text
    with make_client(tiny_biencoder) as client:  # no --api-key: $KLUEKIT_API_KEY
        assert client.post("/similarity", json=pair).status_code == 401
        assert client.post("/similarity", json=pair, headers={"X-API-Key": "from-env"}).status_code == 200


def test_cors_off_by_default_and_on_for_the_given_origins(client, tiny_biencoder):
    origin = {"Origin": "https://app.example.com"}
    assert "access-control-allow-origin" not in client.get("/health", headers=origin).headers
    preflight = {**origin, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type, authorization"}
    assert client.options("/similarity", headers=preflight).status_code == 405
    with make_client(tiny_biencoder, cors_origins=["https://app.example.com"], api_key="k") as cors:
        allowed = cors.options("/similarity", headers=preflight)  # a preflight carries no key: never a 401
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == origin["Origin"]
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        refused = cors.post("/similarity", json={}, headers=origin)
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == origin["Origin"]
        other = cors.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_warning_when_listening_beyond_loopback_without_a_key():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("0.0.0.0", "key") is None
    assert "0.0.0.0 without an API key" in exposure_warning("0.0.0.0", None)


# -- graceful shutdown ----------------------------------------------------------------------------------
def slow_encoder(client, seconds: float) -> None:
    batcher = client.app.state.service.batcher
    encode = batcher.encode

    async def slow(texts, *args, **kwargs):
        await asyncio.sleep(seconds)
        return await encode(texts, *args, **kwargs)

    batcher.encode = slow


def test_shutdown_finishes_running_requests_and_answers_new_ones_503(tiny_biencoder):
    pair = {"sentence1": "가", "sentence2": "나"}
    with make_client(tiny_biencoder) as client, ThreadPoolExecutor(2) as pool:
        slow_encoder(client, 0.8)
        running = pool.submit(client.post, "/similarity", json=pair)
        time.sleep(0.3)
        client.portal.call(client.app.state.shutdown.begin, 5.0)
        later = client.post("/similarity", json=pair)
        assert later.status_code == 503 and "shutting down" in later.json()["detail"]
        assert later.headers["retry-after"] and client.get("/health").status_code == 503
        assert running.result().status_code == 200 and "cosine" in running.result().json()
    with make_client(tiny_biencoder) as client, ThreadPoolExecutor(1) as pool:
        slow_encoder(client, 5.0)
        running = pool.submit(client.post, "/similarity", json=pair)
        time.sleep(0.3)
        started = time.perf_counter()
        client.portal.call(client.app.state.shutdown.begin, 0.2)
        late = running.result()
        assert late.status_code == 503 and "within the grace period" in late.json()["detail"]
        assert time.perf_counter() - started < 2


# -- what the fuzzer found ------------------------------------------------------------------------------
@pytest.mark.parametrize("path, body, where", [
    ("/similarity", '{"sentence1": "\\ud800", "sentence2": "b"}', "sentence1"),
    ("/similarity", '{"pairs": [{"sentence1": "a", "sentence2": "x\\udfffy"}]}', "pairs[0].sentence2"),
    ("/v1/embeddings", '{"input": ["ok", "\\ud83d"]}', "input"),
    ("/rerank", '{"query": "q", "texts": ["\\udc00"]}', "texts[0]"),
])
def test_lone_surrogates_are_a_422_naming_the_field(client, path, body, where):
    answer = post_json(client, path, body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(where) and "unpaired surrogate" in answer.json()["detail"]
    paired = post_json(client, "/similarity", '{"sentence1": "\\ud83d\\ude00", "sentence2": "b"}')
    assert paired.status_code == 200  # a surrogate pair is an ordinary character (an emoji)


def test_a_non_utf8_json_body_is_named(client):
    answer = post_json(client, "/similarity", '{"sentence1": "café", "sentence2": "b"}'.encode("cp1252"))
    assert answer.status_code == 400
    assert answer.json()["detail"] == "body: not UTF-8 text: bytes e9 22 2c 20 at byte 18; send the JSON encoded as UTF-8"


def upload(client, content: bytes):
    return client.post("/similarity/csv", data={"sentence": "날씨가 좋다"}, files={"file": ("rows.csv", content, "text/csv")})


@pytest.mark.parametrize("text", ["text\néé\n", "text\nÉcole\nÇa va\n"])
def test_windows_1252_uploads_are_refused_not_read_as_cp949(client, text):
    answer = upload(client, text.encode("cp1252"))
    assert answer.status_code == 415 and "Windows-1252" in answer.json()["detail"], answer.text


def test_windows_1252_upload_detected_is_read_as_such_and_cp949_stays_korean(client):
    read = upload(client, "text\nÄrger\n".encode("cp1252"))
    assert read.status_code == 200 and read.json()["results"][0]["text"] == "Ärger"
    korean = upload(client, "text\n漢字 날씨가 좋다\n".encode("cp949"))
    assert korean.status_code == 200 and korean.json()["results"][0]["text"] == "漢字 날씨가 좋다"


def test_the_exit_signal_starts_draining_before_uvicorn_stops():
    from kluekit.serving.commands import drain_on_exit
    from kluekit.serving.security import ShutdownState

    class Server:  # uvicorn.Server's part that matters: the signal handler it installs
        signals = []

        def handle_exit(self, sig, frame):
            self.signals.append(sig)

    async def signal_arrives(server, state):
        server.handle_exit(15, None)
        await asyncio.sleep(0)
        return state.draining

    server, state = Server(), ShutdownState()
    drain_on_exit(server, state, 3.0)
    assert asyncio.run(signal_arrives(server, state)) and server.signals == [15]
