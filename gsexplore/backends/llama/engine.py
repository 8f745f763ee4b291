"""The batched engine: one llama.cpp context, ``slots`` sequences, one loop (vLLM's and llama-server's design).

Each turn of the loop in the engine's thread:

1. **schedule**: waiting sequences (by ``priority``, then arrival) get free slots.
   A prompt already in some slot is not evaluated again: its KV cells are copied
   (``llama_memory_seq_cp``) and, when the whole prompt matches, the logits saved
   after it are reused, so the ``n`` choices of a request and the cells of a sweep
   over one prompt evaluate it once. A sequence whose prompt another one is
   evaluating right now waits one step for it.
2. **execute**: one ``llama_batch`` with the next token of every running sequence
   and chunks of the prompts being evaluated (at most ``n_batch`` tokens, running
   sequences first, so a long new prompt does not stall them); one ``llama_decode``.
3. **update**: each sequence draws from its own row of logits with its own sampler
   (``Sequence.take``); finished and cancelled sequences free their slots, whose KV
   cells stay cached for the next prompt that shares them.

Each slot has a KV stream of its own (``n_ctx`` tokens: the most one request may
hold), so a sequence's cells sit in the same places whatever runs beside it, and
with flash attention its attention sums run over its own cells only, so its logits
are bit-identical alone or batched on CPU and a seeded request gives the same
tokens either way. (A unified cache, where slots share one pool of cells,
interleaves their cells; attention without flash attention runs over the longest
sequence of the batch: both change the rounding.)
"""
from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import EngineError
from .driver import driver
from .sampler import clamp_lp, logsumexp, top_ids
from .sequence import EngineRequest, Sequence

if TYPE_CHECKING:
    from .model import LoadedModel

__all__ = ["Engine", "EngineError"]

log = logging.getLogger("gsexplore.engine")

_SEED_MOD = 0xFFFFFFFF  # llama.cpp reads seed 0xFFFFFFFF as "random": stay below it
#: wait for another sequence's prompt evaluation when it would give at least this many tokens
_WAIT_FOR_SHARED = 16


class _Slot:
    """One llama.cpp sequence id: the tokens its KV cells hold and the logits saved after its prompt."""

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


