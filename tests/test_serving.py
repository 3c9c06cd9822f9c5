"""The HTTP API (``kluekit serve``): scores equal the bi-encoder's own cosines, client errors are 4xx with a
clear message (never a 500), concurrent requests are batched, and the real command serves and stops cleanly.

Most tests go through ``TestClient`` (a real HTTP client against the app, lifespan included); one starts
``kluekit serve`` as a process on loopback.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from conftest import serve_process
from kluekit import cli
from kluekit.embedding.encoding import encode, load_biencoder
from kluekit.serving import ServeSettings
from kluekit.serving.app import create_app
from kluekit.serving.batcher import BatcherClosed, MicroBatcher
from kluekit.serving.uploads import decode, parse_table

CORPUS = ["오늘 날씨가 정말 좋네요.", "배송이 빨라서 만족합니다.", "이 영화는 너무 지루했다.", "가격이 조금 비싼 편이에요.",
          "내일은 비가 온다고 합니다.", "직원분들이 친절했어요.", "음식이 짜고 맛이 없었다.", "주말에 등산을 갔다."]
LIMITS = dict(max_text_chars=200, max_pairs=8, max_upload_bytes=20_000, max_rows=50, max_k=20, batch_wait_ms=20)


@pytest.fixture(scope="module")
def corpus_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.csv"
    pd.DataFrame({"id": range(len(CORPUS)), "sentence": CORPUS}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def model(tiny_biencoder):
    """The same bi-encoder, loaded in the test: the reference for every score the API returns."""
    return load_biencoder(str(tiny_biencoder))


def cosine(model, a: str, b: str) -> float:
    va, vb = encode(model, [a, b])
    return float(va @ vb)


@pytest.fixture(scope="module")
def client(tiny_biencoder, corpus_csv):
    settings = ServeSettings(model=str(tiny_biencoder), corpus=str(corpus_csv), **LIMITS)
    with TestClient(create_app(settings)) as client:
        yield client


# -- what the API answers ---------------------------------------------------------------------------------
def test_health_and_openapi(client, model, tiny_biencoder):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == str(tiny_biencoder)
    assert health["dim"] == encode(model, ["가"]).shape[1]
    assert health["corpus_size"] == len(CORPUS) and health["index"] == "exact" and health["cross_encoder"] is None
    assert health["limits"]["max_pairs"] == 8 and "torch" in health["versions"]
    schema = client.get("/openapi.json").json()
    assert {"/similarity", "/similarity/csv", "/search", "/health"} <= set(schema["paths"])
    assert "5 * max(cosine, 0)" in str(schema["components"]["schemas"]["PairScore"])
    assert "swagger" in client.get("/docs").text.lower()


def test_similarity_get_equals_the_bi_encoders_cosine(client, model):
    a, b = "오늘 날씨가 좋다", "날씨가 맑고 화창하다"
    result = client.get("/similarity", params={"sentence1": a, "sentence2": b}).json()
    expected = cosine(model, a, b)
    assert result["cosine"] == pytest.approx(expected, abs=1e-5)
    assert result["score"] == pytest.approx(5 * max(expected, 0), abs=5e-5)
    assert result["rerank_score"] is None and (result["sentence1"], result["sentence2"]) == (a, b)
    swapped = client.get("/similarity", params={"sentence1": b, "sentence2": a}).json()
    assert swapped["cosine"] == pytest.approx(result["cosine"], abs=1e-6)
    same = client.get("/similarity", params={"sentence1": a, "sentence2": a}).json()
    assert same["cosine"] == pytest.approx(1.0, abs=1e-5) and same["score"] == pytest.approx(5.0, abs=1e-4)


def test_similarity_post_single_and_batch(client, model):
    pairs = [("배송이 빨라요", "물건이 금방 도착했어요"), ("배송이 빨라요", "가격이 비싸요"), ("좋아요", "좋아요")]
    single = client.post("/similarity", json={"sentence1": pairs[0][0], "sentence2": pairs[0][1]})
    assert single.status_code == 200
    assert single.json()["cosine"] == pytest.approx(cosine(model, *pairs[0]), abs=1e-5)
    batch = client.post("/similarity", json={"pairs": [{"sentence1": a, "sentence2": b} for a, b in pairs]})
    results = batch.json()["results"]
    assert [(r["sentence1"], r["sentence2"]) for r in results] == pairs
    for (a, b), r in zip(pairs, results):
        assert r["cosine"] == pytest.approx(cosine(model, a, b), abs=1e-5)
        assert r["score"] == pytest.approx(5 * max(r["cosine"], 0), abs=1e-9)


def upload(client, content: bytes, filename="rows.csv", **form):
    return client.post("/similarity/csv", data={"sentence": "날씨가 좋다", **form},
                       files={"file": (filename, content, "text/csv")})


def test_csv_scores_rows_by_index_sorted_with_top_k(client, model):
    texts = ["날씨가 좋다", "배송이 느려요", "", "비가 많이 온다", "날씨가 좋다"]
    content = pd.DataFrame({"id": range(5), "text": texts}).to_csv(index=False).encode()
    answer = upload(client, content, top_k=3).json()
    assert answer["column"] == "text" and answer["rows"] == 4 and answer["empty"] == 1
    results = answer["results"]
    assert len(results) == 3
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert [r["index"] for r in results[:2]] == [0, 4]  # identical to the base sentence; ties by row index
    for r in results:
        assert r["text"] == texts[r["index"]]
        assert r["cosine"] == pytest.approx(cosine(model, "날씨가 좋다", r["text"]), abs=1e-5)
    everything = upload(client, content, top_k=0, column="text").json()["results"]
    assert sorted(r["index"] for r in everything) == [0, 1, 3, 4]


def test_csv_in_cp949_and_tsv(client):
    rows = "sentence\tother\n날씨가 맑다\tx\n비가 온다\ty\n"
    tsv = upload(client, rows.encode("cp949"), filename="rows.tsv")
    assert tsv.status_code == 200, tsv.text
    assert {r["text"] for r in tsv.json()["results"]} == {"날씨가 맑다", "비가 온다"}
    sniffed = upload(client, ("\ufeff" + rows).encode("utf-8"), filename="rows.txt", column="other")
    assert sniffed.status_code == 200 and sniffed.json()["column"] == "other"
    assert decode("a\n가".encode("cp949")) == "a\n가"
    assert list(parse_table("a;b\n1;2\n", None, 10).columns) == ["a", "b"]


def test_search_over_the_corpus(client, model):
    answer = client.get("/search", params={"q": CORPUS[1], "k": 3}).json()
    results = answer["results"]
    assert [r["rank"] for r in results] == [1, 2, 3]
    assert results[0]["text"] == CORPUS[1] and results[0]["id"] == 1
    assert results[0]["cosine"] == pytest.approx(1.0, abs=1e-5)
    vectors = encode(model, CORPUS)
    expected = np.argsort(-(vectors @ vectors[1]), kind="stable")[:3]
    assert [r["id"] for r in results] == expected.tolist()
    assert [r["cosine"] for r in results] == sorted((r["cosine"] for r in results), reverse=True)
    everything = client.get("/search", params={"q": "날씨", "k": 20}).json()["results"]
    assert len(everything) == len(CORPUS)  # k above the corpus size: the whole corpus, ranked


# -- bad input: a 4xx that says what is wrong, never a 500 -------------------------------------------------
LONG = "가" * 201
MALFORMED = [
    ("get", "/similarity", dict(params={"sentence1": "", "sentence2": "가"}), 422, "sentence1: the text is empty"),
    ("get", "/similarity", dict(params={"sentence1": "가", "sentence2": "  \t"}), 422, "sentence2: the text is empty"),
    ("get", "/similarity", dict(params={"sentence1": LONG, "sentence2": "가"}), 422, "the limit is 200"),
    ("get", "/similarity", dict(params={"sentence1": "가"}), 422, "sentence2: Field required"),
    ("post", "/similarity", dict(json={"sentence1": "가"}), 422, "give sentence1 and sentence2"),
    ("post", "/similarity", dict(json={"sentence1": "가", "sentence2": "나", "pairs": []}), 422, "not both"),
    ("post", "/similarity", dict(json={"pairs": []}), 422, "at least one pair"),
    ("post", "/similarity", dict(json={"pairs": [{"sentence1": "가", "sentence2": "나"}] * 9}), 422,
     "9 pairs; the limit is 8"),
    ("post", "/similarity", dict(json={"pairs": [{"sentence1": "가", "sentence2": " "}]}), 422,
     "pairs[0].sentence2: the text is empty"),
    ("post", "/similarity", dict(content=b"{not json", headers={"content-type": "application/json"}), 422,
     "not valid JSON"),
    ("post", "/similarity", dict(json={"sentence1": "가", "sentence2": "나", "rerank": True}), 409,
     "--cross-encoder"),
    ("post", "/similarity", dict(json={"sentence1": "가" * 60_000, "sentence2": "나"}), 413, "request body larger"),
    ("get", "/search", dict(params={"q": "가", "k": 0}), 422, "k: 0 is out of range"),
    ("get", "/search", dict(params={"q": "가", "k": 21}), 422, "between 1 and 20"),
    ("get", "/search", dict(params={"q": " ", "k": 3}), 422, "q: the text is empty"),
    ("get", "/search", dict(params={"q": "가", "k": "many"}), 422, "k: Input should be a valid integer"),
]


@pytest.mark.parametrize("method, path, kwargs, status, message", MALFORMED,
                         ids=[f"{m[1]}-{m[4][:24]}" for m in MALFORMED])
def test_malformed_requests(client, method, path, kwargs, status, message):
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


CSV_MALFORMED = [
    (dict(content=b"text\n" + "가나다라\n".encode() * 3000), 413, "larger than 20000 bytes"),  # > upload limit
    (dict(content=b"text\n" + "가나다라\n".encode() * 30_000), 413, "larger than 20000 bytes"),  # > body limit
    (dict(content=b"text\n" + b"a\n" * 51), 413, "more than 50 data rows"),
    (dict(content=b"id,sentence2\n1,a\n", column="sentence"), 422, "available columns: 'id', 'sentence2'"),
    (dict(content=b"id,sentence2\n1,a\n"), 422, "choose one with the 'column' field"),
    (dict(content=b"text\n" + b"\x80\xff\xfe" * 40), 415, "not UTF-8 or CP949"),
    (dict(content=b"text\n\x00\x01\x02"), 415, "not UTF-8 or CP949"),
    (dict(content=b""), 422, "the file is empty"),
    (dict(content=b"text\n"), 422, "no data rows"),
    (dict(content=b'text\n"unclosed\n'), 422, "cannot parse"),
    (dict(content="text\n가,나\n".encode()), 422, "more fields than the header"),
    (dict(content=b"id,text\n1,\n2, \n"), 422, "no non-empty text"),
    (dict(content=("text\n" + "가" * 201 + "\n").encode()), 422, "row index 0: the text is 201 characters"),
    (dict(content=b"text\na\n", top_k=-1), 422, "top_k: -1 is out of range"),
    (dict(content=b"text\na\n", top_k=21), 422, "top_k: 21 is out of range"),
    (dict(content=b"text\na\n", sentence=""), 422, "sentence: the text is empty"),
]


@pytest.mark.parametrize("form, status, message", CSV_MALFORMED, ids=[m[2][:30] for m in CSV_MALFORMED])
def test_malformed_csv_uploads(client, form, status, message):
    form = dict(form)
    response = upload(client, form.pop("content"), **form)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_malformed_multipart(client):
    missing = client.post("/similarity/csv", data={"sentence": "가"})
    assert missing.status_code == 422 and "file: Field required" in missing.json()["detail"]
    not_a_file = client.post("/similarity/csv", data={"sentence": "가", "file": "text\na\n"})
    assert not_a_file.status_code == 422
    garbage = client.post("/similarity/csv", content=b"garbage", headers={"content-type": "multipart/form-data"})
    assert garbage.status_code == 400

    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        yield b'--xx\r\nContent-Disposition: form-data; name="sentence"\r\n\r\nabc\r\n--xx\r\nContent-Disposition: ' \
              b'form-data; name="file"; filename="a.csv"\r\n\r\ntext\n'
        for _ in range(50):
            yield b"abc\n" * 1000
        yield b"\r\n--xx--\r\n"

    streamed = client.post("/similarity/csv", content=chunks(), headers={"content-type": "multipart/form-data; boundary=xx"})
    assert streamed.status_code == 413 and "larger than 20000 bytes" in streamed.json()["detail"]


# -- concurrency ------------------------------------------------------------------------------------------
def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(client, model):
    before = client.get("/health").json()["batching"]
    pairs = [(CORPUS[i % len(CORPUS)], f"{CORPUS[(i * 3) % len(CORPUS)]} {i}") for i in range(64)]

    def call(pair):
        return client.post("/similarity", json={"sentence1": pair[0], "sentence2": pair[1]})

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(call, pairs))
    assert all(r.status_code == 200 for r in responses)
    for (a, b), response in zip(pairs, responses):
        assert (response.json()["sentence1"], response.json()["sentence2"]) == (a, b)
        assert response.json()["cosine"] == pytest.approx(cosine(model, a, b), abs=1e-4)
    after = client.get("/health").json()["batching"]
    requests, batches = after["requests"] - before["requests"], after["batches"] - before["batches"]
    assert requests == 64 and batches < requests / 2, (requests, batches)


def test_batcher_merges_routes_errors_and_closes():
    calls = []

    def fake_encode(texts):
        calls.append(list(texts))
        if any(t == "boom" for t in texts):
            raise ValueError("cannot encode boom")
        return np.array([[len(t), 1.0] for t in texts])

    async def scenario():
        batcher = MicroBatcher(fake_encode, max_texts=64, max_wait_ms=20)
        await batcher.start()
        jobs = [batcher.encode([f"{'x' * i}", "y"]) for i in range(1, 6)] + [batcher.encode(["boom"])]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        await batcher.close()
        with pytest.raises(BatcherClosed):
            await batcher.encode(["late"])
        return batcher, results

    batcher, results = asyncio.run(scenario())
    for i, result in enumerate(results[:5], start=1):
        assert result.tolist() == [[i, 1.0], [1, 1.0]]  # its own rows, in its own order
    assert isinstance(results[5], ValueError) and "boom" in str(results[5])  # only the request that failed
    assert len(calls[0]) == 7  # six requests, twelve texts, "y" de-duplicated: one merged call first
    assert batcher.stats.requests == 6


# -- rerank with a cross-encoder ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sts_run(tmp_path_factory, tiny_model, sts_train_csv):
    """A tiny STS cross-encoder trained for a few steps through the CLI (seconds)."""
    from tiny_model import train_tiny_sts

    return train_tiny_sts(tiny_model, sts_train_csv, tmp_path_factory.mktemp("sts"))


def test_rerank_with_the_cross_encoder_matches_kluekit_predict(tiny_biencoder, sts_run, tmp_path):
    pairs = [("오늘 날씨가 좋다", "날씨가 맑다"), ("배송이 빨라요", "영화가 지루했다")]
    inputs = tmp_path / "pairs.csv"
    pd.DataFrame({"id": [0, 1], "sentence1": [a for a, _ in pairs], "sentence2": [b for _, b in pairs]}).to_csv(
        inputs, index=False)
    assert cli.main(["predict", "sts", "--model", str(sts_run), "--input", str(inputs),
                     "--output", str(tmp_path / "out.csv")]) == 0
    expected = pd.read_csv(tmp_path / "out.csv")["target"].tolist()
    settings = ServeSettings(model=str(tiny_biencoder), cross_encoder=str(sts_run), **LIMITS)
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").json()["cross_encoder"] == str(sts_run)
        body = {"pairs": [{"sentence1": a, "sentence2": b} for a, b in pairs], "rerank": True}
        results = client.post("/similarity", json=body).json()["results"]
        assert [r["rerank_score"] for r in results] == pytest.approx(expected, abs=1e-4)
        one = client.get("/similarity", params={"sentence1": pairs[0][0], "sentence2": pairs[0][1], "rerank": True})
        assert one.json()["rerank_score"] == pytest.approx(expected[0], abs=1e-4)
        plain = client.get("/similarity", params={"sentence1": pairs[0][0], "sentence2": pairs[0][1]}).json()
        assert plain["rerank_score"] is None and plain["cosine"] == pytest.approx(results[0]["cosine"], abs=1e-6)
        no_corpus = client.get("/search", params={"q": "날씨"})
        assert no_corpus.status_code == 409 and "no corpus: start the server with --corpus" in no_corpus.json()["detail"]


# -- the real command ----------------------------------------------------------------------------------
def test_kluekit_serve_process_answers_and_stops_cleanly(tiny_biencoder, corpus_csv, tmp_path):
    log = tmp_path / "serve.log"
    with serve_process(["--model", str(tiny_biencoder), "--corpus", str(corpus_csv), "--threads", "1"], log,
                       {"KLUEKIT_LOG": "INFO"}) as (process, url):
        answer = httpx.get(f"{url}/similarity", params={"sentence1": "가", "sentence2": "가"}, timeout=10).json()
        assert answer["score"] == pytest.approx(5.0, abs=1e-4)
        assert httpx.get(f"{url}/search", params={"q": CORPUS[0], "k": 1}, timeout=10).json()["results"][0]["id"] == 0
    output = log.read_text()
    assert process.returncode == 0, output
    assert f"serving on {url}" in output and f"{url}/docs" in output and "server stopped" in output
    assert "Traceback" not in output


def test_serve_refuses_bad_paths_in_one_line(tmp_path, capsys):
    assert cli.main(["serve", "--model", str(tmp_path / "nowhere")]) == 2
    assert f"--model: no such directory '{tmp_path / 'nowhere'}'" in capsys.readouterr().err
    assert cli.main(["serve", "--model", str(tmp_path), "--cross-encoder", str(tmp_path)]) == 2
    assert "is not a kluekit run directory" in capsys.readouterr().err
    assert cli.main(["serve", "--model", str(tmp_path), "--max-rows", "0"]) == 2
    assert "--max-rows: 0 must be >= 1" in capsys.readouterr().err
