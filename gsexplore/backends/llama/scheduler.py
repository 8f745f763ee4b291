"""Who runs this step: the waiting queue, the slots and the choice of the batch.

``Scheduler.schedule()`` admits waiting sequences into free slots with a fair
share per sender (``EngineRequest.sender``): the sender holding the fewest slots
goes next (round-robin when they hold the same), and while another sender waits,
one already holding its share (slots / senders with work) gets no new slot;
within a sender, ``priority`` then arrival decide (vLLM's meaning). When a sender
under its share waits and every slot is taken, the newest sequence of the sender
holding the most slots is preempted: its KV cells go to host memory and it waits
again with its sampler intact, coming back by a restore of those cells (see
``step.py``). One sender alone is never preempted and gets every slot.

Admissions reuse the longest cached prompt prefix (a copy of another slot's KV
cells, or the slot's own). The batch is the next token of every running sequence
first, then prompt chunks up to ``n_batch`` tokens. It returns a ``StepPlan`` and
keeps ``Slot.tokens`` as the plan will leave the cache; the engine carries the
plan out.
"""
from __future__ import annotations

import heapq
import time
from collections import Counter

import numpy as np

from .sequence import EngineRequest, Sequence, SeqState
from .step import Admission, PrefillChunk, Preemption, SavedCells, StepPlan

__all__ = ["Scheduler", "Slot", "NO_PLAN"]

