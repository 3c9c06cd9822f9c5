"""Speed of the HTTP API on CPU, ``kluekit serve`` against a plain sentence-transformers + FastAPI server:
encoding throughput, /search latency over a large corpus, /similarity under load, small requests beside an upload.

    python benchmarks/api_bench.py                                   # the full measurement (100k corpus)
    python benchmarks/api_bench.py --quick                           # a check that it runs (minutes; api_quick.json)
    python benchmarks/api_bench.py --runtime onnx-int8 --name api    # kluekit serve --runtime onnx-int8
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
4. Small requests beside a large upload: /search p50/p99 of one sequential client, idle (--small-requests
   queries), then while a POST /similarity/csv of --upload-rows corpus sentences runs (queries sent until
   the upload is answered).
5. With --compare-plain (default) the same /search, /similarity and upload measurements against
   benchmarks/plain_st_server.py (``SentenceTransformer.encode`` per request, ``util.semantic_search`` over the
   same corpus embeddings, read from the kluekit index), started the same way (same cores, threads, model).
   Both servers run side by side and each measurement runs on one, then at once on the other.

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

from common import ROOT, SHARED, benchmark_parser, kluekit_env, write_results

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


def load_encoder(model_path: str, runtime: str = "torch"):
    """The bi-encoder as ``kluekit serve --runtime`` loads it."""
    from kluekit.embedding.encoding import load_biencoder

    if runtime == "torch":
        return load_biencoder(model_path)
    from kluekit.embedding.onnxencoder import OnnxSentenceEncoder

    return OnnxSentenceEncoder(load_biencoder(model_path, device="cpu"), runtime)


def measure_encoding(model_path: str, sentences: list[str], batch_size: int, runtime: str = "torch",
                     repeats: int = 2) -> float:
    from kluekit.embedding.encoding import encode

    model = load_encoder(model_path, runtime)
    encode(model, sentences[:64])  # warm-up
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        encode(model, sentences, batch_size=batch_size)
        best = max(best, len(sentences) / (time.perf_counter() - started))
    return round(best, 1)


class Server:
    """``kluekit serve`` (or, given ``command``, another server) as a child process on loopback; stopped with
    SIGINT (as Ctrl-C)."""

    def __init__(self, args, port: int, extra: list[str], log_name: str, command: list[str] | None = None):
        command = command or [sys.executable, "-m", "kluekit.cli", "serve", "--model", args.model, "--port", str(port),
                              "--threads", str(args.threads), "--encode-batch-size", str(args.encode_batch_size),
                              *extra]
        if shutil.which("taskset") and args.threads <= (os.cpu_count() or 1):
            command = ["taskset", "-c", ",".join(map(str, range(args.threads))), *command]
        self.command, self.url = command, f"http://127.0.0.1:{port}"
        self.log = open(CACHE / log_name, "w")
        env = kluekit_env()
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


async def similarity_load(url: str, pairs: list[tuple[str, str]], requests: int, concurrency: int,
                          batching: bool = True) -> dict:
    """``concurrency`` clients, each sending its next GET /similarity as soon as the last one is answered
    (``batching``: read kluekit's batching counters from /health before and after)."""
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
        before = (await client.get("/health")).json().get("batching")
        latencies, errors, wall = await round_of(requests)
        after = (await client.get("/health")).json().get("batching")
    return {"rps": round(len(latencies) / wall, 1), "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99), "errors": errors, "requests": len(latencies),
            "batching": batching_delta(before, after, wall) if batching else {}}


def upload_csv(texts: list[str]) -> bytes:
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text"])
    writer.writerows([t] for t in texts)
    return buffer.getvalue().encode("utf-8")


def measure_upload(url: str, queries: list[str], upload: bytes, rows: int, idle_requests: int, k: int) -> dict:
    """/search latency of one sequential client, idle and while a POST /similarity/csv of ``rows`` rows runs."""
    import threading

    import httpx

    result: dict = {}
    done = threading.Event()

    def send_upload():
        started = time.perf_counter()
        result.update(status=None, rows=None)
        try:
            with httpx.Client(base_url=url, timeout=1800) as other:
                answer = other.post("/similarity/csv", data={"sentence": queries[0], "column": "text", "top_k": "10"},
                                    files={"file": ("upload.csv", upload, "text/csv")})
            result["status"] = answer.status_code
            result["rows"] = answer.json().get("rows") if answer.status_code == 200 else None
            if answer.status_code != 200:
                print(f"upload to {url}: {answer.status_code} {answer.text[:300]}")
        except (httpx.HTTPError, ValueError) as error:
            result["status"] = type(error).__name__
        finally:
            result["seconds"] = time.perf_counter() - started
            done.set()

    with httpx.Client(base_url=url, timeout=1800) as client:
        def small(i: int) -> tuple[float, bool]:
            started = time.perf_counter()
            response = client.get("/search", params={"q": queries[i % len(queries)], "k": k})
            return time.perf_counter() - started, response.status_code == 200

        for i in range(10):  # warm-up
            small(i)
        idle = [small(i) for i in range(idle_requests)]
        thread = threading.Thread(target=send_upload)
        thread.start()
        time.sleep(0.5)  # the upload is sent and parsed
        during = []
        while not done.is_set():
            during.append(small(len(during)))
        thread.join()
    errors = sum(not ok for _, ok in idle + during) + (result["status"] != 200 or result["rows"] != rows)
    return {"small_p50_idle_ms": percentile([t for t, _ in idle], 50),
            "small_p99_idle_ms": percentile([t for t, _ in idle], 99),
            "small_p50_during_upload_ms": percentile([t for t, _ in during], 50) if during else None,
            "small_p99_during_upload_ms": percentile([t for t, _ in during], 99) if during else None,
            "small_requests_during_upload": len(during), "upload_rows": rows,
            "upload_s": round(result["seconds"], 1), "upload_errors": errors}


def ratio(a, b) -> float | None:
    return None if not a or not b else round(a / b, 2)


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
    parser.add_argument("--runtime", choices=["torch", "onnx", "onnx-int8"], default="torch",
                        help="kluekit serve --runtime (the plain server always runs sentence-transformers in torch); "
                             "an ONNX runtime gets its own index, encoded by that runtime")
    parser.add_argument("--compare-unbatched", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure /similarity against a server without micro-batching")
    parser.add_argument("--upload-rows", type=int, default=9999, help="rows of the /similarity/csv upload")
    parser.add_argument("--small-requests", type=int, default=200, help="idle /search requests beside the upload")
    parser.add_argument("--compare-plain", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure benchmarks/plain_st_server.py (sentence-transformers + FastAPI)")
    parser.add_argument("--quick", action="store_true",
                        help="a check that everything runs: 2,000-sentence corpus, 200 requests, 50 queries, "
                             "1,000-row upload, 200 encoded sentences; writes api_quick.json unless --name")
    parser.add_argument("--omp-wait-policy", choices=["PASSIVE", "ACTIVE", "default"], default="PASSIVE",
                        help="OMP_WAIT_POLICY of this process and the server: PASSIVE keeps torch's idle threads "
                             "from spinning, which matters when other work shares the cores (here: the load "
                             "generator)")
    args = parser.parse_args()
    if args.quick:
        args.corpus_size, args.requests, args.search_queries = 2000, 200, 50
        args.upload_rows, args.small_requests, args.encode_sentences = 1000, 50, 200
        args.name = "api_quick" if args.name == "api" else args.name
    extra = [*args.extra, *(["--runtime", args.runtime] if args.runtime != "torch" else [])]
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
    figures["runtime"] = args.runtime
    if args.runtime != "torch":
        figures[f"encode_sentences_per_s_{args.runtime}"] = measure_encoding(args.model, sentences,
                                                                              args.encode_batch_size, args.runtime)
        print(f"encoding with {args.runtime}: {figures[f'encode_sentences_per_s_{args.runtime}']} sentences/s")

    corpus, size, available = build_corpus(args.corpus_size)
    index_dir = CACHE / f"index-{size}-{args.index}-{Path(args.model).name}"
    started = time.perf_counter()
    build_index(args.model, str(corpus), kind=args.index, index_dir=str(index_dir),
                batch_size=args.encode_batch_size, progress=True)
    figures.update(corpus_size=size, corpus_unique_available=available, index=args.index,
                   index_build_or_load_s=round(time.perf_counter() - started, 1))
    plain_index_dir = index_dir  # the plain server's corpus embeddings: sentence-transformers in torch
    if args.runtime != "torch":  # kluekit's own, encoded by its runtime (the torch index stays for the plain one)
        index_dir = CACHE / f"index-{size}-{args.index}-{Path(args.model).name}-{args.runtime}"
        started = time.perf_counter()
        build_index(load_encoder(args.model, args.runtime), str(corpus), kind=args.index, index_dir=str(index_dir),
                    batch_size=args.encode_batch_size, progress=True)
        figures[f"index_build_or_load_s_{args.runtime}"] = round(time.perf_counter() - started, 1)

    upload_texts = corpus.read_text(encoding="utf-8").splitlines()[:args.upload_rows]
    upload = upload_csv(upload_texts)
    server = Server(args, free_port(), ["--corpus", str(corpus), "--index-dir", str(index_dir),
                                        "--index", args.index, "--max-rows", str(max(args.upload_rows, 10_000)),
                                        "--max-upload-bytes", str(max(len(upload) + 4096, 5_000_000)),
                                        "--request-timeout", "0", *extra],
                    "server.log")
    plain = None
    if args.compare_plain:
        port = free_port()
        plain = Server(args, port, [], "server-plain.log", command=[
            sys.executable, str(ROOT / "benchmarks/plain_st_server.py"), "--model", args.model, "--port", str(port),
            "--threads", str(args.threads), "--index-dir", str(plain_index_dir)])
    plain_figures = {}
    try:
        health = server.wait_ready(timeout=1800)
        assert health["corpus_size"] == size, health
        if plain:
            assert plain.wait_ready(timeout=600)["corpus_size"] == size
        queries = [a for a, _ in pairs][:args.search_queries]
        figures.update(measure_search(server.url, queries, args.k))
        print(f"search: p50 {figures['search_p50_ms']} ms, p99 {figures['search_p99_ms']} ms")
        if plain:
            plain_figures.update(measure_search(plain.url, queries, args.k))
            print(f"plain server search: p50 {plain_figures['search_p50_ms']} ms, p99 {plain_figures['search_p99_ms']} ms")
        load = asyncio.run(similarity_load(server.url, pairs, args.requests, args.concurrency))
        print(f"similarity: {load['rps']} requests/s, p99 {load['p99_ms']} ms, {load['errors']} errors")
        if plain:
            plain_load = asyncio.run(similarity_load(plain.url, pairs, args.requests, args.concurrency, batching=False))
            print(f"plain server similarity: {plain_load['rps']} requests/s, p99 {plain_load['p99_ms']} ms, "
                  f"{plain_load['errors']} errors")
        sts_queries = [b for _, b in pairs]
        figures.update(measure_upload(server.url, sts_queries, upload, len(upload_texts), args.small_requests, args.k))
        print(f"small /search p99: idle {figures['small_p99_idle_ms']} ms, during a {len(upload_texts)}-row upload "
              f"{figures['small_p99_during_upload_ms']} ms (upload {figures['upload_s']} s)")
        if plain:
            plain_figures.update(measure_upload(plain.url, sts_queries, upload, len(upload_texts), args.small_requests,
                                                args.k))
            print(f"plain server small /search p99: idle {plain_figures['small_p99_idle_ms']} ms, during the upload "
                  f"{plain_figures['small_p99_during_upload_ms']} ms (upload {plain_figures['upload_s']} s)")
    finally:
        code = server.stop()
        if plain:
            plain.stop()
    figures.update(similarity_rps=load["rps"], similarity_p50_ms=load["p50_ms"], similarity_p99_ms=load["p99_ms"],
                   errors=load["errors"] + figures["search_errors"], similarity_requests=load["requests"],
                   similarity_concurrency=args.concurrency, similarity_batching=load["batching"],
                   server_exit_code=code, server_command=" ".join(server.command))
    if plain:
        figures.update(
            plain_st_similarity_rps=plain_load["rps"], plain_st_similarity_p50_ms=plain_load["p50_ms"],
            plain_st_similarity_p99_ms=plain_load["p99_ms"], plain_st_similarity_errors=plain_load["errors"],
            plain_st_search_p50_ms=plain_figures["search_p50_ms"], plain_st_search_p99_ms=plain_figures["search_p99_ms"],
            plain_st_search_errors=plain_figures["search_errors"],
            **{f"plain_st_{key}": value for key, value in plain_figures.items() if key.startswith(("small_", "upload_"))},
            plain_st_command=" ".join(plain.command))
        figures["goals"] = {  # issue 18: >= 3x the req/s, <= 1/3 of the p99s, small p99 during an upload <= 2x idle
            "similarity_rps_vs_plain": ratio(load["rps"], plain_load["rps"]),
            "similarity_p99_vs_plain": ratio(load["p99_ms"], plain_load["p99_ms"]),
            "search_p99_vs_plain": ratio(figures["search_p99_ms"], plain_figures["search_p99_ms"]),
            "small_p99_during_upload_vs_idle": ratio(figures["small_p99_during_upload_ms"], figures["small_p99_idle_ms"]),
        }
        goals = figures["goals"]
        goals["met"] = bool(load["errors"] == 0 and (goals["similarity_rps_vs_plain"] or 0) >= 3
                            and (goals["similarity_p99_vs_plain"] or 9) <= 1 / 3
                            and (goals["search_p99_vs_plain"] or 9) <= 1 / 3
                            and (goals["small_p99_during_upload_vs_idle"] or 9) <= 2)

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
