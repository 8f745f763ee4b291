"""RemoteBackend against faults a real server cannot easily be made to produce (httpx.MockTransport),
plus a few real sockets on 127.0.0.1 (a closed port, a server that never answers)."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import socket
import threading
import time

import httpx
import pytest

import gsexplore as gs
from gsexplore.backends._http import RetryPolicy, error_for_status, iter_sse_data, parse_retry_after
from gsexplore.backends.remote import MISSING_KEY_MESSAGE, RemoteBackend
from gsexplore.completion import Completion
from gsexplore.row import completion_row

KEY = "sk-test-0123456789-SECRET"
URL = "https://api.example.test/functions/v1"


def ok_body(**extra):
    body = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "Qwen/Qwen3-1.7B",
        "choices": [{"index": 0, "message": {"role": "assistant", "reasoning_content": "pienso",
                                             "content": "¡Hola!", "tool_calls": []},
                     "logprobs": None, "finish_reason": "stop", "stop_reason": None}],
        "usage": {"prompt_tokens": 3, "total_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": None},
        "prompt_logprobs": None,
    }
    body.update(extra)
    return body


class Recorder:
    """A MockTransport handler that answers from a script and records every request."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(time.monotonic())
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer

    @property
    def bodies(self):
        return [json.loads(r.content) for r in self.requests]


def backend(handler, **kw) -> RemoteBackend:
    kw.setdefault("api_key", KEY)
    kw.setdefault("backoff_s", 0.01)
    return RemoteBackend(URL, transport=httpx.MockTransport(handler), **kw)


def sse(*events, done=True) -> bytes:
    out = b"".join(b"data: " + json.dumps(e, ensure_ascii=False).encode() + b"\n\n" for e in events)
    return out + (b"data: [DONE]\n\n" if done else b"")


def chunk(delta=None, finish=None, stop_reason=None, index=0, **top):
    ch = {"index": index, "delta": delta or {}, "logprobs": None, "finish_reason": finish}
    if finish is not None:
        ch["stop_reason"] = stop_reason
    return {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 2, "model": "Qwen/Qwen3-1.7B",
            "choices": [ch], **top}


USAGE_CHUNK = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 2, "model": "Qwen/Qwen3-1.7B",
               "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}}

FULL_STREAM = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"reasoning_content": "Pienso"}),
    chunk({"reasoning": " un poco."}),  # vLLM >= 0.12 spelling
    chunk({"content": "¡Ho"}),
    chunk({"content": "la!"}),
    chunk({}, finish="stop", stop_reason="</s>"),
    USAGE_CHUNK,
]


def event_stream(body: bytes, **headers) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream", **headers})


class DroppingStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Yields some bytes, then the connection drops."""

    def __init__(self, parts: list[bytes], exc: Exception):
        self.parts, self.exc = parts, exc

    def __iter__(self):
        yield from self.parts
        raise self.exc

    async def __aiter__(self):
        for p in self.parts:
            yield p
        raise self.exc


# --- the key ---------------------------------------------------------------------


def test_missing_key_fails_before_any_request(monkeypatch):
    monkeypatch.delenv("GS_API_KEY", raising=False)
    rec = Recorder(httpx.Response(200, json=ok_body()))
    with pytest.raises(gs.AuthenticationError) as ei:
        RemoteBackend(transport=httpx.MockTransport(rec))
    assert rec.requests == []
    msg = str(ei.value)
    assert "GS_API_KEY" in msg and "getpass.getpass()" in msg and msg == MISSING_KEY_MESSAGE


def test_key_from_env_is_sent_as_bearer(monkeypatch):
    monkeypatch.setenv("GS_API_KEY", KEY)
    rec = Recorder(httpx.Response(200, json=ok_body()))
    b = RemoteBackend(transport=httpx.MockTransport(rec))
    b.chat("Hola, cómo estás?", gs.Params(max_tokens=200))
    req = rec.requests[0]
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert str(req.url) == "https://api.gradientesur.com/functions/v1/chat/completions"
    assert rec.bodies[0] == {"model": "Qwen/Qwen3-1.7B",
                             "messages": [{"role": "user", "content": "Hola, cómo estás?"}], "max_tokens": 200}


def test_loopback_server_needs_no_key(monkeypatch):
    monkeypatch.delenv("GS_API_KEY", raising=False)
    rec = Recorder(httpx.Response(200, json=ok_body()))
    b = RemoteBackend("http://127.0.0.1:8000/v1", transport=httpx.MockTransport(rec))
    assert b.chat("hola").content == "¡Hola!"
    assert "authorization" not in rec.requests[0].headers


# --- the request ---------------------------------------------------------------


def test_body_only_set_params_and_spellings():
    rec = Recorder(httpx.Response(200, json=ok_body()))
    p = gs.Params(temperature=0.2, guided_choice=["sí", "no"], chat_template_kwargs={"enable_thinking": False})
    backend(rec).chat([{"role": "system", "content": "Sé breve."}, {"role": "user", "content": "¿Sí?"}], p, top_k=5)
    backend(rec, guided_spelling="structured_outputs").chat("¿Sí?", p.replace(model="otro"))
    old, new = rec.bodies
    assert old["guided_choice"] == ["sí", "no"] and old["top_k"] == 5 and old["model"] == "Qwen/Qwen3-1.7B"
    assert old["chat_template_kwargs"] == {"enable_thinking": False} and "stream" not in old
    assert new["structured_outputs"] == {"choice": ["sí", "no"]} and "guided_choice" not in new
    assert new["model"] == "otro"
    with pytest.raises(gs.ParamsError):
        backend(rec, guided_spelling="outlines")


def test_stream_body_asks_for_usage():
    rec = Recorder(event_stream(sse(*FULL_STREAM)))
    list(backend(rec).stream("hola", max_tokens=3))
    body = rec.bodies[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_invalid_params_fail_before_any_request():
    rec = Recorder(httpx.Response(200, json=ok_body()))
    b = backend(rec)
    with pytest.raises(gs.ParamsError):
        b.chat("hola", temperature=-1)
    with pytest.raises(gs.ParamsError):
        b.stream("hola", prompt_logprobs=1)  # vLLM: prompt_logprobs with stream is an error
    assert rec.requests == []


# --- error shapes and status codes ---------------------------------------------------


@pytest.mark.parametrize("status,body,cls,needle", [
    (400, {"object": "error", "message": "temperature must be non-negative", "type": "BadRequestError",
           "param": "temperature", "code": 400}, gs.BadRequestError, "temperature must be non-negative (param: temperature)"),
    (404, {"error": {"message": "The model `x` does not exist.", "type": "NotFoundError", "param": None, "code": 404}},
     gs.BadRequestError, "The model `x` does not exist."),
    (422, {"detail": [{"loc": ["body", "messages"], "msg": "Field required"}]}, gs.BadRequestError, "Field required"),
    (401, {"message": "Invalid API key"}, gs.AuthenticationError, "Invalid API key"),
    (403, {"error": "Forbidden"}, gs.AuthenticationError, "Forbidden"),
    (502, "<html><body><h1>502 Bad Gateway</h1></body></html>", gs.ServerError, "502 Bad Gateway"),
    (500, "engine crashed\n", gs.ServerError, "engine crashed"),
    (503, "", gs.ServerError, "Service Unavailable"),
    (429, {"message": "slow down"}, gs.RateLimitError, "slow down"),
])
def test_error_shapes_give_readable_messages(status, body, cls, needle):
    kw = {"json": body} if isinstance(body, dict) else {"text": body}
    rec = Recorder(httpx.Response(status, headers={"x-request-id": "req-42"}, **kw))
    with pytest.raises(cls) as ei:
        backend(rec, max_retries=0).chat("hola")
    err = ei.value
    assert err.status == status and err.request_id == "req-42"
    assert needle in err.message and needle in str(err) and "req-42" in str(err)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 413])
def test_no_retry_on_4xx(status):
    rec = Recorder(httpx.Response(status, json={"error": {"message": "no"}}))
    with pytest.raises(gs.APIError):
        backend(rec, max_retries=3).chat("hola")
    assert len(rec.requests) == 1


def test_wrong_key_401_is_authentication_error_without_retry():
    rec = Recorder(httpx.Response(401, json={"error": {"message": "Unauthorized", "type": "AuthenticationError",
                                                       "code": 401}}))
    with pytest.raises(gs.AuthenticationError, match="Unauthorized"):
        backend(rec).chat("hola")
    assert len(rec.requests) == 1


# --- retries -----------------------------------------------------------------------


def test_429_then_success_honours_retry_after():
    rec = Recorder(httpx.Response(429, headers={"retry-after": "1"}, json={"message": "busy"}),
                   httpx.Response(200, json=ok_body()))
    c = backend(rec, backoff_s=0.0).chat("hola")
    assert c.content == "¡Hola!" and len(rec.requests) == 2
    waited = rec.times[1] - rec.times[0]
    assert 0.95 <= waited < 2.0


def test_429_http_date_retry_after_and_too_long_waits():
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= parse_retry_after(soon) <= 31
    assert parse_retry_after("2") == 2.0 and parse_retry_after("soon") is None and parse_retry_after(None) is None
    rec = Recorder(httpx.Response(429, headers={"retry-after": "3600"}, json={"message": "come back in an hour"}))
    with pytest.raises(gs.RateLimitError) as ei:
        backend(rec).chat("hola")
    assert ei.value.retry_after == 3600 and len(rec.requests) == 1  # not worth waiting: tell the caller


def test_500_then_success():
    rec = Recorder(httpx.Response(500, json={"object": "error", "message": "engine", "code": 500}),
                   httpx.Response(200, json=ok_body()))
    assert backend(rec).chat("hola").content == "¡Hola!"
    assert len(rec.requests) == 2


def test_retries_give_up_after_max_retries():
    rec = Recorder(httpx.Response(503, text="down"))
    with pytest.raises(gs.ServerError, match="gave up after 3 attempts") as ei:
        backend(rec, max_retries=2).chat("hola")
    assert len(rec.requests) == 3 and ei.value.attempts == 3


def test_backoff_is_exponential_with_jitter():
    pol = RetryPolicy(max_retries=5, base_s=1.0, max_backoff_s=5.0)
    err = gs.ServerError("x", status=500)
    for attempt, full in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (4, 5.0)]:
        delays = {pol.delay(err, attempt) for _ in range(20)}
        assert all(full / 2 <= d <= full for d in delays) and len(delays) > 1
    assert not pol.should_retry(err, 5)
    assert not pol.should_retry(gs.APITimeoutError("t"), 0)
    assert pol.should_retry(gs.APIConnectionError("c"), 0)
    assert not pol.should_retry(gs.BadRequestError("b", status=400), 0)


def test_connection_errors_are_retried_then_raised():
    rec = Recorder(httpx.ConnectError("[Errno 111] Connection refused"))
    with pytest.raises(gs.APIConnectionError, match="is the server running"):
        backend(rec, max_retries=2).chat("hola")
    assert len(rec.requests) == 3


def test_server_down_real_socket():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = RemoteBackend(f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=2, backoff_s=0.01)
    t0 = time.monotonic()
    with pytest.raises(gs.APIConnectionError) as ei:
        b.chat("hola")
    assert ei.value.attempts == 3 and time.monotonic() - t0 < 5
    b.close()


@pytest.fixture
def stalling_server():
    """A real TCP server on 127.0.0.1 that accepts, reads the request and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    stop = threading.Event()
    conns = []

    def loop():
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                conns.append(c)
            except OSError:
                continue

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}/v1", conns
    stop.set()
    t.join()
    for c in conns:
        c.close()
    srv.close()


