"""The FastAPI app of `gsexplore serve`: its routes and one handler per endpoint.

The work is elsewhere in this package: reading bodies into jobs (`jobs`), generating
them (`generation`, over `admission`), shaping answers (`responses`) and errors
(`errors`), keys (`keys`), served names (`loading`), Prometheus (`metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..backends.base import Backend
from ..backends.capabilities import EngineStats, Tokenizer
from ..wire import error_body
from .admission import Admission
from .errors import Reject, reject_for, require
from .generation import Generation
from .classrecord import ClassRecord
from .classview import ClassView
from .identity import Caller, Roster
from .jobs import Job, Reader
from .limits import StudentLimits
from .loading import load_backends, served_names
from .metrics import CONTENT_TYPE, ServerMetrics
from .protocol import (ChatCompletionRequest, CompletionRequest, DetokenizeRequest, TokenizeRequest,
                       to_template_messages)
from .room import Room

__all__ = ["ROUTE_PREFIXES", "Server", "create_app"]

#: The OpenAI routes are served under vLLM's /v1 and under the GradienteSur API's /functions/v1.
ROUTE_PREFIXES = ("/v1", "/functions/v1")


def _openapi_body(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON body of ``model`` (its $defs go to ``components``)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def _version() -> str:
    from .._version import __version__

    return __version__


class Server:
    """One `gsexplore serve` app: served names, keys, limits, admission and metrics; a method per endpoint.

    ``.app`` is the FastAPI app (see `create_app` for the arguments).
    """

    def __init__(self, backends: Sequence[Backend], names: list[str], roster: Roster, *, spec: str | None,
                 max_body_bytes: int, max_tokens_cap: int, max_queue: int, artificial_latency_s: float,
                 max_n: int, docs: bool, limits: StudentLimits | None = None,
                 class_store: str | os.PathLike[str] | None = None) -> None:
        self.names, self.roster = names, roster
        self.keys = roster.keys
        self.admission = Admission(backends, max_queue=max_queue)
        self.first = self.admission.backends[0]
        self.root = str(self.first.source or spec or names[0])
        self.started = int(time.time())
        self.metrics = ServerMetrics(names[0], lambda: float(self.admission.running),
                                     lambda: float(self.admission.waiting))
        self.reader = Reader(names, max_body_bytes, max_tokens_cap, max_n)
        self.room = Room(limits or StudentLimits(), self.metrics,
                         ClassRecord(class_store) if class_store is not None else None)
        self.generation = Generation(self.admission, self.metrics, self.room, max_tokens_cap=max_tokens_cap,
                                     artificial_latency_s=artificial_latency_s)
        self.class_view = ClassView(self)
        self.components: dict[str, Any] = {}
        doc = sys.modules[__name__.rpartition(".")[0]].__doc__  # the package's: what the server is
        self.app = FastAPI(title="gsexplore serve", version=_version(), description=doc or "",
                           docs_url="/docs" if docs else None, redoc_url=None,
                           openapi_url="/openapi.json" if docs else None, lifespan=self._lifespan)
        self._base_openapi = self.app.openapi
        self._routes()

    # --- the app ----------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            self.room.close()  # pending class-record writes, then the journal folded into its Parquet file

    def _routes(self) -> None:
        app = self.app
        app.state.server, app.state.admission = self, self.admission
        app.state.served_model_names, app.state.metrics = self.names, self.metrics
        app.add_exception_handler(StarletteHTTPException, self._http_error)
        app.add_exception_handler(RequestValidationError, self._validation_error)
        app.add_exception_handler(Exception, self._any_error)
        chat_doc = self._body_doc(ChatCompletionRequest)
        text_doc = self._body_doc(CompletionRequest)
        for prefix in ROUTE_PREFIXES:
            shown = prefix == "/v1"
            app.add_api_route(f"{prefix}/chat/completions", self._endpoint(self.chat_completions),
                              methods=["POST"], openapi_extra=chat_doc, include_in_schema=shown)
            app.add_api_route(f"{prefix}/completions", self._endpoint(self.completions), methods=["POST"],
                              openapi_extra=text_doc, include_in_schema=shown)
            app.add_api_route(f"{prefix}/models", self._endpoint(self.list_models), methods=["GET"],
                              include_in_schema=shown)
        app.add_api_route("/tokenize", self._endpoint(self.tokenize), methods=["POST"],
                          openapi_extra=self._body_doc(TokenizeRequest))
        app.add_api_route("/detokenize", self._endpoint(self.detokenize), methods=["POST"],
                          openapi_extra=self._body_doc(DetokenizeRequest))
        app.add_api_route("/health", self.health, methods=["GET"])
        app.add_api_route("/version", self.version, methods=["GET"])
        app.add_api_route("/metrics", self.prometheus, methods=["GET"])
        self.class_view.add_routes(app)
        app.openapi = self.openapi  # type: ignore[method-assign]

    def _body_doc(self, model: type[BaseModel]) -> dict[str, Any]:
        return _openapi_body(model, self.components)

    def _endpoint(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` with every failure answered as vLLM's error (the one place requests fail)."""
        @functools.wraps(handler)  # its name is the route's (and the OpenAPI operationId's)
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as e:  # noqa: BLE001 - every failure becomes an HTTP answer
                return self.reject(reject_for(e))

        return endpoint

    def reject(self, r: Reject) -> JSONResponse:
        """The error answer for ``r`` (counted in the metrics)."""
        self.metrics.error(r.status)
        return JSONResponse(error_body(r.status, r.message, r.type, r.param), status_code=r.status,
                            headers=r.headers)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        type_ = {404: "NotFoundError", 405: "MethodNotAllowedError"}.get(exc.status_code, "BadRequestError")
        return self.reject(Reject(exc.status_code, str(exc.detail), type_))

    async def _validation_error(self, request: Request, exc: Exception) -> Response:
        return self.reject(Reject(400, str(exc)))

    async def _any_error(self, request: Request, exc: Exception) -> Response:
        return self.reject(reject_for(exc))  # a bug: still vLLM's shape

    def openapi(self) -> dict[str, Any]:
        """FastAPI's schema with the request bodies' models in its components."""
        app = self.app
        if app.openapi_schema is None:
            schema = self._base_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(self.components)
            app.openapi_schema = schema
        return app.openapi_schema

    def authorize(self, request: Request) -> Caller:
        """Who sent ``request``; 401 unless it carries one of the keys (none needed when the server has none)."""
        return self.roster.identify(request.headers.get("authorization", ""))

    def signed(self, caller: Caller, job: Job) -> Job:
        """``job`` with its sender in ``params.user``: the key's label (whatever the body says), else the
        body's ``user``, else anonymous. The engine's fair share reads it."""
        job.params = job.params.replace(user=caller.sender(job.params.user))
        return job

    # --- generating ---------------------------------------------------------------
    async def chat_completions(self, request: Request) -> Response:
        """POST /v1/chat/completions."""
        t0 = time.perf_counter()
        caller = self.authorize(request)
        job = self.reader.chat_job(await self.reader.read_json(request))
        return await self.generation.answer(self.signed(caller, job), t0)

    async def completions(self, request: Request) -> Response:
        """POST /v1/completions (a raw prompt; the backend must offer `RawPrompt`)."""
        t0 = time.perf_counter()
        caller = self.authorize(request)
        job = self.reader.text_job(await self.reader.read_json(request), self.first)
        return await self.generation.answer(self.signed(caller, job), t0)

    # --- the other endpoints ------------------------------------------------------
    async def list_models(self, request: Request) -> Response:
        """GET /v1/models: every served name, with vLLM's fields."""
        self.authorize(request)
        card: dict[str, Any] = {"object": "model", "created": self.started, "owned_by": "gsexplore",
                                "root": self.root, "parent": None, "max_model_len": self.first.n_ctx, "permission": []}
        return JSONResponse({"object": "list", "data": [{"id": n, **card} for n in self.names]})

    async def tokenize(self, request: Request) -> Response:
        """POST /tokenize: the token ids of a raw prompt or of chat messages (as the template renders them)."""
        self.authorize(request)
        req = self.reader.validate(TokenizeRequest, await self.reader.read_json(request))
        b = require(self.first, Tokenizer, "tokenize")
        work: Callable[[], list[int]]
        if req.prompt is not None:
            add = True if req.add_special_tokens is None else req.add_special_tokens
            work = functools.partial(b.tokenize, req.prompt, add)
        else:
            p = self.reader.to_params(req).replace(model=None)
            work = functools.partial(b.prompt_token_ids, to_template_messages(req.messages), p)
        ids = await asyncio.get_running_loop().run_in_executor(None, work)
        strs = [b.detokenize([i]) for i in ids] if req.return_token_strs else None
        return JSONResponse({"count": len(ids), "max_model_len": self.first.n_ctx, "tokens": ids,
                             "token_strs": strs})

    async def detokenize(self, request: Request) -> Response:
        """POST /detokenize: the text of token ids."""
        self.authorize(request)
        req = self.reader.validate(DetokenizeRequest, await self.reader.read_json(request))
        return JSONResponse({"prompt": require(self.first, Tokenizer, "detokenize").detokenize(req.tokens)})

    async def health(self) -> dict[str, Any]:
        """GET /health: served names, instances, slots, requests admitted and not finished, engines' counters."""
        a = self.admission
        engines = [b.engine_stats() for b in a.backends if isinstance(b, EngineStats)]
        return {"status": "ok", "models": self.names, "instances": len(a.backends), "slots": a.size,
                "pending": a.pending, "running": a.running, "waiting": a.waiting, "engines": engines}

    async def version(self) -> dict[str, Any]:
        """GET /version."""
        return {"version": _version()}

    async def prometheus(self) -> Response:
        """GET /metrics (Prometheus text)."""
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)


