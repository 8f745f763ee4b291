"""HTTP plumbing of the remote backend: error mapping, retry policy, SSE assembly, secret scrubbing.

Nothing here does I/O, so the sync and async clients in `remote.py` share all of it
and differ only where bytes move.
"""

from __future__ import annotations

import email.utils
import itertools
import json
import random
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import wire
from ..errors import (APIConnectionError, APIError, APITimeoutError, AuthenticationError,
                      BadRequestError, RateLimitError, ServerError)
from .base import Delta

REDACTED = "***"
MIN_SECRET_LEN = 6  # shorter "keys" are no secret, and scrubbing them would garble every text

# --------------------------------------------------------------------------
# secrets


def scrub(obj: Any, secret: str | None) -> Any:
    """`obj` with every occurrence of `secret` replaced (str, bytes, and inside dicts/lists)."""
    if not secret or len(secret) < MIN_SECRET_LEN:
        return obj
    if isinstance(obj, str):
        return obj.replace(secret, REDACTED) if secret in obj else obj
    if isinstance(obj, bytes):
        return obj.replace(secret.encode(), REDACTED.encode())
    if isinstance(obj, dict):
        return {scrub(k, secret): scrub(v, secret) for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub(v, secret) for v in obj]
    return obj


# --------------------------------------------------------------------------
# errors

_MAX_TEXT = 500


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_message(payload: Any, text: str = "") -> tuple[str, str | None]:
    """(message, param) from any error body shape: vLLM flat, OpenAI nested, gateway, FastAPI, plain text."""
    if isinstance(payload, dict):
        err = payload.get("error")
        if isinstance(err, dict):  # OpenAI / vLLM >= 0.10.1
            return _msg_param(err, text)
        if isinstance(err, str) and "message" not in payload:  # {"error": "Unauthorized"}
            return err, None
        for key in ("message", "detail", "msg", "error_description", "error"):  # vLLM flat, gateways, FastAPI
            if key in payload:
                return _msg_param(payload, text, key)
    if isinstance(payload, str) and payload.strip():
        return payload.strip()[:_MAX_TEXT], None
    return _plain_text(text), None


def _msg_param(d: dict[str, Any], text: str, key: str = "message") -> tuple[str, str | None]:
    msg = d.get(key)
    if isinstance(msg, list):  # FastAPI validation errors
        msg = "; ".join(str(m.get("msg", m)) if isinstance(m, dict) else str(m) for m in msg)
    elif msg is not None and not isinstance(msg, str):
        msg = json.dumps(msg, ensure_ascii=False)
    param = d.get("param")
    return (msg or _plain_text(text) or "no message"), (str(param) if param not in (None, "") else None)


def _plain_text(text: str) -> str:
    text = " ".join(text.split())
    return text[:_MAX_TEXT] + ("..." if len(text) > _MAX_TEXT else "")


def error_for_status(
    status: int,
    body: bytes | str,
    headers: Mapping[str, str] | None = None,
    *,
    reason: str = "",
    secret: str | None = None,
) -> APIError:
    """The APIError subclass for an HTTP error response, with the server's message and request id."""
    headers = headers or {}
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = scrub(text, secret)
    try:
        payload: Any = json.loads(text) if text.strip() else None
    except ValueError:
        payload = None
    message, param = error_message(payload, text)
    if not message:
        message = reason or "no message"
    if param:
        message += f" (param: {param})"
    retry_after = parse_retry_after(headers.get("retry-after"))
    err = _error_class(status, message, request_id=_request_id(headers),
                       body=payload if payload is not None else text, retry_after=retry_after)
    if not isinstance(err, RateLimitError):
        err.retry_after = retry_after  # type: ignore[attr-defined]  # a 503 may say when to come back too
    return err


def error_from_event(payload: dict[str, Any], *, request_id: str | None = None) -> APIError:
    """The APIError for an error event inside a stream (`data: {"error": ...}` after the 200)."""
    err = payload.get("error") if isinstance(payload.get("error"), dict) else payload
    message, param = error_message(payload)
    code = err.get("code") if isinstance(err, dict) else None
    status = code if isinstance(code, int) and 400 <= code < 600 else None
    message = f"error in the stream after it started: {message}" + (f" (param: {param})" if param else "")
    if status is None:
        return APIError(message, request_id=request_id, body=payload)
    return _error_class(status, message, request_id=request_id, body=payload)


