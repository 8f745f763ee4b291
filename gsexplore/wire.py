"""vLLM's JSON in one place: the request body, the response, chunk and error shapes, the defaults.

Everything that writes Chat Completions JSON (RemoteBackend, the code snippets, the
local backend, ``gsexplore serve``) builds it here, so a change of vLLM's dialect is
a change of this module.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from .completion import Completion, MessagesLike, Usage, to_messages
from .params import Params

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MODEL", "KEY_ENV", "Spelling", "request_body", "py_literal",
           "new_id", "message", "choice", "chat_response", "completion_response", "text_logprobs", "text_response",
           "chunk", "sse", "error_body", "usage_dict", "DONE", "BATCH_CHAT_URL", "batch_request_line",
           "batch_output_line"]

DEFAULT_BASE_URL = "https://api.gradientesur.com/functions/v1"
DEFAULT_MODEL = "Qwen/Qwen3-1.7B"
KEY_ENV = "GS_API_KEY"

Spelling = Literal["guided", "structured_outputs"]

DONE = b"data: [DONE]\n\n"


# --- requests -----------------------------------------------------------------
def request_body(params: Params | None, messages: MessagesLike, model: str | None = None,
                 spelling: Spelling = "guided", *, include_usage: bool = False) -> dict[str, Any]:
    """The JSON body: model, messages, then only the parameters that are set.

    ``include_usage``: a streaming body asks for the usage chunk (``stream_options``),
    as RemoteBackend does; snippets leave the body as the user set it.
    """
    params = params if params is not None else Params()
    fields = params.to_request(spelling=spelling)
    body: dict[str, Any] = {"model": fields.pop("model", None) or model or DEFAULT_MODEL,
                            "messages": to_messages(messages)}
    if not include_usage:
        body.update(fields)
        return body
    stream = fields.pop("stream", None)
    body.update(fields)
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True, **(fields.get("stream_options") or {})}
    return body


def py_literal(obj: Any, indent: int = 0) -> str:
    """A Python literal of JSON data, indented like json.dumps(indent=4); short containers stay on one line."""
    if isinstance(obj, (dict, list)):
        flat = repr(obj)
        if len(flat) + indent <= 80 and "\n" not in flat:
            return flat
        pad, inner = " " * indent, " " * (indent + 4)
        if isinstance(obj, dict):
            items = [f"{inner}{k!r}: {py_literal(v, indent + 4)}" for k, v in obj.items()]
            return "{\n" + ",\n".join(items) + f",\n{pad}}}"
        items = [f"{inner}{py_literal(v, indent + 4)}" for v in obj]
        return "[\n" + ",\n".join(items) + f",\n{pad}]"
    return repr(obj)


# --- responses ----------------------------------------------------------------
def new_id(prefix: str = "chatcmpl") -> str:
    """A fresh response id (``chatcmpl-<hex>``, ``cmpl-<hex>`` for /v1/completions)."""
    return f"{prefix}-{uuid.uuid4().hex}"


def usage_dict(usage: Usage) -> dict[str, Any]:
    """vLLM's usage object of a Completion's counts."""
    return {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens,
            "completion_tokens": usage.completion_tokens, "prompt_tokens_details": None}


def message(content: str | None, reasoning_content: str | None = None, tool_calls: list[Any] | None = None,
            role: str = "assistant") -> dict[str, Any]:
    """An assistant message with vLLM's fields (``reasoning_content`` as vLLM 0.10-0.15 name it)."""
    return {"role": role, "reasoning_content": reasoning_content, "content": content,
            "tool_calls": list(tool_calls or [])}


def choice(index: int, msg: dict[str, Any], logprobs: list[dict[str, Any]] | None,
           finish_reason: str | None, stop_reason: Any) -> dict[str, Any]:
    """One choice of a non-streaming response."""
    return {"index": index, "message": msg,
            "logprobs": None if logprobs is None else {"content": logprobs},
            "finish_reason": finish_reason, "stop_reason": stop_reason}


def chat_response(id_: str | None, model: str, choices: list[dict[str, Any]], usage: dict[str, Any] | None,
                  prompt_logprobs: Any, created: int | None) -> dict[str, Any]:
    """A ``chat.completion`` response."""
    return {"id": id_, "object": "chat.completion", "created": created,
            "model": model, "choices": choices, "usage": usage, "prompt_logprobs": prompt_logprobs}


