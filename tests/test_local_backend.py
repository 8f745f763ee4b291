"""LocalBackend on real llama.cpp (the tiny Qwen3 model and the demo SmolLM2 model), no mocks.

One test per parameter, asserting its effect as vLLM defines it, or that it is
rejected with UnsupportedParam; plus the statistical check of the sampler chain
against gsexplore.sampling (issue section 5).
"""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

import gsexplore as gs
from gsexplore import reasoning, sampling, wire
from gsexplore.backends.llama.loading import load_llama
from gsexplore.backends.local import LocalBackend, _gguf_sampling
from gsexplore.errors import ParamsError, UnsupportedParam

FRANCE = "What is the capital of France?"
STORY = "Write a long story about a dragon."
SHORT = "Answer yes or no: is the sky blue?"   # the demo model says "No." and stops


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max()
    return x - (m + np.log(np.exp(x - m).sum()))


def word_id(backend: LocalBackend, text: str) -> int:
    ids = backend.llama.tokenize(text.encode(), add_bos=False, special=False)
    assert len(ids) == 1, (text, ids)
    return ids[0]


# --------------------------------------------------------------------------- answers


def test_demo_answers_paris(demo_backend):
    c = demo_backend.chat([{"role": "system", "content": "You are a helpful assistant."},
                           {"role": "user", "content": FRANCE}], gs.Params(temperature=0, max_tokens=30))
    assert "Paris" in c.content
    assert c.backend == "local" and c.model == demo_backend.model
    assert c.finish_reason == "stop" and c.stop_reason is None
    assert c.usage.prompt_tokens > 0 and c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens
    assert c.latency_s > 0 and c.ttft_s is None


def test_demo_sends_a_system_prompt_only_when_the_request_has_none(demo_model_path):
    from gsexplore.backends.local import DEMO_SYSTEM_PROMPT

    demo = LocalBackend.demo(n_ctx=2048)
    c = demo.chat(FRANCE, temperature=0, max_tokens=30)
    assert "Paris" in c.content
    assert c.messages == [{"role": "system", "content": DEMO_SYSTEM_PROMPT}, {"role": "user", "content": FRANCE}]
    assert demo.info()["system_prompt"] == DEMO_SYSTEM_PROMPT
    own = [{"role": "system", "content": "Eres un pirata."}, {"role": "user", "content": FRANCE}]
    assert demo.chat(own, max_tokens=1).messages == own
    assert "Eres un pirata." in demo.render_prompt(own) and DEMO_SYSTEM_PROMPT not in demo.render_prompt(own)
    # None: the template's own default (SmolLM2's persona), as a plain GGUF path gets
    plain = LocalBackend("demo", n_ctx=2048, system_prompt=None)
    assert "SmolLM" in plain.render_prompt(FRANCE) and plain.chat(FRANCE, max_tokens=1).messages[0]["role"] == "user"


def test_greedy_matches_raw_llama_cpp(demo_backend):
    """Same prompt rendering and greedy choice as llama-cpp-python's own chat completion."""
    ours = demo_backend.chat(FRANCE, temperature=0, max_tokens=16)
    with demo_backend.lock:
        raw = demo_backend.llama.create_chat_completion([{"role": "user", "content": FRANCE}],
                                                        temperature=0, max_tokens=16)
    assert ours.content == raw["choices"][0]["message"]["content"]


def test_response_is_vllm_shaped(demo_backend):
    c = demo_backend.chat(SHORT, temperature=0, max_tokens=8)
    raw = wire.completion_response(c, demo_backend.model)  # what serve sends for it
    assert raw["id"].startswith("chatcmpl-") and raw["object"] == "chat.completion"
    assert isinstance(raw["created"], int) and raw["model"] == demo_backend.model
    ch = raw["choices"][0]
    assert ch["message"] == {"role": "assistant", "reasoning_content": None, "content": c.content, "tool_calls": []}
    assert ch["finish_reason"] == "stop" and ch["stop_reason"] is None and ch["logprobs"] is None
    assert raw["usage"]["prompt_tokens_details"] is None and raw["prompt_logprobs"] is None
    assert c.info["sampling_defaults"]["top_k"] == -1
    assert raw["id"] == c.id and c.raw == {}  # built directly, not parsed back from JSON
    again = gs.Completion.from_response(raw)
    assert (again.content, again.usage, again.finish_reason) == (c.content, c.usage, c.finish_reason)


