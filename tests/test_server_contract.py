"""vLLM's chat contract on `gsexplore serve`, over real HTTP on 127.0.0.1 against the tiny Qwen3:
strict shapes, lenient fields, served names, limits, the extra endpoints, metrics, tools, the openai client.
"""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from gsexplore import tools as gst
from gsexplore.serve import MAX_JSON_DEPTH, ServerThread, create_app

KEY = "clave-contrato-91b2"
HDR = {"Authorization": f"Bearer {KEY}"}
NO_THINK = {"enable_thinking": False}
WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"enum": ["Lima", "Quito"]}}, "required": ["city"]}}}]


@pytest.fixture(scope="module")
def srv(tiny_backend):
    # the way `gsexplore serve --model tiny-qwen3` builds it (the loaded model is shared with tiny_backend)
    app = create_app("tiny-qwen3", api_keys={KEY}, max_tokens_cap=256, max_n=4,
                     backend_kwargs={"n_ctx": tiny_backend.n_ctx})
    with ServerThread(app) as s:
        yield s


def post(srv, body, path="/v1/chat/completions", **kw):
    return httpx.post(srv.base + path, json=body, headers=HDR, timeout=120, **kw)


def chat(content="Hola", **kw):
    return {"model": "tiny-qwen3", "messages": [{"role": "user", "content": content}], "max_tokens": 2, **kw}


def err(r, status):
    assert r.status_code == status, (r.status_code, r.text[:400])
    e = r.json()["error"]
    assert set(e) == {"message", "type", "param", "code"} and e["code"] == status
    return e


def sse(text):
    out = []
    for block in text.strip().split("\n\n"):
        data = block.removeprefix("data: ")
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


# --- served names ---------------------------------------------------------------------


def test_the_model_spec_as_typed_is_served_and_listed_with_vllms_fields(srv, tiny_backend):
    r = post(srv, chat())
    assert r.status_code == 200 and r.json()["model"] == "tiny-qwen3"
    assert post(srv, chat(model="Qwen/Qwen3-1.7B")).status_code == 200  # the GradienteSur alias stays
    models = httpx.get(srv.url + "/models", headers=HDR).json()["data"]
    assert [m["id"] for m in models][:1] == ["tiny-qwen3"] and "Qwen/Qwen3-1.7B" in [m["id"] for m in models]
    assert all(m["max_model_len"] == tiny_backend.n_ctx and m["owned_by"] and m["root"] == "tiny-qwen3"
               for m in models)


def test_served_model_name_adds_names(tiny_backend):
    app = create_app([tiny_backend], served_model_names=["aula"])
    assert app.state.served_model_names[:1] == ["aula"] and "Qwen/Qwen3-1.7B" in app.state.served_model_names


# --- strict shapes ---------------------------------------------------------------------


def test_messages_must_be_a_non_empty_list(srv):
    assert err(post(srv, {**chat(), "messages": "x"}), 400)["param"] == "messages"
    assert err(post(srv, {**chat(), "messages": []}), 400)["param"] == "messages"
    assert err(post(srv, {**chat(), "messages": [{"content": "x"}]}), 400)["param"] == "messages"


def test_text_parts_are_joined_as_vllm_joins_them(srv):
    parts = [{"type": "text", "text": "hola"}, {"type": "text", "text": "mundo"}]
    r = post(srv, chat(parts))
    assert r.status_code == 200, r.text
    joined = post(srv, {"model": "tiny-qwen3", "messages": [{"role": "user", "content": "hola\nmundo"}]},
                  path="/tokenize").json()
    as_parts = post(srv, {"model": "tiny-qwen3", "messages": [{"role": "user", "content": parts}]},
                    path="/tokenize").json()
    assert as_parts["tokens"] == joined["tokens"]
    assert r.json()["usage"]["prompt_tokens"] == joined["count"]


