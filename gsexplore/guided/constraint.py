"""The token-level Constraint the local backend applies (see the package doc)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import GSExploreError, ParamsError
from ..params import Params
from ..reasoning import reasoning_ended_in_prompt
from .grammar import _LOG_LEVEL, ENGINE, GrammarSpec, _format_error, _llg, validate
from .tokenizer import GuidedTokenizer, tokenizer_for

_MATCHERS: OrderedDict[tuple[int, str], Any] = OrderedDict()
_MATCHER_LOCK = threading.Lock()
_MATCHER_CACHE_SIZE = 64


def _new_matcher(tokenizer: GuidedTokenizer, spec: GrammarSpec, params: Params | None = None) -> Any:
    """A fresh LLMatcher for ``spec``: compiled once per (tokenizer, grammar), then deep-copied."""
    llg = _llg()
    key = (id(tokenizer), spec.grammar)
    with _MATCHER_LOCK:
        tmpl = _MATCHERS.get(key)
        if tmpl is not None:
            _MATCHERS.move_to_end(key)
            return tmpl.deep_copy()
    tmpl = llg.LLMatcher(tokenizer.ll, spec.grammar, log_level=_LOG_LEVEL)
    if tmpl.is_error():
        value = getattr(params, spec.field) if params is not None else spec.source
        raise ParamsError(_format_error(spec, tmpl.get_error()), field=spec.field, value=value)
    with _MATCHER_LOCK:
        _MATCHERS[key] = tmpl
        while len(_MATCHERS) > _MATCHER_CACHE_SIZE:
            _MATCHERS.popitem(last=False)
    return tmpl.deep_copy()


_BITS32 = np.arange(32, dtype=np.int64)
_EXECUTOR: Any = None


def _executor() -> Any:
    """llguidance's parallel mask executor (one per process)."""
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = _llg().LLExecutor()
    return _EXECUTOR
_SPARSE_WORDS = 64  # apply(): at most this many mask words with allowed tokens -> gather/scatter