# --------------------------------------------------------------------------- stopping


def test_stop_token_ids(tiny_backend):
    base = tiny_backend.chat("hola", seed=5, max_tokens=8, ignore_eos=True).info["token_ids"]
    k = next(i for i in range(2, 8) if base[i] not in base[:i])
    c = tiny_backend.chat("hola", seed=5, max_tokens=8, ignore_eos=True, stop_token_ids=[base[k]])
    assert c.info["token_ids"] == base[:k + 1]
    assert c.finish_reason == "stop" and c.stop_reason == base[k]
    assert c.usage.completion_tokens == k + 1


def _greedy_story(demo_backend):
    c = demo_backend.chat(STORY, temperature=0, max_tokens=20)
    pieces = [demo_backend._lm.token_str(t) for t in c.info["token_ids"]]
    return c.content, pieces


def test_stop_string_spanning_tokens(demo_backend):
    text, pieces = _greedy_story(demo_backend)
    # a stop string made of the end of one token and the start of the next
    i = next(j for j in range(3, len(pieces)) if len(pieces[j - 1]) >= 2 and len(pieces[j]) >= 3)
    stop = pieces[i - 1][-2:] + pieces[i][:2]
    at = text.index(stop)
    c = demo_backend.chat(STORY, temperature=0, max_tokens=20, stop=["never-appears", stop])
    assert c.content == text[:at]
    assert c.finish_reason == "stop" and c.stop_reason == stop
    assert c.usage.completion_tokens == i + 1
    inc = demo_backend.chat(STORY, temperature=0, max_tokens=20, stop=stop, include_stop_str_in_output=True)
    assert inc.content == text[:at + len(stop)]  # the rest of the last token is cut
    # streaming holds back partial matches: nothing past the cut is ever emitted
    deltas = list(demo_backend.stream(STORY, temperature=0, max_tokens=20, stop=[stop]))
    assert "".join(d.text for d in deltas[:-1]) == c.content == deltas[-1].completion.content


def test_max_tokens_length(tiny_backend):
    c = tiny_backend.chat("hola", seed=1, max_tokens=7, ignore_eos=True)
    assert c.finish_reason == "length" and c.stop_reason is None
    assert c.usage.completion_tokens == 7


def test_max_tokens_too_large(demo_backend):
    with pytest.raises(ParamsError) as e:
        demo_backend.chat(SHORT, max_tokens=demo_backend.n_ctx)
    assert e.value.field == "max_tokens"


def test_min_tokens_and_ignore_eos(demo_backend):
    base = demo_backend.chat(SHORT, temperature=0, max_tokens=30)
    assert base.finish_reason == "stop" and base.usage.completion_tokens < 10
    eog = set(demo_backend._lm.eog_ids)
    c = demo_backend.chat(SHORT, temperature=0, max_tokens=30, min_tokens=10)
    assert c.usage.completion_tokens >= 10
    assert not eog & set(c.info["token_ids"][:10])
    c = demo_backend.chat(SHORT, temperature=0, max_tokens=12, min_tokens=12, ignore_eos=True)
    assert c.usage.completion_tokens == 12 and c.finish_reason == "length"
    # as in vLLM, min_tokens still blocks the EOS with ignore_eos; after it, EOS may be drawn
    c = demo_backend.chat(SHORT, temperature=0, max_tokens=30, min_tokens=20, ignore_eos=True)
    assert not eog & set(c.info["token_ids"][:20])


# --------------------------------------------------------------------------- token-level controls


def test_allowed_token_ids(tiny_backend):
    allowed = [word_id(tiny_backend, w) for w in ("hello", " world", " cat")]
    c = tiny_backend.chat("hola", seed=3, max_tokens=12, allowed_token_ids=allowed)
    assert set(c.info["token_ids"]) <= set(allowed)
    assert len(set(c.info["token_ids"])) > 1  # sampled among them, not stuck


