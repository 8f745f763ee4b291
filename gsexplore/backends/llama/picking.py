"""The draws of one step's rows, spread over the cores llama.cpp is not using.

Between two ``llama_decode`` calls the cores wait while the engine's thread draws a
token for every running sequence, one after another. A draw is mostly C (llama.cpp's
sampler chain) and large NumPy operations, both of which release the GIL, so the
rows of a step can be drawn on several threads: each sequence's draw reads only its
own row and changes only its own sampler, so the tokens do not depend on the split.

Only the draw is spread (``TokenSampler.pick``, on a NumPy view of the row, never
through the llama.cpp context, whose first read of the logits reorders them).
Everything after it (logprobs, the guided constraint, stop checks, text, events)
stays on the engine's thread in row order, in ``Sequence.take``. Rows whose guided
constraint applies this step are drawn there too: a constraint is not thread-safe.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .sequence import Sequence

__all__ = ["RowPicker", "Pick"]

#: what a row's draw gave: the token, the exception it raised, or None (draw it in ``take``)
Pick = int | BaseException | None

#: fewer rows than this are drawn on the engine's thread alone (a handoff costs ~50 us)
_MIN_ROWS = 4


class RowPicker:
    """Draws the rows of a step on the engine's thread and ``workers`` helper threads."""

    def __init__(self, workers: int) -> None:
        self.workers = max(0, int(workers))
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="gsexplore-pick") if self.workers else None

    def pick(self, rows: tuple[Sequence, ...], logits: np.ndarray) -> list[Pick]:
        """One draw per row of ``logits`` for ``rows[i]``; None for rows left to ``Sequence.take``."""
        picks: list[Pick] = [None] * len(rows)
        if self._pool is None or len(rows) < _MIN_ROWS:
            return picks
        free = [i for i, s in enumerate(rows) if s.draws_alone()]
        if len(free) < _MIN_ROWS:
            return picks
        parts = [free[k::self.workers + 1] for k in range(self.workers + 1)]

        def run(part: list[int]) -> None:
            for i in part:
                try:
                    picks[i] = rows[i].sampler.pick(logits[i])
                except Exception as exc:  # noqa: BLE001 - this sequence's failure, reported by the engine
                    picks[i] = exc

        futures = [self._pool.submit(run, p) for p in parts[1:]]
        run(parts[0])
        for f in futures:
            f.result()
        return picks

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