#: wait for another sequence's prompt evaluation when it would give at least this many tokens
_WAIT_FOR_SHARED = 16
#: a sequence (re)admitted fewer steps ago than this is not preempted: no thrashing, and a
#: newcomer facing a full engine gets a slot within this many steps
MIN_RUN_STEPS = 4
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
        self.step_no = 0

    def push(self, req: EngineRequest) -> None:
        """Queue every sequence of ``req``."""
        for s in req.seqs:
            heapq.heappush(self.waiting, (req.priority, req.arrival, s.index, s))

    def schedule(self) -> StepPlan:
        """Decide this step: preemptions, admissions (the KV mirror updated as they leave it), decode rows, chunks."""
        self.step_no += 1
        admissions: list[Admission] = []
        preemptions: list[Preemption] = []
        if self.waiting:
            self._admit_fairly(admissions, preemptions)
        running = self.running
        # in slot order: llama.cpp splits a multi-stream batch into one ubatch per run of consecutive
        # sequence ids (split_equal, sequential), and each ubatch reads all the weights again
        decode = tuple(sorted((s for s in running if s.state is _DECODE), key=_slot_id))
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
        if not n and not admissions and not preemptions:
            return NO_PLAN
        return StepPlan(tuple(admissions), decode, tuple(prefill), tuple(preemptions), n)

    def _admit_fairly(self, admissions: list[Admission], preemptions: list[Preemption]) -> None:
        """Give free slots (and, for a sender under its share, a preempted one) to waiting sequences."""
        free = [sl for sl in self.slots if sl.seq is None]
        if not free:
            senders = {e[3].req.sender for e in self.waiting}
            if len(senders) == 1 and all(s.req.sender in senders for s in self.running):
                return  # one sender holding every slot: nobody to preempt for
        held = Counter(s.req.sender for s in self.running)
        queues: dict[str, list[tuple[int, int, int, Sequence]]] = {}
        for e in sorted(self.waiting):  # (priority, arrival, index) within a sender
            queues.setdefault(e[3].req.sender, []).append(e)
        share = len(self.slots) / len(set(held) | set(queues))
        waiting_senders = set(queues)   # senders with work still waiting (postponed included)
        postponed: set[str] = set()
        taken: set[int] = set()
        while queues:
            # round-robin: the sender holding the fewest slots, then the one waiting longest
            k = min(queues, key=lambda q: (held[q], queues[q][0][1], queues[q][0][2]))
            if held[k] >= share and len(waiting_senders) > 1:
                del queues[k]  # at its share while others wait: the slots left are theirs
                continue
            if not free:
                victim = self._victim(k, held, share)
                if victim is None:
                    break
                preemptions.append(self._preempt(victim))
                held[victim.req.sender] -= 1
                free.append(self.slots[preemptions[-1].slot])
            entry = queues[k].pop(0)
            if not queues[k]:
                del queues[k]
            adm = self._admit(entry[3], free)
            if adm is None:  # its prompt is being evaluated by another sequence: next step
                postponed.add(k)
                continue
            taken.add(id(entry[3]))
            admissions.append(adm)
            free.remove(self.slots[adm.slot])
            held[k] += 1
            if k not in queues and k not in postponed:
                waiting_senders.discard(k)
        if taken or preemptions:
            self.waiting = [e for e in self.waiting if id(e[3]) not in taken]
            for p in preemptions:
                s = p.seq
                self.waiting.append((s.req.priority, s.req.arrival, s.index, s))
            heapq.heapify(self.waiting)

    def _victim(self, sender: str, held: Counter[str], share: float) -> Sequence | None:
        """The sequence to preempt for ``sender``: the newest decoding one of the sender holding the most.

        Only when ``sender`` is under its share, the other over it, and the move narrows
        the gap (holds differ by two or more), so two senders never trade a slot back and forth.
        """
        if held[sender] >= share:
            return None
        top = max((q for q in held if q != sender), key=lambda q: held[q], default=None)
        if top is None or held[top] <= share or held[top] < held[sender] + 2:
            return None
        cands = [s for s in self.running if s.req.sender == top and s.state is _DECODE]
        if not cands:
            return None
        newest = max(cands, key=lambda s: (s.req.priority, s.req.arrival, s.index))
        # one (re)admitted lately runs a while first: no thrashing, and the wait stays bounded
        return newest if newest.admitted_step <= self.step_no - MIN_RUN_STEPS else None

    def _preempt(self, seq: Sequence) -> Preemption:
        """Send ``seq`` back to waiting; its slot keeps its cells (cached) until an admission reuses it."""
        slot = seq.slot
        saved = SavedCells(list(slot.tokens))
        seq.saved = saved
        seq.preemptions += 1
        seq.state = SeqState.WAITING
        seq.slot = None
        slot.seq = None
        slot.last_used = time.monotonic()
        self.running.remove(seq)
        return Preemption(seq, slot.id, saved)

    def _admit(self, seq: Sequence, free: list[Slot]) -> Admission | None:
        """Place ``seq`` in one of the ``free`` slots, or None to postpone it a step."""
        seq.admitted_step = self.step_no
        if seq.saved is not None:
            return self._restore(seq, free)
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
        target = self._target(free, best)
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


    def _target(self, free: list[Slot], best: Slot | None) -> Slot:
        """The free slot for an admission: the one that adds the fewest runs of consecutive busy slots,
        then ``best`` itself (its cached prefix reused in place), then the one whose cache is worth least.

        Each run of consecutive sequence ids is a ubatch of its own in llama.cpp (see ``schedule``):
        two runs decode at about the cost of two steps while the weights dominate (Qwen3-1.7B's shape
        on 2 cores: 16 rows in one run 330 ms, in scattered slots 1.1 s), so filling a hole beats the
        one-off copy of a cached prefix into it.
        """
        busy = self._busy_ids()
        n = len(self.slots)

        def key(sl: Slot) -> tuple[int, bool, bool, float]:
            i = sl.id
            joins = (i > 0 and i - 1 in busy) + (i + 1 < n and i + 1 in busy)
            return (1 - joins, sl is not best, len(sl.tokens) > 0, sl.last_used)

        return min(free, key=key)

    def _busy_ids(self) -> set[int]:
        return {sl.id for sl in self.slots if sl.seq is not None}

    def _restore(self, seq: Sequence, free: list[Slot]) -> Admission:
        """A preempted sequence back in a free slot (``_target``'s choice): it decodes this step."""
        target = self._target(free, None)
        saved = seq.saved
        target.tokens = list(saved.tokens)
        target.saved_len, target.saved_logits = 0, None
        target.seq = seq
        seq.slot = target
        seq.state = _DECODE
        seq.saved = None
        self.running.append(seq)
        return Admission(seq, target.id, len(saved.tokens), None, False, saved)


def _slot_id(s: Sequence) -> int:
    assert s.slot is not None
    return s.slot.id


def _common(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n