def test_logit_bias_forces_a_token(demo_backend):
    tok = word_id(demo_backend, " banana")
    c = demo_backend.chat(FRANCE, seed=5, max_tokens=4, logit_bias={tok: 100})
    assert c.info["token_ids"] == [tok] * 4
    c = demo_backend.chat(FRANCE, temperature=0, max_tokens=4, logit_bias={tok: 1000})  # clamped to 100
    assert c.info["token_ids"] == [tok] * 4


def test_seeds(tiny_backend):
    a = tiny_backend.chat("hola", seed=42, max_tokens=10, ignore_eos=True)
    b = tiny_backend.chat("hola", seed=42, max_tokens=10, ignore_eos=True)
    assert a.info["token_ids"] == b.info["token_ids"]
    d = tiny_backend.chat("hola", seed=43, max_tokens=10, ignore_eos=True)
    assert d.info["token_ids"] != a.info["token_ids"]
    u1 = tiny_backend.chat("hola", max_tokens=10, ignore_eos=True)
    u2 = tiny_backend.chat("hola", seed=-1, max_tokens=10, ignore_eos=True)
    assert u1.info["token_ids"] != u2.info["token_ids"]  # unseeded requests are random, as on vLLM
    assert not u1.info["seeded"] and a.info["seeded"]
    again = tiny_backend.chat("hola", seed=u1.info["seed"], max_tokens=10, ignore_eos=True)
    assert again.info["token_ids"] == u1.info["token_ids"]  # the seed used is reported


def test_n_choices(demo_backend):
    c = demo_backend.chat(FRANCE, n=3, seed=9, max_tokens=8)
    assert len(c.choices) == 3 and [x.index for x in c.choices] == [0, 1, 2]
    assert c.choices[0] is c
    singles = [demo_backend.chat(FRANCE, seed=9 + i, max_tokens=8).content for i in range(3)]
    assert [x.content for x in c.choices] == singles  # choice i uses seed + i
    assert c.usage.completion_tokens == sum(len(x.info["token_ids"]) for x in c.choices)


def test_temperature_zero_is_deterministic_argmax(demo_backend):
    a = demo_backend.chat(FRANCE, temperature=0, max_tokens=6)
    b = demo_backend.chat(FRANCE, temperature=0, max_tokens=6, seed=123)
    assert a.info["token_ids"] == b.info["token_ids"]
    logits = demo_backend.next_token_logits(FRANCE)
    assert a.info["token_ids"][0] == int(np.argmax(logits))


def test_penalties_match_reference(demo_backend):
    """Greedy after bias and penalties = argmax of gsexplore.sampling's penalised logits."""
    logits = demo_backend.next_token_logits(FRANCE)
    order = np.argsort(-logits)
    prompt_ids, output_ids = order[:3].tolist(), [int(order[3])] * 2 + [int(order[4])]
    kw = dict(repetition_penalty=1.8, presence_penalty=0.5, frequency_penalty=0.7,
              logit_bias={int(order[6]): 1.5})
    ref = sampling.stages(logits, temperature=0, prompt_ids=prompt_ids, output_ids=output_ids, **kw)[1].logits
    got = demo_backend.sample_from_logits(logits, temperature=0, seed=0, prompt_ids=prompt_ids,
                                          output_ids=output_ids, **kw)
    assert got == int(np.argmax(ref)) != int(np.argmax(logits))


def test_repetition_penalty_blocks_prompt_tokens(demo_backend):
    q = "Repeat this exactly: apple apple apple apple"
    base = demo_backend.chat(q, temperature=0, max_tokens=12)
    prompt = set(base.info["prompt_token_ids"])
    assert prompt & set(base.info["token_ids"])
    c = demo_backend.chat(q, temperature=0, max_tokens=12, repetition_penalty=1000)
    out = c.info["token_ids"]
    assert not prompt & set(out)          # prompt tokens are penalised too (vLLM, unlike llama.cpp's last-64)
    assert len(set(out)) == len(out)      # and every output token once seen


