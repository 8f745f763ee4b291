"""Text of one sequence: incremental UTF-8 detokenisation and vLLM's stop strings."""
from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sampler import Plan

__all__ = ["TextState"]


class TextState:
    """vLLM's detokenizer + stop-string checker for one choice."""

    def __init__(self, plan: Plan) -> None:
        self.dec = codecs.getincrementaldecoder("utf-8")("replace")
        self.text = ""
        self.stop = plan.stop
        self.include = plan.include_stop
        self.min_tokens = plan.min_tokens
        # chars held back while streaming so a stop string is never emitted
        self.holdback = max(len(s) for s in plan.stop) - 1 if plan.stop and not plan.include_stop else 0
        self.emitted = 0

    def add(self, data: bytes, n_out: int) -> str | None:
        """Append a token's bytes; returns the stop string hit, if any (text already cut)."""
        before = len(self.text)
        if data:
            self.text += self.dec.decode(data)
        if not self.stop:
            return None
        if n_out <= self.min_tokens:
            return None
        new = len(self.text) - before
        if not new:
            return None
        return self._check(new)

    def _check(self, new: int) -> str | None:
        text = self.text
        for s in self.stop:
            start = max(0, len(text) - new - len(s) + 1)
            i = text.find(s, start)
            if i == -1:
                continue
            if self.include:
                i += len(s)
                if i >= len(text):
                    return s
            self.text = text[:i]
            return s
        return None

    def flush(self) -> None:
        self.text += self.dec.decode(b"", final=True)

    def take(self, finished: bool) -> str:
        end = len(self.text) - (0 if finished else self.holdback)
        if end <= self.emitted:
            return ""
        out = self.text[self.emitted:end]
        self.emitted = end
        return out
