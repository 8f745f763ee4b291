"""The class record (``--class-store class.parquet``): one sweep-shaped row per finished answer, plus ``student``.

Rows come from the row builder (`gsexplore.row.completion_row`) and go to a
`gsexplore.store.Store`, flushed as each request finishes, so ``gs.load(path)``
gives the room's study and ``df.gs.compare(by="temperature", metric="distinct_2")``
works on it. What identifies a *cell* is what a sweep's does: the messages and the
parameters other than the seed and the sender, so the answers of everyone who
tried one setting on one prompt are the repeats of one cell. The key is never
written; the sender is the ``student`` column (the ``user`` parameter column is
left empty so that senders do not count as a varied setting).

Writes run on one worker thread (in order, off the event loop); the journal is
folded into the Parquet file when the server stops.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from ..completion import Completion
from ..row import completion_row
from ..store import Store

__all__ = ["ClassRecord", "CLASS_SWEEP_ID"]

#: The ``sweep_id`` of every class row.
CLASS_SWEEP_ID = "class"
#: request fields that are not a setting a student tried (who sent it, its seed, transport)
NOT_SETTING = frozenset({"seed", "user", "stream", "model"})


def _digest(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:12]


class ClassRecord:
    """Appends the room's finished answers to a store file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.store = Store(path)
        self.run_id = uuid.uuid4().hex[:12]
        self._repeats: dict[str, int] = defaultdict(int)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gsexplore-class-store")

    @property
    def path(self) -> str:
        return str(self.store.path)

    def rows(self, student: str, c: Completion, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows of one finished request (one per choice)."""
        ts = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        setting = {k: v for k, v in c.params.to_row().items() if k not in NOT_SETTING and v is not None}
        prompt_id = _digest(messages)
        cell_id = _digest([messages, setting])
        out = []
        for ch in c.choices:
            row = completion_row(ch)
            repeat = self._repeats[cell_id]
            self._repeats[cell_id] += 1
            row.update({"sweep_id": CLASS_SWEEP_ID, "cell_id": cell_id, "repeat": repeat, "prompt_id": prompt_id,
                        "user": None, "student": student, "error_type": None, "error_message": None,
                        "timestamp": ts, "run_id": self.run_id, "row_id": uuid.uuid4().hex})
            out.append(row)
        return out

    def error_row(self, student: str, messages: list[dict[str, Any]], params: Any, status: int,
                  message: str, latency_s: float) -> dict[str, Any]:
        """The row of a request that failed after admission (its error, no answer)."""
        prow = {k: v for k, v in params.to_row().items() if k not in ("model",)}
        return {**prow, "sweep_id": CLASS_SWEEP_ID, "cell_id": None, "prompt_id": _digest(messages),
                "messages": json.dumps(messages, ensure_ascii=False), "user": None, "student": student,
                "latency_s": latency_s, "error_type": f"HTTP {status}", "error_message": message,
                "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "run_id": self.run_id, "row_id": uuid.uuid4().hex}

    async def append(self, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` durably (on the writer thread) before returning."""
        import asyncio

        await asyncio.get_running_loop().run_in_executor(self._pool, self.store.append, rows)

    def close(self) -> None:
        """Finish pending writes and fold the journal into the Parquet file."""
        self._pool.shutdown(wait=True)
        self.store.compact()