@pytest.mark.parametrize("name", ["frequency_penalty", "presence_penalty"])
def test_output_penalties_reduce_repetition(demo_backend, name):
    def distinct(c):
        ids = c.info["token_ids"]
        return len(set(ids)) / len(ids)

    base = demo_backend.chat(FRANCE, temperature=0, max_tokens=32)
    c = demo_backend.chat(FRANCE, temperature=0, max_tokens=32, **{name: 1.5})
    assert distinct(c) > distinct(base) + 0.2


# --------------------------------------------------------------------------- prompt


def test_enable_thinking_false_reaches_template(tiny_backend):
    on = tiny_backend.render_prompt("hola")
    off = tiny_backend.render_prompt("hola", chat_template_kwargs={"enable_thinking": False})
    assert "<think>" not in on
    assert off == on + "<think>\n\n</think>\n\n"


def test_truncate_prompt_tokens_keeps_the_last(demo_backend):
    full = demo_backend.prompt_token_ids(FRANCE)
    c = demo_backend.chat(FRANCE, temperature=0, max_tokens=2, truncate_prompt_tokens=6)
    assert c.usage.prompt_tokens == 6 and c.info["prompt_token_ids"] == full[-6:]


def test_add_special_tokens_is_the_tokenizers(demo_backend, tiny_backend):
    # llama.cpp adds what the GGUF's tokenizer adds (add_bos_token); both offline models add
    # nothing, like their Hugging Face tokenizers on a vLLM server
    for b in (demo_backend, tiny_backend):
        text = b.render_prompt(FRANCE)
        with_special = b.prompt_token_ids(FRANCE, add_special_tokens=True)
        assert with_special == b.llama.tokenize(text.encode(), add_bos=True, special=True)
        assert with_special == b.prompt_token_ids(FRANCE)


def test_prefix_reuse_skips_the_prompt(demo_backend):
    demo_backend.chat(STORY, seed=1, max_tokens=3)
    again = demo_backend.chat(STORY, seed=2, max_tokens=3, temperature=0.5)  # same prompt, other params
    assert again.info["prompt_tokens_evaluated"] == 0      # its KV cells and logits were reused
    longer = STORY + " With a cat."
    c = demo_backend.chat([{"role": "user", "content": longer}], seed=2, max_tokens=1)
    n_prompt = len(demo_backend.prompt_token_ids(longer))
    assert 0 < c.info["prompt_tokens_evaluated"] < n_prompt - 10   # the common prefix was kept


# --------------------------------------------------------------------------- text


def test_skip_special_tokens(demo_backend):
    start = 1  # <|im_start|>, a control token
    kept = demo_backend.chat(FRANCE, temperature=0, max_tokens=3, logit_bias={start: 100},
                             skip_special_tokens=False)
    assert kept.content == "<|im_start|>" * 3
    skipped = demo_backend.chat(FRANCE, temperature=0, max_tokens=3, logit_bias={start: 100})
    assert skipped.content == "" and skipped.info["token_ids"] == [start] * 3
    # vLLM's fast detokenizer never inserts spaces between special tokens: same text either way
    nospace = demo_backend.chat(FRANCE, temperature=0, max_tokens=3, logit_bias={start: 100},
                                skip_special_tokens=False, spaces_between_special_tokens=False)
    assert nospace.content == kept.content


def test_eos_text_only_with_include_stop_str(demo_backend):
    c = demo_backend.chat(SHORT, temperature=0, max_tokens=10, skip_special_tokens=False)
    assert "<|im_end|>" not in c.content
    c = demo_backend.chat(SHORT, temperature=0, max_tokens=10, skip_special_tokens=False,
                          include_stop_str_in_output=True)
    assert c.content.endswith("<|im_end|>")


