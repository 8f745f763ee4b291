"""schemathesis against `gsexplore serve`'s own OpenAPI schema, on 127.0.0.1 and the tiny Qwen3.

Positive and negative generated requests to every POST operation, bounded in count
(``EXAMPLES`` per operation and mode) and time (max_tokens capped at 4 by the server):
no 5xx, every error in vLLM's shape, and the server still answers a normal request after.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from gsexplore.serve import ServerThread, create_app

KEY = "clave-fuzz-5d21"
EXAMPLES = 40
OPERATIONS = [("/v1/chat/completions", "POST"), ("/v1/completions", "POST"), ("/tokenize", "POST"),
              ("/detokenize", "POST")]
SEEN: dict[str, int] = {}


@pytest.fixture(scope="module")
def fuzz_srv(tiny_backend):
    app = create_app([tiny_backend], api_keys={KEY}, served_model_names=["tiny-qwen3"], max_tokens_cap=4, max_n=2)
    with ServerThread(app) as s:
        s.schema = schemathesis.openapi.from_dict(_served_models_only(app.openapi(), ["tiny-qwen3"]))
        yield s
    print("schemathesis requests by status:", dict(sorted(SEEN.items())))


def _served_models_only(spec: dict, names: list[str]) -> dict:
    """The schema with ``model`` limited to the served names, so positive cases reach generation."""
    for schema in spec.get("components", {}).get("schemas", {}).values():
        props = schema.get("properties", {})
        if "model" in props:
            props["model"] = {"type": "string", "enum": names}
    return spec


def _check(resp) -> None:
    SEEN[str(resp.status_code)] = SEEN.get(str(resp.status_code), 0) + 1
    assert resp.status_code < 500, (resp.status_code, resp.text[:500])
    if resp.status_code >= 400:
        body = resp.json()
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
        assert body["error"]["code"] == resp.status_code


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize("path,method", OPERATIONS)
def test_generated_requests_never_get_a_5xx(fuzz_srv, path, method, mode):
    op = fuzz_srv.schema[path][method]

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case):
        resp = case.call(base_url=fuzz_srv.base, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
        _check(resp)

    run()
    ok = httpx.post(fuzz_srv.base + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                    json={"messages": [{"role": "user", "content": "Hola"}], "max_tokens": 2}, timeout=60)
    assert ok.status_code == 200, ok.text  # still serving