def test_server_that_stalls_past_the_timeout(stalling_server):
    url, conns = stalling_server
    b = RemoteBackend(url, api_key=KEY, timeout=0.3, max_retries=3)
    t0 = time.monotonic()
    with pytest.raises(gs.APITimeoutError, match="timeout=0.3"):
        b.chat("hola")
    assert 0.25 < time.monotonic() - t0 < 1.5  # not retried: the server may still be generating
    assert len(conns) == 1
    b.close()


async def test_async_stall_past_the_timeout(stalling_server):
    url, _ = stalling_server
    async with RemoteBackend(url, api_key=KEY, timeout=0.3) as b:
        with pytest.raises(gs.APITimeoutError):
            await b.achat("hola")


def test_read_timeout_from_transport():
    rec = Recorder(httpx.ReadTimeout("timed out"))
    with pytest.raises(gs.APITimeoutError):
        backend(rec).chat("hola")
    assert len(rec.requests) == 1


def test_malformed_json_from_server():
    rec = Recorder(httpx.Response(200, text='{"choices": [', headers={"content-type": "application/json"}))
    with pytest.raises(gs.ServerError, match="not JSON"):
        backend(rec).chat("hola")
    rec2 = Recorder(httpx.Response(200, json=[1, 2]))
    with pytest.raises(gs.ServerError, match="not an object"):
        backend(rec2).chat("hola")


