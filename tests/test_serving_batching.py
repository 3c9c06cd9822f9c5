"""Token-budget micro-batching and the fair queue: batches respect the budget, every request gets its own rows
in its own order, a large request is chunked and small requests are served between its chunks, a request past
its deadline or over the queue bound gets a clear 504/503. The last test runs a real ``kluekit serve`` with a
large upload beside small requests.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from conftest import serve_process
from kluekit.serving import ServeSettings
from kluekit.serving.app import create_app
from kluekit.serving.batcher import BatcherBusy, MicroBatcher, estimate_tokens, item_tokens
from kluekit.serving.errors import RequestError


def text(i: int, length: int) -> str:
    """A text that names its request row (``i``) and has ``length`` characters."""
    return f"{i:05d}".ljust(length, "x")


class FakeModel:
    """Records every call; a row is [id, length] so each answer can be checked; ``delay`` seconds a call."""

    def __init__(self, delay: float = 0.0):
        self.calls: list[list[str]] = []
        self.delay = delay

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        time.sleep(self.delay)
        return np.array([[float(t[:5]), float(len(t))] for t in texts])


def run(coroutine):
    return asyncio.run(coroutine)


def test_estimate_tokens():
    assert estimate_tokens("") == 2 and estimate_tokens("가" * 10, 0.5) == 7 and estimate_tokens("ab", 0.6) == 4


def test_item_tokens_sum_the_string_fields():
    item = {"question": "가" * 10, "context": "나" * 20, "span": {"start": 0, "type": "PER"}, "n": 3}
    assert item_tokens(item, 0.5) == estimate_tokens("가" * 10, 0.5) + estimate_tokens("나" * 20, 0.5) + \
        estimate_tokens("PER", 0.5)


def test_items_with_list_answers_are_batched_chunked_and_kept_to_their_request():
    calls = []

    def answer(items: list[dict]) -> list[dict]:  # a task model: one answer dict per item
        calls.append([item["text"] for item in items])
        if any(item["text"] == "boom" for item in items):
            raise ValueError("cannot answer boom")
        return [{"echo": item["text"]} for item in items]

    async def scenario():
        batcher = MicroBatcher(answer, max_texts=64, max_tokens=40, max_wait_ms=20, dedupe=False,
                               count_tokens=lambda item: len(item["text"]))
        await batcher.start()
        small = [[{"text": text(r, 3)}, {"text": text(r, 3)}] for r in range(4)]  # equal, unhashable items
        large = [{"text": text(100 + i, 5 + i % 4)} for i in range(12)]
        results = await asyncio.gather(batcher.encode([{"text": "boom"}]), *(batcher.encode(items) for items in small),
                                       batcher.encode(large, chunk=3), return_exceptions=True)
        await batcher.close()
        return batcher, small, large, results

    batcher, small, large, results = run(scenario())
    assert isinstance(results[0], ValueError)
    for items, answers in zip(small, results[1:5]):
        assert answers == [{"echo": item["text"]} for item in items]  # a list, in order, no de-duplication
    assert results[5] == [{"echo": item["text"]} for item in large]
    merged = [call for call in calls if "boom" in call and len(call) > 1]
    assert merged and ["boom"] in calls, calls  # failed merged, then each request alone
    large_calls = [call for call in calls if call[0].startswith("001")]
    assert all(len(call) <= 3 and sum(map(len, call)) <= 40 for call in large_calls) and len(large_calls) >= 4
    assert batcher.stats.requests == 6 and batcher.stats.queue_depth == 0


def test_batches_respect_the_token_budget_and_each_request_gets_its_rows_in_order():
    model = FakeModel()
    lengths = [5, 40, 12, 80, 7, 33, 60, 9, 21, 50] * 4

    async def scenario():
        batcher = MicroBatcher(model, max_texts=16, max_tokens=100, max_wait_ms=20, count_tokens=len)
        await batcher.start()
        requests = [[text(10 * r + j, lengths[(r + j) % len(lengths)]) for j in range(1 + r % 3)] for r in range(30)]
        results = await asyncio.gather(*(batcher.encode(texts) for texts in requests))
        await batcher.close()
        return batcher, requests, results

    batcher, requests, results = run(scenario())
    for texts, rows in zip(requests, results):  # its own rows, in its own order
        assert rows.tolist() == [[float(t[:5]), float(len(t))] for t in texts]
    assert len(model.calls) > 1
    for call in model.calls:
        assert len(call) <= 16
        assert sum(map(len, call)) <= 100 or len({t[:4] for t in call}) == 1  # over: only one request alone
        assert [len(t) for t in call] == sorted(len(t) for t in call)  # sorted by length inside a call
    stats = batcher.stats.as_dict()
    assert stats["requests"] == 30 and stats["batches"] == len(model.calls)
    assert stats["tokens"] == sum(len(t) for call in model.calls for t in call)
    assert 0 < stats["largest_batch_tokens"] <= 100 and stats["queue_depth"] == 0 and stats["queued_texts"] == 0


def test_a_large_request_is_chunked_and_its_rows_come_back_in_order():
    model = FakeModel()
    texts = [text(i, 5 + (i * 37) % 90) for i in range(203)]

    async def scenario():
        batcher = MicroBatcher(model, max_texts=64, max_tokens=400, max_wait_ms=0, count_tokens=len)
        await batcher.start()
        rows = await batcher.encode(texts, chunk=16)
        over_budget = await batcher.encode([text(i, 60) for i in range(20)])  # 1,200 tokens: chunked by budget
        await batcher.close()
        return batcher, rows, over_budget

    batcher, rows, over_budget = run(scenario())
    assert rows.tolist() == [[float(i), float(len(t))] for i, t in enumerate(texts)]
    assert over_budget[:, 0].tolist() == list(range(20))
    chunks = model.calls[:-4]
    assert all(len(call) <= 16 and sum(map(len, call)) <= 400 for call in chunks)
    assert sum(map(len, chunks)) == 203 and sorted(t for call in chunks for t in call) == sorted(texts)
    # sorted by length before chunking: each chunk's lengths follow the previous chunk's
    assert all(len(a[-1]) <= len(b[0]) for a, b in zip(chunks, chunks[1:]))
    assert [len(call) for call in model.calls[-4:]] == [6, 6, 6, 2]  # 400 tokens of 60-character texts
    assert batcher.stats.chunked_requests == 2


def test_small_requests_are_served_between_the_chunks_of_a_large_one():
    model = FakeModel(delay=0.005)
    big = [text(i, 20) for i in range(400)]  # 50 chunks of 8: at least 0.25 s of model work

    async def scenario():
        batcher = MicroBatcher(model, max_texts=64, max_tokens=2048, max_wait_ms=1, count_tokens=len)
        await batcher.start()
        large = asyncio.create_task(batcher.encode(big, chunk=8))
        await asyncio.sleep(0.03)
        done_at = []
        for i in range(5):  # one at a time, as a client waiting for each answer
            started = time.perf_counter()
            rows = await batcher.encode([text(90000 + i, 3)])
            done_at.append((time.perf_counter() - started, large.done(), rows[0, 0]))
        rows = await large
        await batcher.close()
        return done_at, rows

    done_at, rows = run(scenario())
    assert rows[:, 0].tolist() == list(range(400))
    for i, (latency, large_done, row) in enumerate(done_at):
        assert row == 90000 + i and not large_done  # answered while the upload was still running
        assert latency < 0.2, done_at  # at most a chunk or two of 5 ms, not the whole 0.25 s upload
    small_calls = [n for n, call in enumerate(model.calls) if call[0].startswith("9")]
    assert len(small_calls) == 5 and all(len(model.calls[n]) == 1 for n in small_calls)
    assert small_calls[-1] < len(model.calls) - 10  # interleaved, not queued behind the upload
    assert len(model.calls[0]) == 8  # full chunks while no small request comes
    between = model.calls[small_calls[0] + 1:small_calls[-1]]
    assert all(len(call) <= 2 for call in between), [len(c) for c in between]  # a quarter while they keep coming


def test_while_small_requests_come_a_chunk_holds_at_most_min_chunk_tokens():
    model = FakeModel(delay=0.002)
    big = [text(i, 40) for i in range(120)]  # 40 tokens each (count_tokens=len): two would pass 64

    async def scenario():
        batcher = MicroBatcher(model, max_texts=64, max_tokens=2048, max_wait_ms=0, count_tokens=len,
                               min_chunk_tokens=64)
        await batcher.start()
        large = asyncio.create_task(batcher.encode(big, chunk=16))
        await asyncio.sleep(0.01)
        for i in range(5):
            await batcher.encode([text(90000 + i, 3)])
        rows = await large
        await batcher.close()
        return rows

    rows = run(scenario())
    assert rows[:, 0].tolist() == list(range(120))
    small_calls = [n for n, call in enumerate(model.calls) if call[0].startswith("9")]
    between = model.calls[small_calls[0] + 1:small_calls[-1]]
    assert between and all(len(call) == 1 for call in between), [len(c) for c in between]
    assert len(model.calls[0]) == 16  # full chunks before the first small request


def test_two_large_requests_take_turns_and_run_calls_go_first():
    model = FakeModel(delay=0.002)

    async def scenario():
        batcher = MicroBatcher(model, max_texts=64, max_wait_ms=0, count_tokens=len)
        await batcher.start()
        a = asyncio.create_task(batcher.encode([text(i, 10) for i in range(40)], chunk=4))
        b = asyncio.create_task(batcher.encode([text(50000 + i, 10) for i in range(40)], chunk=4))
        await asyncio.sleep(0.01)
        calls_before = len(model.calls)
        assert await batcher.run(lambda x: x * 2, 21) == 42  # jumps the queue of chunks
        calls_after = len(model.calls)
        await asyncio.gather(a, b)
        await batcher.close()
        return calls_before, calls_after

    calls_before, calls_after = run(scenario())
    assert calls_after - calls_before <= 1  # at most the chunk already running
    owners = [call[0][0] for call in model.calls]  # "0": request a, "5": request b
    assert owners.count("0") == owners.count("5") == 10
    assert all(x != y for x, y in zip(owners[:16], owners[1:16])), owners  # alternating


def test_a_request_whose_caller_stops_waiting_is_dropped_from_the_queue():
    model = FakeModel(delay=0.005)

    async def scenario():
        batcher = MicroBatcher(model, max_texts=64, max_wait_ms=0, count_tokens=len)
        await batcher.start()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.03):
                await batcher.encode([text(i, 10) for i in range(400)], chunk=4)  # 100 chunks: 0.5 s
        await asyncio.sleep(0.02)
        calls = len(model.calls)
        after = await batcher.encode([text(77777, 5)])
        stats = batcher.stats.as_dict()
        await batcher.close()
        return calls, after, stats

    calls, after, stats = run(scenario())
    assert calls < 20 and after[0, 0] == 77777  # the rest of the 100 chunks was never encoded
    assert len(model.calls) == calls + 1 and stats["queue_depth"] == 0 and stats["queued_texts"] == 0


def test_a_full_queue_refuses_at_once():
    model = FakeModel(delay=0.05)

    async def scenario():
        batcher = MicroBatcher(model, max_texts=1, max_wait_ms=0, max_queue=2, count_tokens=len)
        await batcher.start()
        first = [asyncio.create_task(batcher.encode([text(i, 3)])) for i in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(BatcherBusy, match="--max-queue"):
            await batcher.encode([text(9, 3)])
        depth = batcher.stats.queue_depth
        rows = await asyncio.gather(*first)
        await batcher.close()
        return depth, rows, batcher.stats

    depth, rows, stats = run(scenario())
    assert depth == 2 and [r[0, 0] for r in rows] == [0, 1] and stats.rejected == 1 and stats.queue_depth == 0


# -- through the app: 504 and 503 as JSON ----------------------------------------------------------------------
def test_timeout_answers_504_and_a_full_queue_503(tiny_biencoder, tmp_path):
    settings = ServeSettings(model=str(tiny_biencoder), request_timeout=1e-6, max_rows=50)
    with TestClient(create_app(settings)) as client:
        content = pd.DataFrame({"text": [f"문장 {i} 입니다" for i in range(40)]}).to_csv(index=False).encode()
        answer = client.post("/similarity/csv", data={"sentence": "문장"}, files={"file": ("a.csv", content)})
        assert answer.status_code == 504, answer.text
        assert "--request-timeout" in answer.json()["detail"] and answer.json()["detail"].startswith("file:")
        health = client.get("/health").json()["batching"]
        assert health["max_tokens"] == 2048 and 0.05 < health["tokens_per_char"] < 3 and "queue_depth" in health
        service = client.app.state.service

        async def busy():
            async with service.deadline("search"):
                raise BatcherBusy("1 requests are waiting for the model; the limit is 1 (--max-queue)")

        with pytest.raises(RequestError) as error:
            asyncio.run(busy())
        assert error.value.status == 503 and "--max-queue" in error.value.message


# -- the real command: a large upload beside small requests ------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


@pytest.mark.slow
def test_small_requests_stay_fast_while_a_large_upload_runs(tiny_biencoder, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"코퍼스 문장 {i}번입니다" for i in range(200)) + "\n", encoding="utf-8")
    rows = 4000
    upload = pd.DataFrame({"text": [f"업로드 {i}번째 줄의 문장은 조금 길게 써서 인코딩에 시간이 걸리도록 합니다 " * 3
                                    for i in range(rows)]}).to_csv(index=False).encode()
    args = ["--model", str(tiny_biencoder), "--corpus", str(corpus), "--threads", "1", "--max-rows", str(rows),
            "--max-upload-bytes", str(len(upload) + 1000), "--max-text-chars", "1000"]
    with serve_process(args, tmp_path / "serve.log", {"OMP_WAIT_POLICY": "PASSIVE"}) as (process, url):
        with httpx.Client(base_url=url, timeout=60) as client:
            def small(i: int) -> float:
                started = time.perf_counter()
                answer = client.get("/search", params={"q": f"코퍼스 문장 {i}번", "k": 3})
                assert answer.status_code == 200, answer.text
                return time.perf_counter() - started

            for i in range(5):
                small(i)  # warm-up
            idle = [small(i) for i in range(30)]
            result, upload_done = {}, threading.Event()

            def send_upload():
                started = time.perf_counter()
                with httpx.Client(base_url=url, timeout=120) as other:
                    answer = other.post("/similarity/csv", data={"sentence": "문장", "top_k": "5"},
                                        files={"file": ("big.csv", upload, "text/csv")})
                result.update(status=answer.status_code, body=answer.json(), seconds=time.perf_counter() - started)
                upload_done.set()

            thread = threading.Thread(target=send_upload)
            thread.start()
            time.sleep(1.0)  # the upload is read and parsed, its chunks queued
            during = []
            while not upload_done.is_set() and len(during) < 40:
                during.append(small(len(during)))
            upload_done_during = upload_done.is_set()
            thread.join(timeout=120)
        assert result.get("status") == 200 and result["body"]["rows"] == rows, result
        assert len(during) >= 10 and not (upload_done_during and len(during) < 10), (len(during), result["seconds"])
        idle_p90, during_p90 = percentile(idle, 90), percentile(during, 90)
        print(f"/search p90 idle {idle_p90 * 1000:.1f} ms, during the upload {during_p90 * 1000:.1f} ms "
              f"({len(during)} requests); upload {result['seconds']:.1f} s")
        # generous: 2 loaded cores; before chunking a small request waited for the whole upload (seconds)
        assert during_p90 < max(10 * idle_p90, idle_p90 + 0.5), (idle_p90, during_p90, result["seconds"])
        assert max(during) < result["seconds"] / 3, (max(during), result["seconds"])