def test_utf8_split_across_tokens(tiny_backend):
    lm = tiny_backend._lm
    byte_tok = {lm.piece(i)[0]: i for i in range(300) if len(lm.piece(i)[0]) == 1}
    allowed = [byte_tok[b"\xc3"], byte_tok[b"\xa9"]]  # "é" is c3 a9: two tokens
    kw = dict(seed=4, max_tokens=24, allowed_token_ids=allowed, chat_template_kwargs={"enable_thinking": False})
    c = tiny_backend.chat("hola", **kw)
    raw = b"".join(lm.piece(t)[0] for t in c.info["token_ids"])
    assert "é" in c.content
    assert c.content == raw.decode("utf-8", errors="replace")
    deltas = list(tiny_backend.stream("hola", **kw))
    assert "".join(d.text for d in deltas[:-1]) == c.content


# --------------------------------------------------------------------------- reasoning


def test_think_block_splits_into_reasoning_and_content(tiny_backend):
    lm = tiny_backend._lm
    a, b = word_id(tiny_backend, " ok"), word_id(tiny_backend, " no")
    allowed = [lm.think_end, a, b]  # no <think> needed: Qwen3's parser starts in reasoning
    for seed in range(50):
        c = tiny_backend.chat("hola", seed=seed, max_tokens=8, allowed_token_ids=allowed)
        ids = c.info["token_ids"]
        if lm.think_end in ids[1:-1]:
            break
    else:  # pragma: no cover
        pytest.fail("no seed gave </think> in the middle")
    raw = "".join(lm.token_str(t) for t in ids)
    want_r, want_c = reasoning.split_reasoning(raw)
    assert (c.reasoning_content, c.content) == (want_r, want_c)
    assert c.reasoning_content and c.content and "</think>" not in c.reasoning_content  # first </think> splits
    assert c.usage.reasoning_tokens == ids.index(lm.think_end)
    deltas = list(tiny_backend.stream("hola", seed=seed, max_tokens=8, allowed_token_ids=allowed))
    kinds = [d.kind for d in deltas[:-1]]
    assert kinds == sorted(kinds, key=lambda k: k != "reasoning")  # reasoning first, then content
    assert "".join(d.text for d in deltas if d.kind == "reasoning") == c.reasoning_content
    assert "".join(d.text for d in deltas if d.kind == "content") == c.content


def test_unterminated_think_is_reasoning_and_thinking_off_is_content(tiny_backend):
    a, b = word_id(tiny_backend, " ok"), word_id(tiny_backend, " no")
    c = tiny_backend.chat("hola", seed=1, max_tokens=6, allowed_token_ids=[a, b])
    assert c.content is None and c.reasoning_content.strip() and c.usage.reasoning_tokens == 6
    off = tiny_backend.chat("hola", seed=1, max_tokens=6, allowed_token_ids=[a, b, tiny_backend._lm.think_end],
                            chat_template_kwargs={"enable_thinking": False})
    assert off.reasoning_content is None and off.content  # the prompt closed the think block


def test_models_without_think_have_no_reasoning(demo_backend):
    c = demo_backend.chat(SHORT, temperature=0, max_tokens=5)
    assert c.reasoning_content is None and c.usage.reasoning_tokens is None


def test_reasoning_splitter_units():
    s = reasoning.ReasoningSplitter()
    text = "<think>\nlet me see</think>\n\nHola"
    for cut in range(len(text) + 1):  # any chunking gives the same result
        s = reasoning.ReasoningSplitter()
        s.feed(text[:cut]), s.feed(text[cut:]), s.finish()
        assert s.result() == ("\nlet me see", "\n\nHola") == reasoning.split_reasoning(text)
    s = reasoning.ReasoningSplitter()
    assert s.feed("a</th") == [("reasoning", "a")] and s.feed("x") == [("reasoning", "</thx")]
    assert reasoning.split_reasoning("cut <think>short") == ("short", None)
    assert reasoning.split_reasoning("plain", thinking_enabled=False) == (None, "plain")
    assert reasoning.reasoning_ended_in_prompt([5, 1, 7, 2, 9], 1, 2)
    assert not reasoning.reasoning_ended_in_prompt([2, 1, 9], 1, 2)
    assert reasoning.count_reasoning_tokens([1, 5, 6, 2, 8], 1, 2) == 2


# --------------------------------------------------------------------------- logprobs