# --- streaming ------------------------------------------------------------------------


def test_stream_assembles_what_non_stream_parses():
    rec = Recorder(event_stream(sse(*FULL_STREAM), **{"x-request-id": "r1"}))
    deltas = list(backend(rec).stream("hola"))
    kinds = [(d.kind, d.text) for d in deltas[:-1]]
    assert kinds == [("reasoning", "Pienso"), ("reasoning", " un poco."), ("content", "¡Ho"), ("content", "la!")]
    done = deltas[-1]
    assert done.kind == "done"
    c = done.completion
    assert c.content == "¡Hola!" and c.reasoning_content == "Pienso un poco."
    assert c.finish_reason == "stop" and c.stop_reason == "</s>"
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens) == (4, 5, 9)
    assert c.ttft_s is not None and c.latency_s >= c.ttft_s and c.id == "chatcmpl-s"
    same = Completion.from_response(c.raw)
    assert (same.content, same.reasoning_content, same.finish_reason) == (c.content, c.reasoning_content, "stop")
    assert set(c.raw) >= {"id", "object", "created", "model", "choices", "usage", "prompt_logprobs"}


def test_chat_with_stream_param_streams_and_measures_ttft():
    rec = Recorder(event_stream(sse(*FULL_STREAM)))
    c = backend(rec).chat("hola", stream=True)
    assert rec.bodies[0]["stream"] is True and c.content == "¡Hola!" and c.ttft_s is not None


def test_stream_with_n_choices_and_logprobs():
    lp = lambda t: {"content": [{"token": t, "logprob": -0.5, "bytes": list(t.encode()), "top_logprobs": []}]}
    events = [chunk({"role": "assistant", "content": ""}, index=0), chunk({"role": "assistant", "content": ""}, index=1)]
    events[0]["choices"][0]["logprobs"] = None
    a, b_ = chunk({"content": "A"}, index=0), chunk({"content": "B"}, index=1)
    a["choices"][0]["logprobs"], b_["choices"][0]["logprobs"] = lp("A"), lp("B")
    events += [a, b_, chunk({}, "length", index=0), chunk({}, "length", index=1), USAGE_CHUNK]
    deltas = list(backend(Recorder(event_stream(sse(*events)))).stream("hola", n=2, logprobs=True))
    assert [(d.index, d.text) for d in deltas if d.kind == "content"] == [(0, "A"), (1, "B")]
    c = deltas[-1].completion
    assert [ch.content for ch in c.choices] == ["A", "B"]
    assert [ch.logprobs[0]["token"] for ch in c.choices] == ["A", "B"]
    assert all(ch.finish_reason == "length" for ch in c.choices)


def test_stream_without_usage_or_done_still_parses():
    events = [chunk({"role": "assistant", "content": ""}), chunk({"content": "x"}), chunk({}, "stop")]
    c = list(backend(Recorder(event_stream(sse(*events, done=False)))).stream("hola"))[-1].completion
    assert c.content == "x" and c.usage.total_tokens is None and c.reasoning_content is None


def test_error_event_mid_stream():
    events = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hola"}),
              {"error": {"message": "engine died", "type": "InternalServerError", "param": None, "code": 500}}]
    rec = Recorder(event_stream(sse(*events)))
    got = []
    with pytest.raises(gs.ServerError, match="engine died"):
        for d in backend(rec).stream("hola"):
            got.append(d)
    assert [d.text for d in got] == ["Hola"] and len(rec.requests) == 1  # no retry once streaming
    flat = [{"object": "error", "message": "bad regex", "type": "BadRequestError", "code": 400}]
    with pytest.raises(gs.BadRequestError, match="bad regex"):
        list(backend(Recorder(event_stream(sse(*flat)))).stream("hola"))


def test_connection_dropped_mid_stream():
    parts = [sse(chunk({"role": "assistant", "content": ""}), chunk({"content": "Hola"}), done=False)]
    rec = Recorder(lambda req: httpx.Response(200, headers={"content-type": "text/event-stream"},
                                              stream=DroppingStream(parts, httpx.RemoteProtocolError("peer closed"))))
    got = []
    with pytest.raises(gs.APIConnectionError, match="dropped mid-stream"):
        for d in backend(rec).stream("hola"):
            got.append(d.text)
    assert got == ["Hola"] and len(rec.requests) == 1


