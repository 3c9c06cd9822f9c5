"""Speed of the HTTP API on CPU: encoding throughput, /search latency over a large corpus, /similarity under load.

    python benchmarks/api_bench.py                                   # the full measurement (100k corpus)
    python benchmarks/api_bench.py --corpus-size 2000 --requests 200 --search-queries 50 --name api_small
    python benchmarks/api_bench.py -- --batch-wait-ms 5             # extra 'kluekit serve' options after --

1. Encoding: sentences/s of ``encode`` (batch 64) over a fixed set of KLUE-STS dev sentences, in this process.
2. Corpus: the Korean sentences of ../shared/data (KLUE-STS, KorSTS, KorNLI, KLUE-NLI, NSMC, YNAT, KLUE-RE),
   de-duplicated, shuffled with a fixed seed, the first --corpus-size of them (fewer if there are not enough:
   the JSON records the size used). Indexed once into runs/bench-api/ (git-ignored); re-runs reuse the index.
3. ``kluekit serve`` is started as a real process on loopback with --threads (torch threads), pinned to the
   first --threads cores with taskset when available, with OMP_WAIT_POLICY=PASSIVE (--omp-wait-policy);
   /search p50/p99 over sequential queries (KLUE-STS dev sentences), then /similarity with --concurrency
   async clients (httpx) for --requests requests: requests/s, p50/p99 latency, errors (any non-200 or
   transport error). With --compare-unbatched (default) the /similarity load runs again against a server
   that encodes one request per model call (--batch-max-texts 2), to show what micro-batching buys.

The load generator runs on the same machine as the server (it shares the CPU): figures are end to end on
loopback. Writes benchmarks/results/<name>.json (default api.json).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, SHARED, benchmark_parser, write_results

CACHE = ROOT / "runs" / "bench-api"
DATA = SHARED / "data"
# (file, separator or "json", has a header, columns: names, or indexes when there is no header)
SOURCES = [
    ("klue_sts/klue_sts_train.csv", ",", True, ["sentence1", "sentence2"]),
    ("klue_sts/klue-sts-v1.1_dev.json", "json", True, ["sentence1", "sentence2"]),
    ("korsts/sts-train.tsv", "\t", True, ["sentence1", "sentence2"]),
    ("korsts/sts-dev.tsv", "\t", True, ["sentence1", "sentence2"]),
    ("korsts/sts-test.tsv", "\t", True, ["sentence1", "sentence2"]),
    ("kornli/xnli.dev.ko.tsv", "\t", True, ["sentence1", "sentence2"]),
    ("kornli/xnli.test.ko.tsv", "\t", True, ["sentence1", "sentence2"]),
    ("klue_nli/klue-nli-v1.1_dev.json", "json", True, ["premise", "hypothesis"]),
    ("nsmc/ratings_test.txt", "\t", True, ["document"]),
    ("nsmc/ratings_train_first5000.txt", "\t", True, ["document"]),
    ("klue_ynat/ynat_train.tsv", "\t", True, ["text"]),
    ("klue_ynat/ynat_dev.tsv", "\t", False, [1]),
    ("klue_re/train_partial_union.csv", ",", True, ["sentence"]),
    ("klue_re/boostcamp_test_data.csv", ",", True, ["sentence"]),
]


def source_texts(name: str, sep: str, header: bool, columns: list) -> list[str]:
    path = DATA / name
    if not path.is_file():
        print(f"skipping {path}: not found")
        return []
    if sep == "json":
        records = json.loads(path.read_text(encoding="utf-8"))
        return [str(r.get(c) or "") for r in records for c in columns]
    with open(path, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle, delimiter=sep, quoting=csv.QUOTE_MINIMAL if sep == "," else csv.QUOTE_NONE))
    if header:
        names, rows = rows[0], rows[1:]
        columns = [names.index(c) for c in columns]
    return [row[c] for row in rows for c in columns if c < len(row)]


def build_corpus(size: int, seed: int = 0) -> tuple[Path, int, int]:
    """(corpus text file, sentences in it, unique sentences available)."""
    texts = []
    for source in SOURCES:
        texts += source_texts(*source)
    unique = list(dict.fromkeys(" ".join(t.split()) for t in texts))
    unique = [t for t in unique if 2 <= len(t) <= 500]
    random.Random(seed).shuffle(unique)
    chosen = unique[:size]
    if len(chosen) < size:
        print(f"only {len(unique)} unique sentences in {DATA}; the corpus has {len(chosen)}, not {size}")
    path = CACHE / f"corpus-{len(chosen)}.txt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(chosen) + "\n", encoding="utf-8")
    return path, len(chosen), len(unique)


def sts_dev_pairs() -> list[tuple[str, str]]:
    records = json.loads((DATA / "klue_sts/klue-sts-v1.1_dev.json").read_text(encoding="utf-8"))
    return [(r["sentence1"], r["sentence2"]) for r in records]


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return round(float(np.percentile(np.asarray(values) * 1000, q)), 2)


def measure_encoding(model_path: str, sentences: list[str], batch_size: int, repeats: int = 2) -> float:
    from kluekit.embedding.encoding import encode, load_biencoder

    model = load_biencoder(model_path)
    encode(model, sentences[:64])  # warm-up
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        encode(model, sentences, batch_size=batch_size)
        best = max(best, len(sentences) / (time.perf_counter() - started))
    return round(best, 1)


class Server:
    """``kluekit serve`` as a child process on loopback; stopped with SIGINT (as Ctrl-C)."""

    def __init__(self, args, port: int, extra: list[str], log_name: str):
        command = [sys.executable, "-m", "kluekit.cli", "serve", "--model", args.model, "--port", str(port),
                   "--threads", str(args.threads), "--encode-batch-size", str(args.encode_batch_size), *extra]
        if shutil.which("taskset") and args.threads <= (os.cpu_count() or 1):
            command = ["taskset", "-c", ",".join(map(str, range(args.threads))), *command]
        self.command, self.url = command, f"http://127.0.0.1:{port}"
        self.log = open(CACHE / log_name, "w")
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float) -> dict:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"kluekit serve exited ({self.process.returncode}); see {self.log.name}")
            try:
                response = httpx.get(f"{self.url}/health", timeout=5)
                if response.status_code == 200:
                    return response.json()
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise SystemExit(f"kluekit serve not ready after {timeout:.0f}s; see {self.log.name}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()
        return self.process.returncode


def measure_search(url: str, queries: list[str], k: int) -> dict:
    import httpx

    latencies, errors = [], 0
    with httpx.Client(base_url=url, timeout=60) as client:
        for query in queries[:10]:  # warm-up
            client.get("/search", params={"q": query, "k": k})
        for query in queries:
            started = time.perf_counter()
            response = client.get("/search", params={"q": query, "k": k})
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200 or len(response.json()["results"]) != k
    return {"search_p50_ms": percentile(latencies, 50), "search_p99_ms": percentile(latencies, 99),
            "search_queries": len(queries), "search_k": k, "search_errors": errors}


async def similarity_load(url: str, pairs: list[tuple[str, str]], requests: int, concurrency: int) -> dict:
    """``concurrency`` clients, each sending its next GET /similarity as soon as the last one is answered."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def round_of(total: int) -> tuple[list[float], int, float]:
            latencies, errors, sent = [], 0, 0

            async def worker():
                nonlocal errors, sent
                while sent < total:
                    a, b = pairs[sent % len(pairs)]
                    sent += 1
                    started = time.perf_counter()
                    try:
                        response = await client.get("/similarity", params={"sentence1": a, "sentence2": b})
                        ok = response.status_code == 200 and 0 <= response.json()["score"] <= 5
                    except httpx.HTTPError:
                        ok = False
                    latencies.append(time.perf_counter() - started)
                    errors += not ok

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return latencies, errors, time.perf_counter() - started

        await round_of(min(2 * concurrency, requests))  # warm-up: connections open, model warm
        before = (await client.get("/health")).json()["batching"]
        latencies, errors, wall = await round_of(requests)
        after = (await client.get("/health")).json()["batching"]
    return {"rps": round(len(latencies) / wall, 1), "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99), "errors": errors, "requests": len(latencies),
            "batching": batching_delta(before, after, wall)}


