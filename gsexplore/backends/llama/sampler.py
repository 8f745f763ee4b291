"""One sequence's sampler, in vLLM's order: NumPy pre-processing in place, then llama.cpp's chain.

``Plan`` (``plan.py``) is a request's sampling settings resolved against the model's
defaults; ``TokenSampler`` draws the tokens of one choice (its own seed, its own penalty
state), from a row of llama.cpp's logits buffer or from any logits array.
"""
from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from .nucleus import nucleus
from .plan import Plan

if TYPE_CHECKING:
    from .model import LoadedModel

__all__ = ["Plan", "TokenSampler", "Constraint", "TokenLogprob", "PromptLogprob", "prompt_logprob", "logsumexp",
           "top_ids", "clamp_lp"]

NEG_INF = np.float32(-np.inf)


class Constraint(Protocol):
    """A guided-decoding constraint (llguidance-style), one per choice.

    Per generated token, after the reasoning block when the model has one:
    ``mask()`` gives a bool array over the vocabulary (True = allowed) or None (no
    restriction this step); it is applied to the logits before the penalties. A
    constraint may also offer ``apply(logits)`` (set -inf in place where forbidden),
    which the sampler then prefers as the faster path. After each draw the engine
    calls ``consume(token_id)``; ``is_stopped()`` ends the answer (finish_reason
    "stop"); ``is_accepting()`` is recorded in ``Completion.info["constraint_accepting"]``.
    The mask must allow the EOS ids exactly when the constraint accepts. A constraint
    class may offer ``compute_masks(constraints)`` (a static method): the engine then
    computes the masks of all its constrained sequences of a step in one call.
    """

    def mask(self) -> np.ndarray | None: ...
    def consume(self, token_id: int) -> None: ...
    def is_accepting(self) -> bool: ...
    def is_stopped(self) -> bool: ...


def logsumexp(x: np.ndarray) -> float:
    m = float(x.max())
    if not math.isfinite(m):
        return m
    return m + math.log(float(np.exp(x - m, dtype=np.float64).sum()))


def top_ids(x: np.ndarray, n: int) -> list[int]:
    """Ids of the n largest values, largest first (ties: lower id first)."""
    n = min(n, x.size)
    part = np.argpartition(-x, n - 1)[:n]
    return [int(i) for i in part[np.lexsort((part, -x[part]))]]


def clamp_lp(v: float) -> float:
    return max(float(v), -9999.0)  # vLLM clamps -inf to -9999.0


class TokenLogprob(NamedTuple):
    """The raw logprobs of one drawn token: its id and log-softmax value, the most likely ids and theirs."""

    token: int
    logprob: float
    top_ids: list[int]
    top_logprobs: list[float]


class PromptLogprob(NamedTuple):
    """The raw logprobs of one prompt position: the next prompt token, its value and rank, the most likely."""

    token: int
    logprob: float
    rank: int
    top_ids: list[int]
    top_logprobs: list[float]


def prompt_logprob(row: np.ndarray, nxt: int, top: int) -> PromptLogprob:
    """vLLM's prompt_logprobs values for the prompt token ``nxt`` under logits ``row``."""
    lse = logsumexp(row)
    x = float(row[nxt])
    tops = top_ids(row, top) if top else []
    return PromptLogprob(nxt, x - lse, int(np.count_nonzero(row > x)) + 1, tops,
                         [float(row[t]) - lse for t in tops])


