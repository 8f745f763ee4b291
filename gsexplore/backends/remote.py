"""`RemoteBackend`: the GradienteSur (vLLM, OpenAI-compatible) Chat Completions API over httpx.

One pooled `httpx.Client` and one `httpx.AsyncClient` per backend (created on first
use, closed with the backend); typed errors, retries with backoff, SSE streaming.
The API key lives in one private auth object and is scrubbed from everything the
server echoes back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from .. import wire
from ..completion import Completion, Messages
from ..errors import APIConnectionError, APIError, APITimeoutError, AuthenticationError, ParamsError
from ..params import Params
from ..wire import DEFAULT_BASE_URL, DEFAULT_MODEL, KEY_ENV, Spelling
from ._http import (RetryPolicy, StreamAssembler, aiter_sse_data, error_for_status, iter_sse_data,
                    parse_json_body, scrub)
from ._connection import BearerAuth, is_loopback, ssl_context
from .base import Backend, Delta, MessagesLike, merge_params, to_messages

log = logging.getLogger("gsexplore.remote")

MISSING_KEY_MESSAGE = (
    f"no API key: set the {KEY_ENV} environment variable (or pass api_key=...). "
    f"In a notebook: import getpass, os; os.environ[\"{KEY_ENV}\"] = getpass.getpass()"
)

class RemoteBackend(Backend):
    """The GradienteSur API (or any vLLM / OpenAI-compatible server) as a gsexplore backend.

    >>> remote = RemoteBackend()                      # key from $GS_API_KEY
    >>> remote.chat("Hola, cómo estás?", Params(max_tokens=200)).content  # doctest: +SKIP

    A key is required unless `base_url` is on this machine (a `gsexplore serve`
    started without keys). `guided_spelling="structured_outputs"` sends guided
    constraints the way vLLM >= 0.11 expects them (0.12 ignores `guided_*`).
    Retries (429, 5xx, connection errors) back off exponentially with jitter and
    honour Retry-After; read timeouts and other 4xx are raised at once.
    """

    name = "remote"
    remote = True

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        model: str = DEFAULT_MODEL,
        timeout: float = 60.0,
        max_retries: int = 3,
        max_concurrency: int = 16,
        guided_spelling: Spelling = "guided",
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        *,
        backoff_s: float = 0.5,
        max_backoff_s: float = 20.0,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(KEY_ENV)
        key = key.strip() if key else None
        self.base_url = base_url.rstrip("/")
        if not key and not is_loopback(self.base_url):
            raise AuthenticationError(MISSING_KEY_MESSAGE)
        if guided_spelling not in ("guided", "structured_outputs"):
            raise ParamsError(f"guided_spelling={guided_spelling!r} is not allowed: use 'guided' (vLLM <= 0.11) "
                              "or 'structured_outputs' (vLLM >= 0.11)", field="guided_spelling", value=guided_spelling)
        if max_concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise ParamsError("max_concurrency must be >= 1, max_retries >= 0 and timeout > 0")
        self._auth = BearerAuth(key)
        if key and urlsplit(self.base_url).scheme == "http" and not is_loopback(self.base_url):
            log.warning("the API key will travel unencrypted to %s (http, not https)", self.base_url)
        self.model = model
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.max_concurrency = int(max_concurrency)
        self.guided_spelling: Spelling = guided_spelling
        self.retry = RetryPolicy(max_retries=self.max_retries, base_s=backoff_s, max_backoff_s=max_backoff_s)
        self._transport = transport
        self._async_transport = async_transport if async_transport is not None else (
            transport if isinstance(transport, httpx.AsyncBaseTransport) else None)
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._urls: dict[str, httpx.URL] = {}
        # one AsyncClient and semaphore per event loop (a notebook's loop, a sweep's thread, asyncio.run)
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AsyncPool] = weakref.WeakKeyDictionary()

    # --- the event stream (chat, achat, stream, astream: see Backend) -------------
    def events(self, messages: MessagesLike, params: Params, *, streaming: bool) -> Iterator[Delta]:
        """One request: SSE deltas when ``streaming``, else one POST whose answer comes as Deltas at once."""
        p, msgs, body = self._prepare(messages, params, streaming)
        if streaming:
            return self._stream(p, msgs, body)
        return self._post(p, msgs, body)

    async def aevents(self, messages: MessagesLike, params: Params, *, streaming: bool) -> AsyncIterator[Delta]:
        """Async twin of `events`; at most ``max_concurrency`` requests in flight per backend."""
        p, msgs, body = self._prepare(messages, params, streaming)
        if streaming:
            async for d in self._astream(p, msgs, body):
                yield d
            return
        client, sem = self._async_state()
        async with sem:
            t0 = time.perf_counter()
            resp = await self._asend(client, "POST", "/chat/completions", body)
            latency = time.perf_counter() - t0
        data = parse_json_body(resp.content, resp.status_code, resp.headers, self._secret)
        for d in self._whole(data, p, msgs, latency, ttft=None):
            yield d

    def _post(self, p: Params, msgs: Messages, body: dict[str, Any]) -> Iterator[Delta]:
        t0 = time.perf_counter()
        resp = self._send("POST", "/chat/completions", body)
        data = parse_json_body(resp.content, resp.status_code, resp.headers, self._secret)
        yield from self._whole(data, p, msgs, time.perf_counter() - t0, ttft=None)

    def models(self) -> list[str]:
        """Ids of the models the server offers (GET {base_url}/models)."""
        resp = self._send("GET", "/models", None)
        data = parse_json_body(resp.content, resp.status_code, resp.headers, self._secret)
        return [m.get("id") for m in data.get("data") or [] if isinstance(m, dict)]

    async def amodels(self) -> list[str]:
        """Async twin of `models`."""
        client, _ = self._async_state()
        resp = await self._asend(client, "GET", "/models", None)
        data = parse_json_body(resp.content, resp.status_code, resp.headers, self._secret)
        return [m.get("id") for m in data.get("data") or [] if isinstance(m, dict)]

    def request_body(self, messages: MessagesLike, params: Params | None = None, *, stream: bool = False,
                     **overrides: Any) -> dict[str, Any]:
        """The JSON body this backend would POST (no key in it)."""
        return self._prepare(messages, merge_params(params, overrides), stream)[2]

    def to_code(self, messages: MessagesLike, params: Params | None = None, lang: str = "python",
                **overrides: Any) -> str:
        """A snippet that sends this request like the seed's examples; the key is read from $GS_API_KEY."""
        body = scrub(self.request_body(messages, params, **overrides), self._secret)
        url = f"{self.base_url}/chat/completions"
        if lang == "python":
            return (f"import os\nimport requests\n\nAPI_URL = {url!r}\n"
                    f'headers = {{"Authorization": "Bearer " + os.environ["{KEY_ENV}"]}}\n\n'
                    f"data = {wire.py_literal(body)}\n\n"
                    "response = requests.post(API_URL, headers=headers, json=data)\nprint(response.json())\n")
        if lang == "curl":
            payload = json.dumps(body, ensure_ascii=False).replace("'", "'\\''")
            return (f"curl -X POST {url} \\\n  -H \"Authorization: Bearer ${KEY_ENV}\" \\\n"
                    f"  -H \"Content-Type: application/json\" \\\n  -d '{payload}'\n")
        raise ParamsError(f"lang={lang!r} is not allowed: use 'python' or 'curl'", field="lang", value=lang)

    def info(self) -> dict[str, Any]:
        """Kind, model and settings (never the key)."""
        return {"backend": self.name, "model": self.model, "base_url": self.base_url,
                "guided_spelling": self.guided_spelling, "timeout": self.timeout,
                "max_retries": self.max_retries, "max_concurrency": self.max_concurrency}

    def close(self) -> None:
        """Close the pooled clients (the async one on its own event loop)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
        with self._lock:
            states, self._async = list(self._async.items()), weakref.WeakKeyDictionary()
        for loop, pool in states:
            if loop.is_closed():
                continue  # a closed loop's connections are gone with it
            if loop.is_running():
                loop.call_soon_threadsafe(lambda p=pool, lp=loop: lp.create_task(p.aclose()))
            else:
                try:
                    loop.run_until_complete(pool.aclose())
                except RuntimeError:  # another loop runs in this thread
                    pass

    async def aclose(self) -> None:
        """Close the pooled clients (awaiting the one of this event loop)."""
        with self._lock:
            pool = self._async.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.aclose()
        self.close()

    async def __aenter__(self) -> RemoteBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"RemoteBackend(base_url={self.base_url!r}, model={self.model!r})"

    def secrets(self) -> list[str]:
        """The API key, to be scrubbed from whatever records this backend's answers."""
        return [self._secret] if self._secret else []

    # --- request building ---------------------------------------------------
    @property
    def _secret(self) -> str | None:
        return self._auth.secret

    def _prepare(self, messages: MessagesLike, p: Params,
                 stream: bool = False) -> tuple[Params, Messages, dict[str, Any]]:
        if stream and not p.stream:
            p = p.replace(stream=True)  # validates stream-only rules (prompt_logprobs, beam search)
        msgs = to_messages(messages)
        body = wire.request_body(p, msgs, self.model, self.guided_spelling, include_usage=True)
        return p, msgs, body

    def _completion(self, data: dict[str, Any], p: Params, msgs: Messages, latency: float,
                    ttft: float | None = None) -> Completion:
        return Completion.from_response(data, backend=self.name, params=p, messages=msgs,
                                        latency_s=latency, ttft_s=ttft)

    # --- clients ------------------------------------------------------------
    def _client_kwargs(self, connections: int | None = None) -> dict[str, Any]:
        from .._version import __version__

        n = max(connections or self.max_concurrency, 1)
        return dict(auth=self._auth, timeout=httpx.Timeout(self.timeout), verify=ssl_context(),
                    # a shard may briefly hold more than its share: never queue inside one
                    limits=httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=n,
                                        keepalive_expiry=30.0),
                    headers={"User-Agent": f"gsexplore/{__version__}"})

    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(transport=self._transport, **self._client_kwargs())
            return self._client

    def _async_state(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        """An AsyncClient and the semaphore of the running event loop (a new loop gets new ones)."""
        loop = asyncio.get_running_loop()
        state = self._async.get(loop)
        if state is None:
            with self._lock:
                state = self._async[loop] = _AsyncPool(self)
        return state.next(), state.sem

    def _url(self, path: str) -> httpx.URL:
        """The absolute URL of an endpoint, parsed once (httpx's URL parsing is a good part of a request's CPU)."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self.base_url + path)
        return url

    # --- sending with retries -------------------------------------------------
    def _send(self, method: str, path: str, body: dict[str, Any] | None, stream: bool = False) -> httpx.Response:
        client = self._sync_client()
        log.debug("%s %s%s", method, self.base_url, path)
        for attempt in itertools.count():
            try:
                resp = client.send(client.build_request(method, self._url(path), json=body), stream=stream)
                if resp.status_code < 400:
                    return resp
                try:
                    err = self._status_error(resp, resp.read())
                finally:
                    resp.close()
            except httpx.TransportError as exc:
                err = self._transport_error(exc)
            time.sleep(self._next_delay(err, attempt, path))
        raise AssertionError("unreachable")

    async def _asend(self, client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None,
                     stream: bool = False) -> httpx.Response:
        log.debug("%s %s%s", method, self.base_url, path)
        for attempt in itertools.count():
            try:
                resp = await client.send(client.build_request(method, self._url(path), json=body), stream=stream)
                if resp.status_code < 400:
                    return resp
                try:
                    err = self._status_error(resp, await resp.aread())
                finally:
                    await resp.aclose()
            except httpx.TransportError as exc:
                err = self._transport_error(exc)
            await asyncio.sleep(self._next_delay(err, attempt, path))
        raise AssertionError("unreachable")

    def _status_error(self, resp: httpx.Response, content: bytes) -> APIError:
        return error_for_status(resp.status_code, content, resp.headers, reason=resp.reason_phrase,
                                secret=self._secret)

    def _next_delay(self, err: APIError, attempt: int, path: str) -> float:
        """Seconds before the next try, or raise `err` when it is not retried."""
        policy = self._policy()
        if not policy.should_retry(err, attempt):
            if attempt:
                err.args = (f"{err.args[0]} (gave up after {attempt + 1} attempts)",)
            err.attempts = attempt + 1  # type: ignore[attr-defined]
            raise err
        delay = policy.delay(err, attempt)
        log.info("%s %s failed (%s: %s); retry %d of %d in %.2f s", "request", path, type(err).__name__,
                 err.message, attempt + 1, policy.max_retries, delay)
        return delay

    def _policy(self) -> RetryPolicy:
        """This backend's retry policy, or the one a caller set with `gsexplore.backends.base.retrying`."""
        o = self.retry_override()
        if o is None or (o.max_retries is None and o.backoff_s is None):
            return self.retry
        return dataclasses.replace(self.retry, **({} if o.max_retries is None else {"max_retries": o.max_retries}),
                                   **({} if o.backoff_s is None else {"base_s": o.backoff_s}))

    def _transport_error(self, exc: httpx.TransportError) -> APIError:
        detail = scrub(str(exc) or type(exc).__name__, self._secret)
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            err: APIError = APIConnectionError(
                f"could not connect to {self.base_url} ({detail}): is the server running and base_url right?")
        elif isinstance(exc, httpx.TimeoutException):
            err = APITimeoutError(f"no answer from {self.base_url} within timeout={self.timeout:g} s "
                                  f"({type(exc).__name__}); raise timeout= for long generations")
        else:
            err = APIConnectionError(f"the connection to {self.base_url} failed ({type(exc).__name__}: {detail})")
        err.__cause__ = exc
        return err

    def _stream_error(self, exc: httpx.TransportError, asm: StreamAssembler) -> APIError:
        where = "mid-stream" if asm.started else "before the first event"
        if isinstance(exc, httpx.TimeoutException):
            err: APIError = APITimeoutError(f"the stream from {self.base_url} stalled {where}: "
                                            f"no data for timeout={self.timeout:g} s", request_id=asm.request_id)
        else:
            detail = scrub(str(exc) or type(exc).__name__, self._secret)
            err = APIConnectionError(f"the connection to {self.base_url} dropped {where} ({detail})",
                                     request_id=asm.request_id)
        err.__cause__ = exc
        return err

    # --- streaming ------------------------------------------------------------
    def _stream(self, p: Params, msgs: Messages, body: dict[str, Any]) -> Iterator[Delta]:
        t0 = time.perf_counter()
        resp = self._send("POST", "/chat/completions", body, stream=True)
        run = _StreamRun(self, p, msgs, resp, t0)
        try:
            if not _is_event_stream(resp):  # a server that ignored "stream": true
                yield from run.whole(resp.read())
                return
            try:
                for data in iter_sse_data(resp.iter_lines()):
                    yield from run.feed(data)
                    if run.asm.done:
                        break
            except httpx.TransportError as exc:
                raise self._stream_error(exc, run.asm) from None
        finally:
            resp.close()
        yield run.finish()

    async def _astream(self, p: Params, msgs: Messages, body: dict[str, Any]) -> AsyncIterator[Delta]:
        client, sem = self._async_state()
        async with sem:
            t0 = time.perf_counter()
            resp = await self._asend(client, "POST", "/chat/completions", body, stream=True)
            run = _StreamRun(self, p, msgs, resp, t0)
            try:
                if not _is_event_stream(resp):
                    for d in run.whole(await resp.aread()):
                        yield d
                    return
                try:
                    async for data in aiter_sse_data(resp.aiter_lines()):
                        for d in run.feed(data):
                            yield d
                        if run.asm.done:
                            break
                except httpx.TransportError as exc:
                    raise self._stream_error(exc, run.asm) from None
            finally:
                await resp.aclose()
        yield run.finish()

    def _finish(self, asm: StreamAssembler, p: Params, msgs: Messages, latency: float,
                ttft: float | None) -> Delta:
        if not asm.done and not any(c.finish_reason for c in asm.choices.values()):
            raise APIConnectionError(f"the stream from {self.base_url} ended before the answer was complete "
                                     "(no finish_reason and no [DONE])", request_id=asm.request_id)
        c = self._completion(asm.response(), p, msgs, latency, ttft)
        return Delta("done", index=c.index, completion=c)

    def _whole(self, data: dict[str, Any], p: Params, msgs: Messages, latency: float,
               ttft: float | None) -> Iterator[Delta]:
        """The Deltas of a whole (non-streamed) answer, then "done"."""
        c = self._completion(data, p, msgs, latency, ttft=ttft)
        for ch in c.choices:
            if ch.reasoning_content:
                yield Delta("reasoning", ch.reasoning_content, ch.index)
            if ch.content:
                yield Delta("content", ch.content, ch.index)
        yield Delta("done", index=c.index, completion=c)


class _StreamRun:
    """One streamed answer being read: its assembler, its clock and time to first token."""

    def __init__(self, backend: RemoteBackend, p: Params, msgs: Messages, resp: httpx.Response, t0: float) -> None:
        self.backend, self.p, self.msgs, self.t0 = backend, p, msgs, t0
        self.asm = StreamAssembler(request_id=resp.headers.get("x-request-id"), secret=backend._secret)
        self.resp = resp
        self.ttft: float | None = None

    def feed(self, data: str) -> list[Delta]:
        """The Deltas of one SSE event (the first one stamps the time to first token)."""
        out = self.asm.feed(data)
        if out and self.ttft is None:
            self.ttft = time.perf_counter() - self.t0
        return out

    def whole(self, content: bytes) -> Iterator[Delta]:
        """A server that ignored "stream": true answered with one JSON body."""
        r = self.resp
        data = parse_json_body(content, r.status_code, r.headers, self.backend._secret)
        latency = time.perf_counter() - self.t0
        return self.backend._whole(data, self.p, self.msgs, latency, ttft=latency)

    def finish(self) -> Delta:
        return self.backend._finish(self.asm, self.p, self.msgs, time.perf_counter() - self.t0, self.ttft)


class _AsyncPool:
    """The async clients of one event loop: keep-alive connections in shards of at most 4.

    httpcore's pool checks every idle connection's socket each time a request starts or
    ends, so one pool of 16 connections costs ~0.8 ms of CPU per request more than four
    pools of 4 (measured); the semaphore still bounds the requests in flight to max_concurrency.
    An injected transport is its own pool: one client then.
    """

    SHARD = 4

    def __init__(self, backend: RemoteBackend) -> None:
        c = backend.max_concurrency
        shards = 1 if backend._async_transport is not None else max(1, -(-c // self.SHARD))
        per = -(-c // shards)
        self.clients = [httpx.AsyncClient(transport=backend._async_transport, **backend._client_kwargs(per))
                        for _ in range(shards)]
        self.sem = asyncio.Semaphore(c)
        self._i = 0

    def next(self) -> httpx.AsyncClient:
        self._i = (self._i + 1) % len(self.clients)
        return self.clients[self._i]

    async def aclose(self) -> None:
        for c in self.clients:
            await c.aclose()


def _is_event_stream(resp: httpx.Response) -> bool:
    ctype = resp.headers.get("content-type", "")
    return "text/event-stream" in ctype or not ctype.startswith("application/json")
