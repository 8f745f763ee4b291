"""Copy-as-code snippets: valid code in each language, the exact request, and never a key."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gsexplore.panels import codegen
from gsexplore.params import Params

KEY = "sk-live-THIS-MUST-NEVER-APPEAR-0123"
TRICKY = "Sé breve: 'comillas' \"dobles\" $HOME `uname` \\ barra \u2028 fin\n¿sí? 😊"
PARAMS = [
    Params(),
    Params(temperature=0.7, top_k=20, max_tokens=128, repetition_penalty=1.1, guided_regex=".*\\?$"),
    Params(logit_bias={12: 3.0, 7: -100}, stop=["it's", "\n\n"], chat_template_kwargs={"enable_thinking": False},
           guided_json={"type": "object", "properties": {"nombre": {"type": "string"}}}),
    Params(guided_choice=["sí", "no"], seed=3, stream=True),
]
MESSAGES = [{"role": "system", "content": TRICKY}, {"role": "user", "content": "Hola, ¿cómo estás?"}]


def _expected(p: Params, spelling: str = "guided") -> dict:
    return {"model": "Qwen/Qwen3-1.7B", "messages": MESSAGES, **p.to_request(spelling=spelling)}


@pytest.fixture(autouse=True)
def _key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GS_API_KEY", KEY)  # even when the key is at hand, no snippet may hold it


@pytest.mark.parametrize("p", PARAMS)
def test_python_snippet_compiles_and_builds_the_request(p: Params, tmp_path: Path) -> None:
    code = codegen.to_python(None, p, MESSAGES, None)
    assert KEY not in code and 'os.environ["GS_API_KEY"]' in code
    f = tmp_path / "snippet.py"
    f.write_text(code, encoding="utf-8")
    subprocess.run([sys.executable, "-c", "import sys; compile(open(sys.argv[1], encoding='utf-8').read(), "
                    "sys.argv[1], 'exec')", str(f)], check=True)
    # run it up to the request: the data it would send is the request, exactly
    ns: dict = {}
    exec(code.split("response = requests.post")[0].split("with requests.post")[0], ns)  # noqa: S102
    assert ns["data"] == json.loads(json.dumps(_expected(p)))
    assert ns["API_URL"] == "https://api.gradientesur.com/functions/v1/chat/completions"
    assert ns["headers"] == {"Authorization": "Bearer " + KEY}  # read from the environment at run time


@pytest.mark.parametrize("p", PARAMS)
def test_curl_snippet_json_parses(p: Params) -> None:
    code = codegen.to_curl("https://example.org/v1/", p, MESSAGES, "m")
    assert KEY not in code and '"Authorization: Bearer $GS_API_KEY"' in code
    args = shlex.split(code.replace("\\\n", " "))
    assert args[:3] == ["curl", "-X", "POST"] and args[3] == "https://example.org/v1/chat/completions"
    body = json.loads(args[args.index("-d") + 1])
    assert body == json.loads(json.dumps({**_expected(p), "model": "m"}))
    assert ("-N" in args) == bool(p.stream)


def test_curl_snippet_is_valid_bash_and_expands_the_key_variable(tmp_path: Path) -> None:
    code = codegen.to_curl(None, PARAMS[2], MESSAGES, None)
    fake = tmp_path / "curl"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\0" "$a"; done\n')
    fake.chmod(0o755)
    out = subprocess.run(["bash", "-c", code], capture_output=True, check=True,
                         env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}).stdout
    args = out.decode("utf-8").split("\0")[:-1]
    assert f"Authorization: Bearer {KEY}" in args  # the shell fills in $GS_API_KEY
    assert json.loads(args[args.index("-d") + 1]) == json.loads(json.dumps(_expected(PARAMS[2])))


@pytest.mark.parametrize("p", PARAMS)
def test_javascript_snippet_is_valid(p: Params, tmp_path: Path) -> None:
    code = codegen.to_javascript(None, p, MESSAGES, None)
    assert KEY not in code and "process.env.GS_API_KEY" in code
    node = shutil.which("node")
    assert node, "Node.js is missing: `sudo apt-get install nodejs` (make test does it)"
    f = tmp_path / "snippet.js"
    f.write_text(code, encoding="utf-8")
    subprocess.run([node, "--check", str(f)], check=True)
    # evaluate the body expression the snippet sends, with fetch stubbed out
    stub = ("globalThis.fetch = (url, opts) => { process.stdout.write(JSON.stringify({url, opts})); "
            "return new Promise(() => {}); };\n")
    f.write_text(stub + code, encoding="utf-8")
    out = subprocess.run([node, str(f)], capture_output=True, check=True, timeout=30).stdout
    sent = json.loads(out)
    assert sent["url"] == "https://api.gradientesur.com/functions/v1/chat/completions"
    assert sent["opts"]["headers"]["Authorization"] == "Bearer " + KEY
    assert json.loads(sent["opts"]["body"]) == json.loads(json.dumps(_expected(p)))


def test_structured_outputs_spelling_and_model_override() -> None:
    p = Params(guided_choice=["a", "b"], model="otro/modelo")
    body = codegen.request_body(p, "hola", "ignored", spelling="structured_outputs")
    assert body["structured_outputs"] == {"choice": ["a", "b"]} and "guided_choice" not in body
    assert body["model"] == "otro/modelo" and body["messages"] == [{"role": "user", "content": "hola"}]
    snips = codegen.snippets("http://localhost:8000/v1", p, "hola", spelling="structured_outputs")
    assert set(snips) == {"cURL", "Python", "JavaScript"}
    assert all("structured_outputs" in s and "localhost:8000/v1/chat/completions" in s for s in snips.values())


def test_functions_take_no_key() -> None:
    import inspect

    for f in (codegen.to_curl, codegen.to_python, codegen.to_javascript, codegen.snippets):
        assert not any("key" in name for name in inspect.signature(f).parameters)
