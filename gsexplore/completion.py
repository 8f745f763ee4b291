"""The `Completion` record: one answer of one backend, and its flat row for DataFrames.

A request with ``n > 1`` gives one Completion per choice; the backends return the
first one, and all of them (itself included) in ``completion.choices``.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any, Union

from .errors import ParamsError
from .params import Params

Messages = list[dict[str, Any]]
MessagesLike = Union[str, Messages]


def to_messages(messages: MessagesLike) -> Messages:
    """A str becomes one user message; a list of {"role", "content"} dicts is checked and copied."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if not isinstance(messages, list) or not messages:
        raise ParamsError("messages must be a non-empty str or list of {'role', 'content'} dicts",
                          field="messages", value=messages)
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise ParamsError(f"messages[{i}] must be a dict with 'role' and 'content'",
                              field="messages", value=m)
        if m["role"] not in ("system", "user", "assistant", "tool", "developer"):
            raise ParamsError(f"messages[{i}].role={m['role']!r} is not allowed: "
                              "use system, user, assistant, tool or developer", field="messages", value=m)
    return [dict(m) for m in messages]


def last_user_text(messages: Messages) -> str:
    """The content of the last user message ("" when there is none); non-text content as JSON."""
    for m in reversed(messages):
        if m.get("role") == "user":
            c = m.get("content")
            return c if isinstance(c, str) else json.dumps(c, ensure_ascii=False)
    return ""


@dataclass
class Usage:
    """Token counts; reasoning_tokens is counted by gsexplore when the server does not say."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    reasoning_tokens: int | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Usage:
        """Usage from an OpenAI/vLLM usage object (missing keys become None)."""
        d = d or {}
        details = d.get("completion_tokens_details") or {}
        return cls(d.get("prompt_tokens"), d.get("completion_tokens"), d.get("total_tokens"),
                   d.get("reasoning_tokens", details.get("reasoning_tokens")))

    def to_dict(self) -> dict[str, Any]:
        """The counts as a dict (vLLM's wire object is ``gsexplore.wire.usage_dict(usage)``)."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens, "reasoning_tokens": self.reasoning_tokens}


@dataclass
class Completion:
    """One generated answer with everything needed to reproduce and compare it."""

    content: str | None
    reasoning_content: str | None = None
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    usage: Usage = field(default_factory=Usage)
    tool_calls: list[Any] = field(default_factory=list)
    logprobs: list[dict[str, Any]] | None = None  # [{"token", "logprob", "bytes", "top_logprobs": [...]}]
    prompt_logprobs: list[dict[str, Any] | None] | None = None
    latency_s: float | None = None
    ttft_s: float | None = None
    backend: str = ""
    model: str = ""
    params: Params = field(default_factory=Params)
    messages: Messages = field(default_factory=list)
    index: int = 0
    id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    info: dict[str, Any] = field(default_factory=dict)  # e.g. {"guided_semantics": "xgrammar"}
    choices: list[Completion] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not self.choices:
            self.choices = [self]

    # --- parsing ----------------------------------------------------------
    @classmethod
    def from_response(
        cls,
        resp: dict[str, Any],
        *,
        backend: str = "",
        params: Params | None = None,
        messages: Messages | None = None,
        latency_s: float | None = None,
        ttft_s: float | None = None,
    ) -> Completion:
        """Parse a Chat Completions response (vLLM 0.10-0.16 field names); returns choice 0 with all choices."""
        usage = Usage.from_dict(resp.get("usage"))
        out = []
        for i, ch in enumerate(resp.get("choices") or []):
            msg = ch.get("message") or {}
            reasoning = msg.get("reasoning_content")
            if reasoning is None:
                reasoning = msg.get("reasoning")
            lp = ch.get("logprobs")
            out.append(cls(
                content=msg.get("content"),
                reasoning_content=reasoning,
                finish_reason=ch.get("finish_reason"),
                stop_reason=ch.get("stop_reason"),
                usage=usage,
                tool_calls=msg.get("tool_calls") or [],
                logprobs=_plain(lp.get("content")) if isinstance(lp, dict) else None,
                prompt_logprobs=_plain(resp.get("prompt_logprobs")),
                latency_s=latency_s,
                ttft_s=ttft_s,
                backend=backend,
                model=resp.get("model", ""),
                params=params or Params(),
                messages=list(messages or []),
                index=ch.get("index", i),
                id=resp.get("id"),
                raw=resp,
            ))
        if not out:
            out.append(cls(content=None, usage=usage, backend=backend, model=resp.get("model", ""),
                           params=params or Params(), messages=list(messages or []), raw=resp,
                           latency_s=latency_s, ttft_s=ttft_s, id=resp.get("id")))
        for c in out:
            c.choices = out
        return out[0]

    # --- views --------------------------------------------------------------
    @property
    def text(self) -> str:
        """The content, or "" when there is none."""
        return self.content or ""

    @property
    def tokens_per_s(self) -> float | None:
        """Completion tokens over latency (all choices of the request share both)."""
        if self.usage.completion_tokens and self.latency_s:
            return self.usage.completion_tokens / self.latency_s
        return None

    @property
    def prompt(self) -> str:
        """The text of the last user message."""
        return last_user_text(self.messages)

    # The two views below live in the modules above the record (`gsexplore.tokens`,
    # `gsexplore.row`); these are call-time shorthands kept for notebooks and panels that
    # call them. The record itself computes no tokens, rows or wire JSON.
    def tokens(self) -> Any:
        """Shorthand for ``gsexplore.tokens.Tokens(c)``: the generated tokens with probabilities and alternatives."""
        from .tokens import Tokens

        return Tokens(self)

    def to_row(self) -> dict[str, Any]:
        """Shorthand for ``gsexplore.row.completion_row(c)``: the flat dict of a table row."""
        from .row import completion_row

        return completion_row(self)

    def __repr__(self) -> str:
        text = (self.content or "")[:60]
        return (f"Completion(content={text!r}{'...' if len(self.content or '') > 60 else ''}, "
                f"finish_reason={self.finish_reason!r}, backend={self.backend!r}, "
                f"tokens={self.usage.completion_tokens}, latency_s={_fmt(self.latency_s)})")

    def _repr_html_(self) -> str:
        esc = html.escape
        parts = ['<div class="gs-completion" style="font-family:sans-serif">']
        if self.reasoning_content:
            parts.append("<details><summary><b>Razonamiento / reasoning</b> "
                         f"({self.usage.reasoning_tokens or '?'} tokens)</summary>"
                         f'<pre style="white-space:pre-wrap;color:#555">{esc(self.reasoning_content)}</pre></details>')
        parts.append(f'<pre style="white-space:pre-wrap">{esc(self.content or "")}</pre>')
        u = self.usage
        parts.append(
            '<div style="color:#666;font-size:smaller">'
            f"finish_reason: <b>{esc(str(self.finish_reason))}</b>"
            + (f" ({esc(str(self.stop_reason))})" if self.stop_reason is not None else "")
            + f" · tokens: {u.prompt_tokens} prompt + {u.completion_tokens} completion"
            + f" · latency: {_fmt(self.latency_s)} s"
            + (f" · {self.tokens_per_s:.1f} tok/s" if self.tokens_per_s else "")
            + f" · {esc(self.backend)} {esc(self.model)}</div></div>")
        return "".join(parts)


def _fmt(x: float | None) -> str:
    return "None" if x is None else f"{x:.3f}"


def _plain(obj: Any) -> Any:
    """Deep copy with numpy scalars turned into Python floats/ints."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return obj
