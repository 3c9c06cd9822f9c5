"""The bi-encoder's corpus commands: ``kluekit encode`` and ``kluekit search`` (training is ``kluekit train biencoder``).

Options are dataclasses (light to import: the CLI builds its parser from them); each command is a plain
function of its options that the CLI, tests and benchmarks call directly.

    kluekit train biencoder --model ../shared/models/e5-small-ko --train klue_sts_train.csv sts-train.tsv \\
        --dev klue-sts-v1.1_dev.json sts-dev.tsv --output-dir runs/biencoder
    kluekit train biencoder ... --nli klue-nli-v1.1_dev.json xnli.dev.ko.tsv   # an NLI stage first
    kluekit encode --model runs/biencoder --corpus corpus.txt --index-dir runs/corpus-index
    kluekit search --index-dir runs/corpus-index --query "오늘 날씨 어때?" --k 5
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ..commands import Command
from ..config import opt

log = logging.getLogger("kluekit")
INDEX_KINDS = ["exact", "faiss"]


@dataclass
class EncodeOptions:
    """Options of ``kluekit encode``."""

    model: str = opt(None, "bi-encoder: a run directory of 'kluekit train biencoder', a sentence-transformers "
                           "model, or any encoder (mean pooling)", required=True)
    corpus: str = opt(None, "corpus file: CSV/TSV/JSON with a header, or text (one sentence per line)", required=True)
    column: str | None = opt(None, "text column of a CSV/TSV/JSON corpus (default: the only column, or "
                                   "the one named sentence or text)")
    index_dir: str = opt(None, "directory to write the index to (an index already there built from the same "
                               "corpus, column and model is reused, not re-encoded)", required=True)
    index: str = opt("exact", "exact: brute-force cosine; faiss: approximate HNSW graph, for large corpora",
                     choices=INDEX_KINDS)
    batch_size: int = opt(64, "sentences per encoding batch", minimum=1)


@dataclass
class SearchOptions:
    """Options of ``kluekit search``."""

    index_dir: str = opt(None, "index directory written by 'kluekit encode'", required=True)
    query: list[str] = opt([], "query text(s)")
    queries: str | None = opt(None, "file of queries (CSV/TSV/JSON with a header, or one per line)")
    queries_column: str | None = opt(None, "query column of a CSV/TSV/JSON --queries file")
    k: int = opt(10, "how many nearest texts to return per query", minimum=1)
    model: str | None = opt(None, "bi-encoder for the queries (default: the model recorded in the index)")
    output: str | None = opt(None, "also write the results as CSV: query_id, query, rank, score, id, text")
    batch_size: int = opt(64, "queries per encoding batch", minimum=1)


def encode_corpus(cfg: EncodeOptions):
    """Run ``kluekit encode``: embed the corpus into ``--index-dir`` (or reuse the index there)."""
    from .corpus import build_index

    started = time.perf_counter()
    index = build_index(cfg.model, cfg.corpus, cfg.column, cfg.index, cfg.index_dir, cfg.batch_size, progress=True)
    print(f"{len(index)} texts, {index.dim} dimensions, {index.kind} index in {cfg.index_dir} "
          f"({time.perf_counter() - started:.1f}s; encoding took {index.meta.get('encode_seconds', 0):.1f}s"
          f"{', reused' if getattr(index, 'reused', False) else ''})")
    return index


def search(cfg: SearchOptions) -> list[dict]:
    """Run ``kluekit search``: the top-k texts of the index for each query, printed (and written to --output)."""
    from ..errors import KluekitError
    from .corpus import model_source, read_corpus
    from .encoding import encode, load_biencoder
    from .index import EmbeddingIndex

    if bool(cfg.query) == bool(cfg.queries):
        raise KluekitError("search: give queries with either --query TEXT or --queries FILE (not both)")
    index = EmbeddingIndex.load(cfg.index_dir)
    queries = list(cfg.query) or read_corpus(cfg.queries, cfg.queries_column)
    model_path = cfg.model or index.meta.get("model")
    if not model_path:
        raise KluekitError(f"--model: the index in {cfg.index_dir} records no model; pass --model")
    try:
        model = load_biencoder(model_path)
    except KluekitError as error:
        hint = "" if cfg.model else f" (the model recorded in {cfg.index_dir}; pass --model to use another)"
        raise KluekitError(f"{error}{hint}") from None
    if cfg.model and model_source(model) != index.meta.get("model"):
        log.warning("--model %s is not the model that built the index (%s): scores are only meaningful if "
                    "both embed into the same space", cfg.model, index.meta.get("model"))
    scores, ids = index.search(encode(model, queries, batch_size=cfg.batch_size), cfg.k)
    rows = [{"query_id": q, "query": query, "rank": rank + 1, "score": round(float(score), 6), "id": int(row),
             "text": index.texts[row]}
            for q, query in enumerate(queries) for rank, (score, row) in enumerate(zip(scores[q], ids[q])) if row >= 0]
    for q, query in enumerate(queries):
        print(f"query {q}: {query}")
        for row in (r for r in rows if r["query_id"] == q):
            print(f"{row['rank']:>4}  {row['score']:.4f}  {row['id']:>7}  {row['text']}")
    if cfg.output:
        import pandas as pd

        from ..data.io import write_csv_atomic

        write_csv_atomic(pd.DataFrame(rows, columns=["query_id", "query", "rank", "score", "id", "text"]), cfg.output)
        print(f"results written to {cfg.output}")
    return rows


ENCODE = Command(EncodeOptions, "embed a corpus file (one sentence per row) into a search index on disk",
                 "kluekit.embedding.commands:encode_corpus")
SEARCH = Command(SearchOptions, "top-k most similar corpus texts for queries, from an index made by 'kluekit encode'",
                 "kluekit.embedding.commands:search")
