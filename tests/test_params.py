"""Params: every field accepted, rejected out of range, serialised; the cross-field rules."""

import json

import pytest

import gsexplore as gs
from gsexplore.params import GROUPS

# One valid value per field: the test fails when a field is added without one.
VALID = {
    "temperature": 0.7, "top_p": 0.9, "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1,
    "presence_penalty": 0.5, "frequency_penalty": -0.5, "seed": 42, "n": 2, "use_beam_search": True,
    "length_penalty": 0.8, "logit_bias": {17: 5.0}, "allowed_token_ids": [1, 2, 3],
    "max_tokens": 200, "min_tokens": 5, "stop": ["\n\n", "FIN"], "stop_token_ids": [151645],
    "include_stop_str_in_output": True, "ignore_eos": True, "skip_special_tokens": False,
    "spaces_between_special_tokens": False, "logprobs": True, "top_logprobs": 5,
    "prompt_logprobs": 2, "return_tokens_as_token_ids": True, "stream": False,
    "guided_json": {"type": "object", "properties": {"a": {"type": "integer"}}},
    "guided_regex": r"\d+", "guided_choice": ["sí", "no"], "guided_grammar": 'root ::= "a"',
    "response_format": {"type": "json_object"}, "guided_decoding_backend": "xgrammar",
    "guided_whitespace_pattern": r"[ ]?", "model": "Qwen/Qwen3-1.7B",
    "chat_template_kwargs": {"enable_thinking": False}, "add_special_tokens": True,
    "add_generation_prompt": False, "continue_final_message": True,
    "truncate_prompt_tokens": 100, "priority": 1, "user": "ana", "logits_processors": ["x"],
    "extra_body": {"foo": 1},
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": "none",
}

# Out-of-range values per numeric field (vLLM's validation).
INVALID = {
    "temperature": [-0.1], "top_p": [0, 1.01, -1], "top_k": [-2, 1.5], "min_p": [-0.1, 1.1],
    "repetition_penalty": [0, -1], "presence_penalty": [-2.1, 2.1], "frequency_penalty": [3],
    "seed": [-2], "n": [0], "max_tokens": [0], "min_tokens": [-1], "top_logprobs": [21, -1],
    "prompt_logprobs": [-1, 21], "truncate_prompt_tokens": [0], "guided_choice": [[], [""]],
    "guided_regex": ["(unclosed"], "guided_json": [{"type": "nope"}, "{not json"],
    "response_format": [{"type": "xml"}, {"type": "json_schema"}], "stop": ["", [""]],
    "allowed_token_ids": [[], [-1]], "stop_token_ids": [[-5]], "guided_grammar": ["   "],
    "logit_bias": [{"a": 1}], "use_beam_search": ["maybe"],
    "tools": [[{"type": "function"}], [{"type": "function", "function": {"name": "f", "parameters": {"type": 3}}}]],
    "tool_choice": ["sometimes", "required", {"type": "function", "function": {"name": "missing"}}],
}


def test_every_field_has_a_valid_example_and_metadata():
    assert set(VALID) == set(gs.Params.names())
    for spec in gs.Params.specs():
        assert spec.group in GROUPS
        assert spec.help_es and spec.help_en and spec.help_es != spec.help_en


def test_seed_parameters_are_all_declared():
    seed_doc = open(__file__.replace("tests/test_params.py", "../shared/seed/chat-completions.md")).read()
    import re

    documented = set(re.findall(r"^- `(\w+)` \(", seed_doc, re.M))
    assert documented and documented <= set(gs.Params.names())


@pytest.mark.parametrize("name", sorted(VALID))
def test_each_field_accepted_and_serialised(name):
    extra = {"top_logprobs": {"logprobs": True},
             "continue_final_message": {"add_generation_prompt": False}}.get(name, {})
    p = gs.Params(**{name: VALID[name]}, **extra)
    req = p.to_request()
    if name == "extra_body":
        assert req == {"foo": 1}
    elif name == "logit_bias":
        assert req == {"logit_bias": {"17": 5.0}}
    else:
        assert req[name] == VALID[name]
    json.dumps(req)  # JSON-ready
    assert gs.Params.from_request(json.loads(json.dumps(req))) == p


