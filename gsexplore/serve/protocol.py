"""The request bodies `gsexplore serve` accepts, as pydantic models built from `Params` (no second list).

Strict on shapes, lenient on fields, as vLLM's ``protocol.py``:

* ``messages``: a non-empty list; each ``content`` a string or a list of text parts
  (joined with "\\n", as vLLM joins them for a string-content template such as
  Qwen3's); null only on an assistant message with ``tool_calls`` (OpenAI's rule);
  a non-text part (``image_url``, ``input_audio``, ...) is a 400 naming it.
* Every `Params` field with its type and range; ``max_completion_tokens`` is
  ``max_tokens`` (vLLM prefers it); ``structured_outputs`` is the >= 0.11 spelling.
* Unknown fields are kept in ``model_extra``: the server logs them in one warning
  and ignores them (vLLM: "The following fields were present in the request but
  ignored"), except `UNHONOURED` ones, which would change the output: 400.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from ..params import Params

__all__ = ["ChatCompletionRequest", "CompletionRequest", "TokenizeRequest", "DetokenizeRequest",
           "UNHONOURED", "MAX_JSON_DEPTH", "params_data", "to_template_messages", "json_depth"]

#: The deepest nesting of lists and objects a request body may have (vLLM has no limit of its own;
#: Python's JSON parser fails near 1,000 levels, so the server answers 400 well before).
MAX_JSON_DEPTH = 64

#: Fields vLLM knows that would change the output and that the local engine cannot honour.
UNHONOURED = {
    "echo": "echoing the prompt into a chat answer is not implemented",
    "chat_template": "a per-request chat template is not accepted; the model's own is used",
    "bad_words": "bad_words is not implemented locally",
    "audio": "this server produces text only",
    "prediction": "predicted outputs are not implemented",
    "best_of": "best_of is not implemented; draw n answers instead",
    "suffix": "suffix is not supported (vLLM refuses it too)",
    "continuous_usage_stats": "usage in every chunk is not implemented; use stream_options.include_usage",
}
#: Params fields that are not request fields on the wire.
_NOT_WIRE = {"extra_body", "stream"}


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextPart(_Open):
    """An OpenAI content part; only ``{"type": "text", "text": ...}`` is accepted."""

    type: Literal["text"] = "text"
    text: str


class FunctionCall(_Open):
    name: str
    arguments: str = "{}"


class ToolCall(_Open):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Open):
    """One message of ``messages``."""

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: Union[str, list[TextPart], None] = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _parts(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("content"), list):
            for i, part in enumerate(data["content"]):
                kind = part.get("type", "text") if isinstance(part, dict) else type(part).__name__
                if kind not in ("text", "refusal"):
                    raise ValueError(f"content[{i}] has type {kind!r}: this model takes text only "
                                     "(a part must be {'type': 'text', 'text': ...})")
                if kind == "refusal" and isinstance(part, dict):
                    data = {**data, "content": [*data["content"][:i], {"type": "text", "text": part.get("refusal")},
                                                *data["content"][i + 1:]]}
        return data

    @model_validator(mode="after")
    def _null_content(self) -> ChatMessage:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(f"a {self.role} message needs content (null content is allowed only on an "
                             "assistant message with tool_calls)")
        return self


class StreamOptions(_Open):
    include_usage: bool | None = None
    continuous_usage_stats: bool | None = None


def _param_fields() -> dict[str, Any]:
    out = {}
    for name, f in Params.model_fields.items():
        if name in _NOT_WIRE:
            continue
        g = copy.copy(f)
        g.json_schema_extra = None
        out[name] = (f.annotation, g)
    return out


class _RequestBase(_Open):
    """The fields every generating request shares."""

    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1)
    structured_outputs: dict[str, Any] | None = None


_FIELDS = _param_fields()

ChatCompletionRequest = create_model(  # type: ignore[call-overload]
    "ChatCompletionRequest", __base__=_RequestBase, __doc__="POST /v1/chat/completions",
    messages=(list[ChatMessage], Field(min_length=1)), **_FIELDS)

CompletionRequest = create_model(  # type: ignore[call-overload]
    "CompletionRequest", __base__=_RequestBase, __doc__="POST /v1/completions (a raw prompt, no chat template)",
    prompt=(Union[str, list[str], list[int]], ...), echo=(Union[bool, None], None),
    **{k: v for k, v in _FIELDS.items() if k not in ("logprobs", "top_logprobs", "tools", "tool_choice",
                                                      "chat_template_kwargs", "add_generation_prompt",
                                                      "continue_final_message")},
    logprobs=(Union[int, None], Field(default=None, ge=0, le=20)))


class TokenizeRequest(_Open):
    """POST /tokenize: a ``prompt`` (as /v1/completions) or chat ``messages`` (as /v1/chat/completions)."""

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    add_special_tokens: bool | None = None
    add_generation_prompt: bool | None = None
    continue_final_message: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    return_token_strs: bool | None = False

    @model_validator(mode="after")
    def _one(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give either prompt or messages")
        return self


class DetokenizeRequest(_Open):
    """POST /detokenize."""

    model: str | None = None
    tokens: list[int]


def params_data(req: BaseModel) -> dict[str, Any]:
    """The request's `Params` fields (for ``Params.from_request``), as the client set them."""
    names = set(Params.names())
    data = {k: getattr(req, k) for k in req.model_fields_set if k in names and getattr(req, k) is not None}
    if not isinstance(data.get("logprobs", False), bool):  # /v1/completions' logprobs=N: N top logprobs
        data["top_logprobs"], data["logprobs"] = data["logprobs"], True
    mct = getattr(req, "max_completion_tokens", None)
    if mct is not None:
        data["max_tokens"] = mct
    so = getattr(req, "structured_outputs", None)
    if so is not None:
        data["structured_outputs"] = so
    if getattr(req, "stream", None):
        data["stream"] = True
    return data


def to_template_messages(msgs: list[ChatMessage]) -> list[dict[str, Any]]:
    """Messages as the chat template sees them: text parts joined, tool-call arguments as objects (vLLM)."""
    out = []
    for m in msgs:
        d: dict[str, Any] = {"role": m.role}
        c = m.content
        # vLLM: parts joined with "\n"; null content (assistant with tool_calls) becomes no parts: ""
        d["content"] = "\n".join(p.text for p in c) if isinstance(c, list) else (c or "")
        for k in ("name", "tool_call_id", "reasoning_content"):
            if getattr(m, k) is not None:
                d[k] = getattr(m, k)
        if m.tool_calls:
            calls = []
            for tc in m.tool_calls:
                try:
                    args: Any = json.loads(tc.function.arguments)
                except ValueError:
                    args = tc.function.arguments
                calls.append({"id": tc.id, "type": "function",
                              "function": {"name": tc.function.name, "arguments": args}})
            d["tool_calls"] = calls
        out.append(d)
    return out


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests lists and dicts (iteratively: no recursion limit)."""
    depth, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            depth = max(depth, d)
            stack.extend((x, d + 1) for x in v if isinstance(x, (list, dict)))
    return depth
