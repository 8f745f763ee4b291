"""One choice being generated: its sampler, constraint, text, reasoning split and result.

The engine hands a ``Sequence`` one row of logits per step (``take``); the sequence
draws its token with its own vLLM-order sampler, checks its stops, streams its
text deltas to its request and says whether it finished; ``end`` then builds its
``ChoiceOutput``. Its ``state`` (``SeqState``) is the engine's to change.
Logprobs are recorded raw (ids and values); the backend shapes them.
"""
from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ... import reasoning as _reasoning
from .plan import Plan
from .sampler import Constraint, PromptLogprob, TokenLogprob, TokenSampler
from .text import TextState

if TYPE_CHECKING:
    from .model import LoadedModel

__all__ = ["ChoiceOutput", "EngineRequest", "Sequence", "SeqState"]


class SeqState(enum.Enum):
    """Where a sequence is in the engine: waiting for a slot, evaluating its prompt, drawing tokens, done."""

    WAITING = "waiting"
    PREFILL = "prefill"
    DECODE = "decode"
    DONE = "done"


@dataclass
class ChoiceOutput:
    """One finished choice, as the backend builds its Completion from it."""

    index: int
    content: str | None
    reasoning_content: str | None
    finish_reason: str
    stop_reason: int | str | None
    completion_tokens: int
    reasoning_tokens: int | None = None
    logprobs: list[TokenLogprob] | None = None   # raw; the backend shapes them as OpenAI's
    token_ids: list[int] = field(default_factory=list)
    seed: int | None = None
    constraint_accepting: bool | None = None


@dataclass(eq=False)
class EngineRequest:
    """A request as the engine sees it: a prompt, its plan, and where its events go.

    ``sink`` receives, from the engine's thread, ``(kind, text, index)`` deltas
    ("reasoning" / "content"), then ``("finished", self, None)``, or
    ``("error", exception, None)`` (once: a request whose sequence failed gets no
    "finished"). ``logits_only``: evaluate the prompt and keep the logits of its
    last position (``logits``), generate nothing. ``sender``: who sent it (fair share
    gives each sender an equal part of the slots; "" is one sender like any other).
    """

    prompt_ids: np.ndarray
    plan: Plan
    parser_on: bool
    make_constraint: Callable[[], Constraint | None]
    sink: Callable[[str, Any, Any], None]
    priority: int = 0
    sender: str = ""
    logits_only: bool = False
    arrival: int = 0
    t0: float = field(default_factory=time.perf_counter)
    first_token_t: float | None = None
    cancelled: bool = False
    failed: bool = False
    outs: list[ChoiceOutput | None] = field(default_factory=list)
    prompt_logprobs: list[PromptLogprob] | None = None  # raw, from the second prompt position on
    logits: np.ndarray | None = None
    prompt_tokens_evaluated: int = 0  # prompt tokens this request's sequences decoded themselves
    remaining: int = 0
    seqs: list[Sequence] = field(default_factory=list)

    @property
    def prompt_logprobs_top(self) -> int | None:
        return self.plan.prompt_logprobs

    def cancel(self) -> None:
        """Stop generating; the engine frees its slots at its next step."""
        self.cancelled = True