class Engine:
    """One llama.cpp context with ``slots`` sequences, stepped by the process's llama.cpp thread."""

    def __init__(self, lm: LoadedModel, *, n_ctx: int, slots: int, n_threads: int, n_threads_batch: int,
                 n_batch: int = 512) -> None:
        """``n_ctx``: tokens each slot holds (the KV cache holds ``n_ctx * slots``)."""
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        lc = lm.lc
        self.lm, self.lc = lm, lc
        self.n_slots = int(slots)
        self.n_batch = max(int(n_batch), self.n_slots)
        p = lc.llama_context_default_params()
        p.n_ctx = int(n_ctx) * self.n_slots
        p.n_batch = self.n_batch
        p.n_ubatch = self.n_batch
        p.n_seq_max = self.n_slots
        p.kv_unified = False  # a stream per slot: see the module docstring
        p.n_threads = int(n_threads)
        p.n_threads_batch = int(n_threads_batch)
        p.no_perf = True
        # flash attention sums over a sequence's own cells only, whatever the batch's longest
        # sequence: without it the attention's length (and rounding) follows the batch
        p.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_ENABLED
        self.ctx = driver.call(lambda: lc.llama_init_from_model(lm.llm.model, p))
        if not self.ctx:
            raise EngineError(f"llama.cpp could not create a context of {n_ctx} tokens for each of {slots} slots")
        self.n_ctx = int(lc.llama_n_ctx_seq(self.ctx))
        self.mem = lc.llama_get_memory(self.ctx)
        self.batch = lc.llama_batch_init(self.n_batch, 0, 1)
        self._tok = np.ctypeslib.as_array(self.batch.token, shape=(self.n_batch,))
        self._pos = np.ctypeslib.as_array(self.batch.pos, shape=(self.n_batch,))
        self._nseq = np.ctypeslib.as_array(self.batch.n_seq_id, shape=(self.n_batch,))
        self._logits_flag = np.ctypeslib.as_array(self.batch.logits, shape=(self.n_batch,))
        self._nseq[:] = 1
        self.slots = [_Slot(i) for i in range(self.n_slots)]
        self._waiting: list[tuple[int, int, int, Sequence]] = []   # heap: (priority, arrival, index, seq)
        self._running: list[Sequence] = []                         # admission order
        self._incoming: list[EngineRequest] = []
        self._arrivals = itertools.count()
        self._cv = driver.cv
        self._closed = False
        self.stats = {"steps": 0, "prompt_tokens_decoded": 0, "tokens_decoded": 0, "max_batch": 0}
        driver.register(self)

    # --- the outside ----------------------------------------------------------
    def submit(self, req: EngineRequest, n: int, base_seed: int) -> EngineRequest:
        """Queue ``n`` sequences of ``req`` (choice i seeded ``base_seed + i``)."""
        req.outs = [None] * n
        req.remaining = n
        req.arrival = next(self._arrivals)
        req.seqs = [Sequence(self.lm, req, i, (base_seed + i) % _SEED_MOD, self.n_ctx) for i in range(n)]
        with self._cv:
            if self._closed:
                raise EngineError("the engine is closed")
            self._incoming.append(req)
            self._cv.notify()
        return req

    def wake(self) -> None:
        """Make the loop look at cancellations now."""
        with self._cv:
            self._cv.notify()

    def close(self) -> None:
        """Fail what is still queued or running, free the context."""
        with self._cv:
            if self._closed:
                return
            self._closed = True
        driver.unregister(self)

        def free() -> None:
            for req in self._requests():
                req.sink("error", EngineError("the model was closed"), None)
            self.lc.llama_batch_free(self.batch)
            self.lc.llama_free(self.ctx)

        driver.call(free)

    def clear_cache(self) -> None:
        """Forget the KV cells of idle slots (a cold start for the next prompt)."""
        def clear() -> None:
            for slot in self.slots:
                if slot.seq is None:
                    self._truncate(slot, 0)

        driver.call(clear)

    def info(self) -> dict[str, Any]:
        return {"slots": self.n_slots, "n_ctx": self.n_ctx, "n_batch": self.n_batch,
                "kv_cache": f"{self.n_slots} slots of {self.n_ctx} tokens each (prompt + max_tokens of one "
                            f"request <= {self.n_ctx}); {self.n_slots * self.n_ctx} tokens in all",
                "running": len(self._running), "waiting": len(self._waiting), **self.stats}

    # --- the loop (run by the driver's thread) ----------------------------------
    def has_work(self) -> bool:
        return bool(self._incoming or self._waiting or self._running)

    def turn(self) -> bool:
        """schedule -> execute -> update, once. False when nothing was decoded."""
        with self._cv:
            incoming, self._incoming = self._incoming, []
        for req in incoming:
            for s in req.seqs:
                heapq.heappush(self._waiting, (req.priority, req.arrival, s.index, s))
        try:
            self._reap_cancelled()
            self._schedule()
            return self._step()
        except Exception as exc:  # noqa: BLE001 - a llama.cpp failure fails its requests, not the loop
            log.exception("engine step failed")
            self._fail_all(exc)
            return True

    def _requests(self) -> Iterable[EngineRequest]:
        seen: dict[int, EngineRequest] = {}
        for s in [*self._running, *(w[3] for w in self._waiting)]:
            seen.setdefault(id(s.req), s.req)
        for r in self._incoming:
            seen.setdefault(id(r), r)
        return list(seen.values())

    def _fail_all(self, exc: BaseException) -> None:
        reqs = self._requests()
        for s in [*self._running, *(w[3] for w in self._waiting)]:
            self._release(s)
            s.sampler.close()
        self._waiting.clear()
        self._running.clear()
        self.lc.llama_memory_clear(self.mem, True)
        for slot in self.slots:
            slot.tokens, slot.saved_len, slot.saved_logits = [], 0, None
        for req in reqs:
            req.sink("error", exc if isinstance(exc, EngineError) else EngineError(
                f"llama.cpp failed: {type(exc).__name__}: {exc}"), None)

    def _reap_cancelled(self) -> None:
        if any(w[3].req.cancelled for w in self._waiting):
            keep = []
            for w in self._waiting:
                if w[3].req.cancelled:
                    w[3].end("abort")
                    self._finished(w[3])
                else:
                    keep.append(w)
            self._waiting = keep
            heapq.heapify(self._waiting)
        for s in [s for s in self._running if s.req.cancelled]:
            s.end("abort")
            self._retire(s)

    # --- KV streams ----------------------------------------------------------
    def _truncate(self, slot: _Slot, n: int) -> None:
        if n >= len(slot.tokens):
            return
        self.lc.llama_memory_seq_rm(self.mem, slot.id, n, -1)
        del slot.tokens[n:]
        if slot.saved_len > n:
            slot.saved_len, slot.saved_logits = 0, None

    def _copy(self, src: _Slot, dst: _Slot, n: int) -> None:
        """``dst`` holds the first ``n`` tokens of ``src`` (llama.cpp copies whole streams, then we cut)."""
        self.lc.llama_memory_seq_cp(self.mem, src.id, dst.id, -1, -1)
        dst.tokens = src.tokens[:]
        dst.saved_len, dst.saved_logits = src.saved_len, src.saved_logits
        self._truncate(dst, n)

    # --- schedule -------------------------------------------------------------
    def _schedule(self) -> None:
        postponed: list[tuple[int, int, int, Sequence]] = []
        while self._waiting:
            free = [sl for sl in self.slots if sl.seq is None]
            if not free:
                break
            entry = self._waiting[0]
            seq = entry[3]
            heapq.heappop(self._waiting)
            if not self._place(seq, free):  # its prompt is being evaluated by another sequence
                postponed.append(entry)
        for e in postponed:
            heapq.heappush(self._waiting, e)

    def _place(self, seq: Sequence, free: list[_Slot]) -> bool:
        """Admit ``seq`` into one of the ``free`` slots (True), or postpone it a step (False)."""
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
            for other in self._running:
                if other.state == "prefill":
                    k = min(int(_common(other.req.prompt_ids, ids)), P)
                    if k >= c + _WAIT_FOR_SHARED or (k == P and k > c):
                        return False
        exact = best is not None and c == P and best.saved_len == P
        if not exact:
            c = min(c, P - 1)  # at least the last prompt token is evaluated, for its logits
        # the target slot: the source itself when free, else the free slot whose cache is worth least
        if best is not None and best.seq is None:
            target = best
        else:
            target = min(free, key=lambda sl: (len(sl.tokens) > 0, sl.last_used))
        if target is best:
            self._truncate(target, c)
        elif best is not None and c:
            self._copy(best, target, c)
        else:
            self._truncate(target, 0)
        target.seq = seq
        seq.slot = target
        self._running.append(seq)
        if exact:
            assert target.saved_logits is not None
            seq.prefill_at = P
            self._after_prompt(seq, target.saved_logits.copy())
        else:
            seq.state = "prefill"
            seq.prefill_at = c
        return True

    def _after_prompt(self, seq: Sequence, row: np.ndarray, idx: int | None = None) -> None:
        """The prompt is in the cache and ``row`` holds its next-token logits: draw, or hand them over."""
        req = seq.req
        if req.logits_only:
            req.logits = np.array(row, dtype=np.float32, copy=True)
            seq.end("length")
            self._retire(seq)
            return
        if idx is None:
            seq.take(row)
        else:
            seq.take(row, self.ctx, idx)
        if seq.done:
            self._retire(seq)

    # --- execute and update -----------------------------------------------------
    def _step(self) -> bool:
        """One batch, one decode, every sequence updated. False when there was nothing to decode."""
        decode: list[tuple[Sequence, int]] = []
        prefill: list[tuple[Sequence, int, int]] = []   # (seq, batch start, n tokens)
        n = 0
        tok, pos, flags = self._tok, self._pos, self._logits_flag
        seq_id = self.batch.seq_id
        for s in self._running:
            if s.state == "decode" and s.next_tok is not None:
                tok[n] = s.next_tok
                pos[n] = len(s.slot.tokens)
                seq_id[n][0] = s.slot.id
                flags[n] = 1
                decode.append((s, n))
                n += 1
        for s in self._running:
            if s.state != "prefill" or n >= self.n_batch:
                continue
            ids = s.req.prompt_ids
            k = min(len(ids) - s.prefill_at, self.n_batch - n)
            start = s.prefill_at
            tok[n:n + k] = ids[start:start + k]
            pos[n:n + k] = np.arange(start, start + k)
            for j in range(n, n + k):
                seq_id[j][0] = s.slot.id
            flags[n:n + k] = 0
            if s.req.prompt_logprobs_top is not None:
                flags[n:n + k] = 1
            elif start + k == len(ids):
                flags[n + k - 1] = 1
            prefill.append((s, n, k))
            n += k
        if n == 0:
            return False
        self.batch.n_tokens = n
        rc = self.lc.llama_decode(self.ctx, self.batch)
        if rc != 0:
            raise EngineError(f"llama_decode returned {rc} for a batch of {n} tokens "
                              f"({len(decode)} running, {len(prefill)} evaluating prompts)")
        st = self.stats
        st["steps"] += 1
        st["tokens_decoded"] += n
        st["max_batch"] = max(st["max_batch"], n)
        n_vocab = self.lm.n_vocab
        for s, i in decode:
            s.slot.tokens.append(int(s.next_tok))
        for s, start, k in prefill:
            ids = s.req.prompt_ids
            s.slot.tokens.extend(int(t) for t in ids[s.prefill_at:s.prefill_at + k])
            s.req.prompt_tokens_evaluated += k
            st["prompt_tokens_decoded"] += k
        self._compute_masks([s for s, _ in decode]
                            + [s for s, start, k in prefill if s.prefill_at + k == len(s.req.prompt_ids)])
        for s, i in decode:
            row = np.ctypeslib.as_array(self.lc.llama_get_logits_ith(self.ctx, i), shape=(n_vocab,))
            s.take(row, self.ctx, i)
            if s.done:
                self._retire(s)
        for s, start, k in prefill:
            top = s.req.prompt_logprobs_top
            ids = s.req.prompt_ids
            if top is not None:
                self._prompt_logprobs(s, start, k)
            s.prefill_at += k
            if s.prefill_at == len(ids):
                last = start + k - 1
                row = np.ctypeslib.as_array(self.lc.llama_get_logits_ith(self.ctx, last), shape=(n_vocab,))
                s.slot.saved_len = len(ids)
                s.slot.saved_logits = row.copy()
                s.state = "decode"
                self._after_prompt(s, row, last)
        return True

    @staticmethod
    def _compute_masks(seqs: list[Sequence]) -> None:
        """The guided masks of every constrained sequence of this step, computed together."""
        by_kind: dict[type, list[Any]] = {}
        for s in seqs:
            c = s.constraint
            if c is not None and not s.in_reasoning:
                by_kind.setdefault(type(c), []).append(c)
        for kind, cs in by_kind.items():
            batch = getattr(kind, "compute_masks", None)
            if batch is not None and len(cs) > 1:
                batch(cs)

    def _prompt_logprobs(self, s: Sequence, start: int, k: int) -> None:
        """vLLM's prompt_logprobs entries for the prompt positions just evaluated."""
        req = s.req
        if s.index != 0:
            return
        ids = req.prompt_ids
        if req.prompt_logprobs is None:
            req.prompt_logprobs = [None]
        lm = self.lm
        top = int(req.prompt_logprobs_top or 0)
        for j in range(k):
            p = s.prefill_at + j
            if p + 1 >= len(ids):
                break
            row = np.ctypeslib.as_array(self.lc.llama_get_logits_ith(self.ctx, start + j), shape=(lm.n_vocab,))
            nxt = int(ids[p + 1])
            lse = logsumexp(row)
            x = float(row[nxt])
            entry = {str(nxt): {"logprob": clamp_lp(x - lse), "rank": int(np.count_nonzero(row > x)) + 1,
                                "decoded_token": lm.token_str(nxt)}}
            for rank, t in enumerate(top_ids(row, top) if top else (), start=1):
                entry.setdefault(str(t), {"logprob": clamp_lp(float(row[t]) - lse), "rank": rank,
                                          "decoded_token": lm.token_str(t)})
            req.prompt_logprobs.append(entry)

    def _release(self, s: Sequence) -> None:
        if s.slot is not None:
            s.slot.seq = None
            s.slot.last_used = time.monotonic()
            s.slot = None

    def _retire(self, s: Sequence) -> None:
        """A running sequence is done: free its slot (its cells stay cached)."""
        self._release(s)
        if s in self._running:
            self._running.remove(s)
        self._finished(s)

    def _finished(self, s: Sequence) -> None:
        req = s.req
        req.remaining -= 1
        if req.remaining == 0:
            req.sink("finished", req, None)


def _common(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n