def test_a_non_text_part_is_a_400_naming_it(srv):
    parts = [{"type": "text", "text": "mirá"}, {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]
    e = err(post(srv, chat(parts)), 400)
    assert "image_url" in e["message"] and e["param"] == "messages"


def test_null_content_only_on_an_assistant_message_with_tool_calls(srv):
    assert "null content" in err(post(srv, chat(None)), 400)["message"]
    msgs = [{"role": "user", "content": "¿Tiempo en Lima?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\": \"Lima\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 18}"}]
    r = post(srv, {"model": "tiny-qwen3", "messages": msgs, "tools": WEATHER, "max_tokens": 2})
    assert r.status_code == 200, r.text
    prompt = post(srv, {"messages": msgs, "tools": WEATHER, "return_token_strs": True}, path="/tokenize").json()
    text = "".join(prompt["token_strs"])
    assert '{"name": "get_weather", "arguments": {"city": "Lima"}}' in text and "<tool_response>" in text


@pytest.mark.parametrize("body", [b"[1, 2]", b'"x"', b"3", b"null", b'{"messages": ['])
def test_bodies_that_are_not_a_json_object_are_400(srv, body):
    r = httpx.post(srv.url + "/chat/completions", content=body, headers={**HDR, "Content-Type": "application/json"})
    err(r, 400)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5000])
def test_deeply_nested_bodies_are_400_not_500(srv, depth):
    body = ("[" * depth + "]" * depth).encode()
    raw = b'{"model": "tiny-qwen3", "messages": [{"role": "user", "content": "x"}], "metadata": ' + body + b"}"
    r = httpx.post(srv.url + "/chat/completions", content=raw, headers={**HDR, "Content-Type": "application/json"})
    assert "deep" in err(r, 400)["message"]


# --- lenient fields ----------------------------------------------------------------------


def test_unknown_and_inert_fields_are_ignored_with_one_warning(srv, caplog):
    inert = {"frobnicate": 3, "metadata": {"curso": "ia"}, "store": False,
             "parallel_tool_calls": True, "service_tier": "auto"}
    with caplog.at_level(logging.WARNING, logger="gsexplore.serve"):
        r = post(srv, chat(**inert))
    assert r.status_code == 200, r.text
    lines = [rec.getMessage() for rec in caplog.records if "ignored" in rec.getMessage()]
    assert len(lines) == 1 and all(k in lines[0] for k in inert)


def test_fields_that_would_change_the_output_stay_errors(srv):
    assert err(post(srv, chat(echo=True)), 400)["param"] == "echo"
    assert err(post(srv, chat(use_beam_search=True)), 400)["param"] == "use_beam_search"
    e = err(post(srv, chat(stream=True, stream_options={"continuous_usage_stats": True})), 400)
    assert e["param"] == "continuous_usage_stats"


def test_max_completion_tokens_is_max_tokens(srv):
    body = chat(max_completion_tokens=3, min_tokens=3, ignore_eos=True)
    body.pop("max_tokens")
    assert post(srv, body).json()["usage"]["completion_tokens"] == 3


# --- limits -----------------------------------------------------------------------------


def test_limits_are_400s_naming_their_flag(srv):
    assert "--max-n" in err(post(srv, chat(n=1000)), 400)["message"]
    assert "--max-tokens-cap" in err(post(srv, chat(max_tokens=257)), 400)["message"]
    assert post(srv, chat(n=4)).status_code == 200


# --- endpoints ------------------------------------------------------------------------