def test_stream_that_ends_early_is_an_error():
    events = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hol"})]
    with pytest.raises(gs.APIConnectionError, match="ended before"):
        list(backend(Recorder(event_stream(sse(*events, done=False)))).stream("hola"))


def test_stream_retries_before_the_first_byte_only():
    rec = Recorder(httpx.Response(503, text="warming up"), event_stream(sse(*FULL_STREAM)))
    assert list(backend(rec).stream("hola"))[-1].completion.content == "¡Hola!"
    assert len(rec.requests) == 2


def test_server_that_ignores_stream_flag():
    rec = Recorder(httpx.Response(200, json=ok_body()))
    deltas = list(backend(rec).stream("hola"))
    assert [d.kind for d in deltas] == ["reasoning", "content", "done"]
    assert deltas[-1].completion.content == "¡Hola!"


def test_sse_decoder_handles_comments_and_multiline_data():
    lines = [": keep-alive", "data: {\"a\":", "data: 1}", "", "event: x", "data: [DONE]", ""]
    assert list(iter_sse_data(lines)) == ['{"a":\n1}', "[DONE]"]


# --- parsing what servers leave out ----------------------------------------------------


def test_response_missing_fields_still_parses():
    minimal = {"choices": [{"message": {"content": "hola"}}], "extra_field": {"kept": True}}
    c = backend(Recorder(httpx.Response(200, json=minimal))).chat("hola")
    assert c.content == "hola" and c.reasoning_content is None and c.stop_reason is None
    assert c.usage.total_tokens is None and c.finish_reason is None and c.raw["extra_field"] == {"kept": True}
    c2 = backend(Recorder(httpx.Response(200, json={}))).chat("hola")
    assert c2.content is None
    new = ok_body()
    del new["choices"][0]["message"]["reasoning_content"]
    new["choices"][0]["message"]["reasoning"] = "nuevo"
    assert backend(Recorder(httpx.Response(200, json=new))).chat("hola").reasoning_content == "nuevo"


def test_models_lists_ids():
    rec = Recorder(httpx.Response(200, json={"object": "list", "data": [{"id": "Qwen/Qwen3-1.7B", "object": "model"}]}))
    assert backend(rec).models() == ["Qwen/Qwen3-1.7B"]
    assert rec.requests[0].method == "GET" and rec.requests[0].url.path.endswith("/functions/v1/models")


# --- async -------------------------------------------------------------------------


async def test_async_429_then_success_and_stream_drop():
    rec = Recorder(httpx.Response(429, headers={"retry-after": "0.2"}, json={"message": "busy"}),
                   httpx.Response(200, json=ok_body()))
    async with backend(rec) as b:
        t0 = time.monotonic()
        assert (await b.achat("hola")).content == "¡Hola!"
        assert time.monotonic() - t0 >= 0.19
    parts = [sse(chunk({"content": "Ho"}), done=False)]
    rec2 = Recorder(lambda req: httpx.Response(200, headers={"content-type": "text/event-stream"},
                                               stream=DroppingStream(parts, httpx.ReadError("reset"))))
    async with backend(rec2) as b:
        got = []
        with pytest.raises(gs.APIConnectionError, match="mid-stream"):
            async for d in b.astream("hola"):
                got.append(d.text)
        assert got == ["Ho"]
    rec3 = Recorder(event_stream(sse(*FULL_STREAM)))
    async with backend(rec3) as b:
        deltas = [d async for d in b.astream("hola")]
        assert deltas[-1].completion.reasoning_content == "Pienso un poco."
        assert (await b.achat("hola", stream=True)).content == "¡Hola!"


async def test_async_concurrency_is_bounded():
    state = {"now": 0, "max": 0}

    async def handler(request):
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        await asyncio.sleep(0.02)
        state["now"] -= 1
        return httpx.Response(200, json=ok_body())

    b = RemoteBackend(URL, api_key=KEY, max_concurrency=3, async_transport=httpx.MockTransport(handler))
    out = await asyncio.gather(*(b.achat("hola") for _ in range(12)))
    assert len(out) == 12 and state["max"] == 3
    await b.aclose()


def test_same_backend_across_event_loops():
    b = backend(Recorder(httpx.Response(200, json=ok_body())))
    assert asyncio.run(b.achat("a")).content == "¡Hola!"
    assert asyncio.run(b.achat("b")).content == "¡Hola!"  # a new loop gets a new pooled client
    b.close()