class TokenSampler:
    """Picks tokens for one choice: NumPy pre-processing in place, then llama.cpp's chain."""

    def __init__(self, lm: LoadedModel, plan: Plan, seed: int, prompt_ids: Sequence[int]) -> None:
        self.lm = lm
        self.plan = plan
        lc = lm.lc
        self.chain = None
        # top_p without top_k: the kept set comes from ``nucleus`` (no sort of the vocabulary),
        # and the chain only draws from it
        self.nucleus = not plan.greedy and plan.top_k <= 0 and plan.top_p < 1.0
        if not plan.greedy:
            chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
            stages = [("dist", -1)] if self.nucleus else plan.chain_stages()
            for name, v in stages:
                if name == "temp":
                    s = lc.llama_sampler_init_temp(v)
                elif name == "min_p":
                    s = lc.llama_sampler_init_min_p(v, 1)
                elif name == "top_k":
                    s = lc.llama_sampler_init_top_k(int(v))
                elif name == "top_p":
                    s = lc.llama_sampler_init_top_p(v, 1)
                else:
                    s = lc.llama_sampler_init_dist(seed)
                lc.llama_sampler_chain_add(chain, s)
            self.chain = chain
        self.rep = plan.repetition_penalty != 1.0
        self.freq_pres = plan.frequency_penalty != 0.0 or plan.presence_penalty != 0.0
        self.seen: set[int] = set(int(t) for t in prompt_ids) if self.rep else set()
        self.seen_arr = np.fromiter(self.seen, dtype=np.int64, count=len(self.seen))
        self.counts: dict[int, int] = {}
        self.n_out = 0
        self.raw = np.empty(lm.n_vocab, dtype=np.float32) if plan.logprobs else None
        self._td: np.ndarray | None = None
        self.touches = (plan.allowed is not None or plan.bias_ids is not None or plan.min_tokens > 0
                        or self.rep or self.freq_pres)

    def close(self) -> None:
        if self.chain is not None:
            self.lm.lc.llama_sampler_free(self.chain)
            self.chain = None

    def pick(self, x: np.ndarray, constraint: Constraint | None = None, ctx: Any = None,
             idx: int = -1) -> int:
        """Transform logits ``x`` in place and draw a token.

        ``constraint``: a guided-decoding constraint whose mask applies this step.
        ``ctx``/``idx``: ``x`` is row ``idx`` of that llama.cpp context's logits buffer
        (the chain reads it there); without ``ctx`` the chain samples from a
        token-data copy of ``x``.
        """
        plan = self.plan
        if self.raw is not None:
            np.copyto(self.raw, x)
        if self.touches or constraint is not None:
            if constraint is not None:
                apply = getattr(constraint, "apply", None)
                if apply is not None:
                    apply(x)
                else:
                    mask = constraint.mask()
                    if mask is not None:
                        np.copyto(x, NEG_INF, where=~mask)
            if plan.allowed is not None:
                keep = x[plan.allowed]
                x.fill(NEG_INF)
                x[plan.allowed] = keep
            if self.n_out < plan.min_tokens and plan.min_block.size:
                x[plan.min_block] = NEG_INF
            if plan.bias_ids is not None:
                x[plan.bias_ids] += plan.bias_vals
            if self.rep and self.seen_arr.size:
                ids = self.seen_arr
                v = x[ids]
                r = plan.repetition_penalty
                x[ids] = np.where(v > 0, v / r, v * r)
            if self.freq_pres and self.counts:
                ids = np.fromiter(self.counts.keys(), dtype=np.int64, count=len(self.counts))
                c = np.fromiter(self.counts.values(), dtype=np.float32, count=len(self.counts))
                x[ids] -= plan.frequency_penalty * c + plan.presence_penalty
        if self.chain is None:
            tok = int(x.argmax())
        elif self.nucleus:
            ids, z = nucleus(x, plan.temperature, plan.min_p, plan.top_p)
            tok = self._sample_array(z, ids)
        elif ctx is not None:
            tok = int(self.lm.lc.llama_sampler_sample(self.chain, ctx, idx))
        else:
            tok = self._sample_array(x)
        self.accept(tok)
        return tok

    def accept(self, tok: int) -> None:
        self.n_out += 1
        if self.rep and tok not in self.seen:
            self.seen.add(tok)
            self.seen_arr = np.append(self.seen_arr, tok)
        if self.freq_pres:
            self.counts[tok] = self.counts.get(tok, 0) + 1

    def _sample_array(self, x: np.ndarray, ids: np.ndarray | None = None) -> int:
        """The chain's draw from logits ``x`` of the tokens ``ids`` (default: the whole vocabulary, in order)."""
        lc = self.lm.lc
        n = x.size
        if self._td is None or self._td.size < n:  # this sampler's own buffer (samplers run on several threads)
            self._td = np.zeros(max(n, self.lm.n_vocab), dtype=np.dtype(
                [("id", np.intc), ("logit", np.float32), ("p", np.float32)], align=True))
        td = self._td[:n]
        td["id"] = np.arange(n, dtype=np.intc) if ids is None else ids
        td["logit"] = x
        arr = lc.llama_token_data_array(data=td.ctypes.data_as(lc.llama_token_data_p), size=n,
                                        selected=-1, sorted=False)
        lc.llama_sampler_apply(self.chain, ctypes.byref(arr))
        return int(td["id"][arr.selected])

    def logprob_record(self, tok: int) -> TokenLogprob:
        """The raw logprobs of the token just drawn (log-softmax of the logits before any processing)."""
        raw = self.raw
        assert raw is not None
        lse = logsumexp(raw)
        n = self.plan.top_logprobs
        tops = top_ids(raw, n) if n else []
        return TokenLogprob(tok, float(raw[tok]) - lse, tops, [float(raw[t]) - lse for t in tops])
