"""The batched engine: one llama.cpp context, ``slots`` sequences, one loop (vLLM's and llama-server's design).

Each step of the loop in the engine's thread is ``schedule -> execute -> update``
over one value, the ``StepPlan`` (``step.py``):

1. **schedule**: waiting sequences get free slots with a fair share per sender
   (``EngineRequest.sender``, the request's ``user`` or the server's key label):
   round-robin across senders, none holding its share (slots / senders with
   work) gets another while someone else waits, ``priority`` then arrival within
   a sender (vLLM's meaning); one sender alone gets every slot, as before. A
   sender under its share facing a full engine preempts the newest decoding
   sequence of the sender holding the most (once it has run ``MIN_RUN_STEPS``):
   its KV cells go to host memory (``llama_state_seq_get_data``) and come back
   into a free slot later (``set_data``), with its sampler, seed position,
   constraint and text untouched in its ``Sequence``, so its tokens are the same
   as unpreempted. A prompt already in some slot is not evaluated again: its KV cells are copied
   (``llama_memory_seq_cp``) and, when the whole prompt matches, the logits saved
   after it are reused, so the ``n`` choices of a request and the cells of a sweep
   over one prompt evaluate it once. A sequence whose prompt another one is
   evaluating right now waits one step for it. The batch is chosen here too: the
   next token of every running sequence and chunks of the prompts being evaluated
   (at most ``n_batch`` tokens, running sequences first, so a long new prompt does
   not stall them).
2. **execute**: the plan's saves of preempted cells, restores, KV copies and cuts,
   one ``llama_batch``, one ``llama_decode``.
3. **update**: each sequence draws from its own row of logits with its own sampler
   (``Sequence.take``; the draws themselves spread over the cores ``llama_decode``
   leaves idle meanwhile, ``picking.py``), a cached prompt from its saved logits; finished and
   cancelled sequences free their slots, whose KV cells stay cached for the next
   prompt that shares them. A sequence that fails (its constraint, its text) ends
   alone with an error to its request; only a failed ``llama_decode`` fails the batch.

Each slot has a KV stream of its own (``n_ctx`` tokens: the most one request may
hold), so a sequence's cells sit in the same places whatever runs beside it, and
with flash attention its attention sums run over its own cells only, so its logits
are bit-identical alone or batched on CPU and a seeded request gives the same
tokens either way. (A unified cache, where slots share one pool of cells,
interleaves their cells; attention without flash attention runs over the longest
sequence of the batch: both change the rounding.)
"""
from __future__ import annotations

import contextlib
import ctypes
import heapq
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import EngineError, GSExploreError
from .driver import driver
from .picking import Pick, RowPicker
from .plan import SEED_MOD
from .sampler import prompt_logprob
from .scheduler import NO_PLAN, Scheduler
from .sequence import EngineRequest, Sequence, SeqState
from .kvsave import restore_cells, save_cells
from .step import PrefillChunk, StepPlan

if TYPE_CHECKING:
    from .model import LoadedModel

__all__ = ["Engine", "EngineError", "StepPlan"]

log = logging.getLogger("gsexplore.engine")

_PREFILL, _DECODE, _DONE = SeqState.PREFILL, SeqState.DECODE, SeqState.DONE


