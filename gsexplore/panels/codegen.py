"""The current request as code to copy: cURL, Python (requests) and JavaScript (fetch).

The key is always read from the environment variable GS_API_KEY (``$GS_API_KEY``,
``os.environ["GS_API_KEY"]``, ``process.env.GS_API_KEY``): these functions never
take a key, so none can end up in a snippet.
"""

from __future__ import annotations

import json
from typing import Any

from ..completion import MessagesLike
from ..params import Params
from ..wire import DEFAULT_BASE_URL, DEFAULT_MODEL, KEY_ENV, Spelling, request_body
from ..wire import py_literal as _py_literal

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MODEL", "request_body", "to_curl", "to_python", "to_javascript",
           "snippets"]


#: What a non-streaming Python or JavaScript snippet prints, in order: (label, Python
#: expression, JavaScript expression); ``message`` is the first choice's message and
#: ``answer`` (Python) / ``data`` (JavaScript) the whole response.
_PRINTED = (
    ("Razonamiento", 'message.get("reasoning_content") or message.get("reasoning")',
     "message.reasoning_content ?? message.reasoning"),
    ("Respuesta", 'message["content"]', "message.content"),
    ("Uso", 'answer["usage"]', "data.usage"),
)


def _url(base_url: str | None) -> str:
    return (base_url or DEFAULT_BASE_URL).rstrip("/") + "/chat/completions"


def _json(body: dict[str, Any], indent: int | None = 2) -> str:
    # U+2028/2029 are valid in JSON but ended JavaScript string literals before ES2019.
    text = json.dumps(body, ensure_ascii=False, indent=indent)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _sh_quote(s: str) -> str:
    return "'" + s.replace("'", "'\"'\"'") + "'"


def to_curl(base_url: str | None, params: Params | None, messages: MessagesLike,
            model: str | None = None, spelling: Spelling = "guided") -> str:
    """A cURL command (bash); the key comes from $GS_API_KEY."""
    body = request_body(params, messages, model, spelling)
    lines = [f"curl -X POST {_sh_quote(_url(base_url))}",
             f'  -H "Authorization: Bearer ${KEY_ENV}"',
             '  -H "Content-Type: application/json"']
    if body.get("stream"):
        lines.append("  -N")
    lines.append(f"  -d {_sh_quote(_json(body))}")
    return " \\\n".join(lines) + "\n"


def to_python(base_url: str | None, params: Params | None, messages: MessagesLike,
              model: str | None = None, spelling: Spelling = "guided") -> str:
    """A Python script with requests, like the API's own examples; the key from os.environ."""
    body = request_body(params, messages, model, spelling)
    data = _py_literal(body)
    out = [
        "import os",
        "",
        "import requests",
        "",
        f'GS_API_KEY = os.environ["{KEY_ENV}"]',
        f"API_URL = {_url(base_url)!r}",
        'headers = {"Authorization": "Bearer " + GS_API_KEY}',
        "",
        f"data = {data}",
        "",
    ]
    if body.get("stream"):
        out += [
            "import json",
            "",
            "with requests.post(API_URL, headers=headers, json=data, stream=True) as response:",
            "    response.raise_for_status()",
            "    for line in response.iter_lines():",
            '        if not line.startswith(b"data: ") or line == b"data: [DONE]":',
            "            continue",
            "        chunk = json.loads(line[6:])",
            '        for choice in chunk.get("choices", []):',
            '            delta = choice.get("delta", {})',
            '            print(delta.get("content") or "", end="", flush=True)',
            "print()",
        ]
    else:
        out += [
            "response = requests.post(API_URL, headers=headers, json=data)",
            "response.raise_for_status()",
            "answer = response.json()",
            'message = answer["choices"][0]["message"]',
            *(f'print("{label}:", {py})' for label, py, _ in _PRINTED),
        ]
    return "\n".join(out) + "\n"


def to_javascript(base_url: str | None, params: Params | None, messages: MessagesLike,
                  model: str | None = None, spelling: Spelling = "guided") -> str:
    """JavaScript (Node 18+ or a browser bundler) with fetch; the key from process.env."""
    body = request_body(params, messages, model, spelling)
    data = _json(body).replace("\n", "\n  ")
    out = [
        f"const GS_API_KEY = process.env.{KEY_ENV};",
        f"const API_URL = {json.dumps(_url(base_url))};",
        "",
        "fetch(API_URL, {",
        "  method: 'POST',",
        "  headers: {",
        "    'Authorization': 'Bearer ' + GS_API_KEY,",
        "    'Content-Type': 'application/json'",
        "  },",
        f"  body: JSON.stringify({data})",
        "})",
    ]
    if body.get("stream"):
        out += [
            "  .then(async (res) => {",
            "    const decoder = new TextDecoder();",
            "    for await (const bytes of res.body) {",
            "      process.stdout.write(decoder.decode(bytes, { stream: true }));",
            "    }",
            "  });",
        ]
    else:
        out += [
            "  .then((res) => res.json())",
            "  .then((data) => {",
            "    const message = data.choices[0].message;",
            *(f"    console.log('{label}:', {js});" for label, _, js in _PRINTED),
            "  });",
        ]
    return "\n".join(out) + "\n"


def snippets(base_url: str | None, params: Params | None, messages: MessagesLike,
             model: str | None = None, spelling: Spelling = "guided") -> dict[str, str]:
    """{"cURL": ..., "Python": ..., "JavaScript": ...} for the same request."""
    return {"cURL": to_curl(base_url, params, messages, model, spelling),
            "Python": to_python(base_url, params, messages, model, spelling),
            "JavaScript": to_javascript(base_url, params, messages, model, spelling)}