def test_continue_final_message_needs_add_generation_prompt_off():
    with pytest.raises(gs.ParamsError, match="needs add_generation_prompt=False"):
        gs.Params(continue_final_message=True)
    with pytest.raises(gs.ParamsError, match="continue_final_message"):
        gs.Params(continue_final_message=True, add_generation_prompt=True)
    p = gs.Params(continue_final_message=True, add_generation_prompt=False)
    assert p.to_request() == {"continue_final_message": True, "add_generation_prompt": False}


@pytest.mark.parametrize("name,value", [(k, v) for k, vs in INVALID.items() for v in vs])
def test_out_of_range_rejected_naming_field(name, value):
    with pytest.raises(gs.ParamsError) as ei:
        gs.Params(**{name: value})
    assert ei.value.field == name
    assert name in str(ei.value)


def test_only_set_fields_are_sent():
    assert gs.Params().to_request() == {}
    assert gs.Params(temperature=0).to_request() == {"temperature": 0}


def test_immutable_and_replace():
    p = gs.Params(temperature=0.7, top_k=20)
    with pytest.raises(Exception):
        p.temperature = 1.0  # type: ignore[misc]
    q = p.replace(top_k=None, max_tokens=5)
    assert q.to_request() == {"temperature": 0.7, "max_tokens": 5}
    assert p.to_request() == {"temperature": 0.7, "top_k": 20}
    with pytest.raises(gs.ParamsError, match="temperature"):
        p.replace(temperature=-1)


def test_equality_and_hash_ignore_order_and_work_with_dicts():
    a = gs.Params(temperature=0.5, guided_json={"type": "object"}, logit_bias={1: 2.0})
    b = gs.Params(logit_bias={1: 2.0}, guided_json={"type": "object"}, temperature=0.5)
    assert a == b and hash(a) == hash(b)
    assert len({a, b, gs.Params(temperature=0.6)}) == 2


def test_unknown_field_suggests_the_right_name():
    with pytest.raises(gs.ParamsError, match="did you mean 'temperature'"):
        gs.Params(temprature=1)


@pytest.mark.parametrize("kw,field", [
    (dict(min_tokens=10, max_tokens=5), "min_tokens"),
    (dict(top_logprobs=3), "top_logprobs"),
    (dict(prompt_logprobs=1, stream=True), "prompt_logprobs"),
    (dict(guided_regex="a", guided_choice=["a"]), "guided_choice"),
    (dict(guided_json={"type": "object"}, response_format={"type": "json_object"}), "response_format"),
    (dict(use_beam_search=True, stream=True), "use_beam_search"),
])
def test_cross_field_rules(kw, field):
    with pytest.raises(gs.ParamsError) as ei:
        gs.Params(**kw)
    assert ei.value.field == field


def test_error_message_names_value_and_what_is_allowed():
    with pytest.raises(gs.ParamsError) as ei:
        gs.Params(top_p=1.5)
    msg = str(ei.value)
    assert "top_p=1.5" in msg and "<= 1" in msg


def test_guided_kind_and_text_response_format():
    assert gs.Params(guided_choice=["a"]).guided_kind == "guided_choice"
    assert gs.Params(response_format={"type": "text"}, guided_regex="a").guided_kind == "guided_regex"
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    assert gs.Params(response_format=rf).guided_kind == "guided_json"
    assert gs.Params(response_format={"type": "json_object"}).guided_kind == "json_object"


def test_structured_outputs_spelling_round_trip():
    p = gs.Params(guided_regex=r"\d+", guided_decoding_backend="xgrammar", max_tokens=3)
    req = p.to_request(spelling="structured_outputs")
    assert req == {"max_tokens": 3, "structured_outputs": {"regex": r"\d+"}}
    assert gs.Params.from_request(req).guided_regex == r"\d+"


def test_from_request_ignores_messages_and_keeps_unknown_keys_in_extra_body():
    p = gs.Params.from_request({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                "max_tokens": 3, "vendor_flag": True})
    assert p.max_tokens == 3 and p.model == "m" and p.extra_body == {"vendor_flag": True}
    assert p.to_request() == {"max_tokens": 3, "model": "m", "vendor_flag": True}


def test_to_row_has_one_column_per_parameter():
    row = gs.Params(stop=["a"], temperature=1).to_row()
    assert list(row) == list(gs.Params.names())
    assert row["stop"] == '["a"]' and row["temperature"] == 1 and row["top_k"] is None


def test_enable_thinking_shortcut():
    assert gs.Params(chat_template_kwargs={"enable_thinking": False}).enable_thinking is False
    assert gs.Params().enable_thinking is None
