"""Per-student limits: requests in progress (``--max-running-per-key``) and tokens per minute (``--tpm-per-key``).

Counted by the sender's label (a student with two keys of one label shares one
budget). Tokens are counted when a request finishes (prompt plus completion, as
the usage says), over a sliding window of the last 60 seconds. An over-limit
request is vLLM's 429 with Retry-After, naming the limit and its flag.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from collections.abc import Callable

from .errors import Reject

__all__ = ["StudentLimits", "WINDOW_S"]

#: The window of ``--tpm-per-key``.
WINDOW_S = 60.0


class StudentLimits:
    """What each sender has in progress and the tokens it used in the last minute; `admit` or 429."""

    def __init__(self, max_running: int | None = None, tpm: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        for flag, v in (("--max-running-per-key", max_running), ("--tpm-per-key", tpm)):
            if v is not None and v < 1:
                raise ValueError(f"{flag} must be at least 1 (got {v}); leave it out for no limit")
        self.max_running, self.tpm, self.clock = max_running, tpm, clock
        self.running: dict[str, int] = defaultdict(int)
        self._spent: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self._latency: dict[str, float] = {}

    def tokens_last_minute(self, who: str) -> int:
        """Tokens ``who``'s requests used in the last `WINDOW_S` seconds."""
        q = self._spent.get(who)
        if not q:
            return 0
        cutoff = self.clock() - WINDOW_S
        while q and q[0][0] <= cutoff:
            q.popleft()
        return sum(n for _, n in q)

    def admit(self, who: str) -> None:
        """Count one request of ``who`` in, or raise a 429 naming the limit it is over."""
        if self.max_running is not None and self.running[who] >= self.max_running:
            wait = max(1, math.ceil(self._latency.get(who, 1.0)))
            raise Reject(429, f"{who} already has {self.running[who]} requests in progress, this server's limit "
                              f"per student (--max-running-per-key {self.max_running}); retry in {wait} s",
                         "RateLimitError", param="max_running_per_key", headers={"Retry-After": str(wait)})
        if self.tpm is not None:
            used = self.tokens_last_minute(who)
            if used >= self.tpm:
                wait = self._until_under(who)
                raise Reject(429, f"{who} used {used} tokens in the last minute, this server's limit per student "
                                  f"(--tpm-per-key {self.tpm}); retry in {wait} s",
                             "RateLimitError", param="tpm_per_key", headers={"Retry-After": str(wait)})
        self.running[who] += 1

    def _until_under(self, who: str) -> int:
        """Seconds until ``who``'s tokens in the window fall below the limit."""
        q, now = self._spent[who], self.clock()
        total = sum(n for _, n in q)
        for t, n in q:
            total -= n
            if total < (self.tpm or 0):
                return max(1, math.ceil(t + WINDOW_S - now))
        return max(1, math.ceil(WINDOW_S))

    def finish(self, who: str, tokens: int, latency_s: float | None = None) -> None:
        """Count one request of ``who`` out, with the tokens it used."""
        self.running[who] = max(0, self.running[who] - 1)
        if self.running[who] == 0:
            del self.running[who]
        if tokens > 0 and self.tpm is not None:
            self._spent[who].append((self.clock(), tokens))
        if latency_s is not None:
            self._latency[who] = latency_s
