"""Task models behind the API: any ``kluekit train <task>`` run whose task has a serve spec (``Task.serve_spec``).

``--model`` takes several values, ``NAME=RUN`` or ``RUN`` (name: the folder's name). A run whose task has a
serve spec becomes a ``TaskService`` answering ``POST {spec.path}`` (the first model claiming that path) and
``POST /models/{name}{spec.path}`` (always); anything else is the bi-encoder, served as before by
``SimilarityService`` (at most one). The route, the request schema and the answers come from the task: this
module never names one.

    plan = plan_models(ServeSettings(model=["topics=runs/ynat", "runs/ner"]))
    app.include_router(build_task_router(plan, settings))     # /classify, /entities, /models/topics/classify, ...
"""

# no ``from __future__ import annotations``: the route handlers' annotations are built per task at run time

import asyncio
import dataclasses
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Union

from ..errors import KluekitError
from .batcher import MicroBatcher, item_tokens
from .service import deadline, encode_batch_size, tokenizer_tokens_per_char
from .settings import ServeSettings

logger = logging.getLogger("kluekit")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
BIENCODER_PATHS = ("/similarity", "/similarity/csv", "/search", "/health")


def serve_limits(settings: ServeSettings):
    from ..tasks.base import ServeLimits

    return ServeLimits(max_text_chars=settings.max_text_chars, max_context_chars=settings.max_context_chars)


def as_list(value) -> list[str]:
    """A list option's values (``ServeSettings(model="dir")`` from Python gives one string)."""
    return [value] if isinstance(value, str) else list(value or [])


def model_values(settings: ServeSettings) -> list[str]:
    """--model as a list."""
    return as_list(settings.model)


def runtime_overrides(settings: ServeSettings) -> dict[str, str]:
    """--model-runtime NAME=RUNTIME as {name: runtime}; a malformed value or an unknown runtime is a KluekitError."""
    from ..config import RUNTIMES

    overrides = {}
    for value in as_list(settings.model_runtime):
        name, sep, runtime = value.partition("=")
        if not sep or not NAME.fullmatch(name) or runtime not in RUNTIMES:
            raise KluekitError(f"--model-runtime: {value!r} must be NAME=RUNTIME, RUNTIME one of {', '.join(RUNTIMES)}")
        overrides[name] = runtime
    return overrides


def split_name(value: str) -> tuple[str, str]:
    """``NAME=RUN`` -> (NAME, RUN); ``RUN`` -> (its folder's name, RUN). An existing path is never split."""
    name, sep, path = value.partition("=")
    if not sep or Path(value).exists() or not NAME.fullmatch(name):
        path = value
        name = Path(value.rstrip("/")).name
    if not NAME.fullmatch(name):
        raise KluekitError(f"--model: {value!r}: the model name {name!r} must be letters, digits, '_', '.' or '-' "
                           "(give NAME=RUN)")
    return name, path


@dataclass
class TaskModel:
    """One task model to serve: its name, run directory, predictor (loaded lazily) and serve spec."""

    name: str
    path: str
    predictor: Any
    spec: Any
    routes: list[str] = field(default_factory=list)


@dataclass
class ModelPlan:
    """What ``--model`` asks for: at most one bi-encoder (its settings) and the task models, in order."""

    biencoder: ServeSettings | None
    tasks: list[TaskModel]


def plan_models(settings: ServeSettings) -> ModelPlan:
    """Read each --model's run record (cheap: nothing loads) and decide its routes; a bad value is a KluekitError."""
    from ..modeling import RUN_INFO, check_model_path
    from ..predictor import Predictor

    values = model_values(settings)
    if not values:
        raise KluekitError("--model is required: a bi-encoder directory or a 'kluekit train' run directory")
    biencoder, tasks, names, overrides = None, [], {}, runtime_overrides(settings)
    for value in values:
        name, path = split_name(value)
        runtime = overrides.get(name, settings.runtime)
        check_model_path(path)
        if name in names:
            raise KluekitError(f"--model: two models are named {name!r} ({names[name]}, {path}); "
                               "give each its own NAME=RUN")
        names[name] = path
        spec = None
        if (Path(path) / RUN_INFO).is_file():
            predictor = Predictor(path, verb="serve", runtime=runtime, batch_size=settings.encode_batch_size,
                                  progress=False)
            spec = predictor.task.serve_spec(serve_limits(settings))
        if spec is None:
            if biencoder is not None:
                raise KluekitError(f"--model: {biencoder.model} and {path} are both bi-encoders; serve one of them")
            biencoder = dataclasses.replace(settings, model=path, runtime=runtime)
            continue
        tasks.append(TaskModel(name, path, predictor, spec))
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise KluekitError(f"--model-runtime: no model is named {unknown[0]!r} (served: {', '.join(names)})")
    claimed = set(BIENCODER_PATHS) if biencoder is not None else {"/health"}
    if settings.qa_set:  # the QA set's /answer (serving/qa.py); an MRC model keeps /models/NAME/answer
        claimed.add("/answer")
    for model in tasks:
        if model.spec.path not in claimed:
            claimed.add(model.spec.path)
            model.routes.append(model.spec.path)
        model.routes.append(f"/models/{model.name}{model.spec.path}")
    return ModelPlan(biencoder, tasks)


