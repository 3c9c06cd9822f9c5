"""The baseline of ``api_bench.py``: a plain sentence-transformers + FastAPI server, as users write it by hand.

    python benchmarks/plain_st_server.py --model ../shared/models/e5-small-ko --port 8001 --threads 2 \\
        --index-dir runs/bench-api/index-100000-exact-e5-small-ko

* ``GET /similarity?sentence1=..&sentence2=..``: one ``SentenceTransformer.encode`` of the pair per request.
* ``GET /search?q=..&k=..``: ``encode`` the query, ``util.semantic_search`` over the corpus embeddings.
* ``POST /similarity/csv`` (file, sentence, column, top_k): the whole column in one ``encode`` call.
* ``GET /health``.

Endpoints are plain ``def`` functions (FastAPI runs them in its thread pool), as in the FastAPI and
sentence-transformers tutorials; nothing is batched across requests. The corpus embeddings are read from a
kluekit index directory (``embeddings.npy``, ``texts.json``): the same vectors, without encoding the corpus
again (that cost is not part of what the benchmark compares). Answers use the same fields as
``kluekit serve`` (cosine, score = 5 * max(cosine, 0)) so the load generator checks both alike.
"""

import argparse  # no "from __future__ import annotations": FastAPI must see UploadFile in the signatures
import io
import json
from pathlib import Path


def build_app(model_path: str, index_dir: str | None):
    import numpy as np
    import pandas as pd
    import torch
    from fastapi import FastAPI, File, Form, UploadFile
    from sentence_transformers import SentenceTransformer, util

    model = SentenceTransformer(model_path, device="cpu")
    corpus, texts = None, []
    if index_dir:
        corpus = torch.from_numpy(np.array(np.load(Path(index_dir) / "embeddings.npy"), dtype=np.float32))
        texts = json.loads((Path(index_dir) / "texts.json").read_text(encoding="utf-8"))
    app = FastAPI(title="plain sentence-transformers server")

    @app.get("/health")
    def health():
        return {"status": "ok", "corpus_size": len(texts)}

    @app.get("/similarity")
    def similarity(sentence1: str, sentence2: str):
        a, b = model.encode([sentence1, sentence2], convert_to_tensor=True, normalize_embeddings=True)
        cosine = float(util.cos_sim(a, b))
        return {"sentence1": sentence1, "sentence2": sentence2, "cosine": cosine, "score": 5 * max(cosine, 0.0)}

    @app.get("/search")
    def search(q: str, k: int = 10):
        query = model.encode(q, convert_to_tensor=True, normalize_embeddings=True)
        hits = util.semantic_search(query, corpus, top_k=k)[0]
        return {"query": q, "k": k, "results": [
            {"rank": rank, "id": hit["corpus_id"], "text": texts[hit["corpus_id"]], "cosine": hit["score"],
             "score": 5 * max(hit["score"], 0.0)} for rank, hit in enumerate(hits, start=1)]}

    @app.post("/similarity/csv")
    def similarity_csv(file: UploadFile = File(...), sentence: str = Form(...), column: str | None = Form(None),
                       top_k: int = Form(10)):
        frame = pd.read_csv(io.BytesIO(file.file.read()))
        name = column or frame.columns[0]
        rows = frame[name].dropna().astype(str).tolist()
        base = model.encode(sentence, convert_to_tensor=True, normalize_embeddings=True)
        vectors = model.encode(rows, convert_to_tensor=True, normalize_embeddings=True)
        cosine = util.cos_sim(base, vectors)[0]
        order = torch.argsort(cosine, descending=True)[:top_k or len(rows)].tolist()
        return {"sentence": sentence, "column": name, "rows": len(rows), "results": [
            {"index": i, "text": rows[i], "cosine": float(cosine[i]), "score": 5 * max(float(cosine[i]), 0.0)}
            for i in order]}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="sentence-transformers model directory")
    parser.add_argument("--index-dir", help="kluekit index directory holding the corpus embeddings for /search")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    args = parser.parse_args()
    import torch
    import uvicorn

    if args.threads:
        torch.set_num_threads(args.threads)
    app = build_app(args.model, args.index_dir)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