def test_completions_use_the_raw_prompt(srv):
    prompt = "<|im_start|>user\nHola<|im_end|>\n<|im_start|>assistant\n"
    r = post(srv, {"model": "tiny-qwen3", "prompt": prompt, "max_tokens": 3, "min_tokens": 3, "ignore_eos": True,
                   "seed": 1}, path="/v1/completions")
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["object"] == "text_completion" and d["id"].startswith("cmpl-") and d["usage"]["completion_tokens"] == 3
    tok = post(srv, {"prompt": prompt}, path="/tokenize").json()
    assert d["usage"]["prompt_tokens"] == tok["count"]  # no chat template around it
    ch = d["choices"][0]
    assert set(ch) >= {"index", "text", "logprobs", "finish_reason", "stop_reason"} and ch["finish_reason"] == "length"
    stream = post(srv, {"prompt": prompt, "max_tokens": 3, "min_tokens": 3, "ignore_eos": True, "seed": 1,
                        "stream": True, "echo": True}, path="/v1/completions")
    ev = sse(stream.text)
    assert ev[-1] == "[DONE]" and all(e["object"] == "text_completion" for e in ev[:-1])
    assert "".join(e["choices"][0]["text"] for e in ev[:-1]) == prompt + ch["text"]
    assert err(post(srv, {"prompt": prompt, "logprobs": 2, "echo": True}, path="/v1/completions"), 400)[
        "param"] == "echo"  # echo's logprobs would be the prompt's


def test_completions_logprobs_have_vllms_shape(srv):
    prompt = "<|im_start|>user\nHola<|im_end|>\n<|im_start|>assistant\n"
    body = {"prompt": prompt, "max_tokens": 4, "min_tokens": 4, "ignore_eos": True, "seed": 3, "logprobs": 2}
    ch = post(srv, body, path="/v1/completions").json()["choices"][0]
    lp = ch["logprobs"]
    assert set(lp) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"} and len(lp["tokens"]) == 4
    assert "".join(lp["tokens"]) == ch["text"]
    assert lp["text_offset"] == [sum(len(t) for t in lp["tokens"][:i]) for i in range(4)]
    for tok, x, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
        assert x <= 0 and top[tok] == x and 2 <= len(top) <= 3  # the sampled token and the 2 most likely
        assert max(top.values()) >= x
    # the same seed streamed gives the same logprobs
    streamed = sse(post(srv, {**body, "stream": True}, path="/v1/completions").text)
    last = [e for e in streamed[:-1] if e["choices"] and e["choices"][0]["finish_reason"]][0]
    assert last["choices"][0]["logprobs"] == lp  # streamed: all at once in the last chunk
    zero = post(srv, {**body, "logprobs": 0}, path="/v1/completions").json()["choices"][0]["logprobs"]
    assert zero["top_logprobs"] == [] and zero["token_logprobs"] == lp["token_logprobs"]
    assert post(srv, {k: v for k, v in body.items() if k != "logprobs"},
                path="/v1/completions").json()["choices"][0]["logprobs"] is None
    assert err(post(srv, {**body, "logprobs": 21}, path="/v1/completions"), 400)["param"] == "logprobs"


def test_tokenize_and_detokenize(srv, tiny_backend):
    r = post(srv, {"model": "tiny-qwen3", "prompt": "Hola mundo"}, path="/tokenize").json()
    assert r["tokens"] == tiny_backend.tokenize("Hola mundo", True) and r["count"] == len(r["tokens"])
    assert r["max_model_len"] == tiny_backend.n_ctx
    back = post(srv, {"model": "tiny-qwen3", "tokens": r["tokens"]}, path="/detokenize").json()
    assert back == {"prompt": "Hola mundo"}
    msgs = [{"role": "user", "content": "Hola"}]
    c = post(srv, {"messages": msgs, "chat_template_kwargs": NO_THINK}, path="/tokenize").json()
    assert c["tokens"] == tiny_backend.prompt_token_ids(msgs, chat_template_kwargs=NO_THINK)
    err(post(srv, {"tokens": [10 ** 9]}, path="/detokenize"), 400)
    err(post(srv, {"prompt": "x", "messages": msgs}, path="/tokenize"), 400)