def completion_response(c: Completion, model: str) -> dict[str, Any]:
    """vLLM's non-streaming response for a Completion (its `raw` when the backend built one)."""
    raw = dict(c.raw) if c.raw and "choices" in c.raw else {}
    if not raw:
        raw = chat_response(
            c.id or new_id(), model,
            [choice(ch.index, message(ch.content, ch.reasoning_content, ch.tool_calls), ch.logprobs,
                    ch.finish_reason, ch.stop_reason) for ch in c.choices],
            usage_dict(c.usage), c.prompt_logprobs, int(time.time()))
    raw["model"] = model
    if not raw.get("id"):
        raw["id"] = new_id()
    elif not str(raw["id"]).startswith("chatcmpl-"):
        raw["id"] = f"chatcmpl-{raw['id']}"
    return raw


def text_logprobs(entries: list[dict[str, Any]] | None, top_n: int, offset: int = 0) -> dict[str, Any] | None:
    """/v1/completions' logprobs object (``tokens``, ``token_logprobs``, ``top_logprobs``, ``text_offset``)
    from chat-shaped logprob entries; each ``top_logprobs`` dict holds the sampled token and the
    ``top_n`` most likely (vLLM's); the list is empty when ``top_n`` is 0 (``logprobs=0``)."""
    if entries is None:
        return None
    out: dict[str, Any] = {"text_offset": [], "token_logprobs": [], "tokens": [], "top_logprobs": []}
    for e in entries:
        out["text_offset"].append(offset)
        out["tokens"].append(e["token"])
        out["token_logprobs"].append(e["logprob"])
        offset += len(e["token"])
        if top_n:
            top = {e["token"]: e["logprob"]}
            top.update((t["token"], t["logprob"]) for t in (e.get("top_logprobs") or [])[:top_n])
            out["top_logprobs"].append(top)
    return out


def text_response(c: Completion, model: str, echo: str | None = None) -> dict[str, Any]:
    """vLLM's /v1/completions response (``text_completion``) for a Completion."""
    top_n = int(c.params.top_logprobs or 0)
    return {
        "id": new_id("cmpl"), "object": "text_completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": ch.index, "text": (echo or "") + (ch.content or ""),
                     "logprobs": text_logprobs(ch.logprobs, top_n, len(echo or "")),
                     "finish_reason": ch.finish_reason, "stop_reason": ch.stop_reason,
                     "prompt_logprobs": None} for ch in c.choices],
        "usage": usage_dict(c.usage),
    }


def chunk(id_: str, created: int, model: str, choices: list[dict[str, Any]], *, text: bool = False,
          **extra: Any) -> dict[str, Any]:
    """A streaming chunk (``text``: /v1/completions' ``text_completion`` object)."""
    return {"id": id_, "object": "text_completion" if text else "chat.completion.chunk", "created": created,
            "model": model, "choices": choices, **extra}


def sse(obj: dict[str, Any]) -> bytes:
    """One server-sent event carrying ``obj`` as JSON."""
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


def error_body(status: int, message: str, type_: str = "BadRequestError", param: str | None = None) -> dict[str, Any]:
    """vLLM's error shape (0.10.1 and later)."""
    return {"error": {"message": message, "type": type_, "param": param, "code": status}}


# --- batch files (OpenAI's Batch API, vLLM's run-batch) -------------------------
BATCH_CHAT_URL = "/v1/chat/completions"


def batch_request_line(custom_id: str, body: dict[str, Any], url: str = BATCH_CHAT_URL) -> dict[str, Any]:
    """One line of a batch input file (vLLM's ``BatchRequestInput``)."""
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def batch_output_line(custom_id: str | None, status: int, body: dict[str, Any] | None,
                      error: dict[str, Any] | str | None = None, prefix: str = "gsexplore") -> dict[str, Any]:
    """One line of a batch output file (vLLM's ``BatchRequestOutput``): a response ``body`` with status 200,
    or an error status with ``body`` None and the error beside it, as vLLM writes a failed request."""
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "custom_id": custom_id,
            "response": {"status_code": status, "request_id": f"{prefix}-batch-{uuid.uuid4().hex}", "body": body},
            "error": error}