class Sequence:
    """The token loop of one choice, one step at a time."""

    def __init__(self, lm: LoadedModel, req: EngineRequest, index: int, seed: int, n_ctx: int) -> None:
        self.lm, self.req, self.index, self.seed, self.n_ctx = lm, req, index, seed, n_ctx
        plan = req.plan
        self.max_out = min(plan.max_tokens, n_ctx - len(req.prompt_ids))  # then "length": max_tokens or the slot
        self.sampler = TokenSampler(lm, plan, seed, req.prompt_ids if plan.repetition_penalty != 1.0 else ())
        self.constraint = None if req.logits_only else req.make_constraint()
        self.text = TextState(plan)
        self.splitter = _reasoning.ReasoningSplitter(req.parser_on)
        self.in_reasoning = req.parser_on
        self.think_ids = (lm.think_start, lm.think_end) if req.parser_on else ()
        self.out_ids: list[int] = []
        self.logprobs: list[TokenLogprob] | None = [] if plan.logprobs else None
        self.finish: str | None = None
        self.stop_reason: int | str | None = None
        self.stopped_by_token = False
        self.state = SeqState.WAITING  # changed by the engine only
        self.slot: Any = None
        self.prefill_at = 0          # next prompt position to evaluate
        self.next_tok: int | None = None  # drawn, not yet in the KV cache
        self.admitted_step = 0       # the scheduler's step that (re)admitted it: too young to preempt
        self.saved: Any = None       # SavedCells while preempted (its KV cells in host memory)
        self.preemptions = 0

    @property
    def done(self) -> bool:
        return self.state is SeqState.DONE

    # --- one step -------------------------------------------------------------
    def draws_alone(self) -> bool:
        """This step's draw needs nothing but its row (no guided constraint applies): any thread may make it."""
        return self.constraint is None or self.in_reasoning

    def take(self, x: np.ndarray, ctx: Any = None, idx: int = -1, tok: int | None = None) -> str | None:
        """Draw the next token from logits ``x`` (row ``idx`` of ``ctx``'s buffer, if given), or take ``tok``
        already drawn from them (``picking.RowPicker``).

        Returns the finish reason when this token ends the choice (then call ``end``), else None.
        """
        plan = self.req.plan
        lm = self.lm
        constraint = self.constraint if self.constraint is not None and not self.in_reasoning else None
        if tok is None:
            tok = self.sampler.pick(x, constraint, ctx, idx)
        out_ids = self.out_ids
        out_ids.append(tok)
        n_out = len(out_ids)
        if self.req.first_token_t is None:
            self.req.first_token_t = time.perf_counter()
        if self.logprobs is not None:
            self.logprobs.append(self.sampler.logprob_record(tok))
        if constraint is not None:
            constraint.consume(tok)
        if self.in_reasoning and tok == lm.think_end:
            self.in_reasoning = False
        finish: str | None = None
        stopped_by_token = False
        if n_out >= plan.min_tokens:
            if tok in plan.eos_ids:
                finish, stopped_by_token = "stop", True
                self.stop_reason = None if tok == lm.eos else tok
            elif tok in plan.stop_token_ids:
                finish, stopped_by_token = "stop", True
                self.stop_reason = tok
        self.stopped_by_token = stopped_by_token
        if not stopped_by_token or plan.include_stop:
            data, control = lm.piece(tok)
            if control and plan.skip_special and tok not in self.think_ids:
                data = b""
            hit = self.text.add(data, n_out)
            if hit is not None:
                finish, self.stop_reason = "stop", hit
        if (finish is None and self.constraint is not None and not self.in_reasoning
                and self.constraint.is_stopped()):
            finish = "stop"
        if finish is None and n_out >= self.max_out:
            finish = "length"
        if finish is not None:
            return finish
        piece = self.text.take(False)
        if piece:
            self._emit(self.splitter.feed(piece))
        self.next_tok = tok
        return None

    def end(self, finish: str) -> None:
        """Finish with ``finish`` ("stop", "length", "abort"): flush the text, build the output."""
        self.finish = finish
        self.next_tok = None
        self.forget_saved()
        self.text.flush()
        self._emit(self.splitter.feed(self.text.take(True)))
        self._emit(self.splitter.finish())
        self.sampler.close()
        lm, req = self.lm, self.req
        reasoning_content, content = self.splitter.result()
        n_reason = None
        if lm.has_reasoning and req.parser_on:
            # the EOS / stop token that ended an unterminated think block is not reasoning
            ids = self.out_ids[:-1] if self.stopped_by_token else self.out_ids
            n_reason = _reasoning.count_reasoning_tokens(ids, lm.think_start, lm.think_end)
        req.outs[self.index] = ChoiceOutput(
            index=self.index, content=content, reasoning_content=reasoning_content, finish_reason=finish,
            stop_reason=self.stop_reason, completion_tokens=len(self.out_ids), reasoning_tokens=n_reason,
            logprobs=self.logprobs, token_ids=list(self.out_ids), seed=self.seed,
            constraint_accepting=None if self.constraint is None else bool(self.constraint.is_accepting()))

    def drop(self) -> None:
        """Give up without an output (the sequence failed): free the sampler."""
        self.next_tok = None
        self.forget_saved()
        self.sampler.close()

    def forget_saved(self) -> None:
        """Free the host copy of this sequence's KV cells (it was preempted and will not come back)."""
        if self.saved is not None:
            self.saved.data = None
            self.saved = None

    def _emit(self, pieces: Any) -> None:
        sink = self.req.sink
        for kind, text in pieces:
            sink(kind, text, self.index)
