"""The classroom side of serving one request: the student's limits, the teacher's board, the class record.

`Room.enter` admits a request of one sender (or 429 by `StudentLimits`) and
returns a `Visit`, which the generation tells when the first token arrives, when
the answer is finished or failed, and when the request leaves (however it ended).
Logs and metrics name the sender by label; the key never reaches this module.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..completion import Completion
from .classboard import ClassBoard
from .classrecord import ClassRecord
from .errors import Reject
from .limits import StudentLimits
from .metrics import ServerMetrics

__all__ = ["Room", "Visit"]

log = logging.getLogger("gsexplore.serve")


class Room:
    """Per-student limits, the live board, the optional class record and the per-student metrics."""

    def __init__(self, limits: StudentLimits, metrics: ServerMetrics, record: ClassRecord | None = None) -> None:
        self.limits, self.metrics, self.record = limits, metrics, record
        self.board = ClassBoard()

    def enter(self, who: str, messages: list[dict[str, Any]], t0: float) -> Visit:
        """Admit a request of ``who`` within the per-student limits (else a 429, counted as its error)."""
        try:
            self.limits.admit(who)
        except Reject as r:
            self.board.error(who)
            self.metrics.student_error(who)
            log.info("%s: refused (%s)", who, r.param)
            raise
        self.board.admitted(who)
        return Visit(self, who, messages, t0)

    async def record_rows(self, rows: list[dict[str, Any]]) -> None:
        """Append to the class record; a failed write is logged, and the student still gets the answer."""
        assert self.record is not None
        try:
            await self.record.append(rows)
        except (OSError, ValueError) as e:
            log.error("the class record %s could not be written: %s", self.record.path, e)

    def close(self) -> None:
        if self.record is not None:
            self.record.close()


class Visit:
    """One admitted request of one student, from admission to its end."""

    def __init__(self, room: Room, who: str, messages: list[dict[str, Any]], t0: float) -> None:
        self.room, self.who, self.messages, self.t0 = room, who, messages, t0
        self.ttft_s: float | None = None
        self._tokens = 0
        self._latency: float | None = None
        self._closed = False

    def first_token(self) -> None:
        """The first Delta arrived (waiting becomes running); later calls do nothing."""
        if self.ttft_s is None and not self._closed:
            self.ttft_s = time.perf_counter() - self.t0
            self.room.board.first_token(self.who)

    async def finished(self, c: Completion) -> None:
        """The answer is complete: count it, log it, and write it to the class record before returning."""
        self.first_token()
        latency = time.perf_counter() - self.t0
        self._latency = latency
        u = c.usage
        self._tokens = (u.prompt_tokens or 0) + (u.completion_tokens or 0)
        room = self.room
        room.board.finished(self.who, c, latency, self.ttft_s)
        room.metrics.student_finished(self.who, c)
        log.info("%s: %s prompt + %s completion tokens in %.2f s", self.who, u.prompt_tokens, u.completion_tokens,
                 latency)
        if room.record is not None:
            await room.record_rows(room.record.rows(self.who, c, self.messages))

    def refused(self) -> None:
        """The server refused it after the student's limits let it in (its own queue is full): an error."""
        self.room.board.error(self.who)
        self.room.metrics.student_error(self.who)

    async def failed(self, r: Reject, params: Any) -> None:
        """Generation failed after admission: count the error and record it."""
        room = self.room
        room.board.error(self.who)
        room.metrics.student_error(self.who)
        if room.record is not None:
            row = room.record.error_row(self.who, self.messages, params, r.status, r.message,
                                        time.perf_counter() - self.t0)
            await room.record_rows([row])

    def close(self) -> None:
        """The request left: out of the board and of the student's running count (once)."""
        if self._closed:
            return
        self._closed = True
        self.room.board.ended(self.who, self.ttft_s is not None)
        self.room.limits.finish(self.who, self._tokens, self._latency)