def create_app(
    backends: Sequence[Any] | str,
    api_keys: set[str] | dict[str, str] | None = None,
    max_body_bytes: int = 1_000_000,
    max_tokens_cap: int = 4096,
    max_queue: int = 64,
    artificial_latency_s: float = 0.0,
    *,
    served_model_names: Sequence[str] | str | None = None,
    filename: str | None = None,
    instances: int = 1,
    backend_kwargs: dict[str, Any] | None = None,
    max_n: int = 16,
    docs: bool = True,
    admin_keys: set[str] | dict[str, str] | None = None,
    max_running_per_key: int | None = None,
    tpm_per_key: int | None = None,
    class_store: str | os.PathLike[str] | None = None,
) -> FastAPI:
    """The FastAPI app: a list of loaded backend instances of one model, or a model spec to load.

    A classroom: ``api_keys`` as ``{key: label}`` names the students (a plain set: alumno-1, -2, ...);
    ``admin_keys`` open the teacher's view (/class); ``max_running_per_key`` (--max-running-per-key) and
    ``tpm_per_key`` (--tpm-per-key) limit each student, a 429 naming the flag; ``class_store``
    (--class-store) records every finished answer with its student.

    Limits, each a 400 naming its flag: ``max_body_bytes`` (--max-body-bytes), ``max_tokens_cap``
    (--max-tokens-cap), ``max_n`` (--max-n), and ``MAX_JSON_DEPTH`` levels of nesting; ``max_queue``
    requests may wait beyond every instance's slots (--max-queue), the next is a 429.
    ``docs``: FastAPI's /openapi.json and /docs (--disable-fastapi-docs turns them off).
    """
    spec = None
    if isinstance(backends, (str, os.PathLike)):
        spec = str(backends)
        loaded: Sequence[Backend] = load_backends(spec, filename=filename, instances=instances,
                                                  **(backend_kwargs or {}))
    else:
        loaded = cast("Sequence[Backend]", backends)  # (mypy does not narrow str out of Sequence[Any])
    if isinstance(served_model_names, str):
        served_model_names = [served_model_names]
    names = served_names(loaded, served_model_names, spec)
    roster = Roster.of(api_keys, admin_keys)
    limits = StudentLimits(max_running_per_key, tpm_per_key)
    return Server(loaded, names, roster, spec=spec, max_body_bytes=max_body_bytes, max_tokens_cap=max_tokens_cap,
                  max_queue=max_queue, artificial_latency_s=artificial_latency_s, max_n=max_n, docs=docs,
                  limits=limits, class_store=class_store).app