def _error_class(status: int, message: str, *, retry_after: float | None = None, **kw: Any) -> APIError:
    if status in (401, 403):
        return AuthenticationError(message, status=status, **kw)
    if status == 429:
        return RateLimitError(message, status=status, retry_after=retry_after, **kw)
    if status == 408:
        return APITimeoutError(message, status=status, **kw)
    if 400 <= status < 500:
        return BadRequestError(message, status=status, **kw)
    if status >= 500:
        return ServerError(message, status=status, **kw)
    return APIError(message, status=status, **kw)


def _request_id(headers: Mapping[str, str]) -> str | None:
    for key in ("x-request-id", "request-id", "x-amzn-requestid"):
        if headers.get(key):
            return headers[key]
    return None


def parse_json_body(content: bytes, status: int, headers: Mapping[str, str], secret: str | None) -> dict[str, Any]:
    """The JSON object of a 2xx response; ServerError when it is not one."""
    try:
        data = json.loads(content)
    except ValueError:
        snippet = scrub(_plain_text(content.decode("utf-8", "replace"))[:200], secret)
        raise ServerError(f"the server answered {status} with a body that is not JSON: {snippet!r}",
                          status=status, request_id=_request_id(headers), body=snippet) from None
    if not isinstance(data, dict):
        raise ServerError(f"the server answered {status} with JSON that is not an object",
                          status=status, request_id=_request_id(headers), body=scrub(data, secret))
    return scrub(data, secret)


# --------------------------------------------------------------------------
# retries


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter on 429, 5xx and connection errors; Retry-After wins when given."""

    max_retries: int = 3
    base_s: float = 0.5
    max_backoff_s: float = 20.0
    max_retry_after_s: float = 120.0  # a longer wait is returned to the caller as the error

    def should_retry(self, err: APIError, attempt: int) -> bool:
        """Whether attempt number `attempt` (0-based) that failed with `err` is tried again."""
        if attempt >= self.max_retries:
            return False
        if isinstance(err, RateLimitError):
            return err.retry_after is None or err.retry_after <= self.max_retry_after_s
        if isinstance(err, APITimeoutError):
            return False  # the server may still be generating: retrying would double its load
        return isinstance(err, (ServerError, APIConnectionError)) and (err.status is None or err.status >= 500)

    def delay(self, err: APIError, attempt: int) -> float:
        """Seconds to sleep before retry number `attempt + 1`."""
        retry_after = getattr(err, "retry_after", None)
        if retry_after is not None:
            return min(retry_after, self.max_retry_after_s)
        backoff = min(self.max_backoff_s, self.base_s * 2 ** attempt)
        return backoff * (0.5 + random.random() / 2)  # "equal jitter": spreads clients out, never waits ~0


# --------------------------------------------------------------------------
# server-sent events


class SSEDecoder:
    """Line-by-line server-sent events decoder: `line()` returns an event's data when a blank line ends it."""

    def __init__(self) -> None:
        self._buf: list[str] = []

    def line(self, line: str) -> str | None:
        line = line.rstrip("\r\n")
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None  # comment / keep-alive
        name, _, value = line.partition(":")
        if name == "data":
            self._buf.append(value[1:] if value.startswith(" ") else value)
        return None

    def flush(self) -> str | None:
        """The pending event's data (at a blank line or the end of the stream), if any."""
        if not self._buf:
            return None
        data, self._buf = "\n".join(self._buf), []
        return data


