"""Options of ``kluekit serve``: what to load and every limit the API enforces.

One dataclass serves as the command's options (``kluekit serve --max-rows 5000``) and as the app's
settings (``create_app(ServeSettings(model="path/to/biencoder"))``). Kept free of heavy imports so
that building the CLI parser stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import RUNTIME_HELP, RUNTIMES, opt

INDEX_KINDS = ["exact", "faiss"]


@dataclass
class ServeSettings:
    """What ``kluekit serve`` loads and the limits it enforces on every request."""

    model: list[str] = opt([], "what to serve, one or more NAME=DIR or DIR (name: the folder's name): a 'kluekit "
                               "train <task>' run (sts, re, classify, ner, mrc: POST /similarity, /relation, /classify, "
                               "/entities, /answer and /models/NAME/...), or one bi-encoder: a sentence-transformers "
                               "directory (e.g. from 'kluekit train biencoder') or any encoder directory (mean pooling)",
                           required=True)
    corpus: str | None = opt(None, "corpus file (CSV/TSV/JSONL/text) to index at start for GET /search")
    column: str | None = opt(None, "corpus column holding the sentences (default: detected)")
    index_dir: str | None = opt(None, "folder to keep the corpus index in; reused when built from the same "
                                      "corpus, model and index kind")
    index: str = opt("exact", "search index: exact (brute-force cosine) or faiss", choices=INDEX_KINDS)
    cross_encoder: str | None = opt(None, "run directory of 'kluekit train sts': lets /similarity rerank with it")
    host: str = opt("127.0.0.1", "address to listen on (0.0.0.0 to accept other machines)")
    port: int = opt(8000, "port to listen on", minimum=1)
    max_text_chars: int = opt(1000, "longest accepted text, in characters", minimum=1)
    max_pairs: int = opt(256, "most sentence pairs in one POST /similarity", minimum=1)
    max_upload_bytes: int = opt(5_000_000, "largest accepted CSV upload (and request body), in bytes", minimum=1)
    max_rows: int = opt(10_000, "most data rows in an uploaded CSV", minimum=1)
    max_k: int = opt(100, "largest k of /search and top_k of /similarity/csv", minimum=1)
    batch_max_texts: int = opt(64, "micro-batching: most texts (task models: items) in one model call", minimum=1)
    batch_wait_ms: float = opt(2.0, "micro-batching: how long to wait for more requests before encoding, "
                                    "in milliseconds", minimum=0)
    encode_batch_size: int = opt(0, "bi-encoder batch size inside one model call, texts sorted by length "
                                    "(0: 8 on CPU, where small batches waste less padding, 64 on GPU)", minimum=0)
    rerank_max_length: int = opt(0, "cross-encoder max tokens per pair (0: the run's own --max-length)", minimum=0)
    runtime: str = opt("torch", "what runs the models (every --model and the cross-encoder): " + RUNTIME_HELP,
                       choices=RUNTIMES)
    model_runtime: list[str] = opt([], "a model's own runtime, NAME=RUNTIME (NAME as --model names it; e.g. "
                                       "topics=onnx-int8 beside --runtime torch); repeat for several")
    threads: int = opt(0, "CPU threads of torch and ONNX Runtime (0: torch's own choice)", minimum=0)
    max_context_chars: int = opt(5000, "longest accepted MRC context (POST /answer), in characters", minimum=1)
    max_items: int = opt(64, "most items in one request to a task model's route ({\"items\": [...]})", minimum=1)
    check_on: list[str] = opt([], "quality gate: labelled dev file(s), NAME=FILE or FILE (a FILE alone: the only task "
                                  "model); at start each is scored with --runtime and with torch fp32, and the server "
                                  "refuses to start when --runtime loses more than --max-metric-drop")
    max_metric_drop: float = opt(1.0, "quality gate: largest accepted loss of the primary metric (points, x100 "
                                      "scale) of --runtime against torch fp32", minimum=0)
    log_level: str = opt("warning", "uvicorn log level", choices=["critical", "error", "warning", "info", "debug"])

    # answering from a stored QA set (POST /answer; see 'kluekit answer')
    qa_set: str | None = opt(None, "QA set (CSV/TSV/JSON of questions and answers) to answer from at POST /answer, "
                                   "retrieved with the served bi-encoder")
    qa_verifier: str | None = opt(None, "QA set: pair classifier run that checks the retrieved questions")
    qa_threshold: float = opt(0.5, "QA set: answer when the verifier's probability (without one: the cosine) "
                                   "reaches this")
    qa_top_n: int = opt(5, "QA set: stored questions retrieved per question", minimum=1)
    qa_question_column: str = opt("Q", "QA set: question column")
    qa_answer_column: str = opt("A", "QA set: answer column")
    qa_generator: str | None = opt(None, "QA set: dialogue model run that answers (marked generated) when nothing passes")

    @property
    def max_request_bytes(self) -> int:
        """Largest request body: the upload limit or the largest batch of pairs (two texts of up to 6 bytes
        a character, as JSON escapes them), plus room for the multipart envelope and the other fields."""
        return max(self.max_upload_bytes, 12 * self.max_pairs * self.max_text_chars) + 64 * 1024

    @property
    def upload_request_bytes(self) -> int:
        """Largest body of POST /similarity/csv: the upload limit, the form fields and the multipart envelope."""
        return self.max_upload_bytes + 6 * self.max_text_chars + 64 * 1024

    # batching
    batch_max_tokens: int = opt(2048, "micro-batching: most tokens (estimated: characters x the tokenizer's "
                                      "tokens per character, measured at start) in one model call; "
                                      "--batch-max-texts stays an upper bound", minimum=1)
    upload_chunk_texts: int = opt(0, "rows of a /similarity/csv upload (items of a larger task-model request) "
                                     "per model call; other requests are served between chunks "
                                     "(0: --encode-batch-size)", minimum=0)
    request_timeout: float = opt(600.0, "seconds a request may wait for the model before a 504 (0: no limit); "
                                        "a 10,000-row upload takes about 2 minutes on 2 CPU cores, longer "
                                        "beside other requests", minimum=0)
    max_queue: int = opt(1000, "most requests waiting for the model; more get a 503 at once (0: no limit)",
                         minimum=0)

    # security and ecosystem
    api_key: str | None = opt(None, "require this key on every request but /health, /metrics and the docs (header "
                                    "'Authorization: Bearer KEY' or 'X-API-Key: KEY'; else 401); default: the "
                                    "KLUEKIT_API_KEY environment variable (safer: not shown by ps), else no key")
    cors_origins: list[str] = opt([], "origins a browser may call the API from (CORS), e.g. https://app.example.com, "
                                      "or '*' for any; default: none, CORS off")
    shutdown_grace_s: float = opt(10.0, "on SIGTERM or Ctrl-C: seconds running requests get to finish; requests "
                                        "arriving meanwhile, and those still running then, get a JSON 503", minimum=0)
