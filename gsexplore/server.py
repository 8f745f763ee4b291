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
import hmac
import ipaddress
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pydantic import BaseModel, ValidationError

from . import tools as _tools
from . import wire
from .chat_template import TemplateError
from .completion import Completion
from .errors import GSExploreError, ParamsError, UnsupportedParam
from .params import Params
from .server_metrics import CONTENT_TYPE, ServerMetrics
from .server_requests import (UNHONOURED, ChatCompletionRequest, CompletionRequest, DetokenizeRequest,
                              TokenizeRequest, json_depth, params_data, to_template_messages)
from .wire import error_body, text_response

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
    """Loaded model instances and their slots: a request takes one slot while it generates.

    A LocalBackend has ``slots`` sequences batched in its engine (``--parallel``), so
    that many requests generate at once on one model; a backend without slots takes
    one at a time. Each request waits for its answer in a worker thread.
    """

    def __init__(self, backends: Sequence[Any], max_queue: int) -> None:
        if not backends:
            raise GSExploreError("serve needs at least one model instance")
        self.backends = list(backends)
        self.max_queue = max_queue
        # a free list (one entry per slot, instances interleaved) and waiting futures rather than
        # an asyncio.Queue, which would bind to one event loop
        per = [max(1, int(getattr(b, "slots", 1))) for b in self.backends]
        self._free: collections.deque[Any] = collections.deque(
            b for k in range(max(per)) for b, n in zip(self.backends, per) if k < n)
        self._waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.executor = ThreadPoolExecutor(max_workers=len(self._free), thread_name_prefix="gsexplore-gen")
        self.pending = 0  # admitted and not finished (waiting or generating)
        self.served = 0
        self._busy_s = 0.0

    @property
    def size(self) -> int:
        """Requests that can generate at once (every instance's slots)."""
        return self.executor._max_workers

    def admit(self) -> None:
        """Count a request in, or reject it with 429 when the queue is full."""
        if self.pending >= self.size + self.max_queue:
            mean = self._busy_s / self.served if self.served else 1.0
            wait = max(1, math.ceil(mean * (self.pending - self.size + 1) / self.size))
            raise _Reject(429, f"the server is busy: {self.pending} requests in progress "
                               f"({self.max_queue} may wait); retry in {wait} s",
                          "RateLimitError", headers={"Retry-After": str(wait)})
        self.pending += 1

    def leave(self) -> None:
        self.pending -= 1

    async def _acquire(self) -> Any:
        if self._free:
            return self._free.popleft()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release(fut.result())  # handed over just as the request went away
            else:
                self._waiters.remove(fut)
            raise

    def _release(self, backend: Any) -> None:
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(backend)
                return
        self._free.append(backend)

    def _worker(self, loop: asyncio.AbstractEventLoop, backend: Any, fn: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(backend)
        finally:
            self._busy_s += time.perf_counter() - t0
            self.served += 1
            # released from the worker itself, so a cancelled request never frees a busy model
            loop.call_soon_threadsafe(self._release, backend)

    async def run(self, fn: Any) -> Any:
        """`fn(backend)` on a free instance, in a worker thread."""
        loop = asyncio.get_running_loop()
        backend = await self._acquire()
        try:
            fut = loop.run_in_executor(self.executor, self._worker, loop, backend, fn)
        except BaseException:
            self._release(backend)
            raise
        return await fut

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        for b in self.backends:
            close = getattr(b, "close", None)
            if close:
                close()


# --------------------------------------------------------------------------
# response shapes


#: vLLM's non-streaming response for a Completion (``wire.completion_response``).
response_dict = wire.completion_response


class _Chunks:
    """vLLM's streaming chunks for one request (``text``: /v1/completions' ``text_completion`` chunks).

    With tools, content that is a tool call is held back (``tools.StreamFilter``) and the
    parsed ``tool_calls`` arrive in one delta before the choice's last chunk.
    """

    def __init__(self, model: str, n: int, include_usage: bool, params: Params | None = None,
                 text: bool = False, echo: str | None = None) -> None:
        self.id = wire.new_id("cmpl") if text else wire.new_id()
        self.created, self.model = int(time.time()), model
        self.n, self.include_usage, self.text, self.echo = n, include_usage, text, echo
        p = params or Params()
        self.filters = {i: _tools.StreamFilter(p) for i in range(n)}

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return wire.sse(wire.chunk(self.id, self.created, self.model, choices, text=self.text, **extra))

    def _text(self, index: int, text: str, finish: str | None = None, stop: Any = None) -> bytes:
        return self._chunk([{"index": index, "text": text, "logprobs": None, "finish_reason": finish,
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
        f = self.filters.get(index)
        text = f.feed(text) if f is not None else text
        return self._content(index, text) if text else b""

    def finish(self, c: Completion) -> bytes:
        out = []
        for ch in c.choices:
            f = self.filters.get(ch.index)
            owed = f.flush(bool(ch.tool_calls)) if f is not None else ""
            if owed:
                out.append(self._content(ch.index, owed))
            if ch.tool_calls and not self.text:
                calls = [{"index": k, **tc} for k, tc in enumerate(ch.tool_calls)]
                out.append(self._chunk([{"index": ch.index, "delta": {"tool_calls": calls}, "logprobs": None,
                                         "finish_reason": None}]))
            if self.text:
                out.append(self._text(ch.index, "", ch.finish_reason, ch.stop_reason))
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
    """SSE whose clean-up runs even when the client leaves before the first byte is sent."""

    def __init__(self, content: AsyncIterator[bytes], *, on_close: Any, task: asyncio.Future[Any],
                 headers: dict[str, str]) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self._on_close, self._task = on_close, task

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def _exception_reject(exc: BaseException) -> _Reject:
    if isinstance(exc, _Reject):
        return exc
    if isinstance(exc, UnsupportedParam):
        return _Reject(400, str(exc), param=exc.param)
    if isinstance(exc, ParamsError):
        return _Reject(400, str(exc), param=exc.field)
    from .backends.llama.engine import EngineError

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


def _backend_stem(b: Any) -> str:
    p = getattr(b, "path", None)  # LocalBackend: the GGUF file it loaded
    if p:
        return Path(str(p)).stem
    name = str(getattr(b, "model", "") or "local")
    return Path(name).stem if name.endswith(".gguf") else name


def served_names(backends: Sequence[Any], served_model_names: Sequence[str] | None,
                 model_spec: str | None = None) -> list[str]:
    """The names a server answers to: ``--served-model-name`` values, the ``--model`` spec as typed
    (and a path's stem), and the GradienteSur model name (so the seed's examples run unchanged)."""
    spec = model_spec or getattr(backends[0], "source", None)
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
        backends = load_backends(spec, filename=filename, instances=instances, **(backend_kwargs or {}))
    if isinstance(served_model_names, str):
        served_model_names = [served_model_names]
    names = served_names(backends, served_model_names, spec)
    keys = {k for k in (api_keys or set()) if k}
    pool = ModelPool(backends, max_queue=max_queue)
    started = int(time.time())
    first = backends[0]
    n_ctx = getattr(first, "n_ctx", None)

    def running() -> float:
        return float(pool.size - len(pool._free))

    metrics = ServerMetrics(names[0], running, lambda: float(max(0, pool.pending - running())))
    app = FastAPI(title="gsexplore serve", version=_version(), description=__doc__,
                  docs_url="/docs" if docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if docs else None)
    app.state.pool = pool
    app.state.served_model_names = names
    app.state.metrics = metrics

    def reject_response(r: _Reject) -> JSONResponse:
        metrics.error(r.status)
        return JSONResponse(error_body(r.status, r.message, r.type, r.param), status_code=r.status,
                            headers=r.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_exc(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = {404: "NotFoundError", 405: "MethodNotAllowedError"}.get(exc.status_code, "BadRequestError")
        return reject_response(_Reject(exc.status_code, str(exc.detail), type_))

    @app.exception_handler(RequestValidationError)
    async def _validation_exc(request: Request, exc: RequestValidationError) -> JSONResponse:
        return reject_response(_Reject(400, str(exc)))

    @app.exception_handler(Exception)
    async def _any_exc(request: Request, exc: Exception) -> JSONResponse:
        return reject_response(_exception_reject(exc))  # a bug: still vLLM's shape

    def authorize(request: Request) -> None:
        if not keys:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip().encode()
        ok = False
        for k in keys:  # compare with every key, in constant time each
            ok |= hmac.compare_digest(token, k.encode())
        if scheme.lower() != "bearer" or not ok:
            raise _Reject(401, "missing or invalid API key: send the header 'Authorization: Bearer <key>'",
                          "AuthenticationError", headers={"WWW-Authenticate": "Bearer"})

    too_large = (f"the request body is larger than this server's limit of {max_body_bytes} bytes "
                 "(--max-body-bytes raises it)")

    async def read_json(request: Request) -> dict[str, Any]:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_body_bytes:
            raise _Reject(400, too_large, param="body")
        chunks, size = [], 0
        async for part in request.stream():
            size += len(part)
            if size > max_body_bytes:
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

    def validate(model: type[BaseModel], body: dict[str, Any]) -> Any:
        try:
            req = model.model_validate(body)
        except ValidationError as e:
            raise _validation_reject(e) from None
        except RecursionError:
            raise _Reject(400, "the request is nested too deeply to validate", param="body") from None
        name = body.get("model")
        if name is not None and name not in names:
            raise _Reject(404, f"The model `{name}` does not exist. This server serves: {', '.join(names)}",
                          "NotFoundError", param="model")
        extra = dict(req.model_extra or {})
        so = getattr(req, "stream_options", None)
        if so is not None and so.continuous_usage_stats:
            extra["continuous_usage_stats"] = True
        for k, v in extra.items():
            if k in UNHONOURED and v not in (None, False, 0, "", [], {}):
                raise _Reject(400, f"{k} is not supported by gsexplore serve: {UNHONOURED[k]}", param=k)
        ignored = sorted(k for k in extra if k not in UNHONOURED)
        if ignored:
            log.warning("The following fields were present in the request but ignored: %s", ignored)
        return req

    def to_params(req: Any, **defaults: Any) -> Params:
        data = {**defaults, **params_data(req)}
        try:
            p = Params.from_request(data)
        except ParamsError as e:
            raise _Reject(400, str(e), param=e.field) from None
        if p.max_tokens is not None and p.max_tokens > max_tokens_cap:
            raise _Reject(400, f"max_tokens={p.max_tokens} is more than this server allows ({max_tokens_cap}; "
                               "--max-tokens-cap raises it)", param="max_tokens")
        if (p.n or 1) > max_n:
            raise _Reject(400, f"n={p.n} is more than this server allows ({max_n}; --max-n raises it)",
                          param="n")
        return p

    def model_of(req: Any) -> str:
        return req.model or names[0]

    def include_usage(req: Any) -> bool:
        return bool(req.stream_options and req.stream_options.include_usage)

    def capped(b: Any, p: Params, n_prompt: Any) -> Params:
        """Unset max_tokens: what fits in the context (as vLLM), but at most the server's cap."""
        if p.max_tokens is not None:
            return p
        n_ctx = getattr(b, "n_ctx", None)
        if n_ctx is None or not hasattr(b, "prompt_token_ids"):
            return p.replace(max_tokens=max_tokens_cap)
        if n_ctx <= max_tokens_cap:
            return p  # the context is the tighter bound
        room = n_ctx - n_prompt()
        return p.replace(max_tokens=min(max_tokens_cap, room)) if room > 0 else p

    def chat_job(msgs: list[dict[str, Any]], p: Params) -> tuple[Any, Any]:
        def cap(b: Any) -> Params:
            return capped(b, p, lambda: len(b.prompt_token_ids(msgs, p)))
        return (lambda b: b.chat(msgs, cap(b))), (lambda b: b.stream(msgs, cap(b)))

    def text_job(prompt: str, p: Params) -> tuple[Any, Any]:
        def cap(b: Any) -> Params:
            return capped(b, p, lambda: len(b.tokenize(prompt, bool(p.add_special_tokens))))
        return ((lambda b: b.submit(None, cap(b), prompt=prompt).result()),
                (lambda b: b.events(None, cap(b).replace(stream=True), streaming=True, prompt=prompt)))

    async def generate(request: Request, kind: str) -> Response:
        t0 = time.perf_counter()
        try:
            authorize(request)
            body = await read_json(request)
            if kind == "chat":
                req = validate(ChatCompletionRequest, body)
                p = to_params(req)
                run, stream_fn = chat_job(to_template_messages(req.messages), p.replace(model=None, stream=None))
                echo = None
            else:
                req = validate(CompletionRequest, body)
                if req.logprobs is not None:
                    raise _Reject(400, "logprobs on /v1/completions is not supported by gsexplore serve; "
                                       "/v1/chat/completions returns them", param="logprobs")
                prompt = req.prompt[0] if isinstance(req.prompt, list) and len(req.prompt) == 1 else req.prompt
                if not isinstance(prompt, str):
                    raise _Reject(400, "prompt must be one string (lists of prompts or of token ids are not "
                                       "supported by gsexplore serve)", param="prompt")
                p = to_params(req, add_special_tokens=True)  # vLLM's default for completions
                run, stream_fn = text_job(prompt, p.replace(model=None, stream=None))
                echo = prompt if req.echo else None
            pool.admit()
        except _Reject as r:
            return reject_response(r)
        handed_off = False  # a stream counts itself out when it ends
        try:
            if artificial_latency_s > 0:
                await asyncio.sleep(artificial_latency_s)  # a network/engine delay that holds no model
            if not p.stream:
                try:
                    c = await pool.run(run)
                except Exception as e:  # noqa: BLE001 - every failure becomes an HTTP answer
                    return reject_response(_exception_reject(e))
                metrics.finished(c, time.perf_counter() - t0)
                data = response_dict(c, model_of(req)) if kind == "chat" else text_response(c, model_of(req), echo)
                return JSONResponse(data, headers={"x-request-id": str(data["id"])})
            handed_off = True
            chunks = _Chunks(model_of(req), p.n or 1, include_usage(req), p, text=kind == "text", echo=echo)
            return await start_stream(stream_fn, chunks, t0)
        finally:
            if not handed_off:
                pool.leave()

    async def start_stream(stream_fn: Any, chunks: _Chunks, t0: float) -> Response:
        """Start generating; answer with a JSON error if it fails before the first delta, else with SSE."""
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancel = threading.Event()

        def produce(b: Any) -> None:
            try:
                gen = stream_fn(b)
                try:
                    for d in gen:
                        loop.call_soon_threadsafe(q.put_nowait, ("delta", d))
                        if cancel.is_set():
                            break
                finally:
                    close = getattr(gen, "close", None)
                    if close:
                        close()
            except BaseException as e:  # noqa: BLE001 - reported to the client
                loop.call_soon_threadsafe(q.put_nowait, ("error", e))
            finally:
                loop.call_soon_threadsafe(q.put_nowait, ("end", None))

        async def run_producer() -> None:
            try:
                await pool.run(produce)
            except BaseException as e:  # noqa: BLE001 - it never reached the model: tell the client
                q.put_nowait(("error", e))
                q.put_nowait(("end", None))

        task = asyncio.ensure_future(run_producer())
        closed = False

        def close() -> None:
            """Stop generating and count the request out, once, however the response ends."""
            nonlocal closed
            if not closed:
                closed = True
                cancel.set()
                pool.leave()

        try:
            first_item = await q.get()
        except BaseException:
            close()
            raise
        if first_item[0] != "delta":
            close()
            err = first_item[1] if first_item[0] == "error" else GSExploreError("the model produced nothing")
            return reject_response(_exception_reject(err))
        ttft = time.perf_counter() - t0

        async def events() -> AsyncIterator[bytes]:
            try:
                yield chunks.start()
                item = first_item
                while True:
                    kind, value = item
                    if kind == "end":
                        break
                    if kind == "error":
                        r = _exception_reject(value)
                        metrics.error(r.status)
                        yield chunks.error(r.status, r.message, r.type)
                    elif value.kind == "done":
                        metrics.finished(value.completion, time.perf_counter() - t0, ttft)
                        yield chunks.finish(value.completion)
                    else:
                        out = chunks.delta(value.kind, value.text, value.index)
                        if out:
                            yield out
                    item = await q.get()
                yield chunks.DONE
            finally:
                close()

        return _EventStream(events(), on_close=close, task=task,
                            headers={"x-request-id": chunks.id, "Cache-Control": "no-cache"})

    async def chat_completions(request: Request) -> Response:
        return await generate(request, "chat")

    async def completions(request: Request) -> Response:
        return await generate(request, "text")

    async def list_models(request: Request) -> Response:
        try:
            authorize(request)
        except _Reject as r:
            return reject_response(r)
        root = str(getattr(first, "source", None) or spec or names[0])
        data = [{"id": n, "object": "model", "created": started, "owned_by": "gsexplore", "root": root,
                 "parent": None, "max_model_len": n_ctx, "permission": []} for n in names]
        return JSONResponse({"object": "list", "data": data})

    async def tokenize(request: Request) -> Response:
        try:
            authorize(request)
            req = validate(TokenizeRequest, await read_json(request))
            if not hasattr(first, "tokenize"):
                raise _Reject(400, "this server's backend cannot tokenize")
            if req.prompt is not None:
                add = True if req.add_special_tokens is None else req.add_special_tokens

                def work() -> list[int]:
                    return first.tokenize(req.prompt, add)
            else:
                p = to_params(req)
                msgs = to_template_messages(req.messages)

                def work() -> list[int]:
                    return first.prompt_token_ids(msgs, p.replace(model=None))
            ids = await asyncio.get_running_loop().run_in_executor(None, work)
        except _Reject as r:
            return reject_response(r)
        except Exception as e:  # noqa: BLE001 - a template or params failure is the client's
            return reject_response(_exception_reject(e))
        strs = [first.detokenize([i]) for i in ids] if req.return_token_strs else None
        return JSONResponse({"count": len(ids), "max_model_len": n_ctx, "tokens": ids, "token_strs": strs})

    async def detokenize(request: Request) -> Response:
        try:
            authorize(request)
            req = validate(DetokenizeRequest, await read_json(request))
            if not hasattr(first, "detokenize"):
                raise _Reject(400, "this server's backend cannot detokenize")
            text = first.detokenize(req.tokens)
        except _Reject as r:
            return reject_response(r)
        except Exception as e:  # noqa: BLE001
            return reject_response(_exception_reject(e))
        return JSONResponse({"prompt": text})

    components: dict[str, Any] = {}
    chat_doc = _openapi_body(ChatCompletionRequest, components)
    text_doc = _openapi_body(CompletionRequest, components)
    for prefix in ROUTE_PREFIXES:
        app.add_api_route(f"{prefix}/chat/completions", chat_completions, methods=["POST"],
                          openapi_extra=chat_doc, include_in_schema=prefix == "/v1")
        app.add_api_route(f"{prefix}/completions", completions, methods=["POST"], openapi_extra=text_doc,
                          include_in_schema=prefix == "/v1")
        app.add_api_route(f"{prefix}/models", list_models, methods=["GET"], include_in_schema=prefix == "/v1")
    app.add_api_route("/tokenize", tokenize, methods=["POST"], openapi_extra=_openapi_body(TokenizeRequest, components))
    app.add_api_route("/detokenize", detokenize, methods=["POST"],
                      openapi_extra=_openapi_body(DetokenizeRequest, components))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": names, "instances": len(pool.backends), "slots": pool.size,
                "pending": pool.pending}

    @app.get("/version")
    async def version() -> dict[str, Any]:
        return {"version": _version()}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = base_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


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
        pool = getattr(self.app.state, "pool", None)
        if pool is not None:
            pool.executor.shutdown(wait=False, cancel_futures=True)

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