def test_context_manager_closes_the_pool():
    rec = Recorder(httpx.Response(200, json=ok_body()))
    with backend(rec) as b:
        b.chat("hola")
        client = b._client
    assert client is not None and client.is_closed and b._client is None


# --- the key never leaks ------------------------------------------------------------


def test_key_never_appears_anywhere(caplog):
    caplog.set_level(logging.DEBUG)
    echo = f"invalid key {KEY} for this project"
    texts: list[str] = []

    def run(answers, call=lambda b: b.chat("hola", max_tokens=3), **kw):
        b = backend(Recorder(*answers), **kw)
        texts.append(repr(b))
        texts.append(repr(b.info()))
        try:
            result = call(b)
        except gs.APIError as e:
            texts.extend([str(e), repr(e), repr(e.body), e.message])
            return None
        finally:
            b.close()
        return result

    run([httpx.Response(401, json={"error": {"message": echo}})])
    run([httpx.Response(400, text=echo)])
    run([httpx.Response(429, headers={"retry-after": "0"}, json={"message": echo}),
         httpx.Response(500, json={"object": "error", "message": echo}), httpx.Response(503, text=echo)],
        max_retries=2)
    run([httpx.Response(200, text=echo + "{")])
    run([httpx.ConnectError(echo)], max_retries=1)
    run([httpx.ReadTimeout(echo)])
    run([event_stream(sse(chunk({"content": "x"}), {"error": {"message": echo, "code": 500}}))],
        call=lambda b: list(b.stream("hola")))
    run([lambda r: httpx.Response(200, headers={"content-type": "text/event-stream"},
                                  stream=DroppingStream([sse(chunk({"content": echo}), done=False)],
                                                        httpx.ReadError(echo)))],
        call=lambda b: list(b.stream("hola")))
    # a server that echoes the key in a successful answer
    c = run([httpx.Response(200, json=ok_body(note=echo))])
    s = run([event_stream(sse(chunk({"content": echo}), chunk({}, "stop")))], call=lambda b: list(b.stream("hola")))
    texts += [json.dumps(c.raw), repr(c), json.dumps(completion_row(c), default=str), s[0].text,
              json.dumps(s[-1].completion.raw)]
    b = backend(Recorder(httpx.Response(200, json=ok_body())))
    texts += [b.to_code("hola", max_tokens=3), b.to_code("hola", lang="curl"), json.dumps(b.request_body("hola"))]
    texts += [r.getMessage() for r in caplog.records]
    assert texts and caplog.records  # the retries were logged
    leaks = [t for t in texts if KEY in t]
    assert leaks == []
    assert any("***" in t for t in texts)


def test_error_for_status_scrubs_secret():
    err = error_for_status(401, f'{{"message": "bad key {KEY}"}}'.encode(), {}, secret=KEY)
    assert KEY not in str(err) and KEY not in json.dumps(err.body)


def test_503_retry_after_is_honoured():
    rec = Recorder(httpx.Response(503, headers={"retry-after": "0.3"}, text="loading model"),
                   httpx.Response(200, json=ok_body()))
    assert backend(rec, backoff_s=0.0).chat("hola").content == "¡Hola!"
    assert rec.times[1] - rec.times[0] >= 0.29


def test_two_event_loops_at_once_each_get_a_client():
    b = backend(Recorder(httpx.Response(200, json=ok_body())))
    results = []

    def in_thread():
        results.append(asyncio.run(b.achat("hilo")).content)

    t = threading.Thread(target=in_thread)

    async def main():
        t.start()
        c = await b.achat("principal")
        await asyncio.sleep(0.05)
        return c.content

    results.append(asyncio.run(main()))
    t.join()
    assert results == ["¡Hola!", "¡Hola!"]
    b.close()


async def test_async_pool_is_sharded_but_bounded():
    b = RemoteBackend(URL, api_key=KEY, max_concurrency=16)
    client, sem = b._async_state()
    pool = b._async[asyncio.get_running_loop()]
    assert len(pool.clients) == 4 and sem._value == 16  # 4 pools of 4 connections, 16 requests in flight
    assert client in pool.clients and b._async_state()[0] is not client  # round robin
    await b.aclose()
    assert all(c.is_closed for c in pool.clients)