def test_logprobs_are_raw_log_softmax(demo_backend):
    logits = demo_backend.next_token_logits(FRANCE)
    ref = log_softmax(logits)
    # sampled with a hot temperature and penalties: logprobs still describe the raw model
    c = demo_backend.chat(FRANCE, seed=3, temperature=1.7, repetition_penalty=1.3, max_tokens=3,
                          logprobs=True, top_logprobs=5)
    lp = c.logprobs
    assert len(lp) == 3
    first = lp[0]
    tok = c.info["token_ids"][0]
    assert type(first["logprob"]) is float
    assert first["logprob"] == pytest.approx(ref[tok], abs=1e-4)
    assert first["bytes"] == list(demo_backend._lm.piece(tok)[0])
    assert first["token"] == demo_backend._lm.token_str(tok)
    tops = first["top_logprobs"]
    assert [t["token"] for t in tops] == [demo_backend._lm.token_str(int(i)) for i in np.argsort(-ref)[:5]]
    assert [t["logprob"] for t in tops] == pytest.approx(np.sort(ref)[::-1][:5], abs=1e-4)
    assert all(type(t["logprob"]) is float for e in lp for t in e["top_logprobs"])
    assert wire.completion_response(c, c.model)["choices"][0]["logprobs"]["content"] == lp
    ids = demo_backend.chat(FRANCE, temperature=0, max_tokens=2, logprobs=True, top_logprobs=2,
                            return_tokens_as_token_ids=True)
    e = ids.logprobs[0]
    assert e["token"] == f"token_id:{ids.info['token_ids'][0]}"
    assert all(t["token"].startswith("token_id:") for t in e["top_logprobs"])
    none = demo_backend.chat(FRANCE, temperature=0, max_tokens=2, logprobs=True)
    assert none.logprobs[0]["top_logprobs"] == []


def test_prompt_logprobs(demo_backend, demo_model_path):
    import llama_cpp

    q = "Name a fruit."
    c = demo_backend.chat(q, temperature=0, max_tokens=4, prompt_logprobs=2)
    ids = c.info["prompt_token_ids"]
    pl = c.prompt_logprobs
    assert len(pl) == len(ids) and pl[0] is None
    # reference: llama-cpp-python's own logits_all path on a second copy of the model (the
    # prompt decoded as one batch, like ours: one-token-at-a-time decoding rounds differently)
    ref_llm = load_llama(demo_model_path, n_gpu_layers=0, n_ctx=128, n_batch=128, logits_all=True,
                         n_threads=1, n_threads_batch=1, flash_attn=True)[0]
    ref_llm.eval(ids)
    for i in range(1, len(ids)):
        ref = log_softmax(ref_llm.scores[i - 1])
        entry = pl[i]
        got = entry[str(ids[i])]
        assert got["logprob"] == pytest.approx(ref[ids[i]], abs=1e-3)
        assert got["rank"] == int((ref > ref[ids[i]]).sum()) + 1
        assert got["decoded_token"] == demo_backend._lm.token_str(ids[i])
        top = [int(t) for t in np.argsort(-ref)[:2]]
        assert {str(t) for t in top} <= set(entry) and len(entry) <= 3
        assert [entry[str(t)]["rank"] for t in top] == [1, 2]
    # the KV cache is consistent afterwards: same greedy answer as without prompt_logprobs
    assert demo_backend.chat(q, temperature=0, max_tokens=4).content == c.content
    with pytest.raises(ParamsError):
        demo_backend.stream(q, prompt_logprobs=1, stream=True)


# --------------------------------------------------------------------------- defaults and errors


