"""Micro-batching by a token budget, with a fair queue: many small requests share a model call, and a large
request is cut into chunks so that the small requests queued meanwhile are served between its chunks.

A forward pass over 64 short sentences costs far less than 32 passes over 2, so under load the server
collects the texts of whatever requests arrive while the model is busy (or within ``max_wait_ms`` of
the first) until their estimated token count reaches ``max_tokens`` (at most ``max_texts`` texts),
encodes them in one call on a worker thread (the event loop keeps accepting requests), and hands each
request its own rows::

    batcher = MicroBatcher(lambda texts: encode(model, texts), max_texts=64, max_tokens=2048, max_wait_ms=2)
    await batcher.start()
    vectors = await batcher.encode(["첫 문장", "둘째 문장"])   # (2, dim), in order
    rows = await batcher.encode(upload_rows, chunk=8)          # in chunks of 8, between other requests
    await batcher.close()

Scheduling, one model call at a time: first :meth:`run` calls (index search, cross-encoder: the second
half of a request already encoded), then, in turn, one batch of small requests (first come, first
served, merged up to the budget) and one chunk of each large request (round-robin between them). A
request is large when it gives ``chunk`` or is over the budget by itself; its texts are sorted by length
before chunking (less padding), and its rows come back in its own order. While small requests keep coming
(one in the last ``active_window_s``), large requests are cut in chunks of ``min_chunk`` texts (default: a
quarter of ``chunk``) and at most ``min_chunk_tokens`` tokens (one text at least), so a small request waits for
about one small request's model work, even at the long end of a length-sorted upload; once they stop, full
chunks again.

If a merged call fails, each request of it is retried alone, so an error reaches only the request that
caused it. A request whose caller stopped waiting (timeout, client gone) is dropped from the queue.

The units need not be texts: a task model batches request items (``count_tokens`` sizes an item, e.g.
:func:`item_tokens`; ``dedupe=False`` as items need not be hashable), and ``fn`` may answer a list (one answer
per item) instead of an array; each request then gets a list of its answers::

    batcher = MicroBatcher(predict_items, count_tokens=item_tokens, dedupe=False, name="topics")
    answers = await batcher.encode([item1, item2])              # [answer1, answer2]
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

logger = logging.getLogger(__name__)


class BatcherClosed(RuntimeError):
    """The server is shutting down: no new work is accepted."""


class BatcherBusy(RuntimeError):
    """More requests are waiting than ``max_queue`` allows: this one is refused at once."""


def estimate_tokens(text: str, tokens_per_char: float = 0.6) -> int:
    """A cheap token count: characters x a tokens-per-character ratio, plus 2 special tokens."""
    return int(len(text) * tokens_per_char + 0.999) + 2


def item_tokens(item, tokens_per_char: float = 0.6) -> int:
    """A cheap token count of a request item (a pydantic model, a dict): :func:`estimate_tokens` summed over
    its string fields, nested ones included, so the token budget sees a 5,000-character context as large."""
    return sum(estimate_tokens(text, tokens_per_char) for text in _strings(item.model_dump()
                                                                          if hasattr(item, "model_dump") else item))


def _strings(value):
    """Every string inside ``value`` (dict values, list members, the value itself)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for member in value.values():
            yield from _strings(member)
    elif isinstance(value, (list, tuple)):
        for member in value:
            yield from _strings(member)


@dataclass
class BatchStats:
    """Counters since start (requests served, model calls made, texts and estimated tokens encoded after
    de-duplication, the largest call) and the live queue: requests waiting and their texts (``texts``: the
    batcher's units, request items for a task model)."""

    requests: int = 0
    batches: int = 0
    texts: int = 0
    tokens: int = 0
    largest_batch: int = 0
    largest_batch_tokens: int = 0
    last_batch_texts: int = 0
    last_batch_tokens: int = 0
    chunked_requests: int = 0
    rejected: int = 0
    queue_depth: int = 0
    queued_texts: int = 0
    encode_seconds: float = 0.0

    def as_dict(self) -> dict:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["encode_seconds"] = round(self.encode_seconds, 3)
        return out


