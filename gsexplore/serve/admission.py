"""Admission: the server counts requests in flight and answers 429; it keeps no queue of its own.

Every admitted request is submitted to a backend at once, and the backend queues
what exceeds its ``slots`` (LocalBackend's engine orders its waiting requests by
``priority``, then arrival, as vLLM's scheduler does). A FIFO here, in front of
that heap, would make ``priority`` meaningless for every request waiting in it.

The server only counts: at most ``max_queue`` requests may wait beyond the slots
of every instance (``--max-queue``); the next gets vLLM's 429 with Retry-After.
With several instances, a request goes to the least loaded one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from ..backends.base import Backend
from ..backends.capabilities import EngineStats
from ..errors import GSExploreError
from .errors import Reject

__all__ = ["Admission", "Ticket"]


class Admission:
    """The served instances, how many requests each has in flight, and the time their slots were busy."""

    def __init__(self, backends: Sequence[Backend], max_queue: int) -> None:
        if not backends:
            raise GSExploreError("serve needs at least one model instance")
        self.backends = list(backends)
        self.max_queue = max_queue
        self._slots = [max(1, int(b.slots)) for b in self.backends]
        #: Requests that can generate at once (every instance's slots).
        self.size = sum(self._slots)
        self._in_flight = [0] * len(self.backends)
        self.pending = 0  # admitted and not finished (not yet submitted, waiting or generating)
        self.served = 0
        self._slot_s = 0.0  # slot-seconds spent generating: Retry-After's measure of a request's cost
        self._t = time.perf_counter()

    # --- what the metrics and /health show ---------------------------------------
    def _engine(self, key: str) -> list[int | None]:
        """``key`` of each instance's engine counters (None where it reports none)."""
        out: list[int | None] = []
        for b in self.backends:
            v = b.engine_stats().get(key) if isinstance(b, EngineStats) else None
            out.append(int(v) if isinstance(v, (int, float)) else None)
        return out

    @property
    def running(self) -> int:
        """Sequences generating now: the engines' own counts, else this server's requests holding a slot."""
        counted = [min(f, s) for f, s in zip(self._in_flight, self._slots)]
        return sum(c if e is None else e for c, e in zip(counted, self._engine("running")))

    @property
    def waiting(self) -> int:
        """Sequences waiting for a slot: the engines' queues, else this server's requests beyond the slots."""
        counted = [max(0, f - s) for f, s in zip(self._in_flight, self._slots)]
        unsubmitted = self.pending - sum(self._in_flight)  # admitted, still in the artificial latency
        return unsubmitted + sum(c if e is None else e for c, e in zip(counted, self._engine("waiting")))

    # --- counting ---------------------------------------------------------------
    def _account(self) -> None:
        """Add the slot time spent since the last change of the counts."""
        now = time.perf_counter()
        self._slot_s += (now - self._t) * sum(min(f, s) for f, s in zip(self._in_flight, self._slots))
        self._t = now

    def admit(self) -> Ticket:
        """Count a request in, or reject it with 429 (Retry-After) when ``max_queue`` already wait."""
        if self.pending >= self.size + self.max_queue:
            self._account()
            mean = self._slot_s / self.served if self.served else 1.0
            wait = max(1, math.ceil(mean * (self.pending - self.size + 1) / self.size))
            raise Reject(429, f"the server is busy: {self.pending} requests in progress, {self.size} generating "
                              f"and at most {self.max_queue} waiting (--max-queue raises it); retry in {wait} s",
                         "RateLimitError", headers={"Retry-After": str(wait)})
        self.pending += 1
        return Ticket(self)

    def _submit(self) -> int:
        """The least loaded instance (in flight per slot, then order), counted in."""
        i = min(range(len(self.backends)), key=lambda k: (self._in_flight[k] / self._slots[k], k))
        self._account()
        self._in_flight[i] += 1
        return i

    def _finish(self, i: int | None) -> None:
        self.pending -= 1
        if i is not None:
            self._account()
            self._in_flight[i] -= 1
            self.served += 1

    def close(self) -> None:
        """Close every instance (its model and engine, when private)."""
        for b in self.backends:
            b.close()


class Ticket:
    """One admitted request: `backend` picks its instance; `close` (idempotent) counts it out.

    As an async context manager it closes on exit.
    """

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._index: int | None = None
        self._closed = False

    def backend(self) -> Backend:
        """The instance this request is submitted to (chosen once, the least loaded at the time)."""
        if self._index is None:
            self._index = self._admission._submit()
        return self._admission.backends[self._index]

    def close(self) -> None:
        """Count the request out, once."""
        if not self._closed:
            self._closed = True
            self._admission._finish(self._index)

    async def __aenter__(self) -> Ticket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
