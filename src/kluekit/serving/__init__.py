"""The HTTP API (``kluekit serve``): sentence similarity, CSV scoring and corpus search over a bi-encoder.

- ``settings``: ``ServeSettings``, the command's options and the app's limits;
- ``app``: ``create_app(settings)``, the FastAPI factory (models loaded in its lifespan);
- ``routes`` / ``schemas``: endpoints and their pydantic bodies; ``service``: the logic without HTTP;
- ``batcher``: micro-batching of concurrent requests; ``uploads``: reading uploaded CSVs;
- ``commands``: the ``serve`` command (uvicorn).

Import ``create_app`` from ``kluekit.serving.app``; this package itself stays light to import.
"""

from .settings import ServeSettings

__all__ = ["ServeSettings"]
