"""`gsexplore serve`: a GradienteSur-compatible Chat Completions server over local models.

For a classroom (one machine with a GPU serving the room) and for end-to-end tests.
It speaks vLLM's dialect: the request fields `Params` knows, vLLM's response and
error shapes, SSE streaming ending in ``data: [DONE]``.

    app = create_app("demo", api_keys={"clave-de-clase"})
    with ServerThread(app) as srv:              # uvicorn on a free 127.0.0.1 port
        gs.RemoteBackend(srv.url, api_key="clave-de-clase").chat("Hola")

Generation runs in the batched engine of the loaded model: ``slots`` requests
(``--parallel``) decode together, one llama.cpp batch per step; at most
``max_queue`` requests wait for a free slot,
the rest get 429 with Retry-After. A request that does not name one of the
served model names gets vLLM's 404. Unset ``max_tokens`` is capped at
``max_tokens_cap``. In a stream, logprobs arrive all at once in each choice's
last chunk, and tool calls in one delta before it (the assembled answer is the
same as vLLM's).

The contract is vLLM's: bodies validated by the models of ``server_requests``
(built from `Params`), unknown fields logged and ignored, every error
``{"error": {"message", "type", "param", "code"}}``, limits named with their
flag. Endpoints: /v1/chat/completions, /v1/completions, /v1/models (also under
/functions/v1), /tokenize, /detokenize, /health, /version, /metrics
(Prometheus), /openapi.json and /docs.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hmac
import ipaddress
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pydantic import BaseModel, ValidationError

from . import wire
from .backends.base import Backend, Delta
from .chat_template import TemplateError
from .completion import Completion
from .errors import GSExploreError, ParamsError, UnsupportedParam
from .params import Params
from .server_metrics import CONTENT_TYPE, ServerMetrics
from .server_requests import (UNHONOURED, ChatCompletionRequest, CompletionRequest, DetokenizeRequest,
                              TokenizeRequest, json_depth, params_data, to_template_messages)
from .wire import error_body, text_response

if TYPE_CHECKING:
    from .backends.local import LocalBackend

log = logging.getLogger("gsexplore.server")

KEYS_ENV = "GSEXPLORE_SERVER_KEYS"
#: The deepest nesting of lists and objects a request body may have (vLLM has no limit of its own;
#: Python's JSON parser fails near 1,000 levels, so the server answers 400 well before).
MAX_JSON_DEPTH = 64
ROUTE_PREFIXES = ("/v1", "/functions/v1")


class _Reject(Exception):
    """An HTTP error answer in vLLM's shape."""

    def __init__(self, status: int, message: str, type_: str = "BadRequestError", param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.headers = status, message, type_, param, headers


# --------------------------------------------------------------------------
# keys and binding


def load_keys(api_key_file: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> set[str]:
    """Server keys from a file (one per line, # comments) and from $GSEXPLORE_SERVER_KEYS (comma-separated)."""
    keys: set[str] = set()
    if api_key_file:
        try:
            text = Path(api_key_file).read_text(encoding="utf-8")
        except OSError as e:
            raise GSExploreError(f"cannot read the API key file {api_key_file}: {e.strerror or e}") from None
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                keys.add(line)
    raw = (env if env is not None else os.environ).get(KEYS_ENV, "")
    keys.update(k.strip() for k in raw.split(",") if k.strip())
    return keys


def is_loopback(host: str) -> bool:
    """Whether `host` is only reachable from this machine."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, api_keys: set[str] | None) -> None:
    """Refuse to serve beyond loopback without keys: anyone on the network could use the model."""
    if not api_keys and not is_loopback(host):
        raise GSExploreError(
            f"refusing to listen on {host} without API keys: anyone who can reach this machine could use "
            "the model. Give keys with --api-key-file FILE or GSEXPLORE_SERVER_KEYS=key1,key2, "
            "or listen on 127.0.0.1 only.")


# --------------------------------------------------------------------------
# the pool of model instances


class ModelPool:
    """Loaded model instances and their slots: admission, a free instance per request, busy time.

    A backend generates ``slots`` requests at once (a LocalBackend batches that many
    sequences in its engine, ``--parallel``); the pool lends that many slots per
    instance, instances interleaved, and lets at most ``max_queue`` more requests
    wait (the rest get 429). Generation runs in the backend (its ``aevents``): the
    pool only counts, and no server thread waits for an answer.
    """

    def __init__(self, backends: Sequence[Backend], max_queue: int) -> None:
        if not backends:
            raise GSExploreError("serve needs at least one model instance")
        self.backends = list(backends)
        self.max_queue = max_queue
        # a free list (one entry per slot, instances interleaved) and waiting futures rather than
        # an asyncio.Queue, which would bind to one event loop
        per = [max(1, int(b.slots)) for b in self.backends]
        self._free: collections.deque[Backend] = collections.deque(
            b for k in range(max(per)) for b, n in zip(self.backends, per) if k < n)
        #: Requests that can generate at once (every instance's slots).
        self.size = len(self._free)
        self._waiters: collections.deque[asyncio.Future[Backend]] = collections.deque()
        self.pending = 0  # admitted and not finished (waiting or generating)
        self.served = 0
        self._busy_s = 0.0

    @property
    def running(self) -> int:
        """Slots lent out now."""
        return self.size - len(self._free)

    def admit(self) -> _Lease:
        """Count a request in and return its lease, or reject it with 429 when the queue is full."""
        if self.pending >= self.size + self.max_queue:
            mean = self._busy_s / self.served if self.served else 1.0
            wait = max(1, math.ceil(mean * (self.pending - self.size + 1) / self.size))
            raise _Reject(429, f"the server is busy: {self.pending} requests in progress "
                               f"({self.max_queue} may wait); retry in {wait} s",
                          "RateLimitError", headers={"Retry-After": str(wait)})
        self.pending += 1
        return _Lease(self)

    async def _acquire(self) -> Backend:
        if self._free:
            return self._free.popleft()
        fut: asyncio.Future[Backend] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release(fut.result())  # handed over just as the request went away
            else:
                self._waiters.remove(fut)
            raise

    def _release(self, backend: Backend) -> None:
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(backend)
                return
        self._free.append(backend)

    def _finished(self, backend: Backend, busy_s: float) -> None:
        self._busy_s += busy_s
        self.served += 1
        self._release(backend)

    def close(self) -> None:
        """Close every instance (its model and engine, when private)."""
        for b in self.backends:
            b.close()


class _Lease:
    """One admitted request: `acquire` waits for a free slot; `close` (idempotent) frees it and counts
    the request out. As an async context manager it closes on exit."""

    def __init__(self, pool: ModelPool) -> None:
        self._pool = pool
        self.backend: Backend | None = None
        self._t0 = 0.0
        self._closed = False

    async def acquire(self) -> Backend:
        """Wait for a free slot; the instance it belongs to."""
        self.backend = await self._pool._acquire()
        self._t0 = time.perf_counter()
        return self.backend

    def close(self) -> None:
        """Free the slot (if one was taken) and count the request out, once."""
        if self._closed:
            return
        self._closed = True
        self._pool.pending -= 1
        if self.backend is not None:
            self._pool._finished(self.backend, time.perf_counter() - self._t0)

    async def __aenter__(self) -> _Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------
# response shapes


#: vLLM's non-streaming response for a Completion (``wire.completion_response``).
response_dict = wire.completion_response


class _Chunks:
    """vLLM's streaming chunks for one request (``text``: /v1/completions' ``text_completion`` chunks).

    With tools, the backend's content deltas leave tool-call text out (LocalBackend holds it
    back as vLLM's tool parser does); the parsed ``tool_calls`` arrive in one delta before the
    choice's last chunk.
    """

    def __init__(self, model: str, n: int, include_usage: bool, text: bool = False,
                 echo: str | None = None) -> None:
        self.id = wire.new_id("cmpl") if text else wire.new_id()
        self.created, self.model = int(time.time()), model
        self.n, self.include_usage, self.text, self.echo = n, include_usage, text, echo

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return wire.sse(wire.chunk(self.id, self.created, self.model, choices, text=self.text, **extra))

    def _text(self, index: int, text: str, finish: str | None = None, stop: Any = None,
              logprobs: dict[str, Any] | None = None) -> bytes:
        return self._chunk([{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish,
                             "stop_reason": stop}])

    def start(self) -> bytes:
        if self.text:
            return b"".join(self._text(i, self.echo) for i in range(self.n)) if self.echo else b""
        return b"".join(self._chunk([{"index": i, "delta": {"role": "assistant", "content": ""},
                                      "logprobs": None, "finish_reason": None}]) for i in range(self.n))

    def _content(self, index: int, text: str) -> bytes:
        if self.text:
            return self._text(index, text)
        return self._chunk([{"index": index, "delta": {"content": text}, "logprobs": None, "finish_reason": None}])

    def delta(self, kind: str, text: str, index: int) -> bytes:
        if kind == "reasoning":
            return self._chunk([{"index": index, "delta": {"reasoning_content": text}, "logprobs": None,
                                 "finish_reason": None}])
        return self._content(index, text) if text else b""

    def finish(self, c: Completion) -> bytes:
        out = []
        for ch in c.choices:
            if ch.tool_calls and not self.text:
                calls = [{"index": k, **tc} for k, tc in enumerate(ch.tool_calls)]
                out.append(self._chunk([{"index": ch.index, "delta": {"tool_calls": calls}, "logprobs": None,
                                         "finish_reason": None}]))
            if self.text:
                lp = wire.text_logprobs(ch.logprobs, int(c.params.top_logprobs or 0), len(self.echo or ""))
                out.append(self._text(ch.index, "", ch.finish_reason, ch.stop_reason, lp))
                continue
            out.append(self._chunk([{
                "index": ch.index, "delta": {},
                "logprobs": {"content": ch.logprobs} if ch.logprobs is not None else None,
                "finish_reason": ch.finish_reason, "stop_reason": ch.stop_reason}]))
        if self.include_usage:
            out.append(self._chunk([], usage=c.usage.to_dict()))
        return b"".join(out)

    @staticmethod
    def error(status: int, message: str, type_: str) -> bytes:
        return wire.sse(error_body(status, message, type_))

    DONE = wire.DONE


class _EventStream(StreamingResponse):
    """SSE whose clean-up (``on_close``) runs even when the client leaves before the first byte is sent."""

    def __init__(self, content: AsyncIterator[bytes], *, on_close: Callable[[], Awaitable[None]],
                 headers: dict[str, str]) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()


async def _end_stream(events: AsyncIterator[Delta] | None, lease: _Lease) -> None:
    """Close a generation's Deltas (the backend cancels the request) and free its slot; safe to repeat."""
    try:
        aclose = getattr(events, "aclose", None)  # an async iterator need not be a generator
        if aclose is not None:
            await aclose()
    finally:
        lease.close()


def _exception_reject(exc: BaseException) -> _Reject:
    if isinstance(exc, _Reject):
        return exc
    if isinstance(exc, UnsupportedParam):
        return _Reject(400, str(exc), param=exc.param)
    if isinstance(exc, ParamsError):
        return _Reject(400, str(exc), param=exc.field)
    from .errors import EngineError

    if isinstance(exc, EngineError):  # llama.cpp failed: the server's fault, as vLLM's 500
        log.error("generation failed: %s", exc)
        return _Reject(500, f"generation failed: {exc}", "InternalServerError")
    if isinstance(exc, (GSExploreError, TemplateError)):
        return _Reject(400, str(exc))
    log.exception("generation failed", exc_info=exc)
    return _Reject(500, f"generation failed: {type(exc).__name__}: {exc}", "InternalServerError")


# --------------------------------------------------------------------------
# the app


def load_backends(model: str, *, filename: str | None = None, instances: int = 1,
                  **backend_kwargs: Any) -> list[Any]:
    """`instances` LocalBackends of one model spec (a path, "demo", "tiny-qwen3" or a HF repo id).

    Each instance holds its own llama.cpp model and engine (``slots=`` in ``backend_kwargs``
    is its number of sequences batched together): copies for machines with several GPUs.
    """
    from .backends.spec import from_spec

    backends = [from_spec(model, filename=filename, **backend_kwargs)]
    for _ in range(1, max(1, instances)):
        backends.append(from_spec(model, filename=filename, shared=False, **backend_kwargs))
    return backends


#: The model name of the GradienteSur API (served as an alias unless names are given).
GRADIENTESUR_MODEL = wire.DEFAULT_MODEL


def _local(b: Backend, what: str) -> LocalBackend:
    """``b`` as a LocalBackend (its tokenizer, raw prompts), or a 400 saying the backend cannot do ``what``."""
    from .backends.local import LocalBackend

    if not isinstance(b, LocalBackend):
        raise _Reject(400, f"this server's backend cannot {what}")
    return b


def _raw(b: Backend) -> LocalBackend:
    """``b`` for /v1/completions (a raw prompt needs a LocalBackend)."""
    return _local(b, "complete a raw prompt")


def _source(b: Backend) -> str | None:
    """The model spec a LocalBackend was loaded from (None for other backends)."""
    from .backends.local import LocalBackend

    return b.source if isinstance(b, LocalBackend) else None


def _backend_stem(b: Backend) -> str:
    from .backends.local import LocalBackend

    if isinstance(b, LocalBackend):  # the GGUF file it loaded
        return b.path.stem
    name = str(b.model or "local")
    return Path(name).stem if name.endswith(".gguf") else name


def served_names(backends: Sequence[Backend], served_model_names: Sequence[str] | None,
                 model_spec: str | None = None) -> list[str]:
    """The names a server answers to: ``--served-model-name`` values, the ``--model`` spec as typed
    (and a path's stem), and the GradienteSur model name (so the seed's examples run unchanged)."""
    spec = model_spec or _source(backends[0])
    names = [*(served_model_names or ())]
    if spec:
        names.append(str(spec))
    names += [_backend_stem(backends[0]), GRADIENTESUR_MODEL]
    return list(dict.fromkeys(n for n in names if n))


def _validation_reject(exc: ValidationError) -> _Reject:
    """A pydantic error as vLLM's 400: the first problem, where it is, and the top-level field."""
    err = exc.errors()[0]
    loc = [str(x) for x in err.get("loc", ())]
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    where = ".".join(loc)
    given = err.get("input")
    if isinstance(given, (str, int, float, bool)) and len(repr(given)) <= 80 and "missing" not in err["type"]:
        msg += f" (got {given!r})"
    return _Reject(400, f"{where}: {msg}" if where else msg, param=loc[0] if loc else None)


def _openapi_body(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON body of ``model`` (its $defs go to ``components``)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


@dataclass
class _Job:
    """A validated generation request: what the backend generates and how the answer is shaped.

    ``prompt`` set: /v1/completions (a raw prompt, LocalBackend only); else chat ``messages``.
    """

    model: str  # the name the answer carries
    params: Params  # what the backend gets (model and stream unset)
    stream: bool
    include_usage: bool
    messages: list[dict[str, Any]] = field(default_factory=list)
    prompt: str | None = None
    echo: str | None = None

    def prompt_tokens(self, b: Backend) -> int | None:
        """The prompt's tokens by ``b``'s tokenizer (None when it has none). Blocking."""
        if self.prompt is None:
            return b.prompt_token_count(self.messages, self.params)
        return len(_raw(b).tokenize(self.prompt, bool(self.params.add_special_tokens)))

    def events(self, b: Backend, p: Params) -> AsyncIterator[Delta]:
        """The streamed answer: Deltas, then "done" (closing the iterator cancels the request)."""
        if self.prompt is None:
            return b.astream(self.messages, p)
        return _raw(b).aevents(None, p.replace(stream=True), streaming=True, prompt=self.prompt)

    async def complete(self, b: Backend, p: Params) -> Completion:
        """The whole answer."""
        if self.prompt is None:
            return await b.achat(self.messages, p)
        last = None
        async for last in _raw(b).aevents(None, p, streaming=False, prompt=self.prompt):
            pass
        if last is None or last.completion is None:
            raise GSExploreError("the model produced nothing")
        return last.completion

    def response(self, c: Completion) -> dict[str, Any]:
        """vLLM's non-streaming body for ``c``."""
        return text_response(c, self.model, self.echo) if self.prompt is not None else response_dict(c, self.model)

    def chunks(self) -> _Chunks:
        """The streaming chunks of this request."""
        return _Chunks(self.model, self.params.n or 1, self.include_usage, text=self.prompt is not None,
                       echo=self.echo)


class _Server:
    """One `gsexplore serve` app: served names, keys, limits, the pool and the metrics; a method per endpoint.

    ``.app`` is the FastAPI app (see `create_app` for the arguments).
    """

    def __init__(self, backends: Sequence[Backend], names: list[str], keys: set[str], *, spec: str | None,
                 max_body_bytes: int, max_tokens_cap: int, max_queue: int, artificial_latency_s: float,
                 max_n: int, docs: bool) -> None:
        self.names, self.keys = names, keys
        self.max_body_bytes, self.max_tokens_cap, self.max_n = max_body_bytes, max_tokens_cap, max_n
        self.artificial_latency_s = artificial_latency_s
        self.pool = ModelPool(backends, max_queue=max_queue)
        self.first = self.pool.backends[0]
        self.root = str(_source(self.first) or spec or names[0])
        self.started = int(time.time())
        self.metrics = ServerMetrics(names[0], lambda: float(self.pool.running),
                                     lambda: float(max(0, self.pool.pending - self.pool.running)))
        self.components: dict[str, Any] = {}
        self.app = FastAPI(title="gsexplore serve", version=_version(), description=__doc__,
                           docs_url="/docs" if docs else None, redoc_url=None,
                           openapi_url="/openapi.json" if docs else None)
        self._base_openapi = self.app.openapi
        self._routes()

    # --- the app ----------------------------------------------------------------
    def _routes(self) -> None:
        app = self.app
        app.state.pool, app.state.served_model_names, app.state.metrics = self.pool, self.names, self.metrics
        app.state.server = self
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
                return self.reject(_exception_reject(e))

        return endpoint

    def reject(self, r: _Reject) -> JSONResponse:
        """The error answer for ``r`` (counted in the metrics)."""
        self.metrics.error(r.status)
        return JSONResponse(error_body(r.status, r.message, r.type, r.param), status_code=r.status,
                            headers=r.headers)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        type_ = {404: "NotFoundError", 405: "MethodNotAllowedError"}.get(exc.status_code, "BadRequestError")
        return self.reject(_Reject(exc.status_code, str(exc.detail), type_))

    async def _validation_error(self, request: Request, exc: Exception) -> Response:
        return self.reject(_Reject(400, str(exc)))

    async def _any_error(self, request: Request, exc: Exception) -> Response:
        return self.reject(_exception_reject(exc))  # a bug: still vLLM's shape

    def openapi(self) -> dict[str, Any]:
        """FastAPI's schema with the request bodies' models in its components."""
        app = self.app
        if app.openapi_schema is None:
            schema = self._base_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(self.components)
            app.openapi_schema = schema
        return app.openapi_schema

    # --- reading a request --------------------------------------------------------
    def authorize(self, request: Request) -> None:
        """401 unless the request carries one of the keys (none needed when the server has none)."""
        if not self.keys:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token_b = token.strip().encode()
        ok = False
        for k in self.keys:  # compare with every key, in constant time each
            ok |= hmac.compare_digest(token_b, k.encode())
        if scheme.lower() != "bearer" or not ok:
            raise _Reject(401, "missing or invalid API key: send the header 'Authorization: Bearer <key>'",
                          "AuthenticationError", headers={"WWW-Authenticate": "Bearer"})

    async def read_json(self, request: Request) -> dict[str, Any]:
        """The body as a JSON object, within --max-body-bytes and `MAX_JSON_DEPTH`."""
        too_large = (f"the request body is larger than this server's limit of {self.max_body_bytes} bytes "
                     "(--max-body-bytes raises it)")
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_body_bytes:
            raise _Reject(400, too_large, param="body")
        chunks, size = [], 0
        async for part in request.stream():
            size += len(part)
            if size > self.max_body_bytes:
                raise _Reject(400, too_large, param="body")
            chunks.append(part)
        deep = (f"the request body nests lists and objects more than {MAX_JSON_DEPTH} levels deep "
                "(this server's limit)")
        try:
            body = json.loads(b"".join(chunks))
        except RecursionError:
            raise _Reject(400, deep, param="body") from None
        except ValueError as e:
            raise _Reject(400, f"malformed JSON in the request body: {e}", param="body") from None
        if not isinstance(body, dict):
            raise _Reject(400, "the request body must be a JSON object", param="body")
        if json_depth(body) > MAX_JSON_DEPTH:
            raise _Reject(400, deep, param="body")
        return body

    def validate(self, model: type[BaseModel], body: dict[str, Any]) -> Any:
        """``body`` as ``model``: a served model name, no field that would change the output unhonoured."""
        try:
            req = model.model_validate(body)
        except ValidationError as e:
            raise _validation_reject(e) from None
        except RecursionError:
            raise _Reject(400, "the request is nested too deeply to validate", param="body") from None
        name = body.get("model")
        if name is not None and name not in self.names:
            raise _Reject(404, f"The model `{name}` does not exist. This server serves: {', '.join(self.names)}",
                          "NotFoundError", param="model")
        extra = dict(req.model_extra or {})
        so = getattr(req, "stream_options", None)  # the request models differ; Tokenize has none
        if so is not None and so.continuous_usage_stats:
            extra["continuous_usage_stats"] = True
        for k, v in extra.items():
            if k in UNHONOURED and v not in (None, False, 0, "", [], {}):
                raise _Reject(400, f"{k} is not supported by gsexplore serve: {UNHONOURED[k]}", param=k)
        ignored = sorted(k for k in extra if k not in UNHONOURED)
        if ignored:
            log.warning("The following fields were present in the request but ignored: %s", ignored)
        return req

    def to_params(self, req: Any, **defaults: Any) -> Params:
        """The request's Params, within --max-tokens-cap and --max-n."""
        data = {**defaults, **params_data(req)}
        try:
            p = Params.from_request(data)
        except ParamsError as e:
            raise _Reject(400, str(e), param=e.field) from None
        if p.max_tokens is not None and p.max_tokens > self.max_tokens_cap:
            raise _Reject(400, f"max_tokens={p.max_tokens} is more than this server allows "
                               f"({self.max_tokens_cap}; --max-tokens-cap raises it)", param="max_tokens")
        if (p.n or 1) > self.max_n:
            raise _Reject(400, f"n={p.n} is more than this server allows ({self.max_n}; --max-n raises it)",
                          param="n")
        return p

    def _job(self, req: Any, p: Params, **kw: Any) -> _Job:
        so = req.stream_options
        return _Job(req.model or self.names[0], p.replace(model=None, stream=None), bool(p.stream),
                    bool(so and so.include_usage), **kw)

    def chat_job(self, body: dict[str, Any]) -> _Job:
        """A /v1/chat/completions body as a job."""
        req = self.validate(ChatCompletionRequest, body)
        return self._job(req, self.to_params(req), messages=to_template_messages(req.messages))

    def text_job(self, body: dict[str, Any]) -> _Job:
        """A /v1/completions body as a job (one raw prompt; LocalBackend only)."""
        req = self.validate(CompletionRequest, body)
        _raw(self.first)
        if req.logprobs is not None and req.echo:
            raise _Reject(400, "echo with logprobs needs the prompt's logprobs, which gsexplore serve does not "
                               "return on /v1/completions; use prompt_logprobs on /v1/chat/completions",
                          param="echo")
        prompt = req.prompt[0] if isinstance(req.prompt, list) and len(req.prompt) == 1 else req.prompt
        if not isinstance(prompt, str):
            raise _Reject(400, "prompt must be one string (lists of prompts or of token ids are not "
                               "supported by gsexplore serve)", param="prompt")
        p = self.to_params(req, add_special_tokens=True)  # vLLM's default for completions
        return self._job(req, p, prompt=prompt, echo=prompt if req.echo else None)

    # --- generating ---------------------------------------------------------------
    async def chat_completions(self, request: Request) -> Response:
        """POST /v1/chat/completions."""
        return await self.generate(request, self.chat_job)

    async def completions(self, request: Request) -> Response:
        """POST /v1/completions."""
        return await self.generate(request, self.text_job)

    async def generate(self, request: Request, make_job: Callable[[dict[str, Any]], _Job]) -> Response:
        """Authorize, validate, admit, generate; answer with JSON or, when streaming, SSE."""
        t0 = time.perf_counter()
        self.authorize(request)
        job = make_job(await self.read_json(request))
        lease = self.pool.admit()
        if job.stream:
            return await self.stream(job, lease, t0)
        async with lease:
            b = await self._start(lease)
            c = await job.complete(b, await self.cap(b, job))
        self.metrics.finished(c, time.perf_counter() - t0)
        data = job.response(c)
        return JSONResponse(data, headers={"x-request-id": str(data["id"])})

    async def _start(self, lease: _Lease) -> Backend:
        """The artificial latency (a network/engine delay that holds no model), then a free slot."""
        if self.artificial_latency_s > 0:
            await asyncio.sleep(self.artificial_latency_s)
        return await lease.acquire()

    async def cap(self, b: Backend, job: _Job) -> Params:
        """Unset max_tokens: what fits in ``b``'s context (as vLLM), but at most --max-tokens-cap."""
        p, cap = job.params, self.max_tokens_cap
        if p.max_tokens is not None:
            return p
        if b.n_ctx is None:
            return p.replace(max_tokens=cap)
        if b.n_ctx <= cap:
            return p  # the context is the tighter bound
        n_prompt = await asyncio.get_running_loop().run_in_executor(None, job.prompt_tokens, b)
        if n_prompt is None:
            return p.replace(max_tokens=cap)
        room = b.n_ctx - n_prompt
        return p.replace(max_tokens=min(cap, room)) if room > 0 else p

    async def stream(self, job: _Job, lease: _Lease, t0: float) -> Response:
        """Start generating; a failure before the first Delta is a JSON error, else the answer streams as SSE.

        The response owns ``lease`` and the Deltas: however it ends (the client leaving
        included), closing them cancels the request in the backend and frees the slot.
        """
        events: AsyncIterator[Delta] | None = None
        try:
            b = await self._start(lease)
            events = job.events(b, await self.cap(b, job))
            first = await anext(events, None)
            if first is None:
                raise GSExploreError("the model produced nothing")
        except BaseException:
            await _end_stream(events, lease)
            raise
        ttft = time.perf_counter() - t0
        chunks = job.chunks()
        end = functools.partial(_end_stream, events, lease)
        return _EventStream(self._sse(chunks, first, events, t0, ttft, end), on_close=end,
                            headers={"x-request-id": chunks.id, "Cache-Control": "no-cache"})

    async def _sse(self, chunks: _Chunks, first: Delta, events: AsyncIterator[Delta], t0: float, ttft: float,
                   end: Callable[[], Awaitable[None]]) -> AsyncIterator[bytes]:
        """The SSE body: a chunk per Delta, an error event if generation fails after the 200, then [DONE]."""
        try:
            yield chunks.start()
            d: Delta | None = first
            try:
                while d is not None:
                    out = self._sse_chunk(chunks, d, t0, ttft)
                    if out:
                        yield out
                    d = await anext(events, None)
            except Exception as e:  # noqa: BLE001 - reported to the client in the stream
                r = _exception_reject(e)
                self.metrics.error(r.status)
                yield chunks.error(r.status, r.message, r.type)
            yield chunks.DONE
        finally:
            await end()

    def _sse_chunk(self, chunks: _Chunks, d: Delta, t0: float, ttft: float) -> bytes:
        if d.kind != "done":
            return chunks.delta(d.kind, d.text, d.index)
        assert d.completion is not None
        self.metrics.finished(d.completion, time.perf_counter() - t0, ttft)
        return chunks.finish(d.completion)

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
        req = self.validate(TokenizeRequest, await self.read_json(request))
        b = _local(self.first, "tokenize")
        work: Callable[[], list[int]]
        if req.prompt is not None:
            add = True if req.add_special_tokens is None else req.add_special_tokens
            work = functools.partial(b.tokenize, req.prompt, add)
        else:
            p = self.to_params(req).replace(model=None)
            work = functools.partial(b.prompt_token_ids, to_template_messages(req.messages), p)
        ids = await asyncio.get_running_loop().run_in_executor(None, work)
        strs = [b.detokenize([i]) for i in ids] if req.return_token_strs else None
        return JSONResponse({"count": len(ids), "max_model_len": self.first.n_ctx, "tokens": ids,
                             "token_strs": strs})

    async def detokenize(self, request: Request) -> Response:
        """POST /detokenize: the text of token ids."""
        self.authorize(request)
        req = self.validate(DetokenizeRequest, await self.read_json(request))
        return JSONResponse({"prompt": _local(self.first, "detokenize").detokenize(req.tokens)})

    async def health(self) -> dict[str, Any]:
        """GET /health."""
        return {"status": "ok", "models": self.names, "instances": len(self.pool.backends),
                "slots": self.pool.size, "pending": self.pool.pending}

    async def version(self) -> dict[str, Any]:
        """GET /version."""
        return {"version": _version()}

    async def prometheus(self) -> Response:
        """GET /metrics (Prometheus text)."""
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)


def create_app(
    backends: Sequence[Any] | str,
    api_keys: set[str] | None = None,
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
) -> FastAPI:
    """The FastAPI app: a list of loaded LocalBackend instances of one model, or a model spec to load.

    Limits, each a 400 naming its flag: ``max_body_bytes`` (--max-body-bytes), ``max_tokens_cap``
    (--max-tokens-cap), ``max_n`` (--max-n), and ``MAX_JSON_DEPTH`` levels of nesting.
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
    keys = {k for k in (api_keys or set()) if k}
    return _Server(loaded, names, keys, spec=spec, max_body_bytes=max_body_bytes, max_tokens_cap=max_tokens_cap,
                   max_queue=max_queue, artificial_latency_s=artificial_latency_s, max_n=max_n, docs=docs).app


def _version() -> str:
    from ._version import __version__

    return __version__


# --------------------------------------------------------------------------
# running it


def _uvicorn_config(app: Any, host: str, port: int, log_level: str, access_log: bool, **kw: Any) -> Any:
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=access_log,
                          timeout_graceful_shutdown=2, lifespan="on", **kw)


class ServerThread:
    """uvicorn serving `app` in a background thread (tests, benchmarks, notebooks).

    >>> with ServerThread(create_app("tiny-qwen3")) as srv:   # doctest: +SKIP
    ...     print(srv.url)                                    # http://127.0.0.1:PORT/v1
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                 access_log: bool = False, **uvicorn_kwargs: Any) -> None:
        import uvicorn

        self.app = app
        self.host = host
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so (else Nagle adds ~40 ms)
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                                   socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        self.server = uvicorn.Server(_uvicorn_config(app, host, self.port, log_level, access_log, **uvicorn_kwargs))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]},
                                        name=f"gsexplore-serve-{self.port}", daemon=True)

    @property
    def base(self) -> str:
        """http://host:port"""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The base_url for RemoteBackend (…/v1)."""
        return f"{self.base}/v1"

    def start(self, timeout: float = 30.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise GSExploreError(f"the server on {self.base} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    model: str,
    *,
    filename: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_keys: Iterable[str] | None = None,
    instances: int = 1,
    served_model_names: Sequence[str] | None = None,
    max_tokens_cap: int = 4096,
    max_queue: int = 64,
    max_body_bytes: int = 1_000_000,
    artificial_latency_s: float = 0.0,
    backend_kwargs: dict[str, Any] | None = None,
    log_level: str = "info",
    max_n: int = 16,
    docs: bool = True,
) -> None:
    """Load the model and serve it until interrupted (what `gsexplore serve` runs)."""
    import uvicorn

    keys = set(api_keys or ())
    check_binding(host, keys)  # before loading anything
    app = create_app(model, keys, max_body_bytes=max_body_bytes, max_tokens_cap=max_tokens_cap,
                     max_queue=max_queue, artificial_latency_s=artificial_latency_s,
                     served_model_names=served_model_names, filename=filename, instances=instances,
                     backend_kwargs=backend_kwargs, max_n=max_n, docs=docs)
    names = app.state.served_model_names
    shown = f"[{host}]" if ":" in host else host
    pool = app.state.pool
    print(f"gsexplore serve: {', '.join(names)} ({instances} instance{'s' if instances > 1 else ''}, "
          f"{pool.size} requests at once) "
          f"on http://{shown}:{port}/v1 and /functions/v1; "
          + ("API keys required" if keys else "no API key (loopback only)"), flush=True)
    uvicorn.Server(_uvicorn_config(app, host, port, log_level, access_log=True)).run()