class Engine:
    """One llama.cpp context with ``slots`` sequences, stepped by the process's llama.cpp thread."""

    def __init__(self, lm: LoadedModel, *, n_ctx: int, slots: int, n_threads: int, n_threads_batch: int,
                 n_batch: int = 512, kv_cache_type: str = "f16", kv_unified: bool = False) -> None:
        """``n_ctx``: tokens each slot holds (the KV cache holds ``n_ctx * slots``).

        ``kv_cache_type``: "f16", "q8_0" or "q4_0" for K and V (see ``memory.py``).
        ``kv_unified``: one pool of ``n_ctx * slots`` cells shared by all slots, so one
        sequence may grow past ``n_ctx``, at the cost of batch invariance (module docstring).
        """
        from .memory import KV_TYPES

        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        if kv_cache_type not in KV_TYPES:
            raise ValueError(f"kv_cache_type must be one of {', '.join(KV_TYPES)}, got {kv_cache_type!r}")
        lc = lm.lc
        self.lm, self.lc = lm, lc
        self.n_slots = int(slots)
        self.kv_cache_type, self.kv_unified = kv_cache_type, bool(kv_unified)
        self.n_batch = max(int(n_batch), self.n_slots)
        p = lc.llama_context_default_params()
        p.n_ctx = int(n_ctx) * self.n_slots
        p.n_batch = self.n_batch
        p.n_ubatch = self.n_batch
        p.n_seq_max = self.n_slots
        p.kv_unified = self.kv_unified  # default a stream per slot: see the module docstring
        p.type_k = p.type_v = KV_TYPES[kv_cache_type][0]
        p.n_threads = int(n_threads)
        p.n_threads_batch = int(n_threads_batch)
        p.no_perf = True
        # flash attention sums over a sequence's own cells only, whatever the batch's longest
        # sequence: without it the attention's length (and rounding) follows the batch
        p.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_ENABLED
        self.ctx = driver.call(lambda: lc.llama_init_from_model(lm.llm.model, p))
        if not self.ctx:
            raise EngineError(f"llama.cpp could not create a context of {n_ctx} tokens for each of {slots} slots "
                              f"(kv_cache_type={kv_cache_type!r}, kv_unified={self.kv_unified})")
        self.n_ctx = int(lc.llama_n_ctx_seq(self.ctx))
        self.n_cells = int(lc.llama_n_ctx(self.ctx))
        self.mem = lc.llama_get_memory(self.ctx)
        self._init_batch()
        self.sched = Scheduler(self.n_slots, self.n_batch)
        # the step's draws on the cores llama_decode left idle (llama.cpp's threads wait meanwhile)
        self._picker = RowPicker(min(int(n_threads), 8) - 1)
        self.slots = self.sched.slots
        self._incoming: list[EngineRequest] = []
        self._arrivals = itertools.count()
        self._cv = driver.cv
        self._closed = False
        self._held = 0
        #: called with every plan that does something (tests and logs read plans)
        self.on_plan: Callable[[StepPlan], None] | None = None
        self.stats = {"steps": 0, "prompt_tokens_decoded": 0, "tokens_decoded": 0, "max_batch": 0,
                      "preemptions": 0, "restores": 0}
        driver.register(self)

    def _init_batch(self) -> None:
        """The one llama_batch, with NumPy views of its columns.

        Each row's seq_id pointer is pointed into one int32 array of ours, so a prompt
        chunk's sequence ids are one slice assignment instead of a ctypes store per
        token (the original pointers are put back before llama_batch_free).
        """
        lc, nb = self.lc, self.n_batch
        self.batch = lc.llama_batch_init(nb, 0, 1)
        self._tok = np.ctypeslib.as_array(self.batch.token, shape=(nb,))
        self._pos = np.ctypeslib.as_array(self.batch.pos, shape=(nb,))
        self._logits_flag = np.ctypeslib.as_array(self.batch.logits, shape=(nb,))
        np.ctypeslib.as_array(self.batch.n_seq_id, shape=(nb,))[:] = 1
        self._sid = np.zeros(nb, dtype=np.int32)
        # the array of row pointers, as integers: ours point into _sid, llama.cpp's own are kept
        self._seq_id_ptrs = np.ctypeslib.as_array(ctypes.cast(self.batch.seq_id, ctypes.POINTER(ctypes.c_size_t)),
                                                  shape=(nb,))
        self._seq_id_own = self._seq_id_ptrs.copy()
        self._seq_id_ptrs[:] = self._sid.ctypes.data + np.arange(nb, dtype=np.uintp) * self._sid.itemsize
        self._arange = np.arange(nb, dtype=np.int32)

    # --- the outside ----------------------------------------------------------
    def submit(self, req: EngineRequest, n: int, base_seed: int) -> EngineRequest:
        """Queue ``n`` sequences of ``req`` (choice i seeded ``base_seed + i``)."""
        req.outs = [None] * n
        req.remaining = n
        req.arrival = next(self._arrivals)
        req.seqs = [Sequence(self.lm, req, i, (base_seed + i) % SEED_MOD, self.n_ctx) for i in range(n)]
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

    @contextlib.contextmanager
    def held(self) -> Iterator[Engine]:
        """Within this block the loop leaves this engine alone: step it with ``step_now()``."""
        with self._cv:
            self._held += 1
        try:
            yield self
        finally:
            with self._cv:
                self._held -= 1
                self._cv.notify()

    def step_now(self) -> StepPlan:
        """One step on the llama.cpp thread, from any thread (a held engine); returns its plan."""
        return driver.call(self.step)

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
            self._seq_id_ptrs[:] = self._seq_id_own
            self.lc.llama_batch_free(self.batch)
            self.lc.llama_free(self.ctx)
            self._picker.close()

        driver.call(free)

    def clear_cache(self) -> None:
        """Forget the KV cells of idle slots (a cold start for the next prompt)."""
        def clear() -> None:
            for slot in self.slots:
                if slot.seq is None and slot.tokens:
                    self.lc.llama_memory_seq_rm(self.mem, slot.id, 0, -1)
                    slot.cut(0)

        driver.call(clear)

    def info(self) -> dict[str, Any]:
        kv = (f"{self.n_slots} slots sharing {self.n_cells} cells (kv_layout='unified': one request may hold up to "
              f"{self.n_ctx} tokens, all running requests together too)" if self.kv_unified else
              f"{self.n_slots} slots of {self.n_ctx} tokens each (prompt + max_tokens of one "
              f"request <= {self.n_ctx}); {self.n_slots * self.n_ctx} tokens in all")
        return {"slots": self.n_slots, "n_ctx": self.n_ctx, "n_batch": self.n_batch,
                "kv_cache": f"{kv}, {self.kv_cache_type}",
                "running": len(self.sched.running), "waiting": len(self.sched.waiting), **self.stats}

    # --- the loop (run by the driver's thread) ----------------------------------
    def schedule(self) -> StepPlan:
        """This step's plan (see ``Scheduler.schedule``); the slots' mirror already follows it."""
        return self.sched.schedule()

    def idle(self) -> bool:
        """Nothing queued, running or held: the engine may be closed without failing anyone."""
        with self._cv:
            return not (self._held or self._incoming or self.sched.waiting or self.sched.running)

    def has_work(self) -> bool:
        return not self._held and bool(self._incoming or self.sched.waiting or self.sched.running)

    def turn(self) -> bool:
        """One step for the driver. False when it did nothing (only postponed sequences)."""
        return self.step() is not NO_PLAN

    def step(self) -> StepPlan:
        """schedule -> execute -> update, once; the plan it followed."""
        with self._cv:
            incoming, self._incoming = self._incoming, []
        for req in incoming:
            self.sched.push(req)
        try:
            self._reap_cancelled()
            plan = self.schedule()
            if plan is NO_PLAN:
                return plan
            if self.on_plan is not None:
                self.on_plan(plan)
            logits = self.execute(plan)
        except Exception as exc:  # noqa: BLE001 - a llama.cpp failure fails its requests, not the loop
            log.exception("engine step failed")
            self._fail_all(exc)
            return StepPlan()
        self.update(plan, logits)
        return plan

    # --- execute ----------------------------------------------------------------
    def execute(self, plan: StepPlan) -> np.ndarray | None:
        """The plan's saves, restores, copies and cuts, then one ``llama_decode``: the logits rows, or None."""
        lc, mem = self.lc, self.mem
        for pre in plan.preemptions:  # before the admissions that may reuse their slots
            save_cells(lc, self.ctx, pre.slot, pre.saved)
            self.stats["preemptions"] += 1
        for a in plan.admissions:
            if a.restore is not None:
                restore_cells(lc, self.ctx, mem, a.slot, a.restore)
                self.stats["restores"] += 1
                continue
            if a.copied_from is not None:
                lc.llama_memory_seq_cp(mem, a.copied_from, a.slot, -1, -1)  # whole streams, then cut
            lc.llama_memory_seq_rm(mem, a.slot, a.reused, -1)
        n = plan.n_tokens
        if n == 0:
            return None
        tok, pos, sid, flags = self._tok, self._pos, self._sid, self._logits_flag
        n_dec = len(plan.decode)
        for i, s in enumerate(plan.decode):
            slot = s.slot
            tok[i] = s.next_tok
            pos[i] = len(slot.tokens)
            sid[i] = slot.id
        flags[:n_dec] = 1
        n_out = n_dec
        for ch in plan.prefill:
            s, start, k, o = ch.seq, ch.start, ch.n, ch.offset
            ids = s.req.prompt_ids
            tok[o:o + k] = ids[start:start + k]
            np.add(self._arange[:k], start, out=pos[o:o + k])
            sid[o:o + k] = s.slot.id
            if s.req.prompt_logprobs_top is not None:
                flags[o:o + k] = 1
                n_out += k
            else:
                flags[o:o + k] = 0
                if start + k == len(ids):
                    flags[o + k - 1] = 1
                    n_out += 1
        self.batch.n_tokens = n
        rc = lc.llama_decode(self.ctx, self.batch)
        if rc != 0:
            full = (f"; the shared KV cache (kv_layout='unified', {self.n_cells} cells) is full: "
                    "the running sequences together outgrew it" if rc == 1 and self.kv_unified else "")
            raise EngineError(f"llama_decode returned {rc} for a batch of {n} tokens "
                              f"({n_dec} running, {len(plan.prefill)} evaluating prompts){full}")
        st = self.stats
        st["steps"] += 1
        st["tokens_decoded"] += n
        if n > st["max_batch"]:
            st["max_batch"] = n
        if not n_out:
            return None
        # rows with logits are stored contiguously in batch order (llama.h): one view per step
        return np.ctypeslib.as_array(lc.llama_get_logits(self.ctx), shape=(n_out, self.lm.n_vocab))

    # --- update -------------------------------------------------------------------
    def update(self, plan: StepPlan, logits: np.ndarray | None) -> None:
        """Apply a decoded plan: the KV mirror, then every row sampled by its own sequence."""
        st = self.stats
        for s in plan.decode:
            s.slot.tokens.append(s.next_tok)
        ends = []
        for ch in plan.prefill:
            s = ch.seq
            s.slot.tokens.extend(s.req.prompt_ids[ch.start:ch.start + ch.n].tolist())
            s.req.prompt_tokens_evaluated += ch.n
            st["prompt_tokens_decoded"] += ch.n
            if ch.start + ch.n == len(s.req.prompt_ids):
                ends.append(s)
        if plan.decode or ends:
            self._compute_masks(plan.decode, ends)
        ctx = self.ctx
        if plan.decode:
            assert logits is not None
            picks = self._picker.pick(plan.decode, logits)
            for i, s in enumerate(plan.decode):
                self._sample(s, logits[i], ctx, i, picks[i])
        for ch in plan.prefill:
            s = ch.seq
            top = s.req.prompt_logprobs_top
            if top is not None and s.index == 0:
                assert logits is not None
                try:
                    self._prompt_logprobs(s, ch, logits, top)
                except Exception as exc:  # noqa: BLE001 - this sequence's failure, not the batch's
                    self._fail(s, exc)
                    continue
            s.prefill_at += ch.n
            if ch.logits >= 0 and s.prefill_at == len(s.req.prompt_ids):
                assert logits is not None
                row = logits[ch.logits + (ch.n - 1 if top is not None else 0)]
                slot = s.slot
                slot.saved_len = s.prefill_at
                slot.saved_logits = row.copy()
                self._after_prompt(s, row, ctx, ch.offset + ch.n - 1)
        for a in plan.admissions:
            if a.cached and a.seq.state is _PREFILL:
                saved = self.slots[a.slot].saved_logits
                assert saved is not None
                self._after_prompt(a.seq, saved.copy(), None, -1)

    def _sample(self, s: Sequence, row: np.ndarray, ctx: Any, idx: int, pick: Pick = None) -> None:
        """``s`` draws from ``row`` (or takes ``pick``, drawn already); a finished sequence frees its slot,
        a failing one ends alone."""
        if isinstance(pick, BaseException):
            self._fail(s, pick)
            return
        try:
            finish = s.take(row, ctx, idx, pick)
        except Exception as exc:  # noqa: BLE001 - this sequence's failure, not the batch's
            self._fail(s, exc)
            return
        if finish is None:
            s.state = _DECODE
        else:
            self._end(s, finish)

    def _after_prompt(self, s: Sequence, row: np.ndarray, ctx: Any, idx: int) -> None:
        """The prompt is in the cache and ``row`` holds its next-token logits: draw, or hand them over."""
        req = s.req
        if req.logits_only:
            req.logits = np.array(row, dtype=np.float32, copy=True)
            self._end(s, "length")
        else:
            self._sample(s, row, ctx, idx)

    @staticmethod
    def _compute_masks(decode: Iterable[Sequence], ends: Iterable[Sequence]) -> None:
        """The guided masks of every constrained sequence of this step, computed together."""
        by_kind: dict[type, list[Any]] = {}
        for s in itertools.chain(decode, ends):
            c = s.constraint
            if c is not None and not s.in_reasoning:
                by_kind.setdefault(type(c), []).append(c)
        for kind, cs in by_kind.items():
            batch = getattr(kind, "compute_masks", None)
            if batch is not None and len(cs) > 1:
                try:
                    batch(cs)
                except Exception:  # noqa: BLE001 - each sequence then computes its own mask, and a broken one fails alone
                    log.debug("batched guided masks failed; computed per sequence", exc_info=True)

    def _prompt_logprobs(self, s: Sequence, ch: PrefillChunk, logits: np.ndarray, top: int) -> None:
        """vLLM's prompt_logprobs values for the prompt positions just evaluated (raw; shaped by the backend)."""
        req = s.req
        ids = req.prompt_ids
        if req.prompt_logprobs is None:
            req.prompt_logprobs = []
        out = req.prompt_logprobs
        for j in range(ch.n):
            p = ch.start + j
            if p + 1 >= len(ids):
                break
            out.append(prompt_logprob(logits[ch.logits + j], int(ids[p + 1]), top))

    # --- endings --------------------------------------------------------------------
    def _end(self, s: Sequence, finish: str) -> None:
        """``s`` finished ("stop", "length", "abort"): its output is built and its slot freed."""
        try:
            s.end(finish)
        except Exception as exc:  # noqa: BLE001 - this sequence's failure, not the batch's
            self._fail(s, exc)
            return
        s.state = _DONE
        self._retire(s)

    def _fail(self, s: Sequence, exc: BaseException) -> None:
        """``s`` failed on its own: it ends, its request gets the error and its other choices stop."""
        log.warning("choice %d of a request failed: %s: %s", s.index, type(exc).__name__, exc)
        req = s.req
        try:
            s.drop()
        except Exception:  # noqa: BLE001 - already failing
            pass
        s.state = _DONE
        first = not req.failed
        req.failed = req.cancelled = True
        self._retire(s)
        if first:
            err = exc if isinstance(exc, GSExploreError) else EngineError(
                f"choice {s.index} failed: {type(exc).__name__}: {exc}")
            if err is not exc:
                err.__cause__ = exc
            req.sink("error", err, None)

    def _requests(self) -> list[EngineRequest]:
        seen: dict[int, EngineRequest] = {}
        for s in [*self.sched.running, *(w[3] for w in self.sched.waiting)]:
            seen.setdefault(id(s.req), s.req)
        for r in self._incoming:
            seen.setdefault(id(r), r)
        return list(seen.values())

    def _fail_all(self, exc: BaseException) -> None:
        reqs = self._requests()
        for s in [*self.sched.running, *(w[3] for w in self.sched.waiting)]:
            self._release(s)
            s.forget_saved()
            s.sampler.close()
            s.state = _DONE
        self.sched.waiting.clear()
        self.sched.running.clear()
        self.lc.llama_memory_clear(self.mem, True)
        for slot in self.slots:
            slot.tokens, slot.saved_len, slot.saved_logits = [], 0, None
        for req in reqs:
            if not req.failed:
                req.failed = True
                req.sink("error", exc if isinstance(exc, EngineError) else EngineError(
                    f"llama.cpp failed: {type(exc).__name__}: {exc}"), None)

    def _reap_cancelled(self) -> None:
        if any(w[3].req.cancelled for w in self.sched.waiting):
            keep = []
            for w in self.sched.waiting:
                if w[3].req.cancelled:
                    self._end(w[3], "abort")
                else:
                    keep.append(w)
            self.sched.waiting = keep
            heapq.heapify(self.sched.waiting)
        for s in [s for s in self.sched.running if s.req.cancelled]:
            self._end(s, "abort")

    def _release(self, s: Sequence) -> None:
        if s.slot is not None:
            s.slot.seq = None
            s.slot.last_used = time.monotonic()
            s.slot = None

    def _retire(self, s: Sequence) -> None:
        """A sequence is done: free its slot (its cells stay cached) and count it for its request."""
        self._release(s)
        if s in self.sched.running:
            self.sched.running.remove(s)
        req = s.req
        req.remaining -= 1
        if req.remaining == 0 and not req.failed:
            req.sink("finished", req, None)
