"""The FastAPI app factory: models loaded in the lifespan, every client error a 4xx with a clear ``detail``.

    from kluekit.serving import ServeSettings, create_app
    app = create_app(ServeSettings(model="runs/biencoder", corpus="faq.csv"))   # then: uvicorn, or TestClient
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from .. import __version__
from . import security
from .batcher import BatcherClosed
from .ecosystem import build_ecosystem_router
from .errors import RequestError
from .observability import Metrics, build_metrics_router
from .qa import QAService, build_qa_router
from .routes import build_router
from .service import load_service
from .settings import ServeSettings
from .tasks import (ModelPlan, biencoder_name, build_task_router, close_task_services, plan_models,
                    start_task_services)

logger = logging.getLogger("kluekit")
CSV_PATH = "/similarity/csv"

DESCRIPTION = """Sentence similarity and semantic search for Korean with a bi-encoder (kluekit).

* `cosine`: cosine similarity of the sentence embeddings (-1 to 1);
  `score`: the same on the STS 0-5 scale, `5 * max(cosine, 0)`.
* Concurrent requests are encoded together (micro-batching); see `batching` in `/health`.
* Client errors answer 4xx with `{"detail": "what is wrong"}`.
"""


def create_app(settings: ServeSettings, plan: ModelPlan | None = None) -> FastAPI:
    """The API for ``settings``; the models load when the app starts (lifespan), not here. ``plan``: what
    ``plan_models(settings)`` gives (which --model is the bi-encoder, which are task models, their routes)."""

    plan = plan or plan_models(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service = None
        app.state.task_services = {}
        if plan.biencoder is not None:
            service = await asyncio.to_thread(load_service, plan.biencoder)
            await service.start()
            app.state.service = service
            app.state.metrics.watch(service.batcher, biencoder_name(plan.biencoder))
            logger.info("ready: model %s (dim %d), corpus %s, cross-encoder %s", plan.biencoder.model, service.dim,
                        "none" if service.index is None else f"{len(service.index)} texts",
                        settings.cross_encoder or "none")
        qa = None
        if settings.qa_set:
            qa = QAService(settings, service)
            await asyncio.to_thread(qa.load)
            await qa.start()
            app.state.qa_service = qa
            app.state.metrics.watch(qa.batcher, "qa-set")
        try:
            app.state.task_services = await start_task_services(plan, settings)
            for name, task_service in app.state.task_services.items():
                app.state.metrics.watch(task_service.batcher, name)
            yield
        finally:
            app.state.shutdown.begin()  # from now on: JSON 503s
            await close_task_services(app.state.task_services)
            if qa is not None:
                await qa.close()
            if service is not None:
                await service.close()

    app = FastAPI(title="kluekit API", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    if plan.biencoder is not None:
        router = build_router(settings.max_request_bytes, settings.upload_request_bytes)
        if plan.tasks:  # the task router's /health lists every model (the bi-encoder's own health included)
            router.routes = [route for route in router.routes if getattr(route, "path", None) != "/health"]
        app.include_router(router)
        app.include_router(build_ecosystem_router())  # /v1/embeddings, /rerank
    if settings.qa_set:
        if plan.biencoder is None:
            from ..errors import KluekitError

            raise KluekitError("--qa-set: serve a bi-encoder with --model to retrieve its questions with")
        app.include_router(build_qa_router(settings))
    if plan.tasks:
        app.include_router(build_task_router(plan, settings))
    app.include_router(build_metrics_router())
    add_error_handlers(app, settings)
    app.add_middleware(ContentLengthLimit, settings=settings)
    security.install(app, settings, Metrics())  # API key, shutdown 503s, metrics, CORS
    return app


def too_large_message(settings: ServeSettings, path: str) -> str:
    if path == CSV_PATH:
        return f"file: the upload is larger than {settings.max_upload_bytes} bytes (--max-upload-bytes)"
    return f"request body larger than {settings.max_request_bytes} bytes"


class ContentLengthLimit:
    """Answers 413 (JSON) before reading a body whose Content-Length is over the limit; bodies without
    one are cut off while streaming by the routes' ``max_body_size``."""

    def __init__(self, app, settings: ServeSettings):
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            limit = self.settings.upload_request_bytes if scope["path"] == CSV_PATH else self.settings.max_request_bytes
            length = dict(scope.get("headers") or []).get(b"content-length", b"")
            if length.isdigit() and int(length) > limit:
                response = JSONResponse({"detail": too_large_message(self.settings, scope["path"])}, status_code=413,
                                        headers={"connection": "close"})
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


def _where(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "form")]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


def validation_message(errors) -> str:
    """FastAPI's validation errors as one line: ``sentence1: Field required; k: ...``."""
    lines = []
    for error in errors:
        message = error.get("msg", "invalid value")
        if error.get("type") == "json_invalid":
            position = error.get("loc", ("body", "?"))[-1]
            lines.append(f"body: not valid JSON at character {position} ({error.get('ctx', {}).get('error', '')})")
            continue
        lines.append(f"{_where(error.get('loc', ()))}: {message.removeprefix('Value error, ')}")
    return "; ".join(lines) or "invalid request"


def not_utf8_message(error: UnicodeDecodeError) -> str:
    """What is wrong with a JSON body that does not decode: where, which bytes, what to send instead."""
    bad = error.object[error.start:error.start + 4].hex(" ")
    return (f"body: not {error.encoding.upper()} text: bytes {bad} at byte {error.start}; "
            "send the JSON encoded as UTF-8")


def add_error_handlers(app: FastAPI, settings: ServeSettings) -> None:
    """Client errors as ``{"detail": message}`` with a 4xx; anything unexpected logged, answered 500."""

    @app.exception_handler(RequestError)
    async def request_error(request: Request, error: RequestError):
        return JSONResponse({"detail": error.message}, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        errors = jsonable_encoder(error.errors(), custom_encoder={bytes: lambda b: b.decode("utf-8", "replace")})
        for e in errors:
            e.pop("input", None)  # may echo a whole upload back
        return JSONResponse({"detail": validation_message(errors), "errors": errors}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        detail = too_large_message(settings, request.url.path) if error.status_code == 413 else error.detail
        if error.status_code == 400 and isinstance(error.__cause__, UnicodeDecodeError):
            detail = not_utf8_message(error.__cause__)
        return JSONResponse({"detail": detail}, status_code=error.status_code, headers=getattr(error, "headers", None))

    @app.exception_handler(BatcherClosed)
    async def closing(request: Request, error: BatcherClosed):
        return JSONResponse({"detail": "the server is shutting down; retry shortly"}, status_code=503)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(error).__name__}); see the server log"},
                            status_code=500)