class TaskService:
    """One task model behind a micro-batcher (:class:`~kluekit.serving.batcher.MicroBatcher`), as the bi-encoder:
    items of concurrent requests are predicted together up to --batch-max-tokens (estimated over each item's
    string fields) and --batch-max-texts items; a request of more than --upload-chunk-texts items goes in chunks
    that take turns with the other requests; --request-timeout answers 504 and --max-queue 503."""

    def __init__(self, model: TaskModel, settings: ServeSettings):
        self.model, self.settings = model, settings
        self.predictor, self.spec = model.predictor, model.spec
        self.tokens_per_char = 0.6  # until ``load`` measures the model's tokenizer
        self.chunk_items = settings.upload_chunk_texts or encode_batch_size(
            dataclasses.replace(settings, runtime=model.predictor.runtime))
        self.batcher = MicroBatcher(self.predict_now, max_texts=settings.batch_max_texts,
                                    max_wait_ms=settings.batch_wait_ms, max_tokens=settings.batch_max_tokens,
                                    max_queue=settings.max_queue, count_tokens=self.count_tokens, dedupe=False,
                                    name=model.name)

    def load(self) -> None:
        """Load the model (slow, blocking; ONNX runtimes export on first use) and measure its tokenizer's
        tokens per character, for the token budget."""
        logger.info("loading %s (%s) from %s", self.model.name, self.predictor.task.name, self.model.path)
        tokenizer = self.predictor.load()[0]
        self.tokens_per_char = tokenizer_tokens_per_char(tokenizer, self.tokens_per_char)

    def count_tokens(self, item) -> int:
        """Estimated tokens of one request item: its string fields, at the model's tokens per character."""
        return item_tokens(item, self.tokens_per_char)

    def predict_now(self, items: list) -> list[dict]:
        """The answers for ``items`` (request models of the task), computed here and now."""
        examples = self.spec.examples(items)
        return list(self.spec.results(self.predictor.predict(examples), examples))

    async def start(self) -> None:
        await self.batcher.start()

    async def close(self) -> None:
        """Answer what is queued, then stop."""
        await self.batcher.close()

    async def predict(self, items: list) -> list[dict]:
        """The answers for ``items``, in order, predicted together with concurrent requests (in chunks between
        them when more than ``chunk_items``); a RequestError 504 past --request-timeout, 503 past --max-queue."""
        items = list(items)
        chunk = self.chunk_items if len(items) > self.chunk_items else None
        async with deadline(self.settings, self.spec.path.strip("/")):
            return await self.batcher.encode(items, chunk=chunk)

    def batching(self) -> dict:
        """The batching options and the batcher's counters, its units named items (``items``, ``queued_items``,
        ``predict_seconds``: the bi-encoder's ``texts``, ``queued_texts``, ``encode_seconds``)."""
        stats = {key.replace("texts", "items"): value for key, value in self.batcher.stats.as_dict().items()}
        stats["predict_seconds"] = stats.pop("encode_seconds")
        settings = self.settings
        return {"max_texts": settings.batch_max_texts, "max_wait_ms": settings.batch_wait_ms,
                "max_tokens": settings.batch_max_tokens, "upload_chunk_texts": self.chunk_items,
                "tokens_per_char": round(self.tokens_per_char, 3), "max_queue": settings.max_queue,
                "request_timeout_s": settings.request_timeout, **stats}

    def health(self) -> dict:
        task = self.predictor.task
        return {"name": self.model.name, "task": task.name, "run": self.model.path, "routes": self.model.routes,
                "runtime": self.predictor.runtime, "labels": len(task.labels), "primary_metric": task.primary_metric,
                "batching": self.batching()}


