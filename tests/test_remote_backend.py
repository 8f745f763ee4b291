"""RemoteBackend against a real `gsexplore serve` on 127.0.0.1 (tiny Qwen3 and demo models).

The same request with the same seed must give the same answer through LocalBackend
directly, through serve + RemoteBackend, streamed or not, sync or async.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

import gsexplore as gs
from gsexplore.row import completion_row
from gsexplore.backends.remote import RemoteBackend
from gsexplore.serve import ServerThread, create_app

KEY = "aula-7-clave-b41c9e0d"
PROMPT = [{"role": "system", "content": "Responde en español."}, {"role": "user", "content": "¿Qué es un token?"}]


@pytest.fixture(scope="module")
def tiny_remote(tiny_backend):
    app = create_app([tiny_backend], api_keys={KEY})
    with ServerThread(app) as srv:
        with RemoteBackend(srv.url, api_key=KEY, model=app.state.served_model_names[0]) as remote:
            yield remote


@pytest.fixture(scope="module")
def demo_remote(demo_backend):
    app = create_app([demo_backend], api_keys={KEY}, served_model_names=["demo"])
    with ServerThread(app) as srv:
        with RemoteBackend(srv.base + "/functions/v1", api_key=KEY, model="demo") as remote:
            yield remote


def outcome(c: gs.Completion) -> list[tuple]:
    """What must agree between paths: every choice's text, reasons and token counts."""
    return [(ch.index, ch.content or "", ch.reasoning_content or "", ch.finish_reason,
             None if ch.stop_reason is None else str(ch.stop_reason),
             ch.usage.prompt_tokens, ch.usage.completion_tokens, ch.usage.total_tokens) for ch in c.choices]


def streamed(remote: RemoteBackend, params: gs.Params) -> tuple[gs.Completion, list]:
    deltas = list(remote.stream(PROMPT, params))
    assert deltas[-1].kind == "done" and all(d.kind != "done" for d in deltas[:-1])
    return deltas[-1].completion, deltas[:-1]


TINY_PARAMS = {
    "seed": gs.Params(seed=1, max_tokens=12),
    "greedy": gs.Params(temperature=0, max_tokens=12),
    "sampling": gs.Params(seed=2, temperature=0.7, top_k=20, top_p=0.9, min_p=0.02, max_tokens=12),
    "penalties": gs.Params(seed=3, repetition_penalty=1.3, presence_penalty=0.5, frequency_penalty=0.5, max_tokens=12),
    "stop": gs.Params(seed=4, stop=["a", "e", "o"], max_tokens=24),
    "stop_included": gs.Params(seed=4, stop=["a", "e", "o"], include_stop_str_in_output=True, max_tokens=24),
    "stop_token_ids": gs.Params(seed=5, stop_token_ids=[11, 13, 279, 264], max_tokens=24),
    "logprobs": gs.Params(seed=6, logprobs=True, top_logprobs=3, max_tokens=6),
    "token_ids": gs.Params(seed=6, logprobs=True, return_tokens_as_token_ids=True, max_tokens=4),
    "n": gs.Params(seed=7, n=3, max_tokens=6),
    "min_tokens": gs.Params(seed=8, min_tokens=5, max_tokens=5, ignore_eos=True),
    "logit_bias": gs.Params(seed=9, logit_bias={35946: 100.0}, max_tokens=4),
    "allowed": gs.Params(seed=10, allowed_token_ids=[9707, 11, 1879, 0], max_tokens=6),
    "no_thinking": gs.Params(seed=11, chat_template_kwargs={"enable_thinking": False}, max_tokens=10),
    "specials": gs.Params(seed=12, skip_special_tokens=False, max_tokens=10),
    "truncate": gs.Params(seed=13, truncate_prompt_tokens=6, add_special_tokens=True, max_tokens=6),
}


@pytest.mark.parametrize("name", list(TINY_PARAMS))
def test_same_seed_same_answer_local_remote_stream(tiny_backend, tiny_remote, name):
    p = TINY_PARAMS[name]
    local = tiny_backend.chat(PROMPT, p)
    remote = tiny_remote.chat(PROMPT, p)
    stream, deltas = streamed(tiny_remote, p)
    assert outcome(remote) == outcome(local)
    assert outcome(stream) == outcome(local)
    for ch in stream.choices:  # the deltas add up to the answer
        assert "".join(d.text for d in deltas if d.kind == "content" and d.index == ch.index) == (ch.content or "")
        assert "".join(d.text for d in deltas if d.kind == "reasoning" and d.index == ch.index) == \
            (ch.reasoning_content or "")
    if p.logprobs:
        assert [ch.logprobs for ch in remote.choices] == [ch.logprobs for ch in local.choices]
        assert [ch.logprobs for ch in stream.choices] == [ch.logprobs for ch in local.choices]
        assert len(remote.logprobs) == remote.usage.completion_tokens
        if p.top_logprobs:
            assert all(len(e["top_logprobs"]) == p.top_logprobs for e in remote.logprobs)
        if p.return_tokens_as_token_ids:
            assert all(e["token"].startswith("token_id:") for e in remote.logprobs)
    assert remote.params == p and remote.backend == "remote" and remote.latency_s > 0
    assert stream.ttft_s is not None and 0 < stream.ttft_s <= stream.latency_s


