"""`gsexplore serve` over real HTTP on 127.0.0.1: the seed's example, vLLM's shapes, auth, bad requests,
the bounded queue, instances, streaming errors, and the CLI as a subprocess.

Server mechanics that need precise timing (a full queue, two instances, an error after the 200)
use a scripted backend; everything about answers uses the real tiny Qwen3 and demo models.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

import gsexplore as gs
from gsexplore.backends.base import Backend, Delta, merge_params, to_messages
from gsexplore.backends.remote import RemoteBackend
from gsexplore.completion import Completion, Usage
from gsexplore.serve import ServerThread, check_binding, create_app, is_loopback, load_keys

KEY = "clase-de-prueba-7f3a9c"
SEED_BODY = {"model": "Qwen/Qwen3-1.7B", "messages": [{"role": "user", "content": "Hola, cómo estás?"}],
             "max_tokens": 200}


# --- a scripted backend for the server's mechanics ------------------------------------


class Scripted(Backend):
    """Answers instantly or after `delay`; counts how many requests it runs at once.

    Like an engine, it generates `slots` requests at once and queues the rest (the server submits
    every admitted request at once and keeps no queue of its own).
    """

    name = "local"
    model = "scripted.gguf"

    def __init__(self, delay: float = 0.0, fail_after: int | None = None, slots: int = 1):
        self.delay, self.fail_after, self.slots = delay, fail_after, slots
        self.now = self.max_now = self.calls = 0
        self.lock = threading.Lock()
        self.queue = threading.BoundedSemaphore(slots)

    def _enter(self):
        self.queue.acquire()
        with self.lock:
            self.now += 1
            self.calls += 1
            self.max_now = max(self.max_now, self.now)

    def _leave(self):
        with self.lock:
            self.now -= 1
        self.queue.release()

    def events(self, messages, params, *, streaming):
        p = params
        self._enter()
        try:
            if streaming:
                for i in range(p.max_tokens or 1):
                    if self.fail_after is not None and i == self.fail_after:
                        raise RuntimeError("the GPU caught fire")
                    time.sleep(self.delay)
                    yield Delta("content", f"t{i} ")
            else:
                time.sleep(self.delay)
            yield Delta("done", completion=Completion(
                content="ok " * (p.max_tokens or 1), finish_reason="length",
                usage=Usage(1, p.max_tokens, 1 + (p.max_tokens or 0)), params=p,
                messages=to_messages(messages), backend="local"))
        finally:
            self._leave()


@pytest.fixture
def scripted_server(request):
    kw = getattr(request, "param", {})
    backends = kw.pop("backends", None) or [Scripted()]
    app = create_app(backends, api_keys={KEY}, served_model_names=["scripted"], **kw)
    with ServerThread(app) as srv:
        srv.backends = backends
        yield srv


def post(srv, body, key=KEY, path="/v1/chat/completions", **kw):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(srv.base + path, json=body, headers=headers, timeout=30, **kw)


def sse_events(text: str) -> list:
    out = []
    for block in text.strip().split("\n\n"):
        assert block.startswith("data: "), block
        data = block[len("data: "):]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


# --- real models -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_srv(tiny_backend):
    app = create_app([tiny_backend], api_keys={KEY}, served_model_names=["tiny-qwen3", "Qwen/Qwen3-1.7B"])
    with ServerThread(app) as srv:
        srv.name = "tiny-qwen3"
        yield srv


@pytest.fixture(scope="module")
def demo_srv(demo_backend):
    app = create_app([demo_backend], api_keys={KEY}, served_model_names=["Qwen/Qwen3-1.7B"])
    with ServerThread(app) as srv:
        yield srv


def check_seed_shape(d: dict, model: str = "Qwen/Qwen3-1.7B") -> dict:
    """Every key of the seed's example response is there, with the seed's types."""
    assert set(d) >= {"id", "object", "created", "model", "choices", "usage", "prompt_logprobs"}
    assert d["id"].startswith("chatcmpl-") and d["object"] == "chat.completion"
    assert d["model"] == model and isinstance(d["created"], int) and d["prompt_logprobs"] is None
    ch = d["choices"][0]
    assert set(ch) >= {"index", "message", "logprobs", "finish_reason", "stop_reason"}
    assert set(ch["message"]) >= {"role", "reasoning_content", "content", "tool_calls"}
    assert ch["message"]["role"] == "assistant" and ch["message"]["tool_calls"] == [] and ch["logprobs"] is None
    assert ch["finish_reason"] in ("stop", "length")
    assert set(d["usage"]) >= {"prompt_tokens", "total_tokens", "completion_tokens", "prompt_tokens_details"}
    assert d["usage"]["total_tokens"] == d["usage"]["prompt_tokens"] + d["usage"]["completion_tokens"]
    return ch["message"]


def test_seed_curl_example_gets_the_seed_response_shape(tiny_srv):
    r = post(tiny_srv, SEED_BODY, path="/functions/v1/chat/completions")  # the seed's JSON, as it is
    assert r.status_code == 200, r.text
    msg = check_seed_shape(r.json())
    assert isinstance(msg["reasoning_content"], str)  # Qwen3 thinks first, as in the seed's answer
    assert r.headers["x-request-id"] == r.json()["id"]


def test_seed_example_on_the_demo_model(demo_srv):
    """The seed's Python example through RemoteBackend (greedy, so it takes the same ~40 tokens every run)."""
    remote = RemoteBackend(demo_srv.base + "/functions/v1", api_key=KEY)  # model Qwen/Qwen3-1.7B, as the seed
    c = remote.chat("Hola, cómo estás?", gs.Params(max_tokens=200, temperature=0))
    msg = check_seed_shape(c.raw)
    assert c.content and msg["content"] == c.content and msg["reasoning_content"] is None  # SmolLM2 does not think
    assert c.backend == "remote" and c.model == "Qwen/Qwen3-1.7B" and c.usage.completion_tokens and c.latency_s > 0
    remote.close()


