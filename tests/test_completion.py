"""Completion: the seed's example response parses field for field."""

import json
import re
from pathlib import Path

import gsexplore as gs
from gsexplore.completion import Completion

SEED = Path(__file__).resolve().parents[2] / "shared" / "seed" / "chat-completions.md"


def seed_response() -> dict:
    text = SEED.read_text()
    block = re.search(r"## Ejemplo de respuesta:\s*```json\n(.*?)```", text, re.S).group(1)
    return json.loads(block)


def test_seed_example_parses_field_for_field():
    resp = seed_response()
    p = gs.Params(max_tokens=200)
    msgs = [{"role": "user", "content": "Hola, cómo estás?"}]
    c = Completion.from_response(resp, backend="remote", params=p, messages=msgs, latency_s=2.0)
    ch = resp["choices"][0]
    assert c.content == ch["message"]["content"]
    assert c.reasoning_content == ch["message"]["reasoning_content"]
    assert c.tool_calls == []
    assert c.finish_reason == "stop" and c.stop_reason is None
    assert c.usage.prompt_tokens == 14 and c.usage.completion_tokens == 216 and c.usage.total_tokens == 230
    assert c.logprobs is None and c.prompt_logprobs is None
    assert c.model == "Qwen/Qwen3-1.7B" and c.id == resp["id"]
    assert c.raw is resp and c.params == p and c.prompt == "Hola, cómo estás?"
    assert c.tokens_per_s == 108.0
    assert c.choices == [c]


def test_newer_vllm_reasoning_field_and_missing_fields():
    resp = {"choices": [{"message": {"content": "hi", "reasoning": "think"}}]}
    c = Completion.from_response(resp)
    assert c.reasoning_content == "think" and c.usage.total_tokens is None and c.stop_reason is None


def test_n_choices_are_all_kept():
    resp = {"choices": [{"index": i, "message": {"content": str(i)}, "finish_reason": "length"} for i in range(3)]}
    c = Completion.from_response(resp)
    assert [x.content for x in c.choices] == ["0", "1", "2"]
    assert all(x.choices is c.choices for x in c.choices)


def test_logprobs_become_plain_floats():
    import numpy as np

    lp = {"content": [{"token": "a", "logprob": np.float32(-0.5), "top_logprobs": []}]}
    c = Completion.from_response({"choices": [{"message": {"content": "a"}, "logprobs": lp}]})
    assert type(c.logprobs[0]["logprob"]) is float


def test_row_is_flat_with_every_parameter():
    c = Completion.from_response(seed_response(), params=gs.Params(temperature=0.2, stop=["x"]),
                                 backend="remote", latency_s=1.0)
    row = c.to_row()
    assert row["temperature"] == 0.2 and row["stop"] == '["x"]' and row["top_k"] is None
    assert set(gs.Params.names()) <= set(row)
    assert all(not isinstance(v, (dict, list)) for v in row.values())


def test_row_model_is_the_model_that_answered():
    # Params.model unset (the backend's default applies) must not blank the served model
    c = Completion.from_response(seed_response(), params=gs.Params(), backend="remote")
    assert c.to_row()["model"] == seed_response()["model"]


def test_html_repr_shows_reasoning_collapsed_and_usage():
    c = Completion.from_response(seed_response(), latency_s=1.5)
    h = c._repr_html_()
    assert "<details>" in h and "216 completion" in h and "stop" in h and "1.500" in h
    assert "&lt;" not in c.content and "Estoy bien" in h


def test_the_record_builds_no_wire_json():
    import ast
    from pathlib import Path

    import gsexplore

    tree = ast.parse((Path(gsexplore.__file__).parent / "completion.py").read_text())
    top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.level}
    anywhere = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level}
    assert top == {"errors", "params"} and "wire" not in anywhere
    from gsexplore.completion import Usage
    from gsexplore.wire import usage_dict

    u = Usage(3, 2, 5)
    assert usage_dict(u) == {"prompt_tokens": 3, "total_tokens": 5, "completion_tokens": 2,
                             "prompt_tokens_details": None}
    assert u.to_dict() == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "reasoning_tokens": None}