def iter_sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The `data` of each event in a stream of SSE lines (multi-line data joined with newlines)."""
    dec = SSEDecoder()
    for line in itertools.chain(lines, [""]):  # a last blank line ends an unterminated event
        data = dec.line(line)
        if data is not None:
            yield data


async def aiter_sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """Async twin of `iter_sse_data`."""
    dec = SSEDecoder()
    async for line in lines:
        if (data := dec.line(line)) is not None:
            yield data
    if (data := dec.flush()) is not None:
        yield data


@dataclass
class _Choice:
    index: int
    role: str = "assistant"
    reasoning: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    saw_reasoning: bool = False
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    logprobs: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    stop_reason: Any = None


class StreamAssembler:
    """Turns decoded SSE chunks into Deltas and, at the end, one non-streaming response dict.

    The response dict goes through `Completion.from_response`, so streamed and
    non-streamed answers are parsed by the same code.
    """

    def __init__(self, *, request_id: str | None = None, secret: str | None = None) -> None:
        self.request_id = request_id
        self.secret = secret
        self.done = False
        self.started = False
        self.meta: dict[str, Any] = {}
        self.usage: dict[str, Any] | None = None
        self.prompt_logprobs: Any = None
        self.choices: dict[int, _Choice] = {}
        self.extra: dict[str, Any] = {}

    def feed(self, data: str) -> list[Delta]:
        """Deltas for one event's data; raises the APIError of an error event."""
        if data.strip() == "[DONE]":
            self.done = True
            return []
        try:
            chunk = json.loads(data)
        except ValueError:
            raise ServerError(f"the stream carried an event that is not JSON: {scrub(data[:200], self.secret)!r}",
                              request_id=self.request_id) from None
        if not isinstance(chunk, dict):
            return []
        chunk = scrub(chunk, self.secret)
        if "error" in chunk or chunk.get("object") == "error":
            raise error_from_event(chunk, request_id=self.request_id)
        self.started = True
        for key in ("id", "created", "model", "system_fingerprint"):
            if chunk.get(key) is not None:
                self.meta.setdefault(key, chunk[key])
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        if chunk.get("prompt_logprobs") is not None:
            self.prompt_logprobs = chunk["prompt_logprobs"]
        out: list[Delta] = []
        for i, ch in enumerate(chunk.get("choices") or []):
            idx = ch.get("index", i)
            st = self.choices.setdefault(idx, _Choice(idx))
            delta = ch.get("delta") or ch.get("message") or {}
            if delta.get("role"):
                st.role = delta["role"]
            reasoning = delta.get("reasoning_content")
            if reasoning is None:
                reasoning = delta.get("reasoning")
            if reasoning is not None:
                st.saw_reasoning = True
                if reasoning:
                    st.reasoning.append(reasoning)
                    out.append(Delta("reasoning", reasoning, idx))
            content = delta.get("content")
            if content:
                st.content.append(content)
                out.append(Delta("content", content, idx))
            for tc in delta.get("tool_calls") or []:
                _merge_tool_call(st.tool_calls, tc)
            lp = ch.get("logprobs")
            if isinstance(lp, dict) and lp.get("content"):
                st.logprobs = (st.logprobs or []) + list(lp["content"])
            if ch.get("finish_reason") is not None:
                st.finish_reason = ch["finish_reason"]
            if ch.get("stop_reason") is not None:
                st.stop_reason = ch["stop_reason"]
        return out

    def response(self) -> dict[str, Any]:
        """The non-streaming response this stream amounts to (vLLM's shape)."""
        choices = []
        for idx in sorted(self.choices):
            st = self.choices[idx]
            calls = [c for _, c in sorted(st.tool_calls.items())]
            msg = wire.message("".join(st.content) or None, "".join(st.reasoning) if st.saw_reasoning else None,
                               calls, role=st.role)
            choices.append(wire.choice(idx, msg, st.logprobs, st.finish_reason, st.stop_reason))
        return wire.chat_response(self.meta.get("id"), self.meta.get("model", ""), choices, self.usage,
                                  self.prompt_logprobs, self.meta.get("created"))




def _merge_tool_call(calls: dict[int, dict[str, Any]], tc: dict[str, Any]) -> None:
    idx = tc.get("index", len(calls))
    cur = calls.setdefault(idx, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    if tc.get("id"):
        cur["id"] = tc["id"]
    if tc.get("type"):
        cur["type"] = tc["type"]
    fn = tc.get("function") or {}
    if fn.get("name"):
        cur["function"]["name"] += fn["name"]
    if fn.get("arguments"):
        cur["function"]["arguments"] += fn["arguments"]
