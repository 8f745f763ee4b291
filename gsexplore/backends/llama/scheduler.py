"""Who runs this step: the waiting queue, the slots and the choice of the batch.

``Scheduler.schedule()`` admits waiting sequences (by ``priority``, then arrival)
into free slots, reusing the longest cached prompt prefix (a copy of another
slot's KV cells, or the slot's own), and picks the batch: the next token of every
running sequence first, then prompt chunks up to ``n_batch`` tokens. It returns a
``StepPlan`` and keeps ``Slot.tokens`` as the plan will leave the cache; the
engine carries the plan out.
"""
from __future__ import annotations

import heapq

import numpy as np

from .sequence import EngineRequest, Sequence, SeqState
from .step import Admission, PrefillChunk, StepPlan

__all__ = ["Scheduler", "Slot", "NO_PLAN"]

#: wait for another sequence's prompt evaluation when it would give at least this many tokens
_WAIT_FOR_SHARED = 16
_PREFILL, _DECODE = SeqState.PREFILL, SeqState.DECODE
#: the plan of a step with nothing to do
NO_PLAN = StepPlan()


class Slot:
    """One llama.cpp sequence id: the tokens its KV stream holds and the logits saved after its prompt.

    ``schedule`` keeps this mirror as the plan will leave the cache, so that the next
    admission of the same step sees the cells the previous one placed.
    """

    def __init__(self, sid: int) -> None:
        self.id = sid
        self.tokens: list[int] = []      # what its KV stream holds, position by position
        self.seq: Sequence | None = None
        self.saved_len = 0               # tokens[:saved_len] is a prompt whose next-token logits are saved
        self.saved_logits: np.ndarray | None = None
        self.last_used = 0.0

    def common_prefix(self, ids: np.ndarray) -> int:
        n = min(len(self.tokens), len(ids))
        if n == 0:
            return 0
        diff = np.flatnonzero(np.asarray(self.tokens[:n], dtype=ids.dtype) != ids[:n])
        return int(diff[0]) if diff.size else n

    def cut(self, n: int) -> None:
        """Keep the first ``n`` tokens (the saved logits go when their prompt does)."""
        del self.tokens[n:]
        if self.saved_len > n:
            self.saved_len, self.saved_logits = 0, None


class Scheduler:
    """The waiting heap, the running sequences (in admission order) and the slots' KV mirror."""

    def __init__(self, n_slots: int, n_batch: int) -> None:
        self.slots = [Slot(i) for i in range(n_slots)]
        self.n_batch = n_batch
        self.waiting: list[tuple[int, int, int, Sequence]] = []   # heap: (priority, arrival, index, seq)
        self.running: list[Sequence] = []

    def push(self, req: EngineRequest) -> None:
        """Queue every sequence of ``req``."""
        for s in req.seqs:
            heapq.heappush(self.waiting, (req.priority, req.arrival, s.index, s))

    def schedule(self) -> StepPlan:
        """Decide this step: admissions (with the KV mirror updated as they leave it), decode rows, chunks."""
        admissions: list[Admission] = []
        if self.waiting:
            free = [sl for sl in self.slots if sl.seq is None]
            postponed: list[tuple[int, int, int, Sequence]] = []
            while self.waiting and free:
                entry = heapq.heappop(self.waiting)
                adm = self._admit(entry[3], free)
                if adm is None:  # its prompt is being evaluated by another sequence
                    postponed.append(entry)
                else:
                    admissions.append(adm)
                    free.remove(self.slots[adm.slot])
            for e in postponed:
                heapq.heappush(self.waiting, e)
        running = self.running
        decode = tuple([s for s in running if s.state is _DECODE])
        n = n_out = len(decode)
        prefill: list[PrefillChunk] = []
        n_batch = self.n_batch
        for s in running:
            if n >= n_batch:
                break
            if s.state is not _PREFILL:
                continue
            P = len(s.req.prompt_ids)
            start = s.prefill_at
            if start == P:  # a cached prompt: sampled from its saved logits
                continue
            k = min(P - start, n_batch - n)
            if s.req.prompt_logprobs_top is not None:
                prefill.append(PrefillChunk(s, start, k, n, n_out))
                n_out += k
            elif start + k == P:
                prefill.append(PrefillChunk(s, start, k, n, n_out))
                n_out += 1
            else:
                prefill.append(PrefillChunk(s, start, k, n, -1))
            n += k
        if not n and not admissions:
            return NO_PLAN
        return StepPlan(tuple(admissions), decode, tuple(prefill), (), n)

    def _admit(self, seq: Sequence, free: list[Slot]) -> Admission | None:
        """Place ``seq`` in one of the ``free`` slots, or None to postpone it a step."""
        ids = seq.req.prompt_ids
        P = len(ids)
        reuse = seq.req.prompt_logprobs_top is None  # prompt_logprobs needs every position evaluated
        best, c = None, 0
        if reuse:
            for sl in self.slots:
                k = sl.common_prefix(ids)
                exact = k == P and sl.saved_len == P
                if exact or k > c:
                    best, c = sl, k
                    if exact:
                        break
            # another sequence is evaluating a longer shared prefix right now: wait for it
            for other in self.running:
                if other.state is _PREFILL and other.prefill_at < len(other.req.prompt_ids):
                    k = min(int(_common(other.req.prompt_ids, ids)), P)
                    if k >= c + _WAIT_FOR_SHARED or (k == P and k > c):
                        return None
        exact = best is not None and c == P and best.saved_len == P
        if not exact:
            c = min(c, P - 1)  # at least the last prompt token is evaluated, for its logits
        # the target slot: the source itself when free, else the free slot whose cache is worth least
        if best is not None and best.seq is None:
            target = best
        else:
            target = min(free, key=lambda sl: (len(sl.tokens) > 0, sl.last_used))
        copied_from = None
        if target is best:
            target.cut(c)
        elif best is not None and c:
            copied_from = best.id
            target.tokens = best.tokens[:c]
            target.saved_len, target.saved_logits = best.saved_len, best.saved_logits
            target.cut(c)
        else:
            c = 0
            target.cut(0)
        target.seq = seq
        seq.slot = target
        seq.state = _PREFILL
        seq.prefill_at = c
        self.running.append(seq)
        return Admission(seq, target.id, c, copied_from, exact)


def _common(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n
