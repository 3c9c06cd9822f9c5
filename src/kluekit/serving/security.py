"""Safe serving: an optional API key, CORS for browsers (off by default), and a graceful shutdown that answers
JSON 503s.

- API key: ``--api-key`` or the ``KLUEKIT_API_KEY`` environment variable (better: a command line is visible in
  ``ps``). Every request must then send ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (compared in
  constant time), else 401; ``/health`` and ``/metrics`` stay open (``OPEN_PATHS``) for load balancers and
  Prometheus, and so do ``/docs`` and ``/openapi.json`` (they describe the API, they serve no model output).
- CORS: ``--cors-origins`` lists the origins a browser may call from; without it no CORS header is sent.
- Shutdown: on SIGTERM (``begin``), requests already running get ``--shutdown-grace-s`` to finish; a request
  that arrives later, or one still running when the grace period is over, is answered with a JSON 503.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import os

from fastapi.responses import JSONResponse

API_KEY_ENV = "KLUEKIT_API_KEY"
OPEN_PATHS = frozenset({"/health", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
SHUTTING_DOWN = "the server is shutting down; retry shortly (on another instance)"


def resolve_api_key(option: str | None) -> str | None:
    """The key requests must carry: ``--api-key``, else ``$KLUEKIT_API_KEY``, else None (no key)."""
    key = option if option is not None else os.environ.get(API_KEY_ENV)
    return key.strip() or None if key is not None else None


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """A warning when the server listens beyond this machine without a key; None otherwise."""
    if api_key or is_loopback(host):
        return None
    return (f"kluekit: warning: listening on {host} without an API key: anyone who can reach this machine can "
            f"use the API; set {API_KEY_ENV} (or --api-key), or listen on 127.0.0.1")


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _presented_key(scope) -> str | None:
    authorization = _header(scope, b"authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return _header(scope, b"x-api-key")


class ApiKeyMiddleware:
    """401 (JSON) for a request without the right key, before its body is read; OPEN_PATHS pass."""

    def __init__(self, app, api_key: str):
        self.app, self.key = app, api_key.encode("utf-8")

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS and scope["method"] != "OPTIONS":
            presented = _presented_key(scope)
            if presented is None:
                message = "missing API key: send the header 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
            elif not hmac.compare_digest(presented.encode("utf-8"), self.key):
                message = "wrong API key"
            else:
                message = None
            if message:
                response = JSONResponse({"detail": message}, status_code=401, headers={"www-authenticate": "Bearer"})
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


class ShutdownState:
    """Whether the server is draining, and the deadline of the requests still running."""

    def __init__(self):
        self.draining = False
        self._running: set[asyncio.Timeout] = set()
        self._deadline: float | None = None

    def begin(self, grace_s: float | None = None) -> None:
        """Refuse new requests from now on; with ``grace_s``, stop waiting for running ones after that long.
        Call it on the event loop (``loop.call_soon_threadsafe(state.begin, grace)`` from a signal handler)."""
        self.draining = True
        if grace_s is not None:
            loop = asyncio.get_running_loop()
            self._deadline = loop.time() + max(grace_s, 0.0)
            for timeout in list(self._running):
                timeout.reschedule(self._deadline)

    def _track(self, timeout: asyncio.Timeout) -> None:
        self._running.add(timeout)
        if self._deadline is not None:
            timeout.reschedule(self._deadline)


def _json_503(detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=503, headers={"retry-after": "5", "connection": "close"})


class GracefulShutdownMiddleware:
    """JSON 503 for requests that arrive while draining, and for running ones past the grace period."""

    def __init__(self, app, state: ShutdownState):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.state.draining:
            return await _json_503(SHUTTING_DOWN)(scope, receive, send)
        started = False

        async def send_started(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(None) as timeout:
                self.state._track(timeout)
                try:
                    await self.app(scope, receive, send_started)
                finally:
                    self.state._running.discard(timeout)
        except TimeoutError:
            if started or not timeout.expired():  # a TimeoutError of the app's own, or a response half sent
                raise
            await _json_503("the server is shutting down and this request did not finish within the grace "
                            "period (--shutdown-grace-s); retry it")(scope, receive, send)


def install(app, settings, metrics) -> None:
    """Add the API-key check, the shutdown 503s, the metrics and CORS around ``app``'s routes (after the app's
    own middleware: the last added runs first, so CORS answers preflights and decorates every answer, the
    metrics see 401s and 503s too, and a request without a key is refused before its body is read)."""
    from fastapi.middleware.cors import CORSMiddleware

    from .observability import MetricsMiddleware

    app.state.shutdown = ShutdownState()
    app.state.metrics = metrics
    metrics.paths = {getattr(route, "path", "") for route in app.routes}
    key = resolve_api_key(settings.api_key)
    if key:
        app.add_middleware(ApiKeyMiddleware, api_key=key)
    app.add_middleware(GracefulShutdownMiddleware, state=app.state.shutdown)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    origins = [origin.strip().rstrip("/") for value in settings.cors_origins for origin in value.split(",")
               if origin.strip()]
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"],
                           expose_headers=["X-Rerank-Scorer", "Retry-After"], max_age=600)