def test_version_openapi_and_docs(srv, tiny_backend):
    import gsexplore

    assert httpx.get(srv.base + "/version").json() == {"version": gsexplore.__version__}
    spec = httpx.get(srv.base + "/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize"} <= set(spec["paths"])
    assert "ChatCompletionRequest" in spec["components"]["schemas"]
    assert "top_k" in spec["components"]["schemas"]["ChatCompletionRequest"]["properties"]  # from Params
    assert httpx.get(srv.base + "/docs").status_code == 200
    with ServerThread(create_app([tiny_backend], docs=False)) as s:
        err(httpx.get(s.base + "/openapi.json"), 404)


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def test_metrics_move(srv):
    before = httpx.get(srv.base + "/metrics").text
    post(srv, chat(max_tokens=3, min_tokens=3, ignore_eos=True))
    post(srv, chat(max_tokens=2, stream=True))
    err(post(srv, chat(n=99)), 400)
    after = httpx.get(srv.base + "/metrics").text
    assert _metric(after, "vllm:generation_tokens_total") - _metric(before, "vllm:generation_tokens_total") >= 5
    assert _metric(after, "vllm:prompt_tokens_total") > _metric(before, "vllm:prompt_tokens_total")
    assert _metric(after, "vllm:e2e_request_latency_seconds_count") - _metric(
        before, "vllm:e2e_request_latency_seconds_count") == 2
    assert _metric(after, "vllm:time_to_first_token_seconds_count") > _metric(
        before, "vllm:time_to_first_token_seconds_count")
    assert _metric(after, "gsexplore:request_errors_total") > _metric(before, "gsexplore:request_errors_total")
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:request_success_total"):
        assert name in after


# --- tools ------------------------------------------------------------------------------


def named(**kw):
    base = dict(tools=WEATHER, max_tokens=40, seed=1, chat_template_kwargs=NO_THINK, guided_whitespace_pattern="",
                tool_choice={"type": "function", "function": {"name": "get_weather"}})
    return chat("¿Qué tiempo hace en Lima?", **{**base, **kw})


def test_the_template_renders_tools(srv):
    text = post(srv, {"messages": [{"role": "user", "content": "x"}], "tools": WEATHER, "return_token_strs": True},
                path="/tokenize").json()["token_strs"]
    assert "<tools>" in "".join(text) and '"name": "get_weather"' in "".join(text)


def test_a_named_tool_choice_forces_a_call_that_parses(srv):
    r = post(srv, named())
    assert r.status_code == 200, r.text
    ch = r.json()["choices"][0]
    msg = ch["message"]
    assert msg["content"] == "" and len(msg["tool_calls"]) == 1 and ch["finish_reason"] == "stop"  # vLLM's
    call = msg["tool_calls"][0]
    assert call["type"] == "function" and call["id"].startswith("chatcmpl-tool-")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"])["city"] in ("Lima", "Quito")
    ev = sse(post(srv, named(stream=True)).text)
    deltas = [e["choices"][0]["delta"] for e in ev[:-1] if e["choices"]]
    assert not "".join(d.get("content") or "" for d in deltas)  # the arguments are not content
    calls = [c for d in deltas for c in d.get("tool_calls", [])]
    assert len(calls) == 1 and calls[0]["index"] == 0
    assert calls[0]["function"] == call["function"]  # same seed, same call


def test_required_forces_an_array_of_calls(srv):
    r = post(srv, named(tool_choice="required", max_tokens=60))
    ch = r.json()["choices"][0]
    if ch["finish_reason"] == "length":  # random weights may fill the array past max_tokens
        assert ch["message"]["tool_calls"] == []
    else:
        assert ch["finish_reason"] == "tool_calls" and ch["message"]["tool_calls"]
        assert {c["function"]["name"] for c in ch["message"]["tool_calls"]} == {"get_weather"}


