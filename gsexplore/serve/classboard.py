"""The room as the teacher sees it: per student, requests waiting/running/finished, tokens, latencies, errors.

A request is *waiting* from admission until its first token, then *running*
until it ends. The board also keeps the last `RECENT` finished answers (their
parameters and text), from which `/class/data` plots what the class tried
against a metric of what came back. Labels only: the board never sees a key.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from ..completion import Completion
from ..params import Params
from ..row import outcome
from .classrecord import NOT_SETTING

__all__ = ["ClassBoard", "StudentState", "RECENT", "PLOT_METRICS"]

#: Finished answers kept for the live plot (the class store keeps them all).
RECENT = 2000
#: The row metrics the plot offers (`gsexplore.metrics`), then measured columns.
PLOT_METRICS = ("n_words", "n_tokens", "repetition_rate", "n_chars", "latency_s", "tokens_per_s", "mean_entropy")


@dataclass
class StudentState:
    """One student's counters."""

    student: str
    waiting: int = 0
    running: int = 0
    finished: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    last_latency_s: float | None = None
    last_ttft_s: float | None = None
    last_seen: float | None = None  # unix time


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


class ClassBoard:
    """The live state of the room (one per server; touched only from the event loop)."""

    def __init__(self) -> None:
        self.students: dict[str, StudentState] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.started = time.time()

    def _of(self, who: str) -> StudentState:
        s = self.students.get(who)
        if s is None:
            s = self.students[who] = StudentState(who)
        s.last_seen = time.time()
        return s

    def admitted(self, who: str) -> None:
        """A request of ``who`` was admitted: waiting for its first token."""
        self._of(who).waiting += 1

    def first_token(self, who: str) -> None:
        """Its first token arrived: running."""
        s = self._of(who)
        s.waiting = max(0, s.waiting - 1)
        s.running += 1

    def ended(self, who: str, started: bool) -> None:
        """The request left (however it ended); ``started``: whether it had a first token."""
        s = self._of(who)
        if started:
            s.running = max(0, s.running - 1)
        else:
            s.waiting = max(0, s.waiting - 1)

    def finished(self, who: str, c: Completion, latency_s: float, ttft_s: float | None) -> None:
        """A request of ``who`` finished with ``c`` (counted before `ended`)."""
        s = self._of(who)
        s.finished += 1
        s.prompt_tokens += c.usage.prompt_tokens or 0
        s.completion_tokens += c.usage.completion_tokens or 0
        s.last_latency_s, s.last_ttft_s = latency_s, ttft_s
        tried = {k: v for k, v in c.params.to_row().items() if _num(v) is not None and k not in NOT_SETTING}
        for ch in c.choices:
            o = outcome(ch)  # the row builder's columns: the plot measures what the class record stores
            self.recent.append({"student": who, **tried, "content": o["content"],
                                "completion_tokens": o["completion_tokens"], "latency_s": latency_s,
                                "tokens_per_s": o["tokens_per_s"], "mean_entropy": o["mean_entropy"]})

    def error(self, who: str) -> None:
        """A request of ``who`` ended in an error (after admission, or refused by a limit)."""
        self._of(who).errors += 1

    # --- what /class/data answers -------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Every student's counters (by label) and the room's totals."""
        rows = [asdict(s) for s in sorted(self.students.values(), key=lambda s: s.student)]
        totals = {k: sum(r[k] for r in rows) for k in ("waiting", "running", "finished", "errors",
                                                       "prompt_tokens", "completion_tokens")}
        totals["students"] = len(rows)
        return {"students": rows, "totals": totals, "started": self.started}

    def tried(self) -> list[str]:
        """The numeric settings the recent answers tried (not seeds), the most varied first (then in `Params` order)."""
        seen: dict[str, set[Any]] = {}
        for r in self.recent:
            for k in r:
                if k in Params.model_fields and k not in NOT_SETTING:
                    seen.setdefault(k, set()).add(r[k])
        order = {n: i for i, n in enumerate(Params.names())}  # ties: sampling parameters first
        return sorted(seen, key=lambda k: (-len(seen[k]), order[k]))

    def points(self, x: str, metric: str, recent: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The recent answers (or ``recent``, a copy taken on the event loop: this may then run in a worker
        thread) as ``{student, x, y}``: parameter ``x`` against ``metric`` (see `PLOT_METRICS`)."""
        if metric not in PLOT_METRICS:
            raise ValueError(f"metric must be one of {', '.join(PLOT_METRICS)}, not {metric!r}")
        rows = [r for r in (self.recent if recent is None else recent) if _num(r.get(x)) is not None]
        if not rows:
            return []
        import pandas as pd

        from ..metrics import row_metrics

        df = pd.DataFrame.from_records(rows)
        if metric in ("latency_s", "tokens_per_s", "mean_entropy"):
            ys = pd.to_numeric(df[metric], errors="coerce")
        else:
            ys = row_metrics(df)[metric]
        return [{"student": s, "x": float(xv), "y": float(y)}
                for s, xv, y in zip(df["student"], df[x], ys) if _num(y) is not None]