def test_defaults_are_vllms(demo_backend, tiny_backend):
    for b in (demo_backend, tiny_backend):
        eff = b.effective_sampling()
        assert eff == {"temperature": 1.0, "top_k": -1, "top_p": 1.0, "min_p": 0.0, "repetition_penalty": 1.0,
                       "presence_penalty": 0.0, "frequency_penalty": 0.0, "greedy": False, "chain": ["dist"]}
    eff = demo_backend.effective_sampling(temperature=0.7, top_k=20, top_p=0.9, min_p=0.1)
    # vLLM's order with top_k moved first, which gives the same distribution (it commutes with
    # temperature and min_p; checked statistically below)
    assert eff["chain"] == ["top_k(20)", "temp(0.7)", "min_p(0.1)", "top_p(0.9)", "dist"]
    assert demo_backend.effective_sampling(temperature=0.7, top_p=0.9)["chain"] == ["temp(0.7)", "top_p(0.9)", "dist"]
    assert demo_backend.effective_sampling(top_k=0)["chain"] == ["dist"]  # 0 is off, as in vLLM
    assert demo_backend.effective_sampling(temperature=0)["greedy"]
    meta = {"general.sampling.temp": "0.6", "general.sampling.top_k": "20", "general.sampling.top_p": "0.95",
            "general.sampling.min_p": "0.000000", "general.sampling.penalty_repeat": "1.1"}
    assert _gguf_sampling(meta) == {"temperature": 0.6, "top_k": 20, "top_p": 0.95, "min_p": 0.0,
                                    "repetition_penalty": 1.1}


@pytest.mark.parametrize("field, value", [  # guided decoding has its own tests (test_guided.py)
    ("use_beam_search", True),
    ("length_penalty", 0.5),
    ("logits_processors", ["my_processor"]),
    ("extra_body", {"foo": 1}),
])
def test_unsupported_params_raise(tiny_backend, field, value):
    with pytest.raises(UnsupportedParam) as e:
        tiny_backend.chat("hola", max_tokens=1, **{field: value})
    assert e.value.param == field and e.value.backend == "local"


def test_default_valued_params_are_accepted(tiny_backend):
    c = tiny_backend.chat("hola", max_tokens=1, use_beam_search=False, length_penalty=1.0, priority=0,
                          response_format={"type": "text"}, model=tiny_backend.model)
    assert c.usage.completion_tokens == 1


def test_model_and_stream_params(tiny_backend):
    with pytest.raises(ParamsError) as e:
        tiny_backend.chat("hola", max_tokens=1, model="Qwen/Qwen3-1.7B")
    assert e.value.field == "model"
    # chat(stream=True) streams (as on RemoteBackend) and keeps the time to first token
    streamed = tiny_backend.chat("hola", max_tokens=2, stream=True, seed=1)
    plain = tiny_backend.chat("hola", max_tokens=2, seed=1)
    assert streamed.content == plain.content and streamed.ttft_s is not None and plain.ttft_s is None


# --------------------------------------------------------------------------- backend plumbing


def test_loaded_model_is_shared(demo_backend, demo_model_path):
    again = LocalBackend(str(demo_model_path), n_ctx=2048)
    assert again.llama is demo_backend.llama and again.lock is demo_backend.lock
    private = LocalBackend(str(demo_model_path), n_ctx=2048, shared=False)
    assert private.llama is not demo_backend.llama


def test_concurrent_requests_are_serialised(tiny_backend):
    from concurrent.futures import ThreadPoolExecutor

    kw = [dict(seed=s, max_tokens=6, ignore_eos=True) for s in range(4)]
    alone = [tiny_backend.chat("hola", **k).info["token_ids"] for k in kw]
    with ThreadPoolExecutor(4) as ex:
        together = list(ex.map(lambda k: tiny_backend.chat("hola", **k).info["token_ids"], kw))
    assert together == alone


def test_info(tiny_backend):
    info = tiny_backend.info()
    assert info["architecture"] == "qwen3" and info["vocab_size"] == 151936 and info["n_ctx"] == 2048
    assert isinstance(info["gpu_offload_supported"], bool)
    assert info["n_gpu_layers"] == -1
    assert info["layers_offloaded"] == (info["n_layer"] if info["gpu_offload_supported"] else 0)
    assert info["reasoning_parser"] == "qwen3" and info["sampling_defaults"] == {}