# -- HTTP ---------------------------------------------------------------------------------------------------
def _body_type(spec, max_items: int):
    """One item, or ``{"items": [...]}`` (1 to ``max_items``), told apart by the ``items`` key. The single
    item's tag is ``body``, which error messages leave out (``text: ...`` as on the other routes)."""
    from pydantic import ConfigDict, Discriminator, Field, Tag, create_model

    items = Field(min_length=1, max_length=max_items, description=f"1 to {max_items} items (--max-items), answered in order")
    batch = create_model(f"{spec.item.__name__}Batch", __config__=ConfigDict(extra="forbid"), items=(list[spec.item], items))
    choose = Discriminator(lambda v: "batch" if isinstance(v, dict) and "items" in v else "body")
    return Annotated[Union[Annotated[spec.item, Tag("body")], Annotated[batch, Tag("batch")]], choose], batch


def _response_type(spec):
    from pydantic import Field, create_model

    batch = create_model(f"{spec.result.__name__}Batch",
                         results=(list[spec.result], Field(description="one answer per item, in request order")))
    return Union[spec.result, batch]


def _add_route(router, route: str, model: TaskModel, settings: ServeSettings, body_limit: int) -> None:
    from fastapi import Request

    from .routes import ERRORS

    spec = model.spec
    body_type, batch = _body_type(spec, settings.max_items)
    task = model.predictor.task.name

    async def predict(request: Request, body: body_type):
        service: TaskService = request.app.state.task_services[model.name]
        if isinstance(body, batch):
            return {"results": await service.predict(body.items)}
        return (await service.predict([body]))[0]

    router.add_api_route(
        route, predict, methods=["POST"], response_model=_response_type(spec), responses=ERRORS, tags=[model.name],
        summary=f"{spec.summary} ({model.name}: {task})", max_body_size=body_limit,
        operation_id=f"{model.name}_{route.strip('/').replace('/', '_')}",
        description=(spec.description + "\n\n" if spec.description else "") +
        f"Model `{model.name}` ({task} run `{model.path}`). One item answers one result; `{{\"items\": [...]}}` "
        f"(at most {settings.max_items}, --max-items) answers `{{\"results\": [...]}}` in order.")


def build_task_router(plan: ModelPlan, settings: ServeSettings):
    """``POST`` routes of every task model, and ``GET /health`` listing every model (with the bi-encoder's
    own health under ``biencoder`` when one is served)."""
    from fastapi import APIRouter, Request

    router = APIRouter()
    for model in plan.tasks:
        for route in model.routes:
            _add_route(router, route, model, settings, settings.max_request_bytes)

    @router.get("/health", tags=["status"], summary="Is the server ready, and which models does it serve")
    async def health(request: Request) -> dict:
        return server_health(request.app, settings)

    return router


def biencoder_name(settings: ServeSettings) -> str:
    """The bi-encoder's name in /health and /metrics: its folder's name."""
    return Path(settings.model.rstrip("/")).name


def server_health(app, settings: ServeSettings) -> dict:
    from .. import __version__
    from ..rundir import versions

    services = getattr(app.state, "task_services", {})
    similarity = getattr(app.state, "service", None)
    models = [service.health() for service in services.values()]
    if similarity is not None:
        models.insert(0, {"name": biencoder_name(similarity.settings), "task": "biencoder",
                          "run": similarity.settings.model, "routes": list(BIENCODER_PATHS[:3]),
                          "runtime": similarity.settings.runtime})
    limits = {name: getattr(settings, name) for name in ("max_text_chars", "max_context_chars", "max_items")}
    return {"status": "ok", "models": models, "limits": limits,
            "biencoder": None if similarity is None else similarity.health(),
            "versions": {**versions(), "kluekit": __version__}}


async def start_task_services(plan: ModelPlan, settings: ServeSettings) -> dict:
    """Load every task model (on a thread: blocking) and start its batching; name -> TaskService."""
    services = {}
    for model in plan.tasks:
        service = TaskService(model, settings)
        await asyncio.to_thread(service.load)
        await service.start()
        services[model.name] = service
        logger.info("ready: %s (%s) at %s", model.name, model.predictor.task.name, ", ".join(model.routes))
    return services


async def close_task_services(services: dict) -> None:
    for service in services.values():
        await service.close()