def batching_delta(before: dict, after: dict, wall: float) -> dict:
    """Model calls during the load, their mean size, and the share of the wall time the model was busy."""
    batches = after["batches"] - before["batches"]
    texts = after["texts"] - before["texts"]
    busy = after["encode_seconds"] - before["encode_seconds"]
    return {"batches": batches, "mean_texts_per_batch": round(texts / max(batches, 1), 1),
            "model_busy_share": round(busy / wall, 2)}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = benchmark_parser(__doc__, "klue_sts/klue_sts_train.csv", "klue_sts/klue-sts-v1.1_dev.json", "api")
    parser.add_argument("--corpus-size", type=int, default=100_000)
    parser.add_argument("--encode-sentences", type=int, default=1000, help="KLUE-STS dev sentences to encode")
    parser.add_argument("--search-queries", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--requests", type=int, default=2000, help="/similarity requests under load")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--encode-batch-size", type=int, default=8, help="bi-encoder batch size (also the server's)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (and cores) of the server and encoder")
    parser.add_argument("--index", choices=["exact", "faiss"], default="exact")
    parser.add_argument("--compare-unbatched", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure /similarity against a server without micro-batching")
    parser.add_argument("--omp-wait-policy", choices=["PASSIVE", "ACTIVE", "default"], default="PASSIVE",
                        help="OMP_WAIT_POLICY of this process and the server: PASSIVE keeps torch's idle threads "
                             "from spinning, which matters when other work shares the cores (here: the load "
                             "generator)")
    args = parser.parse_args()
    extra = args.extra
    if args.omp_wait_policy != "default":  # read once, when OpenMP starts: set before torch is imported
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy

    import torch

    from kluekit.cli import setup_logging
    from kluekit.embedding.corpus import build_index

    setup_logging()
    torch.set_num_threads(args.threads)
    CACHE.mkdir(parents=True, exist_ok=True)
    pairs = sts_dev_pairs()
    sentences = list(dict.fromkeys(s for pair in pairs for s in pair))[:args.encode_sentences]
    figures = {"model": Path(args.model).name, "threads": args.threads, "omp_wait_policy": args.omp_wait_policy,
               "encode_sentences": len(sentences), "encode_batch_size": args.encode_batch_size,
               "encode_sentences_per_s": measure_encoding(args.model, sentences, args.encode_batch_size)}
    print(f"encoding: {figures['encode_sentences_per_s']} sentences/s")

    corpus, size, available = build_corpus(args.corpus_size)
    index_dir = CACHE / f"index-{size}-{args.index}-{Path(args.model).name}"
    started = time.perf_counter()
    build_index(args.model, str(corpus), kind=args.index, index_dir=str(index_dir),
                batch_size=args.encode_batch_size, progress=True)
    figures.update(corpus_size=size, corpus_unique_available=available, index=args.index,
                   index_build_or_load_s=round(time.perf_counter() - started, 1))

    server = Server(args, free_port(), ["--corpus", str(corpus), "--index-dir", str(index_dir),
                                        "--index", args.index, *extra], "server.log")
    try:
        health = server.wait_ready(timeout=1800)
        assert health["corpus_size"] == size, health
        queries = [a for a, _ in pairs][:args.search_queries]
        figures.update(measure_search(server.url, queries, args.k))
        print(f"search: p50 {figures['search_p50_ms']} ms, p99 {figures['search_p99_ms']} ms")
        load = asyncio.run(similarity_load(server.url, pairs, args.requests, args.concurrency))
    finally:
        code = server.stop()
    figures.update(similarity_rps=load["rps"], similarity_p50_ms=load["p50_ms"], similarity_p99_ms=load["p99_ms"],
                   errors=load["errors"] + figures["search_errors"], similarity_requests=load["requests"],
                   similarity_concurrency=args.concurrency, similarity_batching=load["batching"],
                   server_exit_code=code, server_command=" ".join(server.command))
    print(f"similarity: {load['rps']} requests/s, p99 {load['p99_ms']} ms, {load['errors']} errors")

    if args.compare_unbatched:
        plain = Server(args, free_port(), ["--batch-max-texts", "2", *extra], "server-unbatched.log")
        try:
            plain.wait_ready(timeout=600)
            unbatched = asyncio.run(similarity_load(plain.url, pairs, args.requests, args.concurrency))
        finally:
            plain.stop()
        figures.update(similarity_rps_unbatched=unbatched["rps"], similarity_p99_ms_unbatched=unbatched["p99_ms"],
                       errors_unbatched=unbatched["errors"], similarity_batching_unbatched=unbatched["batching"])
        print(f"similarity without micro-batching: {unbatched['rps']} requests/s, p99 {unbatched['p99_ms']} ms")
    figures["note"] = ("server and load generator share the machine's CPU; server pinned with taskset to "
                       f"{args.threads} core(s) when available, torch threads {args.threads}")
    write_results("api_bench.py", args.name, figures)


if __name__ == "__main__":
    main()