class Constraint:
    """The token-level constraint of one generated sequence (one per choice of ``n``).

    Per step: ``mask()`` (bool over the full llama.cpp vocabulary) or, faster,
    ``apply(logits)`` (sets ``-inf`` in place where the grammar forbids), then
    ``consume(token_id)`` with the token drawn. ``is_stopped()`` means only EOS
    may follow (the grammar is complete and cannot grow), ``is_accepting()`` that
    the output so far satisfies the constraint in full, ``eos_allowed`` that the
    grammar allows EOS now.

    Speed: llguidance writes its packed bit mask straight into a preallocated
    int32 buffer (``unsafe_compute_mask_ptr``); the mask is computed at most once
    per step whichever of ``mask()``, ``apply()``, ``allowed_ids()`` you call.
    ``mask()`` unpacks it with ``np.unpackbits`` (one new 152 kB bool array per
    step, ~15 us on 152k tokens). ``apply()`` writes ``-inf`` in place from
    preallocated buffers (one 152 kB bool unpack per step, nothing else
    vocabulary-sized); it is the fastest way to use the constraint, and the one
    LocalBackend's loop uses.

    ``starts_after_token``: until that token (``</think>``) is consumed the
    constraint is inactive: everything is allowed, nothing is fed to the grammar.
    """

    def __init__(self, matcher: Any, tokenizer: GuidedTokenizer, spec: GrammarSpec, *,
                 starts_after_token: int | None = None) -> None:
        self._m = matcher
        self.tokenizer = tokenizer
        self.spec = spec
        self.kind = spec.kind
        self.engine = ENGINE
        self.starts_after_token = starts_after_token
        self.active = starts_after_token is None
        self.n_vocab = tokenizer.n_vocab
        self._buf = np.zeros(tokenizer.mask_words, dtype=np.int32)
        self._inv = np.empty_like(self._buf)
        # llguidance writes its own vocabulary's words; the rest stays 0 (= forbidden)
        self._ll_bytes = ((tokenizer.ll.vocab_size + 31) // 32) * 4
        self._fresh = False
        self.finished = False
        self.n_consumed = 0

    # --- the mask -------------------------------------------------------------
    def _compute(self) -> None:
        if not self._fresh:
            self._m.unsafe_compute_mask_ptr(self._buf.ctypes.data, self._ll_bytes)
            if self._m.is_error():
                self._raise()
            self._fresh = True

    def mask(self) -> np.ndarray:
        """Bool array of length ``n_vocab``: True where the next token may be drawn.

        While inactive (before ``</think>``) a shared read-only all-True array.
        """
        if not self.active:
            return self.tokenizer._all_true
        self._compute()
        return np.unpackbits(self._buf.view(np.uint8), count=self.n_vocab, bitorder="little").view(bool)

    def packed_mask(self) -> np.ndarray:
        """The packed mask (int32 words, bit ``i % 32`` of word ``i // 32`` is token ``i``); do not modify."""
        if not self.active:
            return np.full(self.tokenizer.mask_words, -1, dtype=np.int32)
        self._compute()
        return self._buf

    def allowed_ids(self) -> np.ndarray:
        """The token ids allowed next (int64, ascending); every id while inactive."""
        if not self.active:
            return np.arange(self.n_vocab)
        self._compute()
        nz = np.flatnonzero(self._buf)
        if len(nz) * 32 > self.n_vocab // 16:
            return np.flatnonzero(self.mask())
        bits = np.unpackbits(self._buf[nz].view(np.uint8), bitorder="little").view(bool).reshape(-1, 32)
        ids = (nz[:, None] * 32 + _BITS32)[bits]
        return ids[ids < self.n_vocab]

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """Set ``logits`` to ``-inf`` in place where the grammar forbids; returns ``logits``.

        ``logits`` is 1-D float of length ``n_vocab`` (a longer one has its tail
        forbidden too). No-op while inactive. When only a few mask words have
        allowed tokens: gather those logits, fill ``-inf``, scatter them back.
        Otherwise: invert the packed words in a preallocated buffer, unpack them
        to a bool view and ``np.copyto(logits, -inf, where=forbidden)``. Measured
        in LocalBackend's loop on the 152k vocabulary (the logits cold in cache
        after llama.cpp's decode) this beat an additive 0/-inf bias made with a
        256-entry table and scattering only the forbidden ids.
        """
        if not self.active:
            return logits
        self._compute()
        n = min(len(logits), len(self._buf) * 32)
        nz = np.flatnonzero(self._buf)
        if len(nz) <= _SPARSE_WORDS:  # few allowed: gather, fill, scatter
            bits = np.unpackbits(self._buf[nz].view(np.uint8), bitorder="little").view(bool).reshape(-1, 32)
            ids = (nz[:, None] * 32 + _BITS32)[bits]
            ids = ids[ids < n]
            keep = logits[ids]
            logits.fill(-np.inf)
            logits[ids] = keep
            return logits
        np.invert(self._buf, out=self._inv)
        forbidden = np.unpackbits(self._inv.view(np.uint8), count=n, bitorder="little").view(bool)
        np.copyto(logits[:n], -np.inf, where=forbidden)
        if len(logits) > n:
            logits[n:] = -np.inf
        return logits

    @staticmethod
    def compute_masks(constraints: Sequence[Constraint]) -> None:
        """Compute the next-token masks of several constraints at once, in llguidance's thread pool.

        The batched engine calls this once per step with every constrained sequence's
        constraint; each then finds its mask ready (``apply``, ``mask`` compute nothing).
        """
        todo = [c for c in constraints if c.active and not c._fresh and not c.finished]
        if len(todo) < 2:
            return
        words = max(c._ll_bytes for c in todo) // 4
        bitmask = np.zeros((len(todo), words), dtype=np.int32)
        _executor().unsafe_compute_mask_ptr([(c._m, i) for i, c in enumerate(todo)], bitmask.ctypes.data,
                                            words * 4, len(todo))
        for i, c in enumerate(todo):
            if c._m.is_error():
                c._raise()
            c._buf[:words] = bitmask[i]
            c._fresh = True

    # --- advancing ------------------------------------------------------------
    def consume(self, token_id: int) -> None:
        """Advance with the token drawn. Raises GSExploreError if the grammar rejects it."""
        token_id = int(token_id)
        self._fresh = False
        if not self.active:
            if token_id == self.starts_after_token:
                self.active = True  # the next token is the first constrained one (vLLM)
            return
        self.n_consumed += 1
        if token_id in self.tokenizer.eos_ids and (self._m.is_stopped() or self._m.is_accepting()):
            self.finished = True
            if not self._m.is_stopped():
                self._m.consume_token(token_id)
            return
        if not self._m.consume_token(token_id):
            self._raise(token_id)

    def consume_tokens(self, token_ids: Iterable[int]) -> None:
        """consume() each token in turn."""
        for t in token_ids:
            self.consume(t)

    def _raise(self, token_id: int | None = None) -> None:
        err = self._m.get_error() or f"token {token_id} is not allowed here"
        err = err.split("\n<state>")[0].strip()
        raise GSExploreError(f"guided decoding ({self.kind}, {ENGINE}) failed: {err}")

    def is_accepting(self) -> bool:
        """The output so far satisfies the constraint in full (EOS may end it now)."""
        return self.finished or bool(self._m.is_accepting())

    def is_stopped(self) -> bool:
        """Nothing but EOS can follow (the constraint is complete); False while inactive."""
        return self.active and (self.finished or bool(self._m.is_stopped()))

    @property
    def eos_allowed(self) -> bool:
        """Whether the grammar allows EOS as the next token (always while inactive)."""
        return not self.active or self.finished or bool(self._m.is_accepting())

    @property
    def error(self) -> str:
        """llguidance's error message, '' when none."""
        return self._m.get_error()

    def fork(self) -> Constraint:
        """An independent copy in the same state (e.g. for another choice of ``n``)."""
        c = Constraint(self._m.deep_copy(), self.tokenizer, self.spec,
                       starts_after_token=self.starts_after_token)
        c.active, c.finished, c.n_consumed = self.active, self.finished, self.n_consumed
        return c

    def __repr__(self) -> str:
        state = "inactive" if not self.active else ("stopped" if self.is_stopped() else "active")
        return f"Constraint({self.kind}, {ENGINE}, {state}, consumed={self.n_consumed})"


def is_reasoning_end(token_ids: Sequence[int], think_start: int | None, think_end: int | None) -> bool:
    """vLLM's ``is_reasoning_end``: the last think token in ``token_ids`` is ``</think>``.

    Always True for a vocabulary without ``</think>`` (nothing to wait for).
    """
    return think_end is None or reasoning_ended_in_prompt(token_ids, think_start, think_end)


def compile_constraint(params: Params, tokenizer: GuidedTokenizer, *,
                       prompt_tokens: Sequence[int] | None = None,
                       reasoning: bool | None = None) -> Constraint | None:
    """The Constraint for ``params`` on this model, or None when params ask for none.

    Validates first (ParamsError before any generation). Whether the constraint
    waits for ``</think>`` (``reasoning``): None decides as vLLM with a reasoning
    parser does: only with a reasoning vocabulary; then, with ``prompt_tokens``,
    unless the prompt's last think token is ``</think>`` (vLLM's
    ``is_reasoning_end``); without them, unless ``enable_thinking`` is False.
    False: constrained from the first token (a caller that gates the reasoning
    block itself, like LocalBackend's loop); True: wait for ``</think>``.
    Compiled grammars are cached per (tokenizer, grammar); each call returns a
    new Constraint in its initial state (cheap: a deep copy).
    """
    spec = validate(params)
    if spec is None:
        return None
    matcher = _new_matcher(tokenizer, spec, params)
    if reasoning is None:
        reasoning = False
        if tokenizer.has_reasoning:
            if prompt_tokens is not None:
                reasoning = not is_reasoning_end(prompt_tokens, tokenizer.think_start, tokenizer.think_end)
            else:
                reasoning = params.enable_thinking is not False
    if reasoning and tokenizer.think_end is None:
        raise ParamsError("this model has no </think> token, so a constraint cannot wait for the "
                          "end of its reasoning", field="chat_template_kwargs")
    return Constraint(matcher, tokenizer, spec, starts_after_token=tokenizer.think_end if reasoning else None)


def local_constraint(params: Params, model: Any) -> Constraint | None:
    """The Constraint LocalBackend's token loop uses for one choice (its ``constraint_for`` hook).

    ``model`` is the backend's loaded model (anything with ``.llm``, the
    ``llama_cpp.Llama``). The loop gates the reasoning block itself (no mask and
    no consume until ``</think>``), so the constraint starts at once here.
    """
    spec = validate(params)
    if spec is None:
        return None
    return compile_constraint(params, tokenizer_for(model.llm), reasoning=False)
