"""``kluekit serve``: the HTTP API under uvicorn until Ctrl-C (or SIGTERM), then a clean exit.

    kluekit serve --model runs/biencoder --corpus faq.csv --cross-encoder runs/sts-best --port 8000
    kluekit serve --model topics=runs/ynat runs/ner runs/korquad --runtime onnx-int8 --check-on topics=dev.tsv
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from ..commands import Command
from ..errors import KluekitError
from .settings import ServeSettings


class _Stop(Exception):
    """SIGTERM after uvicorn's graceful shutdown: leave quietly."""


def check_inputs(settings: ServeSettings) -> None:
    """Cheap checks before anything loads, so a typo is one clear line rather than a failed startup."""
    from ..modeling import check_model_path
    from ..onnxrun import check_runtime, require_onnxruntime

    from .tasks import model_values, runtime_overrides, split_name

    for value in model_values(settings):
        check_model_path(split_name(value)[1])
    runtimes = {settings.runtime, *runtime_overrides(settings).values()}
    for runtime in runtimes:
        check_runtime(runtime)
    if runtimes != {"torch"}:
        require_onnxruntime()
    if settings.corpus and not Path(settings.corpus).is_file():
        raise KluekitError(f"--corpus: no such file {settings.corpus!r}")
    if settings.column and not settings.corpus:
        raise KluekitError("--column needs --corpus")
    if settings.index_dir and not settings.corpus:
        raise KluekitError("--index-dir needs --corpus")
    if settings.cross_encoder:
        from .rerank import check_cross_encoder

        check_cross_encoder(settings.cross_encoder)
    if not 1 <= settings.port <= 65535:
        raise KluekitError(f"--port: {settings.port} is not a port number (1-65535)")


def limit_numpy_blas() -> None:
    """numpy's BLAS on one thread: the server's numpy products are small (one query against the corpus), and
    a second pool of spinning BLAS threads beside torch's made a 2,000-row search 100x slower on 2 cores."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - comes with scikit-learn
        return
    threadpool_limits(1, user_api="blas")


def drain_on_exit(server, shutdown, grace_s: float) -> None:
    """On uvicorn's exit signal (SIGTERM, Ctrl-C), refuse new requests with a JSON 503 at once and give the running
    ones ``grace_s``; uvicorn waits a second longer, so those past it still get their 503 before it cancels them."""
    handle_exit = server.handle_exit

    def exit_and_drain(sig, frame):
        try:  # the handler runs on the main thread, inside uvicorn's running event loop
            asyncio.get_running_loop().call_soon_threadsafe(shutdown.begin, grace_s)
        except RuntimeError:  # not serving yet (still loading): uvicorn just stops
            pass
        handle_exit(sig, frame)

    server.handle_exit = exit_and_drain  # uvicorn installs self.handle_exit as the signal handler


def serve(settings: ServeSettings) -> None:
    """Load the models, listen on --host/--port, answer requests until interrupted."""
    check_inputs(settings)
    import torch
    import uvicorn

    from .app import create_app
    from .security import exposure_warning, resolve_api_key
    from .quality import check_quality
    from .tasks import plan_models

    if settings.threads:
        torch.set_num_threads(settings.threads)
    limit_numpy_blas()
    plan = plan_models(settings)
    if settings.check_on:
        check_quality(settings, plan)  # refuses to start (KluekitError: one line, exit 2) past --max-metric-drop
    app = create_app(settings, plan)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port,
                                           log_level=settings.log_level, lifespan="on",
                                           timeout_graceful_shutdown=settings.shutdown_grace_s + 1))
    drain_on_exit(server, app.state.shutdown, settings.shutdown_grace_s)
    warning = exposure_warning(settings.host, resolve_api_key(settings.api_key))
    if warning:
        print(warning, file=sys.stderr, flush=True)
    url = f"http://{settings.host}:{settings.port}"
    print(f"kluekit: serving on {url} once the model is loaded (API docs: {url}/docs); Ctrl-C stops", flush=True)

    def stop(signum, frame):
        raise _Stop

    previous = signal.signal(signal.SIGTERM, stop)  # uvicorn re-raises the signal after its graceful shutdown
    try:
        server.run()
    except (KeyboardInterrupt, _Stop):
        pass
    except SystemExit:  # uvicorn exits when it cannot listen (port taken); it has logged why
        raise KluekitError(f"cannot listen on {settings.host}:{settings.port} (see the messages above)") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not server.started:
        raise KluekitError("the server did not start (see the messages above)")
    print("kluekit: server stopped", flush=True)


SERVE = Command(options=ServeSettings, run="kluekit.serving.commands:serve",
                help="serve trained runs over HTTP: the bi-encoder (/similarity, /similarity/csv, /search) and task "
                     "runs (/similarity, /relation, /classify, /entities, /answer), /health (docs at /docs)")