def test_stream_equals_chat(demo_backend):
    kw = dict(seed=11, max_tokens=25, temperature=0.9)
    c = demo_backend.chat(FRANCE, **kw)
    deltas = list(demo_backend.stream(FRANCE, **kw))
    assert deltas[-1].kind == "done" and all(d.kind == "content" for d in deltas[:-1])
    assert "".join(d.text for d in deltas[:-1]) == c.content == deltas[-1].completion.content
    assert deltas[-1].completion.ttft_s is not None


async def test_achat_and_astream(demo_backend):
    kw = dict(seed=12, max_tokens=10)
    c, s = await asyncio.gather(demo_backend.achat(FRANCE, **kw),
                                _collect(demo_backend.astream(FRANCE, **kw)))
    assert "".join(d.text for d in s[:-1]) == c.content == s[-1].completion.content


async def _collect(agen):
    return [d async for d in agen]


# --------------------------------------------------------------------------- the sampler, statistically


@pytest.mark.parametrize("settings", [
    {"temperature": 2.0, "min_p": 0.2},
    {"temperature": 1.5, "top_k": 5, "top_p": 0.6},
    {"temperature": 0.8, "min_p": 0.05, "top_k": 12, "top_p": 0.9},
    {"temperature": 0.8, "top_p": 0.9},                    # top_p alone: llama/nucleus.py, no sort
    {"temperature": 1.3, "min_p": 0.02, "top_p": 0.8},
])
def test_first_token_frequencies_match_reference(demo_backend, settings):
    """>= 2000 first tokens with different seeds vs gsexplore.sampling on the model's own logits."""
    q = "Tell me a short story."
    logits = demo_backend.next_token_logits(q)
    ref = sampling.next_token_distribution(logits, **settings)
    support = int(np.count_nonzero(ref))
    n = 2000
    draws = np.array([demo_backend.sample_from_logits(logits, seed=s, **settings) for s in range(n)])
    counts = np.bincount(draws, minlength=logits.size)
    assert not counts[ref == 0].any()  # nothing outside the reference support
    # with probability >= 0.999 a correct sampler stays within this TV distance
    assert sampling.total_variation(counts / n, ref) <= sampling.tv_bound(n, support, alpha=1e-3)
    # end to end through chat(max_tokens=1): the prompt is evaluated once, each draw reuses it
    m = 200
    firsts = [demo_backend.chat(q, max_tokens=1, seed=10_000 + s, **settings).info["token_ids"][0]
              for s in range(m)]
    emp = np.bincount(firsts, minlength=logits.size) / m
    assert not emp[ref == 0].any()
    assert sampling.total_variation(emp, ref) <= sampling.tv_bound(m, support, alpha=1e-3)


def test_a_streamed_tool_call_is_not_content(tiny_backend):
    """As vLLM's tool parser streams: the <tool_call> block comes parsed in the Completion, not as text."""
    weather = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    block = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Quito"}}\n</tool_call>'
    p = gs.Params(tools=weather, max_tokens=80, chat_template_kwargs={"enable_thinking": False},
                  guided_choice=["Veamos. " + block])  # steers the random-weight model into the block
    deltas = list(tiny_backend.stream("x", p))
    streamed = "".join(d.text for d in deltas if d.kind == "content")
    c = deltas[-1].completion
    assert streamed == c.content == "Veamos. " and c.finish_reason == "tool_calls"
    assert c.tool_calls[0]["function"] == {"name": "get_weather", "arguments": '{"city": "Quito"}'}
    # tool_choice "none": the block is content, streamed as it comes
    none = list(tiny_backend.stream("x", p, tool_choice="none"))
    assert "<tool_call>" in "".join(d.text for d in none if d.kind == "content") == none[-1].completion.content


def test_params_are_merged_once_per_request(tiny_backend, monkeypatch):
    from gsexplore.backends.local import backend as backend_module

    real = backend_module.merge_params
    calls: list[int] = []
    monkeypatch.setattr(backend_module, "merge_params", lambda p, o: calls.append(1) or real(p, o))
    c = tiny_backend.chat("hola", max_tokens=2, seed=1, prompt_logprobs=1)
    assert len(calls) == 1                                 # not again for the template and the plan
    assert c.prompt_logprobs[0] is None and len(c.prompt_logprobs) == c.usage.prompt_tokens