@dataclass
class _Job:
    """One request's texts (items); a large one also keeps its length order, chunk size, progress and its rows."""

    texts: list
    tokens: list[int]
    future: asyncio.Future = field(repr=False)
    order: np.ndarray | None = None
    chunk: int = 0
    next: int = 0  # texts of ``order`` already sent to the model
    rows: np.ndarray | list | None = None
    created: float = field(default_factory=time.monotonic)
    counted: bool = True  # still in the queue counters


@dataclass
class _Call:
    fn: Callable
    args: tuple
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Merges ``encode`` requests up to ``max_tokens`` / ``max_texts`` per ``fn`` call; large ones in chunks.

    ``fn`` maps a list of texts (or items) to an array of rows or a list of answers, one per input in order;
    ``count_tokens`` sizes one input; ``dedupe``: inputs equal within a call go to ``fn`` once (they must be
    hashable); ``name`` names the model thread (``kluekit-NAME``)."""

    def __init__(self, fn: Callable[[list], np.ndarray | list], max_texts: int = 64, max_wait_ms: float = 2.0,
                 max_tokens: int | None = None, count_tokens: Callable[..., int] = estimate_tokens,
                 max_queue: int = 0, min_chunk: int | None = None, min_chunk_tokens: int = 64,
                 active_window_s: float = 1.0, dedupe: bool = True, name: str = "model"):
        self.fn, self.max_texts, self.max_wait = fn, max_texts, max_wait_ms / 1000
        self.max_tokens, self.count_tokens, self.max_queue = max_tokens or float("inf"), count_tokens, max_queue
        self.min_chunk, self.min_chunk_tokens, self.active_window = min_chunk, min_chunk_tokens, active_window_s
        self.dedupe, self.name = dedupe, name
        self._last_small = float("-inf")
        self.stats = BatchStats()
        self._small: deque[_Job] = deque()
        self._large: OrderedDict[int, _Job] = OrderedDict()
        self._calls: deque[_Call] = deque()
        self._small_turn = True
        self._current: list[_Job] = []  # the jobs of the model call under way
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    async def start(self) -> None:
        """Start the scheduling task and the model thread (call from the running event loop)."""
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"kluekit-{self.name}")
        self._worker = asyncio.create_task(self._loop(), name=f"kluekit-batcher-{self.name}")

    async def encode(self, texts: list, chunk: int | None = None) -> np.ndarray | list:
        """Embeddings of ``texts`` (rows in the same order), computed together with concurrent requests; for a
        ``fn`` that answers lists, the list of the answers of ``texts`` (items), in order.

        ``chunk``: encode in chunks of at most this many texts (and the token budget), taking turns with
        the other requests; also done, by the budget, for a request over the budget by itself."""
        self._check_open(admit=True)
        if not texts:
            raise ValueError("no texts to encode")
        tokens = [self.count_tokens(t) for t in texts]
        job = _Job(list(texts), tokens, asyncio.get_running_loop().create_future())
        large = chunk is not None or len(texts) > self.max_texts or sum(tokens) > self.max_tokens
        if large:
            job.order, job.chunk = np.argsort(tokens, kind="stable"), chunk or self.max_texts
            self._large[id(job)] = job
            self.stats.chunked_requests += 1
        else:
            self._small.append(job)
            self._last_small = time.monotonic()
        self.stats.requests += 1
        self._queued(1, len(texts))
        try:
            return await job.future
        finally:
            if not job.future.done():  # the caller stopped waiting: drop it from the queue
                job.future.cancel()
            self._forget(job)

    async def run(self, fn: Callable, *args):
        """Run other model work (cross-encoder, index search) on the model thread, before queued batches."""
        self._check_open()
        call = _Call(fn, args, asyncio.get_running_loop().create_future())
        self._calls.append(call)
        self._wake.set()
        return await call.future

    async def close(self) -> None:
        """Finish the queued requests, then stop the task and the thread."""
        if self._closed or self._worker is None:
            self._closed = True
            return
        self._closed = True
        self._wake.set()
        await self._worker
        self._executor.shutdown(wait=True)

    # -- queue ------------------------------------------------------------------------------------------
    def _check_open(self, admit: bool = False) -> None:
        if self._closed or self._worker is None:
            raise BatcherClosed("the server is shutting down")
        if admit and self.max_queue and self.stats.queue_depth >= self.max_queue:
            self.stats.rejected += 1
            raise BatcherBusy(f"{self.stats.queue_depth} requests are waiting for the model; the limit is "
                              f"{self.max_queue} (--max-queue)")

    def _queued(self, requests: int, texts: int) -> None:
        self.stats.queue_depth += requests
        self.stats.queued_texts += texts
        self._wake.set()

    def _forget(self, job: _Job) -> None:
        """Out of the queue counters once (its texts that were encoded were already counted off)."""
        if job.counted:
            self._queued(-1, -(len(job.texts) - job.next))
            job.counted = False
            job.next = len(job.texts)

    def _cut(self, job: _Job) -> np.ndarray:
        """The next chunk of a large request (positions in its texts): in length order, at most its chunk size
        (``min_chunk`` and ``min_chunk_tokens`` while small requests keep coming), ``max_texts`` and the token
        budget."""
        chunk, budget = job.chunk, self.max_tokens
        if time.monotonic() - self._last_small < self.active_window:
            chunk, budget = self.min_chunk or max(1, chunk // 4), min(budget, self.min_chunk_tokens)
        limit, start, end, size = min(chunk, self.max_texts), job.next, job.next, 0
        while end < len(job.order) and end - start < limit:
            tokens = job.tokens[job.order[end]]
            if end > start and size + tokens > budget:
                break
            size, end = size + tokens, end + 1
        job.next = end
        self._queued(0, -(end - start))
        return job.order[start:end]

    def _pending(self) -> bool:
        return bool(self._calls or self._small or self._large)

    # -- scheduling -------------------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            if not self._pending():
                if self._closed:
                    break
                self._wake.clear()
                await self._wake.wait()
                continue
            self._current = []
            try:
                await self._step()
            except Exception as error:  # noqa: BLE001 - a bug here must not hang every later request
                logger.exception("micro-batcher failed")
                for job in self._current:
                    self._finish(job, error=error)
            await asyncio.sleep(0)  # let answered requests queue their follow-up (run) before the next pick

    async def _step(self) -> None:
        while self._calls:
            call = self._calls.popleft()
            if not call.future.done():
                try:
                    _resolve(call.future, await self._in_thread(call.fn, *call.args))
                except Exception as error:  # noqa: BLE001 - routed to its caller
                    _resolve(call.future, error=error)
                return
        small, large = self._live_small(), self._live_large()
        if small and (self._small_turn or not large):
            self._small_turn = False
            await self._serve_small()
        elif large:
            self._small_turn = True
            self._large.move_to_end(id(large))  # round-robin between large requests
            await self._serve_chunk(large)

    def _live_small(self) -> bool:
        while self._small and self._small[0].future.done():
            self._forget(self._small.popleft())
        return bool(self._small)

    def _live_large(self) -> _Job | None:
        for key, job in list(self._large.items()):
            if job.future.done() or job.next >= len(job.texts):
                self._forget(self._large.pop(key))
                continue
            return job
        return None

    async def _serve_small(self) -> None:
        deadline = self._small[0].created + self.max_wait  # waiting while the model was busy counts
        while not self._full() and (remaining := deadline - time.monotonic()) > 0:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                break
        jobs, texts, tokens = [], 0, 0
        while self._small:
            job = self._small[0]
            if job.future.done():
                self._forget(self._small.popleft())
                continue
            size = sum(job.tokens)
            if jobs and (texts + len(job.texts) > self.max_texts or tokens + size > self.max_tokens):
                break
            jobs.append(self._small.popleft())
            self._current.append(job)
            texts, tokens = texts + len(job.texts), tokens + size
        await self._serve(jobs)

    def _full(self) -> bool:
        texts = sum(len(job.texts) for job in self._small)
        return texts >= self.max_texts or sum(sum(job.tokens) for job in self._small) >= self.max_tokens

    async def _serve(self, jobs: list[_Job]) -> None:
        jobs = [job for job in jobs if not job.future.done()]  # the client went away
        if not jobs:
            return
        texts, tokens, rows = self._merge(jobs)
        try:
            vectors = await self._call(texts, tokens)
        except Exception as error:  # noqa: BLE001 - routed to the requests below
            if len(jobs) == 1:
                self._finish(jobs[0], error=error)
                return
            for job in jobs:  # find whose texts failed: one call per request
                await self._serve([job])
            return
        start = 0
        for job in jobs:
            self._finish(job, _take(vectors, rows[start:start + len(job.texts)]))
            start += len(job.texts)

    def _merge(self, jobs: list[_Job]) -> tuple[list, list[int], list[int]]:
        """The inputs of one call for ``jobs`` (equal ones once, with ``dedupe``), their tokens, and for each
        input of the jobs, in order, its row in the call's answer."""
        texts = [text for job in jobs for text in job.texts]
        tokens = [n for job in jobs for n in job.tokens]
        if not self.dedupe:
            return texts, tokens, list(range(len(texts)))
        row: dict = {}
        rows = [row.setdefault(text, len(row)) for text in texts]
        counts = dict(zip(texts, tokens))
        return list(row), [counts[text] for text in row], rows

    async def _serve_chunk(self, job: _Job) -> None:
        self._current = [job]
        positions = self._cut(job)
        try:
            vectors = await self._call([job.texts[p] for p in positions], [job.tokens[p] for p in positions])
        except Exception as error:  # noqa: BLE001 - routed to its request
            self._finish(job, error=error)
            return
        if job.rows is None:
            job.rows = _blank(vectors, len(job.texts))
        _put(job.rows, positions, vectors)
        if job.next >= len(job.texts):
            self._finish(job, job.rows)

    def _finish(self, job: _Job, result=None, error: BaseException | None = None) -> None:
        _resolve(job.future, result, error)
        self._forget(job)

    async def _call(self, texts: list, tokens: list[int]) -> np.ndarray | list:
        order = sorted(range(len(texts)), key=tokens.__getitem__)  # by length: less padding inside the call
        started = time.perf_counter()
        vectors = await self._in_thread(self.fn, [texts[i] for i in order])
        vectors = list(vectors) if isinstance(vectors, (list, tuple)) else np.asarray(vectors)
        if len(vectors) != len(texts):
            raise RuntimeError(f"encoder returned {len(vectors)} rows for {len(texts)} texts")
        out = _blank(vectors, len(texts))
        _put(out, order, vectors)
        stats, total = self.stats, sum(tokens)
        stats.batches, stats.texts, stats.tokens = stats.batches + 1, stats.texts + len(texts), stats.tokens + total
        stats.largest_batch = max(stats.largest_batch, len(texts))
        stats.largest_batch_tokens = max(stats.largest_batch_tokens, total)
        stats.last_batch_texts, stats.last_batch_tokens = len(texts), total
        stats.encode_seconds += time.perf_counter() - started
        return out

    async def _in_thread(self, fn: Callable, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def _blank(rows: np.ndarray | list, n: int) -> np.ndarray | list:
    """Room for ``n`` rows like ``rows``: an empty array of their shape and dtype, or a list of n Nones."""
    if isinstance(rows, list):
        return [None] * n
    return np.empty((n, *rows.shape[1:]), dtype=rows.dtype)


def _put(out: np.ndarray | list, positions, rows: np.ndarray | list) -> None:
    """``out[positions] = rows`` for an array or a list."""
    if isinstance(out, list):
        for position, row in zip(positions, rows):
            out[position] = row
    else:
        out[positions] = rows


def _take(rows: np.ndarray | list, positions: list[int]) -> np.ndarray | list:
    """``rows[positions]`` for an array or a list."""
    return [rows[p] for p in positions] if isinstance(rows, list) else rows[positions]


def _resolve(future: asyncio.Future, result=None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