def test_auto_parses_tool_call_blocks_with_the_hermes_rules(srv):
    # the random-weight model is steered into Qwen3's tool-call text by a regex constraint
    block = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Quito"}}\n</tool_call>'
    # (a grammar that spells <tool_call> in text once failed: llama.cpp tokenised it as the special token)
    body = chat("x", tools=WEATHER, max_tokens=80, chat_template_kwargs=NO_THINK, guided_choice=["Veamos. " + block])
    ch = post(srv, body).json()["choices"][0]
    assert ch["finish_reason"] == "tool_calls", ch
    assert ch["message"]["content"] == "Veamos. "
    assert ch["message"]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Quito"}'}
    ev = sse(post(srv, {**body, "stream": True}).text)
    deltas = [e["choices"][0] for e in ev[:-1] if e["choices"]]
    assert "".join(d["delta"].get("content") or "" for d in deltas) == "Veamos. "
    assert [c["function"]["name"] for d in deltas for c in d["delta"].get("tool_calls", [])] == ["get_weather"]
    assert deltas[-1]["finish_reason"] == "tool_calls"
    # tool_choice "none": the same output stays content
    none = post(srv, {**body, "tool_choice": "none"}).json()["choices"][0]
    assert none["message"]["tool_calls"] == [] and "<tool_call>" in none["message"]["content"]


def test_tool_rules(srv):
    assert err(post(srv, chat(tool_choice="required")), 400)["param"] == "tool_choice"
    bad = {"type": "function", "function": {"name": "nope"}}
    assert "nope" in err(post(srv, chat(tools=WEATHER, tool_choice=bad)), 400)["message"]
    assert err(post(srv, chat(tools=[{"type": "function"}])), 400)["param"] == "tools"


def test_a_template_without_tools_is_a_400_naming_it(demo_backend):
    with ServerThread(create_app([demo_backend], served_model_names=["demo"])) as s:
        e = err(httpx.post(s.url + "/chat/completions", json=chat(tools=WEATHER, model="demo"), timeout=60), 400)
    assert e["param"] == "tools" and "template" in e["message"]


def test_hermes_parser_and_stream_filter():
    text = 'Primero. <tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n<tool_call>{"name": "b"}'
    content, calls = gst.parse_hermes(text)
    assert content == "Primero. " and [c["function"]["name"] for c in calls] == ["a", "b"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"x": 1} and calls[1]["function"]["arguments"] == "{}"
    assert gst.parse_hermes("<tool_call>{no json</tool_call>") == ("<tool_call>{no json</tool_call>", [])
    from gsexplore import Params

    f = gst.StreamFilter(Params(tools=WEATHER))
    out = [f.feed(t) for t in ["Hola <", "tool", "_call>{", '"name": "a"}</tool_call>']]
    assert "".join(out) == "Hola " and f.flush(called=True) == ""
    f = gst.StreamFilter(Params(tools=WEATHER))
    assert f.feed("a <to") == "a " and f.feed("do") == "<todo" and f.flush(called=False) == ""


# --- the official openai client ------------------------------------------------------------


def test_the_openai_client_gets_valid_answers(srv):
    import openai

    client = openai.OpenAI(base_url=srv.url, api_key=KEY, max_retries=0)
    r = client.chat.completions.create(
        model="tiny-qwen3", user="alumno-3", max_tokens=40, seed=1,
        messages=[{"role": "user", "content": [{"type": "text", "text": "¿Qué tiempo hace en Lima?"}]}],
        tools=WEATHER, tool_choice={"type": "function", "function": {"name": "get_weather"}},
        extra_body={"top_k": 20, "chat_template_kwargs": NO_THINK, "guided_whitespace_pattern": ""})
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments)["city"] in ("Lima", "Quito")
    s = client.chat.completions.create(model="tiny-qwen3", messages=[{"role": "user", "content": "Hola"}],
                                       max_tokens=3, stream=True, stream_options={"include_usage": True},
                                       extra_body={"min_p": 0.1, "repetition_penalty": 1.1})
    chunks = list(s)
    assert chunks[-1].usage.completion_tokens <= 3 and chunks[0].choices[0].delta.role == "assistant"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-qwen3", messages=[{"role": "user", "content": "x"}], n=99)
    assert "--max-n" in str(e.value)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "x"}])