def test_default_served_names_are_the_gguf_stem_and_the_gradientesur_model(demo_backend, demo_model_path):
    # `gsexplore serve --model demo` with no --served-model-name answers the seed's JSON as it is
    from fastapi.testclient import TestClient

    app = create_app([demo_backend], api_keys={KEY})
    assert app.state.served_model_names == [str(demo_model_path), demo_model_path.stem, "Qwen/Qwen3-1.7B"]
    with TestClient(app) as client:
        r = client.post("/functions/v1/chat/completions", json={**SEED_BODY, "max_tokens": 4},
                        headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200, r.text
    check_seed_shape(r.json())


def test_health_and_models(tiny_srv):
    h = httpx.get(tiny_srv.base + "/health")
    assert h.status_code == 200 and h.json()["status"] == "ok"
    for prefix in ("/v1", "/functions/v1"):
        r = httpx.get(tiny_srv.base + prefix + "/models", headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 200 and r.json()["data"][0]["id"] == tiny_srv.name
    assert httpx.get(tiny_srv.base + "/v1/models").status_code == 401


def test_stream_wire_format(tiny_srv):
    body = {"model": tiny_srv.name, "messages": [{"role": "user", "content": "Hola"}], "max_tokens": 8,
            "seed": 3, "stream": True, "stream_options": {"include_usage": True}}
    r = post(tiny_srv, body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    ev = sse_events(r.text)
    assert ev[-1] == "[DONE]"
    first, *middle, finish, usage, _ = ev
    assert first["object"] == "chat.completion.chunk" and first["id"].startswith("chatcmpl-")
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    for e in middle:
        assert set(e["choices"][0]["delta"]) <= {"content", "reasoning_content"}
    assert finish["choices"][0]["finish_reason"] in ("stop", "length") and "stop_reason" in finish["choices"][0]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] <= 8
    assert len({e["id"] for e in ev[:-1]}) == 1
    # without include_usage there is no usage chunk
    body.pop("stream_options")
    ev = sse_events(post(tiny_srv, body).text)
    assert ev[-2]["choices"][0]["finish_reason"] and all(e == "[DONE]" or e["choices"] for e in ev)


def test_auth(tiny_srv):
    body = {"model": tiny_srv.name, "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
    for key in (None, "wrong-key-123", KEY + "x", KEY[:-1]):
        r = post(tiny_srv, body, key=key)
        assert r.status_code == 401 and r.json()["error"]["code"] == 401
        assert r.headers["www-authenticate"] == "Bearer"
    r = httpx.post(tiny_srv.base + "/v1/chat/completions", json=body, headers={"Authorization": f"Basic {KEY}"})
    assert r.status_code == 401
    assert post(tiny_srv, body).status_code == 200


def test_bad_requests_get_vllm_errors_and_the_server_keeps_serving(tiny_srv):
    ok = {"model": tiny_srv.name, "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
    hdr = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    url = tiny_srv.base + "/v1/chat/completions"
    cases = [
        (httpx.post(url, content=b'{"model": "x", "messages": [', headers=hdr), 400, "malformed JSON", None),
        (httpx.post(url, content=b"[1, 2]", headers=hdr), 400, "JSON object", None),
        (post(tiny_srv, {"model": tiny_srv.name}), 400, "messages", "messages"),
        (post(tiny_srv, {**ok, "messages": []}), 400, "messages", "messages"),
        (post(tiny_srv, {**ok, "messages": [{"role": "robot", "content": "x"}]}), 400, "robot", "messages"),
        (post(tiny_srv, {**ok, "temperature": -1}), 400, "temperature", "temperature"),
        (post(tiny_srv, {**ok, "top_p": 0}), 400, "top_p", "top_p"),
        (post(tiny_srv, {**ok, "top_logprobs": 3}), 400, "logprobs", "top_logprobs"),
        (post(tiny_srv, {**ok, "guided_choice": ["a"], "guided_regex": "a"}), 400, "only one guided", None),
        (post(tiny_srv, {**ok, "max_tokens": 10 ** 6}), 400, "max_tokens", "max_tokens"),
        (post(tiny_srv, {**ok, "model": "gpt-5"}), 404, "does not exist", "model"),
        (post(tiny_srv, {**ok, "messages": [{"role": "user", "content": "x" * 1_100_000}]}), 400, "--max-body-bytes",
         "body"),
        (httpx.get(tiny_srv.base + "/v1/nothing-here"), 404, "Not Found", None),
    ]
    for r, status, needle, param in cases:
        assert r.status_code == status, (r.status_code, r.text[:300])
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["code"] == status
        assert needle.lower() in err["message"].lower(), err
        if param:
            assert err["param"] == param, err
    assert post(tiny_srv, ok).status_code == 200
    with pytest.raises(gs.BadRequestError, match="does not exist"):
        RemoteBackend(tiny_srv.url, api_key=KEY, model="gpt-5").chat("x", max_tokens=1)


def test_oversized_body_without_content_length(tiny_srv):
    def chunks():
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"x" * 100_000
        yield b'"}]}'

    r = httpx.post(tiny_srv.base + "/v1/chat/completions", content=chunks(),
                   headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 400 and "--max-body-bytes" in r.json()["error"]["message"]


# --- mechanics with the scripted backend --------------------------------------------------


@pytest.mark.parametrize("scripted_server", [{"backends": [Scripted(delay=0.3)], "max_queue": 1}], indirect=True)
async def test_queue_full_gives_429_with_retry_after(scripted_server):
    srv = scripted_server
    body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
    async with httpx.AsyncClient(timeout=10) as client:
        rs = await asyncio.gather(*(client.post(srv.base + "/v1/chat/completions", json=body,
                                                headers={"Authorization": f"Bearer {KEY}"}) for _ in range(4)))
    codes = sorted(r.status_code for r in rs)
    assert codes == [200, 200, 429, 429]
    busy = next(r for r in rs if r.status_code == 429)
    assert int(busy.headers["retry-after"]) >= 1 and busy.json()["error"]["type"] == "RateLimitError"
    assert "--max-queue" in busy.json()["error"]["message"]  # the flag that changes the limit
    # the client sees RateLimitError with the hint, and its retry gets through
    remote = RemoteBackend(srv.url, api_key=KEY, model="scripted", max_retries=0)
    results = await asyncio.gather(*(remote.achat("x", max_tokens=1) for _ in range(4)), return_exceptions=True)
    limited = [e for e in results if isinstance(e, gs.RateLimitError)]
    assert limited and all(e.retry_after >= 1 for e in limited)
    await remote.aclose()
    assert srv.backends[0].max_now == 1  # one generation at a time per instance


@pytest.mark.parametrize("scripted_server", [{"backends": [Scripted(delay=0.25), Scripted(delay=0.25)]}],
                         indirect=True)
async def test_instances_generate_in_parallel_one_request_each(scripted_server):
    srv = scripted_server
    async with RemoteBackend(srv.url, api_key=KEY, model="scripted") as remote:
        t0 = time.monotonic()
        await asyncio.gather(*(remote.achat("x", max_tokens=1) for _ in range(4)))
        wall = time.monotonic() - t0
    assert 0.45 < wall < 0.9  # 4 requests x 0.25 s over 2 instances
    assert [b.max_now for b in srv.backends] == [1, 1] and sum(b.calls for b in srv.backends) == 4


@pytest.mark.parametrize("scripted_server", [{"artificial_latency_s": 0.2}], indirect=True)
async def test_artificial_latency_does_not_hold_the_model(scripted_server):
    async with RemoteBackend(scripted_server.url, api_key=KEY, model="scripted") as remote:
        t0 = time.monotonic()
        await asyncio.gather(*(remote.achat("x", max_tokens=1) for _ in range(10)))
        wall = time.monotonic() - t0
    assert 0.19 < wall < 0.6  # serially it would take 2 s


@pytest.mark.parametrize("scripted_server", [{"backends": [Scripted(fail_after=2)]}], indirect=True)
def test_error_after_the_200_is_an_error_event(scripted_server):
    body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 5, "stream": True}
    r = post(scripted_server, body)
    assert r.status_code == 200
    ev = sse_events(r.text)
    assert ev[-1] == "[DONE]" and ev[-2]["error"]["code"] == 500 and "fire" in ev[-2]["error"]["message"]
    remote = RemoteBackend(scripted_server.url, api_key=KEY, model="scripted")
    got = []
    with pytest.raises(gs.ServerError, match="fire"):
        for d in remote.stream("x", max_tokens=5):
            got.append(d.text)
    assert got == ["t0 ", "t1 "]
    assert remote.chat("x", max_tokens=1).content == "ok "  # still serving
    remote.close()


@pytest.mark.parametrize("scripted_server", [{"backends": [Scripted(delay=0.05)]}], indirect=True)
def test_client_leaving_mid_stream_frees_the_model(scripted_server):
    remote = RemoteBackend(scripted_server.url, api_key=KEY, model="scripted", timeout=5)
    for d in remote.stream("x", max_tokens=100):
        break  # hang up after the first delta
    remote.close()
    remote = RemoteBackend(scripted_server.url, api_key=KEY, model="scripted", timeout=5)
    t0 = time.monotonic()
    assert remote.chat("x", max_tokens=1).content == "ok "
    assert time.monotonic() - t0 < 2.0  # not waiting for the abandoned 100-token stream (5 s)
    remote.close()
    deadline = time.monotonic() + 2
    while httpx.get(scripted_server.base + "/health").json()["pending"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert httpx.get(scripted_server.base + "/health").json()["pending"] == 0  # counted out of the queue


def test_admission_sends_each_request_to_the_least_loaded_instance_and_counts_the_queue():
    from gsexplore.serve.admission import Admission
    from gsexplore.serve.errors import Reject

    big, small = Scripted(slots=2), Scripted(slots=1)
    adm = Admission([big, small], max_queue=1)
    tickets = [adm.admit() for _ in range(4)]
    assert [t.backend() for t in tickets] == [big, small, big, big]  # in flight per slot, then order
    assert (adm.running, adm.waiting, adm.pending) == (3, 1, 4)
    with pytest.raises(Reject) as e:  # 3 slots + 1 waiting: the fifth is refused, naming the flag
        adm.admit()
    assert e.value.status == 429 and "--max-queue" in e.value.message and int(e.value.headers["Retry-After"]) >= 1
    tickets[1].close()
    tickets[1].close()  # counted out once
    assert (adm.running, adm.waiting, adm.pending) == (2, 1, 3) and adm.admit().backend() is small


def test_a_backend_without_a_capability_gets_a_400_naming_it(scripted_server):
    """The scripted backend neither tokenizes nor completes raw prompts (no Tokenizer, no RawPrompt)."""
    for path, body, what in [("/tokenize", {"prompt": "hola"}, "tokenize"),
                             ("/detokenize", {"tokens": [1, 2]}, "detokenize"),
                             ("/v1/completions", {"prompt": "hola", "max_tokens": 1}, "complete a raw prompt")]:
        r = post(scripted_server, body, path=path)
        assert r.status_code == 400, path
        assert r.json()["error"]["message"] == f"this server's backend cannot {what}"
    assert post(scripted_server, {"messages": [{"role": "user", "content": "x"}], "max_tokens": 1}).status_code == 200


# --- keys and binding -------------------------------------------------------------------


def test_keys_from_file_and_env(tmp_path):
    f = tmp_path / "keys.txt"
    f.write_text("# clave del aula\nkey-one-1234\n\nkey-two-5678  # second\n")
    assert load_keys(f, env={"GSEXPLORE_SERVER_KEYS": "a-key-999, b-key-000 ,"}) == {
        "key-one-1234", "key-two-5678", "a-key-999", "b-key-000"}
    assert load_keys(None, env={}) == set()


def test_no_keys_means_loopback_only():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    check_binding("127.0.0.1", set())
    check_binding("0.0.0.0", {"k-123456"})
    with pytest.raises(gs.GSExploreError, match="without API keys"):
        check_binding("0.0.0.0", set())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "gsexplore.cli", *args], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_cli_refuses_to_bind_beyond_loopback_without_keys(monkeypatch, capsys):
    from gsexplore.cli import main

    monkeypatch.delenv("GSEXPLORE_SERVER_KEYS", raising=False)
    assert main(["serve", "--model", "tiny-qwen3", "--host", "0.0.0.0"]) != 0
    err = capsys.readouterr().err
    assert "without API keys" in err and "--api-key-file" in err


def test_cli_serve_subprocess(tiny_model_path, tmp_path):
    port = _free_port()
    keyfile = tmp_path / "keys"
    keyfile.write_text(KEY + "\n")
    proc = _cli("serve", "--model", str(tiny_model_path), "--port", str(port), "--api-key-file", str(keyfile),
                "--served-model-name", "Qwen/Qwen3-1.7B", "--max-tokens-cap", "64", "--log-level", "warning")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
        r = httpx.post(f"http://127.0.0.1:{port}/functions/v1/chat/completions", json={**SEED_BODY, "max_tokens": 4},
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        assert r.status_code == 200 and r.json()["model"] == "Qwen/Qwen3-1.7B"
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=SEED_BODY,
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        assert r.status_code == 400 and "64" in r.json()["error"]["message"]  # above --max-tokens-cap
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert KEY not in out


async def test_two_real_instances_answer_alike(tiny_model_path):
    app = create_app(str(tiny_model_path), api_keys={KEY}, instances=2, served_model_names=["tiny"])
    adm = app.state.admission
    assert len(adm.backends) == 2 and adm.backends[0].lock is not adm.backends[1].lock  # a model each
    assert adm.size == sum(b.slots for b in adm.backends)
    with ServerThread(app) as srv:
        async with RemoteBackend(srv.url, api_key=KEY, model="tiny") as remote:
            got = await asyncio.gather(*(remote.achat("Hola", seed=5, max_tokens=8) for _ in range(4)))
    assert len({(c.content, c.reasoning_content) for c in got}) == 1


# --- the other CLI commands ---------------------------------------------------------------


def test_cli_chat_local_and_remote(tiny_srv, tiny_backend, capsys, monkeypatch):
    from gsexplore.cli import main

    assert main(["chat", "Hola", "--model", "tiny-qwen3", "--seed", "1", "--max-tokens", "6", "--no-think",
                 "--no-stream", "-q"]) == 0
    local_out = capsys.readouterr().out.strip()
    expected = tiny_backend.chat("Hola", gs.Params(seed=1, max_tokens=6, chat_template_kwargs={"enable_thinking": False}))
    assert local_out == (expected.content or "").strip()
    monkeypatch.setenv("GS_API_KEY", KEY)
    assert main(["chat", "Hola", "--base-url", tiny_srv.url, "--model", tiny_srv.name, "--seed", "1",
                 "--max-tokens", "6", "--no-think", "--stop", "zz", "--stop", "yy"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == local_out and "finish_reason=" in out.err
    assert main(["chat", "Hola", "--model", "tiny-qwen3", "--temperature", "-1"]) == 2
    assert "temperature" in capsys.readouterr().err


def test_cli_models_list(capsys, tiny_model_path):
    from gsexplore.cli import main

    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert any(r["name"] == "tiny-qwen3" and r["path"] == str(tiny_model_path) for r in rows)
    assert main(["models", "fetch", "tiny-qwen3"]) == 0
    assert str(tiny_model_path) in capsys.readouterr().out


# --- the batched engine behind the server ------------------------------------------------


async def test_concurrent_requests_batch_in_one_engine_and_a_leaving_client_frees_its_slot(demo_model_path):
    from gsexplore.backends.local import LocalBackend

    b = LocalBackend(str(demo_model_path), n_ctx=256, slots=4, shared=False)
    app = create_app([b], api_keys={KEY}, served_model_names=["demo"])
    assert app.state.admission.size == 4
    with ServerThread(app) as srv:
        async with RemoteBackend(srv.url, api_key=KEY, model="demo") as remote:
            got = await asyncio.gather(*(remote.achat(f"Say {i}.", seed=i, max_tokens=12, min_tokens=12,
                                                      ignore_eos=True) for i in range(4)))
        assert all(c.usage.completion_tokens == 12 for c in got)
        assert b.info()["engine_max_batch"] >= 4          # decoded together, one batch per step
        # the same seeded request alone gives the same answer as in the batch
        async with RemoteBackend(srv.url, api_key=KEY, model="demo") as remote:
            alone = await remote.achat("Say 2.", seed=2, max_tokens=12, min_tokens=12, ignore_eos=True)
        assert alone.content == got[2].content
        body = {"model": "demo", "stream": True, "max_tokens": 200, "min_tokens": 200, "ignore_eos": True,
                "messages": [{"role": "user", "content": "Count."}]}
        with httpx.stream("POST", srv.base + "/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as r:
            for i, _ in enumerate(r.iter_lines()):
                if i > 6:
                    break                                   # the client goes away mid-stream
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (b.info()["engine_running"] or app.state.admission.pending):
            time.sleep(0.05)
        assert b.info()["engine_running"] == 0 and app.state.admission.pending == 0


async def test_priority_orders_the_requests_waiting_in_the_server(demo_model_path):
    """With the engine's one slot busy, waiting requests start by priority (lower first, as vLLM), then arrival."""
    from gsexplore.backends.local import LocalBackend

    b = LocalBackend(str(demo_model_path), n_ctx=2048, slots=1, shared=False)
    app = create_app([b], api_keys={KEY}, served_model_names=["demo"])
    priorities = [3, 1, 2, 1, 0]
    finished: list[int] = []
    with ServerThread(app) as srv:
        async with httpx.AsyncClient(base_url=srv.base, headers={"Authorization": f"Bearer {KEY}"},
                                     timeout=60) as client:
            seen = threading.Condition()  # the engine's own step says how many wait
            state = {"waiting": 0}

            def watch(plan: object) -> None:
                with seen:
                    state["waiting"] = b.engine_stats()["waiting"]
                    seen.notify_all()

            b._engine.on_plan = watch

            async def queued(n: int) -> bool:
                def wait() -> bool:
                    with seen:
                        return seen.wait_for(lambda: state["waiting"] >= n, timeout=30)
                return await asyncio.to_thread(wait)

            async def ask(k: int, priority: int) -> None:
                r = await client.post("/v1/chat/completions", json={
                    "model": "demo", "messages": [{"role": "user", "content": f"Say {k}."}], "seed": k,
                    "priority": priority, "max_tokens": 8, "min_tokens": 8, "ignore_eos": True})
                assert r.status_code == 200, r.text
                finished.append(k)

            holder = {"model": "demo", "messages": [{"role": "user", "content": "Count."}], "stream": True,
                      "max_tokens": 1500, "min_tokens": 1500, "ignore_eos": True}
            tasks = []
            async with client.stream("POST", "/v1/chat/completions", json=holder) as r:
                assert r.status_code == 200
                lines = r.aiter_lines()  # kept: dropping the iterator would close the response
                await anext(lines)  # streaming: it holds the only slot
                for k, priority in enumerate(priorities):
                    tasks.append(asyncio.create_task(ask(k, priority)))
                    # the engine has it in its queue: arrival order is fixed
                    assert await queued(k + 1), "the request never reached the engine's queue"
                assert finished == [] and app.state.admission.pending == 1 + len(priorities)
            # the client left the stream: its slot is freed, and the waiting requests get it one at a time
            await asyncio.gather(*tasks)
    b.close()
    assert finished == [4, 1, 3, 2, 0]  # priority 0, then the two 1s in arrival order, then 2, then 3