def test_parameters_mean_something_over_the_wire(tiny_remote):
    by = {name: tiny_remote.chat(PROMPT, p) for name, p in TINY_PARAMS.items()}
    assert by["seed"].usage.completion_tokens == 12 and by["seed"].finish_reason == "length"
    assert len(by["n"].choices) == 3 and len({c.text + (c.reasoning_content or "") for c in by["n"].choices}) > 1
    assert by["min_tokens"].usage.completion_tokens == 5
    stop = by["stop"]
    if stop.finish_reason == "stop" and isinstance(stop.stop_reason, str):
        assert stop.stop_reason in ("a", "e", "o")
        assert not (stop.reasoning_content or stop.content or "").endswith(stop.stop_reason)
        kept = by["stop_included"]
        assert (kept.reasoning_content or kept.content or "").endswith(stop.stop_reason)
    no_think = by["no_thinking"]
    assert no_think.reasoning_content is None and no_think.content
    assert by["seed"].content is None or by["seed"].reasoning_content is not None  # Qwen3 thinks first
    # the same seed twice gives the same answer; another seed another one
    again = tiny_remote.chat(PROMPT, TINY_PARAMS["sampling"])
    assert outcome(again) == outcome(by["sampling"])
    other = tiny_remote.chat(PROMPT, TINY_PARAMS["sampling"].replace(seed=99))
    assert outcome(other) != outcome(by["sampling"])


def test_prompt_logprobs_non_streaming(tiny_backend, tiny_remote):
    p = gs.Params(seed=1, max_tokens=2, prompt_logprobs=2)
    local, remote = tiny_backend.chat(PROMPT, p), tiny_remote.chat(PROMPT, p)
    assert remote.prompt_logprobs == local.prompt_logprobs
    assert len(remote.prompt_logprobs) == remote.usage.prompt_tokens and remote.prompt_logprobs[0] is None
    with pytest.raises(gs.ParamsError, match="prompt_logprobs"):
        tiny_remote.stream(PROMPT, p)


def test_unsupported_parameter_is_a_400_that_names_it(tiny_remote):
    with pytest.raises(gs.BadRequestError, match="use_beam_search") as ei:
        tiny_remote.chat(PROMPT, gs.Params(use_beam_search=True, n=2, max_tokens=4))
    assert ei.value.status == 400
    # a field vLLM does not know is ignored with a warning in the server's log, as vLLM does
    c = tiny_remote.chat(PROMPT, gs.Params(extra_body={"unknown_field": 1}, max_tokens=2))
    assert c.usage.completion_tokens >= 1
    assert tiny_remote.chat(PROMPT, max_tokens=1).usage.completion_tokens == 1  # still serving


async def test_async_twins_agree(tiny_backend, tiny_remote):
    names = ["seed", "sampling", "logprobs", "n", "no_thinking"]
    got = await asyncio.gather(*(tiny_remote.achat(PROMPT, TINY_PARAMS[n]) for n in names))
    for n, c in zip(names, got):
        assert outcome(c) == outcome(tiny_backend.chat(PROMPT, TINY_PARAMS[n])), n
    deltas = [d async for d in tiny_remote.astream(PROMPT, TINY_PARAMS["sampling"])]
    assert outcome(deltas[-1].completion) == outcome(got[1])
    models = tiny_remote.models()
    assert await tiny_remote.amodels() == models
    assert tiny_remote.model in models and "Qwen/Qwen3-1.7B" in models


def test_stream_with_stream_param_and_ttft(tiny_remote):
    c = tiny_remote.chat(PROMPT, TINY_PARAMS["seed"].replace(stream=True))
    assert outcome(c) == outcome(tiny_remote.chat(PROMPT, TINY_PARAMS["seed"]))
    assert c.ttft_s is not None and c.ttft_s <= c.latency_s


DEMO_PARAMS = {
    "greedy": gs.Params(temperature=0, max_tokens=16),
    "seed": gs.Params(seed=42, temperature=0.8, top_p=0.95, max_tokens=16),
    "stop": gs.Params(temperature=0, stop=[" "], max_tokens=16),
    "logprobs": gs.Params(seed=1, logprobs=True, top_logprobs=2, max_tokens=6),
    "n": gs.Params(seed=3, n=2, temperature=1.0, max_tokens=8),
}


@pytest.mark.parametrize("name", list(DEMO_PARAMS))
def test_demo_model_same_answer_local_remote_stream(demo_backend, demo_remote, name):
    p = DEMO_PARAMS[name]
    local = demo_backend.chat("Hola, cómo estás?", p)
    remote = demo_remote.chat("Hola, cómo estás?", p)
    deltas = list(demo_remote.stream("Hola, cómo estás?", p))
    assert outcome(remote) == outcome(local) == outcome(deltas[-1].completion)
    assert remote.content and remote.reasoning_content is None
    if name == "stop":
        assert remote.finish_reason == "stop" and remote.stop_reason == " " and " " not in remote.content
    if p.logprobs:
        assert remote.logprobs == local.logprobs


def test_wrong_key_against_the_real_server(tiny_remote, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + KEY[::-1]
    bad = RemoteBackend(tiny_remote.base_url, api_key=wrong, model=tiny_remote.model, max_retries=3)
    with pytest.raises(gs.AuthenticationError) as ei:
        bad.chat(PROMPT, max_tokens=1)
    assert ei.value.status == 401 and getattr(ei.value, "attempts", 1) == 1
    texts = [str(ei.value), repr(ei.value), json.dumps(ei.value.body), repr(bad), repr(tiny_remote),
             json.dumps(tiny_remote.info())] + [r.getMessage() for r in caplog.records]
    c = tiny_remote.chat(PROMPT, max_tokens=2, seed=1)
    texts += [json.dumps(c.raw), json.dumps(completion_row(c), default=str), tiny_remote.to_code(PROMPT, max_tokens=2)]
    assert not [t for t in texts if KEY in t or wrong in t]
    bad.close()
