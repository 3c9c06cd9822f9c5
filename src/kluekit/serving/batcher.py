"""Micro-batching: concurrent requests' texts encoded together in one model call.

A forward pass over 64 short sentences costs far less than 32 passes over 2, so under load the server
collects the texts of whatever requests arrive while the model is busy (or within ``max_wait_ms`` of
the first), encodes them in one call on a worker thread (the event loop keeps accepting requests),
and hands each request its own rows::

    batcher = MicroBatcher(lambda texts: encode(model, texts), max_texts=64, max_wait_ms=2)
    await batcher.start()
    vectors = await batcher.encode(["첫 문장", "둘째 문장"])   # (2, dim), in order
    await batcher.close()

If a merged call fails, each request of it is retried alone, so an error reaches only the request
that caused it. All model work (also :meth:`run`) goes through one worker thread, one call at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

logger = logging.getLogger(__name__)


class BatcherClosed(RuntimeError):
    """The server is shutting down: no new work is accepted."""


@dataclass
class BatchStats:
    """Counters since start: requests served, model calls made, texts encoded (after de-duplication)."""

    requests: int = 0
    batches: int = 0
    texts: int = 0
    largest_batch: int = 0
    encode_seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"requests": self.requests, "batches": self.batches, "texts": self.texts,
                "largest_batch": self.largest_batch, "encode_seconds": round(self.encode_seconds, 3)}


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Collects ``encode`` requests for up to ``max_wait_ms`` / ``max_texts`` texts; one ``fn`` call each."""

    def __init__(self, fn: Callable[[list[str]], np.ndarray], max_texts: int = 64, max_wait_ms: float = 2.0):
        self.fn, self.max_texts, self.max_wait = fn, max_texts, max_wait_ms / 1000
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Job | None] | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    async def start(self) -> None:
        """Start the collecting task and the model thread (call from the running event loop)."""
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kluekit-model")
        self._worker = asyncio.create_task(self._loop(), name="kluekit-batcher")

    async def encode(self, texts: list[str]) -> np.ndarray:
        """Embeddings of ``texts`` (rows in the same order), computed together with concurrent requests."""
        if self._closed or self._queue is None:
            raise BatcherClosed("the server is shutting down")
        if not texts:
            raise ValueError("no texts to encode")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(list(texts), future))
        self.stats.requests += 1
        return await future

    async def run(self, fn: Callable, *args):
        """Run other model work (cross-encoder, index search) on the model thread, after queued batches."""
        if self._closed or self._executor is None:
            raise BatcherClosed("the server is shutting down")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        """Finish the queued requests, then stop the task and the thread."""
        if self._closed or self._queue is None:
            self._closed = True
            return
        self._closed = True
        self._queue.put_nowait(None)
        await self._worker
        self._executor.shutdown(wait=True)

    async def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        """The first job plus whatever else arrives in time; True once the stop marker was seen."""
        jobs, size = [first], len(first.texts)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_texts:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if job is None:
                return jobs, True
            jobs.append(job)
            size += len(job.texts)
        return jobs, False

    async def _loop(self) -> None:
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                break
            jobs, stop = await self._collect(first)
            jobs = [job for job in jobs if not job.future.done()]  # the client went away
            try:
                if jobs:
                    await self._serve(jobs)
            except Exception as error:  # noqa: BLE001 - a bug here must not hang every later request
                logger.exception("micro-batcher failed")
                for job in jobs:
                    _resolve(job.future, error=error)
        while not self._queue.empty():  # submitted after the stop marker: refuse
            job = self._queue.get_nowait()
            if job is not None and not job.future.done():
                job.future.set_exception(BatcherClosed("the server is shutting down"))

    async def _serve(self, jobs: list[_Job]) -> None:
        unique = list(dict.fromkeys(text for job in jobs for text in job.texts))
        try:
            vectors = await self._call(unique)
        except Exception as error:  # noqa: BLE001 - routed to the requests below
            if len(jobs) == 1:
                _resolve(jobs[0].future, error=error)
                return
            for job in jobs:  # find whose texts failed: one call per request
                await self._serve([job])
            return
        row = {text: i for i, text in enumerate(unique)}
        for job in jobs:
            _resolve(job.future, vectors[[row[text] for text in job.texts]])

    async def _call(self, texts: list[str]) -> np.ndarray:
        started = time.perf_counter()
        vectors = await asyncio.get_running_loop().run_in_executor(self._executor, self.fn, texts)
        vectors = np.asarray(vectors)
        if len(vectors) != len(texts):
            raise RuntimeError(f"encoder returned {len(vectors)} rows for {len(texts)} texts")
        self.stats.batches += 1
        self.stats.texts += len(texts)
        self.stats.largest_batch = max(self.stats.largest_batch, len(texts))
        self.stats.encode_seconds += time.perf_counter() - started
        return vectors


def _resolve(future: asyncio.Future, result=None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
