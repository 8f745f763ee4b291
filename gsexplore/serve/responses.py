"""vLLM's answers of `gsexplore serve`: the non-streaming bodies and the SSE chunks (shapes from `wire`)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi.responses import StreamingResponse

from .. import wire
from ..completion import Completion

__all__ = ["Chunks", "EventStream", "chat_response", "text_response"]

#: vLLM's non-streaming /v1/chat/completions body for a Completion.
chat_response = wire.completion_response
#: vLLM's non-streaming /v1/completions body (``text_completion``).
text_response = wire.text_response


class Chunks:
    """vLLM's streaming chunks for one request (``text``: /v1/completions' ``text_completion`` chunks).

    With tools, the backend's content deltas leave tool-call text out (LocalBackend holds it
    back as vLLM's tool parser does); the parsed ``tool_calls`` arrive in one delta before the
    choice's last chunk.
    """

    DONE = wire.DONE

    def __init__(self, model: str, n: int, include_usage: bool, text: bool = False,
                 echo: str | None = None) -> None:
        self.id = wire.new_id("cmpl") if text else wire.new_id()
        self.created, self.model = int(time.time()), model
        self.n, self.include_usage, self.text, self.echo = n, include_usage, text, echo

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return wire.sse(wire.chunk(self.id, self.created, self.model, choices, text=self.text, **extra))

    def _text(self, index: int, text: str, finish: str | None = None, stop: Any = None,
              logprobs: dict[str, Any] | None = None) -> bytes:
        return self._chunk([{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish,
                             "stop_reason": stop}])

    def start(self) -> bytes:
        """The first chunks: the assistant role per choice (chat), or the echoed prompt (text)."""
        if self.text:
            return b"".join(self._text(i, self.echo) for i in range(self.n)) if self.echo else b""
        return b"".join(self._chunk([{"index": i, "delta": {"role": "assistant", "content": ""},
                                      "logprobs": None, "finish_reason": None}]) for i in range(self.n))

    def _content(self, index: int, text: str) -> bytes:
        if self.text:
            return self._text(index, text)
        return self._chunk([{"index": index, "delta": {"content": text}, "logprobs": None, "finish_reason": None}])

    def delta(self, kind: str, text: str, index: int) -> bytes:
        """One reasoning or content Delta as a chunk (nothing for empty content)."""
        if kind == "reasoning":
            return self._chunk([{"index": index, "delta": {"reasoning_content": text}, "logprobs": None,
                                 "finish_reason": None}])
        return self._content(index, text) if text else b""

    def finish(self, c: Completion) -> bytes:
        """Each choice's last chunk (tool calls, logprobs, finish and stop reasons), then usage when asked."""
        out = []
        for ch in c.choices:
            if ch.tool_calls and not self.text:
                calls = [{"index": k, **tc} for k, tc in enumerate(ch.tool_calls)]
                out.append(self._chunk([{"index": ch.index, "delta": {"tool_calls": calls}, "logprobs": None,
                                         "finish_reason": None}]))
            if self.text:
                lp = wire.text_logprobs(ch.logprobs, int(c.params.top_logprobs or 0), len(self.echo or ""))
                out.append(self._text(ch.index, "", ch.finish_reason, ch.stop_reason, lp))
                continue
            out.append(self._chunk([{
                "index": ch.index, "delta": {},
                "logprobs": {"content": ch.logprobs} if ch.logprobs is not None else None,
                "finish_reason": ch.finish_reason, "stop_reason": ch.stop_reason}]))
        if self.include_usage:
            out.append(self._chunk([], usage=wire.usage_dict(c.usage)))
        return b"".join(out)

    @staticmethod
    def error(status: int, message: str, type_: str) -> bytes:
        """An error after the 200: ``data: {"error": ...}`` (then [DONE])."""
        return wire.sse(wire.error_body(status, message, type_))


class EventStream(StreamingResponse):
    """SSE whose clean-up (``on_close``) runs even when the client leaves before the first byte is sent."""

    def __init__(self, content: AsyncIterator[bytes], *, on_close: Callable[[], Awaitable[None]],
                 headers: dict[str, str]) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()
