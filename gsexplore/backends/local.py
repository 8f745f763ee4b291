"""`LocalBackend`: a GGUF model through llama-cpp-python, with vLLM's meaning for every parameter.

What is honoured, and how (vLLM V1 semantics; see ``gsexplore.sampling`` for the reference):

* Prompt: the GGUF's own chat template (``tokenizer.chat_template``) rendered with
  Jinja2 and ``chat_template_kwargs`` as template variables (Qwen3's
  ``enable_thinking``), tokenised with special tokens parsed; ``add_special_tokens``
  (default False, as vLLM's chat endpoint) adds what the tokenizer adds (BOS when
  the GGUF says ``add_bos_token``); ``truncate_prompt_tokens`` keeps the last N.
* Sampling, per token, in vLLM's order: allowed_token_ids (and the guided-decoding
  mask hook) -> min_tokens (EOS/stop ids blocked) -> logit_bias (clamped to +-100)
  -> repetition penalty over the prompt and output token *set*, frequency/presence
  penalties over output counts -> temperature (0 = greedy argmax) -> min_p -> top_k
  -> top_p -> draw. The first group touches only the affected ids, in place on
  llama.cpp's logits buffer, with NumPy; the rest is llama.cpp's sampler chain at C
  speed (its min_p, top_k and top_p match vLLM's definitions; a stage that is off
  is left out of the chain; top_k runs first, which gives the same distribution:
  see ``_Plan.chain_stages``). Exact logit ties at the top_k boundary are broken
  by llama.cpp (vLLM keeps every tied token).
* Defaults: the GGUF's ``general.sampling.*`` keys when present, else vLLM's neutral
  values (temperature 1, top_p 1, top_k off, min_p 0, no penalties). Never
  llama-cpp-python's own.
* Seeds: the same seed and request give the same output; an unseeded request (seed
  None or -1) is random, as on vLLM (the seed used is in ``Completion.info``).
  ``n > 1`` evaluates the prompt once and gives choice i the seed ``seed + i``.
* Stopping: EOS (every end-of-generation token of the vocabulary unless
  ``ignore_eos``; stop_reason None for the model's EOS, the token id for the other
  end-of-generation tokens, as vLLM reports generation-config EOS ids),
  ``stop_token_ids`` (stop_reason = the id), ``stop`` strings (stop_reason = the
  string, text cut before it unless ``include_stop_str_in_output``; found across
  token boundaries and held back while streaming), ``max_tokens`` (finish
  "length"; unset = context minus prompt), ``min_tokens``.
* Text: incremental, UTF-8 safe detokenisation; ``skip_special_tokens`` leaves
  control tokens out; ``spaces_between_special_tokens`` behaves as vLLM's fast
  (tokenizers) detokenizer, which never inserts spaces, so for the byte-level BPE
  vocabularies of Qwen3 and SmolLM2 both values give the same text, as on the
  server.
* Qwen3 reasoning (``gsexplore.reasoning``), logprobs / top_logprobs of the raw
  distribution (recorded in our loop, never ``logits_all``), prompt_logprobs (the
  prompt re-evaluated with logits for every position, in chunks),
  return_tokens_as_token_ids.
* Prefix reuse: the longest common token prefix with what the KV cache holds is
  kept; the logits after the last prompt are remembered, so a sweep over one prompt
  evaluates it once.

Guided decoding (guided_*, JSON response_format) goes through the ``_constraint_for``
hook to ``gsexplore.guided`` (llguidance): a token mask applied with the masks
above, only after ``</think>`` for a reasoning model.

Rejected with `UnsupportedParam` (see ``_unsupported``): use_beam_search, a
length_penalty other than 1 (it only matters with beam search), a priority other
than 0 (one request at a time: nothing to prioritise), logits_processors (names of
server-side processors) and extra_body fields.
"""
from __future__ import annotations

import asyncio
import atexit
import codecs
import ctypes
import math
import secrets
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..completion import Completion, Messages
from ..errors import ParamsError, UnsupportedParam
from ..params import Params
from .. import reasoning as _reasoning
from ..chat_template import CHATML_TEMPLATE, render_chat_template
from .base import Backend, Delta, MessagesLike, merge_params, to_messages
from .llama.hardware import ExtraBuffers, choose_extra_buffers, default_threads
from .llama.loading import llama_cpp_module, load_llama, system_info

__all__ = ["LocalBackend", "ChoiceOutput", "to_response_dict", "loaded_models", "unload_all"]

BACKEND = "local"
SAMPLING_EPS = 1e-5        # vLLM: temperature below this is greedy
MIN_TEMPERATURE = 1e-2     # vLLM lifts 0 < t < 0.01 to 0.01
LOGIT_BIAS_LIMIT = 100.0
_SEED_MOD = 0xFFFFFFFF     # llama.cpp reads seed 0xFFFFFFFF as "random": stay below it
_PROMPT_LOGPROBS_CHUNK = 64  # positions per decode when every position needs logits
_NEG_INF = np.float32(-np.inf)

# GGUF general.sampling.* keys -> Params names (what vLLM reads from generation_config)
_GGUF_SAMPLING_KEYS = {
    "general.sampling.temp": ("temperature", float),
    "general.sampling.top_k": ("top_k", int),
    "general.sampling.top_p": ("top_p", float),
    "general.sampling.min_p": ("min_p", float),
    "general.sampling.penalty_repeat": ("repetition_penalty", float),
}
#: The sampling knobs a request may leave unset, with vLLM's neutral defaults (from Params'
#: metadata), used for whatever the GGUF does not set.
NEUTRAL_DEFAULTS: dict[str, Any] = {
    name: Params.spec(name).server_default
    for name in ("temperature", "top_k", "top_p", "min_p", "repetition_penalty", "presence_penalty",
                 "frequency_penalty")
}


def _llama_cpp() -> Any:
    return llama_cpp_module()


# ---------------------------------------------------------------------------
# the guided-decoding hook


class Constraint(Protocol):
    """What ``_constraint_for`` returns: a token-level constraint (llguidance-style).

    Per generated token, after the reasoning block when the model has one:
    ``mask()`` gives a bool array over the vocabulary (True = allowed) or None (no
    restriction this step); it is applied to the logits before the penalties. A
    constraint may also offer ``apply(logits)`` (set -inf in place where forbidden),
    which the loop then prefers as the faster path. After
    each draw the loop calls ``consume(token_id)``; ``is_stopped()`` ends the answer
    (finish_reason "stop"); ``is_accepting()`` is recorded in
    ``Completion.info["constraint_accepting"]``. The mask must allow the EOS ids
    exactly when the constraint accepts.
    """

    def mask(self) -> np.ndarray | None: ...
    def consume(self, token_id: int) -> None: ...
    def is_accepting(self) -> bool: ...
    def is_stopped(self) -> bool: ...


def _constraint_for(params: Params, model: _LoadedModel) -> Constraint | None:
    """HOOK for guided decoding: compile params' guided_* / response_format into a Constraint.

    llguidance compiles it (``gsexplore.guided``; grammars cached per model and
    grammar); None when params ask for no constraint. Called once per choice (each
    choice needs a fresh constraint state).
    """
    from .. import guided

    return guided.local_constraint(params, model)


_GUIDED_FIELDS = ("guided_json", "guided_regex", "guided_choice", "guided_grammar")


def _unsupported(p: Params) -> None:
    """Raise UnsupportedParam for every parameter the local backend cannot honour."""
    def no(name: str, why: str) -> None:
        raise UnsupportedParam(name, BACKEND, why)

    if p.use_beam_search:
        no("use_beam_search", "beam search is not implemented locally; draw several answers with n instead")
    if p.length_penalty is not None and p.length_penalty != 1.0:
        no("length_penalty", "it only has an effect with beam search, which the local backend does not implement")
    if p.priority not in (None, 0):
        no("priority", "the local backend runs one request at a time, so there is nothing to prioritise")
    if p.logits_processors:
        no("logits_processors", "server-side logits processors (given by name) do not exist locally")
    # Guided decoding (gsexplore.guided): every guided kind and guided_whitespace_pattern
    # (JSON only) are enforced by llguidance; a constraint it cannot enforce is a
    # ParamsError here, before any generation. guided_decoding_backend stays in the
    # params (the remote server gets it); the engine used is Completion.info["guided_engine"].
    from .. import guided

    guided.validate(p)
    if p.extra_body:
        no("extra_body", f"fields {sorted(p.extra_body)} are sent verbatim to a server and mean nothing locally")


# ---------------------------------------------------------------------------
# loaded models, shared


class _LoadedModel:
    """One `llama_cpp.Llama` and what we derive from it; shared by every LocalBackend."""

    def __init__(self, path: Path, n_gpu_layers: int, n_ctx: int, n_threads: int | None,
                 n_threads_batch: int | None, extra_buffers: ExtraBuffers | bool | None,
                 verbose: bool) -> None:
        llama_cpp = _llama_cpp()
        self.lc = llama_cpp
        self.path = path
        self.n_gpu_layers = n_gpu_layers
        self.lock = threading.Lock()
        self.llm, self.load_report = load_llama(
            path, n_gpu_layers=n_gpu_layers, n_ctx=n_ctx, n_threads=n_threads,
            n_threads_batch=n_threads_batch, extra_buffers=extra_buffers, verbose=verbose,
            logits_all=False)
        llm = self.llm
        self.ctx = llm.ctx
        self.vocab = llm._model.vocab
        self.n_vocab = int(llm.n_vocab())
        self.n_ctx = int(llm.n_ctx())
        self.n_layer = int(llama_cpp.llama_model_n_layer(llm.model))
        self.meta: dict[str, str] = dict(llm.metadata)
        self.bos = int(llama_cpp.llama_vocab_bos(self.vocab))
        self.eos = int(llama_cpp.llama_vocab_eos(self.vocab))
        self.eog_ids = tuple(i for i in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self.vocab, i))
        self.template = self.meta.get("tokenizer.chat_template") or CHATML_TEMPLATE
        self.has_template = "tokenizer.chat_template" in self.meta
        self.bos_text = self.token_text(self.bos) if self.bos >= 0 else ""
        self.eos_text = self.token_text(self.eos) if self.eos >= 0 else ""
        self.think_start = self._single_token(_reasoning.THINK_START)
        self.think_end = self._single_token(_reasoning.THINK_END)
        self.has_reasoning = self.think_start is not None and self.think_end is not None
        self.gguf_sampling = _gguf_sampling(self.meta)
        self.defaults = {**NEUTRAL_DEFAULTS, **self.gguf_sampling}
        # detokenisation cache: token id -> (bytes with special tokens rendered, is_control)
        self._pieces: dict[int, tuple[bytes, bool]] = {}
        self._piece_buf = ctypes.create_string_buffer(256)
        # the logits after the last prompt evaluated, to skip re-evaluating it
        self.saved_tokens: np.ndarray | None = None
        self.saved_logits = np.empty(self.n_vocab, dtype=np.float32)
        self._view_addr = 0
        self._view: np.ndarray | None = None
        # scratch for sampling from caller-given logits
        self._td: np.ndarray | None = None
        _OPEN.add(self)

    # --- vocabulary ---------------------------------------------------------
    def token_text(self, tok: int) -> str:
        return self.lc.llama_vocab_get_text(self.vocab, tok).decode("utf-8", errors="replace")

    def _single_token(self, text: str) -> int | None:
        ids = self.tokenize(text, add_special=False)
        return ids[0] if len(ids) == 1 else None

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=True)

    def piece(self, tok: int) -> tuple[bytes, bool]:
        """(bytes of the token with special tokens rendered, whether it is a control token)."""
        got = self._pieces.get(tok)
        if got is None:
            lc = self.lc
            n = lc.llama_token_to_piece(self.vocab, tok, self._piece_buf, 256, 0, True)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = lc.llama_token_to_piece(self.vocab, tok, buf, -n, 0, True)
                data = buf.raw[:n]
            else:
                data = self._piece_buf.raw[:n]
            attr = lc.llama_vocab_get_attr(self.vocab, tok)
            control = bool(attr & (lc.LLAMA_TOKEN_ATTR_CONTROL | lc.LLAMA_TOKEN_ATTR_UNKNOWN))
            got = self._pieces[tok] = (data, control)
        return got

    def token_str(self, tok: int) -> str:
        return self.piece(tok)[0].decode("utf-8", errors="replace")

    # --- logits buffer --------------------------------------------------------
    def logits_view(self) -> np.ndarray:
        """llama.cpp's logits of the last evaluated position, as a writable NumPy view (no copy)."""
        ptr = self.lc.llama_get_logits_ith(self.ctx, -1)
        addr = ctypes.cast(ptr, ctypes.c_void_p).value
        if not addr:
            raise RuntimeError("llama.cpp has no logits for the last position")
        if addr != self._view_addr:
            self._view = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
            self._view_addr = addr
        return self._view  # type: ignore[return-value]

    def token_data(self) -> tuple[np.ndarray, np.ndarray]:
        """A reusable llama_token_data buffer over the vocabulary, and the ids 0..n-1."""
        if self._td is None:
            self._td = np.zeros(self.n_vocab, dtype=np.dtype(
                [("id", np.intc), ("logit", np.float32), ("p", np.float32)], align=True))
            self._ids = np.arange(self.n_vocab, dtype=np.intc)
        return self._td, self._ids

    # --- KV cache and prompt evaluation -----------------------------------------
    def eval_prompt(self, toks: np.ndarray) -> None:
        """Make the KV cache hold exactly ``toks`` and the logits buffer their last row.

        Reuses the longest common prefix with what is cached; a prompt identical to
        the last one evaluated is not evaluated at all (its logits were saved).
        """
        llm = self.llm
        P = len(toks)
        n = min(int(llm.n_tokens), P)
        diff = np.flatnonzero(llm.input_ids[:n] != toks[:n])
        common = int(diff[0]) if diff.size else n
        if (common == P and self.saved_tokens is not None and len(self.saved_tokens) == P
                and np.array_equal(self.saved_tokens, toks) and self._trim(P)):
            llm.n_tokens = P
            self.logits_view()[:] = self.saved_logits
            return
        keep = min(common, P - 1)
        if not self._trim(keep):
            keep = 0
            llm.reset()
            self._trim(0)
        llm.n_tokens = keep
        self.saved_tokens = None
        llm.eval(toks[keep:].tolist())
        self._save(toks)

    def eval_prompt_with_logprobs(self, toks: np.ndarray, top_n: int) -> list[dict[str, Any] | None]:
        """Evaluate the whole prompt with logits at every position; vLLM's prompt_logprobs."""
        llm = self.llm
        lc = self.lc
        llm.reset()
        self._trim(0)
        self.saved_tokens = None
        out: list[dict[str, Any] | None] = [None]
        P = len(toks)
        chunk = max(1, min(_PROMPT_LOGPROBS_CHUNK, llm.n_batch))
        tok_list = toks.tolist()
        for start in range(0, P, chunk):
            batch = tok_list[start:start + chunk]
            llm._batch.set_batch(batch=batch, n_past=start, logits_all=True)
            llm._ctx.decode(llm._batch)
            llm.input_ids[start:start + len(batch)] = batch
            llm.n_tokens = start + len(batch)
            rows = np.ctypeslib.as_array(lc.llama_get_logits(self.ctx), shape=(len(batch), self.n_vocab))
            for j in range(len(batch)):
                pos = start + j
                if pos + 1 >= P:
                    break
                out.append(self._prompt_entry(rows[j], tok_list[pos + 1], top_n))
        self._view_addr = 0  # the logits buffer may have moved
        self._save(toks)
        return out

    def _prompt_entry(self, row: np.ndarray, tok: int, top_n: int) -> dict[str, Any]:
        lse = _logsumexp(row)
        x = float(row[tok])
        entry = {str(tok): {"logprob": _clamp_lp(x - lse), "rank": int(np.count_nonzero(row > x)) + 1,
                            "decoded_token": self.token_str(tok)}}
        if top_n:
            for rank, t in enumerate(_top_ids(row, top_n), start=1):
                entry.setdefault(str(t), {"logprob": _clamp_lp(float(row[t]) - lse), "rank": rank,
                                          "decoded_token": self.token_str(t)})
        return entry

    def _save(self, toks: np.ndarray) -> None:
        np.copyto(self.saved_logits, self.logits_view())
        self.saved_tokens = toks.copy()

    def rewind_to_prompt(self) -> None:
        """Back to the state right after the saved prompt (for the next choice of n)."""
        assert self.saved_tokens is not None
        P = len(self.saved_tokens)
        if not self._trim(P):  # pragma: no cover - only models without partial KV removal
            self.eval_prompt(self.saved_tokens.copy())
            return
        self.llm.n_tokens = P
        self.logits_view()[:] = self.saved_logits

    def _trim(self, n: int) -> bool:
        return bool(self.llm._ctx.kv_cache_seq_rm(-1, n, -1))

    def eval_token(self, tok: int) -> None:
        self.llm.eval((tok,))


_LoadKey = tuple[str, int, int, int, int, str]
_REGISTRY: dict[_LoadKey, _LoadedModel] = {}
_REGISTRY_LOCK = threading.Lock()
_OPEN: weakref.WeakSet[_LoadedModel] = weakref.WeakSet()


@atexit.register
def _free_models_at_exit() -> None:
    """Free every loaded model while the interpreter is still whole.

    Left to ``Llama.__del__`` during shutdown, llama-cpp-python finds its module
    globals already gone and prints ``TypeError: 'NoneType' object is not callable``.
    A model busy in a daemon thread (a playground run) is left alone.
    """
    for lm in list(_OPEN):
        if lm.lock.acquire(timeout=1.0):
            try:
                lm.llm.close()
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
            finally:
                lm.lock.release()


def _load(path: Path, n_gpu_layers: int, n_ctx: int, n_threads: int, n_threads_batch: int,
          extra_buffers: ExtraBuffers | bool | None, verbose: bool) -> _LoadedModel:
    choice = choose_extra_buffers(system_info(), extra_buffers)
    key = (str(path.resolve()), int(n_gpu_layers), int(n_ctx), n_threads, n_threads_batch, choice.requested)
    with _REGISTRY_LOCK:
        lm = _REGISTRY.get(key)
        if lm is None:
            lm = _REGISTRY[key] = _LoadedModel(path, n_gpu_layers, n_ctx, n_threads, n_threads_batch,
                                               choice.requested, verbose)
        return lm


def loaded_models() -> list[dict[str, Any]]:
    """The models held in memory: file, n_gpu_layers, n_ctx, n_threads, n_threads_batch, extra_buffers."""
    names = ("file", "n_gpu_layers", "n_ctx", "n_threads", "n_threads_batch", "extra_buffers")
    return [dict(zip(names, k)) for k in _REGISTRY]


def unload_all() -> None:
    """Forget every shared model (memory is freed once no LocalBackend uses it)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()


def _gguf_sampling(meta: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (name, cast) in _GGUF_SAMPLING_KEYS.items():
        if key in meta:
            try:
                out[name] = cast(float(meta[key])) if cast is int else cast(meta[key])
            except ValueError:
                continue
    if out.get("top_k") == 0:
        out["top_k"] = -1
    return out


# ---------------------------------------------------------------------------
# numeric helpers


def _logsumexp(x: np.ndarray) -> float:
    m = float(x.max())
    if not math.isfinite(m):
        return m
    return m + math.log(float(np.exp(x - m, dtype=np.float64).sum()))


def _top_ids(x: np.ndarray, n: int) -> list[int]:
    """Ids of the n largest values, largest first (ties: lower id first)."""
    n = min(n, x.size)
    part = np.argpartition(-x, n - 1)[:n]
    return [int(i) for i in part[np.lexsort((part, -x[part]))]]


def _clamp_lp(v: float) -> float:
    return max(float(v), -9999.0)  # vLLM clamps -inf to -9999.0


# ---------------------------------------------------------------------------
# one request, planned


@dataclass
class _Plan:
    """Everything the token loop needs, resolved from Params and the model's defaults."""

    temperature: float
    top_k: int
    top_p: float
    min_p: float
    repetition_penalty: float
    presence_penalty: float
    frequency_penalty: float
    greedy: bool
    max_tokens: int
    min_tokens: int
    eos_ids: frozenset[int]
    stop_token_ids: frozenset[int]
    stop: tuple[str, ...]
    include_stop: bool
    skip_special: bool
    allowed: np.ndarray | None
    bias_ids: np.ndarray | None
    bias_vals: np.ndarray | None
    min_block: np.ndarray
    logprobs: bool
    top_logprobs: int
    as_token_ids: bool
    n: int
    base_seed: int
    seeded: bool

    def chain_stages(self) -> list[tuple[str, float]]:
        """llama.cpp sampler chain stages after the NumPy part (empty when greedy).

        vLLM's order is temperature -> min_p -> top_k -> top_p. top_k runs first here
        because it commutes with both: temperature is monotone (same k largest) and
        min_p keeps every token within a factor of the top one, which top_k always
        keeps, so both filters keep a top prefix of the same ranking and their
        composition does not depend on the order. The result is the same
        distribution while temperature, min_p, top_p and the draw touch k tokens
        instead of the whole vocabulary (llama.cpp's own chain also truncates first).
        """
        if self.greedy:
            return []
        st: list[tuple[str, float]] = []
        if self.top_k > 0:
            st.append(("top_k", self.top_k))
        if self.temperature != 1.0:
            st.append(("temp", self.temperature))
        if self.min_p > 0:
            st.append(("min_p", self.min_p))
        if self.top_p < 1.0:
            st.append(("top_p", self.top_p))
        st.append(("dist", -1))
        return st


class _TokenSampler:
    """Picks tokens for one choice: NumPy pre-processing in place, then llama.cpp's chain."""

    def __init__(self, lm: _LoadedModel, plan: _Plan, seed: int, prompt_ids: Sequence[int]) -> None:
        self.lm = lm
        self.plan = plan
        lc = lm.lc
        self.chain = None
        if not plan.greedy:
            chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
            for name, v in plan.chain_stages():
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
        self.touches = (plan.allowed is not None or plan.bias_ids is not None or plan.min_tokens > 0
                        or self.rep or self.freq_pres)

    def close(self) -> None:
        if self.chain is not None:
            self.lm.lc.llama_sampler_free(self.chain)
            self.chain = None

    def pick(self, x: np.ndarray, constraint: Constraint | None = None, from_ctx: bool = True) -> int:
        """Transform logits ``x`` in place and draw a token.

        ``constraint``: a guided-decoding constraint whose mask applies this step.
        ``from_ctx``: ``x`` is llama.cpp's own logits buffer (the chain reads it there);
        otherwise the chain samples from a token-data copy of ``x``.
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
                        np.copyto(x, _NEG_INF, where=~mask)
            if plan.allowed is not None:
                keep = x[plan.allowed]
                x.fill(_NEG_INF)
                x[plan.allowed] = keep
            if self.n_out < plan.min_tokens and plan.min_block.size:
                x[plan.min_block] = _NEG_INF
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
        elif from_ctx:
            tok = int(self.lm.lc.llama_sampler_sample(self.chain, self.lm.ctx, -1))
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

    def _sample_array(self, x: np.ndarray) -> int:
        lc = self.lm.lc
        td, ids = self.lm.token_data()
        td["id"] = ids
        td["logit"] = x
        arr = lc.llama_token_data_array(data=td.ctypes.data_as(lc.llama_token_data_p), size=x.size,
                                        selected=-1, sorted=False)
        lc.llama_sampler_apply(self.chain, ctypes.byref(arr))
        return int(td["id"][arr.selected])

    def logprob_entry(self, tok: int, lm: _LoadedModel) -> dict[str, Any]:
        """OpenAI-shaped logprobs of the token just drawn, from the raw logits."""
        raw = self.raw
        assert raw is not None
        lse = _logsumexp(raw)
        plan = self.plan
        entry = _lp_item(lm, tok, float(raw[tok]) - lse, plan.as_token_ids)
        entry["top_logprobs"] = [_lp_item(lm, t, float(raw[t]) - lse, plan.as_token_ids)
                                 for t in (_top_ids(raw, plan.top_logprobs) if plan.top_logprobs else ())]
        return entry


def _lp_item(lm: _LoadedModel, tok: int, lp: float, as_ids: bool) -> dict[str, Any]:
    if as_ids:
        s = f"token_id:{tok}"
        b = list(s.encode())
    else:
        data = lm.piece(tok)[0]
        s = data.decode("utf-8", errors="replace")
        b = list(data)
    return {"token": s, "logprob": _clamp_lp(lp), "bytes": b}


# ---------------------------------------------------------------------------
# text: incremental detokenisation and stop strings


class _TextState:
    """vLLM's detokenizer + stop-string checker for one choice."""

    def __init__(self, plan: _Plan) -> None:
        self.dec = codecs.getincrementaldecoder("utf-8")("replace")
        self.text = ""
        self.stop = plan.stop
        self.include = plan.include_stop
        self.min_tokens = plan.min_tokens
        # chars held back while streaming so a stop string is never emitted
        self.holdback = max(len(s) for s in plan.stop) - 1 if plan.stop and not plan.include_stop else 0
        self.emitted = 0

    def add(self, data: bytes, n_out: int) -> str | None:
        """Append a token's bytes; returns the stop string hit, if any (text already cut)."""
        before = len(self.text)
        if data:
            self.text += self.dec.decode(data)
        if not self.stop:
            return None
        if n_out <= self.min_tokens:
            return None
        new = len(self.text) - before
        if not new:
            return None
        return self._check(new)

    def _check(self, new: int) -> str | None:
        text = self.text
        for s in self.stop:
            start = max(0, len(text) - new - len(s) + 1)
            i = text.find(s, start)
            if i == -1:
                continue
            if self.include:
                i += len(s)
                if i >= len(text):
                    return s
            self.text = text[:i]
            return s
        return None

    def flush(self) -> None:
        self.text += self.dec.decode(b"", final=True)

    def take(self, finished: bool) -> str:
        end = len(self.text) - (0 if finished else self.holdback)
        if end <= self.emitted:
            return ""
        out = self.text[self.emitted:end]
        self.emitted = end
        return out


@dataclass
class ChoiceOutput:
    """One finished choice, as `to_response_dict` needs it."""

    index: int
    content: str | None
    reasoning_content: str | None
    finish_reason: str
    stop_reason: int | str | None
    completion_tokens: int
    reasoning_tokens: int | None = None
    logprobs: list[dict[str, Any]] | None = None
    token_ids: list[int] = field(default_factory=list)
    seed: int | None = None
    constraint_accepting: bool | None = None


def to_response_dict(model: str, choices: Sequence[ChoiceOutput], prompt_tokens: int, *,
                     prompt_logprobs: list[dict[str, Any] | None] | None = None,
                     request_id: str | None = None, created: int | None = None) -> dict[str, Any]:
    """A vLLM-shaped ``chat.completion`` response (the server sends this as JSON)."""
    completion_tokens = sum(c.completion_tokens for c in choices)
    return {
        "id": request_id or f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [{
            "index": c.index,
            "message": {"role": "assistant", "reasoning_content": c.reasoning_content,
                        "content": c.content, "tool_calls": []},
            "logprobs": None if c.logprobs is None else {"content": c.logprobs},
            "finish_reason": c.finish_reason,
            "stop_reason": c.stop_reason,
        } for c in choices],
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens,
                  "completion_tokens": completion_tokens, "prompt_tokens_details": None},
        "prompt_logprobs": prompt_logprobs,
    }


@dataclass
class _Request:
    params: Params
    messages: Messages
    prompt_text: str
    prompt_ids: np.ndarray
    plan: _Plan
    parser_on: bool


# ---------------------------------------------------------------------------
# the backend


#: The system message the demo model gets when a request has none.
DEMO_SYSTEM_PROMPT = "You are a helpful assistant."


class _ModelDefault:
    """Marker: the system prompt the model spec implies (see LocalBackend)."""

    def __repr__(self) -> str:
        return "MODEL_DEFAULT"


MODEL_DEFAULT = _ModelDefault()


class LocalBackend(Backend):
    """A GGUF chat model run in-process by llama.cpp, with vLLM's parameter semantics.

    >>> local = LocalBackend.demo()                        # doctest: +SKIP
    >>> local.chat("What is the capital of France?", temperature=0).content  # doctest: +SKIP
    'The capital of France is Paris.'

    ``model``: a ``.gguf`` path, ``"demo"`` (SmolLM2-135M-Instruct), ``"tiny-qwen3"``
    (the random-weight test model) or a Hugging Face repo id with ``filename`` a
    glob (e.g. ``"Qwen/Qwen3-1.7B-GGUF", "*Q8_0.gguf"``). ``n_gpu_layers=-1``
    offloads every layer when llama.cpp was built with GPU support (a no-op on a CPU
    build: see ``info()``). ``seed`` is the default seed of requests that set none
    (None: fresh randomness per request). Creating a backend again with the same
    file and load options reuses the loaded model (``shared=False`` loads a private
    copy); one generation runs at a time per loaded model.

    ``n_threads`` / ``n_threads_batch``: CPU threads for generation and for prompt
    evaluation; default the physical cores this process may use (affinity and cgroup
    quota respected, hyperthread siblings counted once), as llama.cpp's own tools.
    ``extra_buffers``: llama.cpp's repacked weight buffer types; ``"auto"`` leaves
    them out when the build has AMX, whose buffer type crashes on some Xeons
    (llama.cpp#20824), ``"all"`` opts back in, ``"none"`` never uses them. ``info()``
    says what was chosen, why, and which buffer types hold the weights.

    ``system_prompt``: the system message sent when a request has none; it is part of
    the messages recorded in every Completion. None: the chat template decides (some,
    SmolLM2's among them, then add a persona of their own). The default is None except
    for ``"demo"``, which gets ``DEMO_SYSTEM_PROMPT``: under the "SmolLM, trained by
    Hugging Face" persona of its template this 135M model rambles (greedy "What is the
    capital of France?" answers "L'Étoile, la Cité, ..."), with it it answers "The
    capital of France is Paris."
    """

    name = BACKEND

    def __init__(self, model: str | Path, filename: str | None = None, n_gpu_layers: int = -1,
                 n_ctx: int = 4096, n_threads: int | None = None, seed: int | None = None,
                 verbose: bool = False, shared: bool = True,
                 system_prompt: str | None | _ModelDefault = MODEL_DEFAULT,
                 n_threads_batch: int | None = None,
                 extra_buffers: ExtraBuffers | bool | None = "auto") -> None:
        from ..models import resolve

        path = resolve(str(model), filename)
        self.path = Path(path)
        self.source = str(model)
        self.model = self.path.name
        self.n_gpu_layers = int(n_gpu_layers)
        self.default_seed = None if seed is None or seed == -1 else int(seed)
        if isinstance(system_prompt, _ModelDefault):
            system_prompt = DEMO_SYSTEM_PROMPT if self.source == "demo" else None
        self.system_prompt = system_prompt
        threads = int(n_threads) if n_threads else default_threads()
        threads_batch = int(n_threads_batch) if n_threads_batch else threads
        if shared:
            self._lm = _load(self.path, self.n_gpu_layers, int(n_ctx), threads, threads_batch,
                             extra_buffers, verbose)
        else:  # a model of its own (e.g. several server instances generating at once)
            self._lm = _LoadedModel(self.path, self.n_gpu_layers, int(n_ctx), threads, threads_batch,
                                    extra_buffers, verbose)
        self.n_ctx = self._lm.n_ctx

    @classmethod
    def demo(cls, **kw: Any) -> LocalBackend:
        """The offline demo model, SmolLM2-135M-Instruct (CPU friendly, real answers).

        Requests without a system message get ``DEMO_SYSTEM_PROMPT`` (see the class
        docstring); ``system_prompt=None`` keeps the template's own persona.
        """
        return cls("demo", **kw)

    @classmethod
    def tiny(cls, **kw: Any) -> LocalBackend:
        """The tiny Qwen3-architecture test model (random weights: its output is noise)."""
        return cls("tiny-qwen3", **kw)

    @property
    def llama(self) -> Any:
        """The shared `llama_cpp.Llama` object (hold ``lock`` while using it directly)."""
        return self._lm.llm

    @property
    def lock(self) -> threading.Lock:
        return self._lm.lock

    def __repr__(self) -> str:
        return f"LocalBackend({self.source!r}, file={self.model!r}, n_ctx={self.n_ctx})"

    # --- description -----------------------------------------------------------
    def info(self) -> dict[str, Any]:
        lm = self._lm
        supported = bool(lm.lc.llama_supports_gpu_offload())
        requested = self.n_gpu_layers
        offloaded = (lm.n_layer if requested < 0 else min(requested, lm.n_layer)) if supported else 0
        return {
            "backend": BACKEND,
            "model": self.model,
            "file": str(self.path),
            "architecture": lm.meta.get("general.architecture"),
            "name": lm.meta.get("general.name"),
            "vocab_size": lm.n_vocab,
            "n_ctx": lm.n_ctx,
            "n_ctx_train": int(lm.llm._model.n_ctx_train()),
            "n_layer": lm.n_layer,
            "n_threads": lm.load_report.n_threads,
            "n_threads_batch": lm.load_report.n_threads_batch,
            "extra_buffers": lm.load_report.buffers.requested,
            "extra_buffer_types_used": lm.load_report.buffers.use_extra_bufts,
            "extra_buffers_reason": lm.load_report.buffers.reason,
            "buffer_types": dict(lm.load_report.buffer_sizes_mib),
            "gpu_offload_supported": supported,
            "n_gpu_layers": requested,
            "layers_offloaded": offloaded,
            "chat_template": "gguf" if lm.has_template else "chatml (the GGUF has none)",
            "system_prompt": self.system_prompt,
            "reasoning_parser": "qwen3" if lm.has_reasoning else None,
            "sampling_defaults": dict(lm.gguf_sampling),
            "effective_defaults": dict(lm.defaults),
        }

    def effective_sampling(self, params: Params | None = None, **overrides: Any) -> dict[str, Any]:
        """The sampling settings a request would really use (defaults filled in) and the chain."""
        p = merge_params(params, overrides)
        plan = self._plan(p, 1)
        return {
            "temperature": plan.temperature, "top_k": plan.top_k, "top_p": plan.top_p,
            "min_p": plan.min_p, "repetition_penalty": plan.repetition_penalty,
            "presence_penalty": plan.presence_penalty, "frequency_penalty": plan.frequency_penalty,
            "greedy": plan.greedy,
            "chain": [name if v == -1 else f"{name}({v:g})" for name, v in plan.chain_stages()],
        }

    # --- prompt --------------------------------------------------------------
    def render_prompt(self, messages: MessagesLike, params: Params | None = None, **overrides: Any) -> str:
        """The prompt text the chat template makes of ``messages`` (with chat_template_kwargs,
        add_generation_prompt and continue_final_message, as vLLM applies them)."""
        p = merge_params(params, overrides)
        lm = self._lm
        return render_chat_template(lm.template, self._messages(messages),
                                    add_generation_prompt=p.add_generation_prompt is not False,
                                    continue_final_message=bool(p.continue_final_message),
                                    bos_token=lm.bos_text, eos_token=lm.eos_text,
                                    **(p.chat_template_kwargs or {}))

    def _messages(self, messages: MessagesLike) -> Messages:
        """The request's messages, with ``system_prompt`` first when they have no system message."""
        msgs = to_messages(messages)
        if self.system_prompt is not None and not any(m.get("role") == "system" for m in msgs):
            msgs = [{"role": "system", "content": self.system_prompt}, *msgs]
        return msgs

    def prompt_token_ids(self, messages: MessagesLike, params: Params | None = None, **overrides: Any) -> list[int]:
        """The prompt's token ids (add_special_tokens and truncate_prompt_tokens applied)."""
        p = merge_params(params, overrides)
        return self._tokenize_prompt(self.render_prompt(messages, p), p).tolist()

    def _tokenize_prompt(self, text: str, p: Params) -> np.ndarray:
        toks = self._lm.tokenize(text, add_special=bool(p.add_special_tokens))
        if p.truncate_prompt_tokens is not None:
            if p.truncate_prompt_tokens > self.n_ctx:
                raise ParamsError(f"truncate_prompt_tokens={p.truncate_prompt_tokens} is larger than the "
                                  f"context ({self.n_ctx} tokens)", field="truncate_prompt_tokens",
                                  value=p.truncate_prompt_tokens)
            toks = toks[-p.truncate_prompt_tokens:]
        return np.asarray(toks, dtype=np.intc)

    def _prepare(self, messages: MessagesLike, params: Params | None, overrides: dict[str, Any],
                 streaming: bool) -> _Request:
        p = merge_params(params, overrides)
        if p.stream and not streaming:
            raise ParamsError("stream=True: use LocalBackend.stream() / astream() to stream; "
                              "chat() returns the whole answer", field="stream", value=True)
        _unsupported(p)
        self._check_model(p)
        msgs = self._messages(messages)
        text = self.render_prompt(msgs, p)
        toks = self._tokenize_prompt(text, p)
        if len(toks) == 0:
            raise ParamsError("the prompt is empty after tokenisation", field="messages")
        plan = self._plan(p, len(toks))
        lm = self._lm
        parser_on = lm.has_reasoning and p.enable_thinking is not False and not (
            _reasoning.reasoning_ended_in_prompt(toks.tolist(), lm.think_start, lm.think_end))
        return _Request(p, msgs, text, toks, plan, parser_on)

    def _check_model(self, p: Params) -> None:
        if p.model is None:
            return
        names = {self.model, self.path.stem, str(self.path), self.source}
        if p.model not in names:
            raise ParamsError(f"model={p.model!r} is not the model this backend has loaded "
                              f"({self.model}); create another LocalBackend for it",
                              field="model", value=p.model)

    def _plan(self, p: Params, n_prompt: int) -> _Plan:
        lm = self._lm
        d = lm.defaults

        def pick(name: str) -> Any:
            v = getattr(p, name)
            return d[name] if v is None else v

        t = float(pick("temperature"))
        if 0 < t < MIN_TEMPERATURE:
            t = MIN_TEMPERATURE
        top_k = int(pick("top_k"))
        if top_k in (0, -1) or top_k >= lm.n_vocab:
            top_k = -1
        room = lm.n_ctx - n_prompt
        if room <= 0:
            raise ParamsError(f"the prompt has {n_prompt} tokens and the context is {lm.n_ctx}: "
                              "nothing can be generated (shorten it, use truncate_prompt_tokens, or "
                              "load the model with a larger n_ctx)", field="messages")
        max_tokens = room if p.max_tokens is None else p.max_tokens
        if max_tokens > room:
            raise ParamsError(f"max_tokens={max_tokens} is too large: the context is {lm.n_ctx} tokens "
                              f"and the prompt has {n_prompt} ({max_tokens} > {room})",
                              field="max_tokens", value=max_tokens)
        min_tokens = p.min_tokens or 0
        for name in ("allowed_token_ids", "stop_token_ids"):
            ids = getattr(p, name) or []
            bad = [i for i in ids if not 0 <= i < lm.n_vocab]
            if bad:
                raise ParamsError(f"{name} has ids outside the vocabulary (0..{lm.n_vocab - 1}): {bad}",
                                  field=name, value=ids)
        allowed = None
        if p.allowed_token_ids is not None:
            allowed = np.unique(np.asarray(p.allowed_token_ids, dtype=np.int64))
        bias_ids = bias_vals = None
        if p.logit_bias:
            bad = [i for i in p.logit_bias if not 0 <= int(i) < lm.n_vocab]
            if bad:
                raise ParamsError(f"logit_bias has ids outside the vocabulary (0..{lm.n_vocab - 1}): {bad}",
                                  field="logit_bias", value=p.logit_bias)
            bias_ids = np.asarray([int(i) for i in p.logit_bias], dtype=np.int64)
            bias_vals = np.clip(np.asarray(list(p.logit_bias.values()), dtype=np.float32),
                                -LOGIT_BIAS_LIMIT, LOGIT_BIAS_LIMIT)
        stop_ids = frozenset(p.stop_token_ids or ())
        eos_ids = frozenset() if p.ignore_eos else frozenset(lm.eog_ids)
        # vLLM blocks every stop id during min_tokens, the model's EOS ids even with ignore_eos
        min_block = np.asarray(sorted(frozenset(lm.eog_ids) | stop_ids), dtype=np.int64)
        stop = (p.stop,) if isinstance(p.stop, str) else tuple(p.stop or ())
        seed = p.seed if p.seed is not None and p.seed != -1 else self.default_seed
        seeded = seed is not None
        if seed is None:
            seed = secrets.randbits(32)
        return _Plan(
            temperature=t, top_k=top_k, top_p=float(pick("top_p")), min_p=float(pick("min_p")),
            repetition_penalty=float(pick("repetition_penalty")),
            presence_penalty=float(pick("presence_penalty")),
            frequency_penalty=float(pick("frequency_penalty")),
            greedy=t < SAMPLING_EPS, max_tokens=int(max_tokens), min_tokens=int(min_tokens),
            eos_ids=eos_ids, stop_token_ids=stop_ids, stop=stop,
            include_stop=bool(p.include_stop_str_in_output),
            skip_special=p.skip_special_tokens is not False,
            allowed=allowed, bias_ids=bias_ids, bias_vals=bias_vals, min_block=min_block,
            logprobs=bool(p.logprobs), top_logprobs=int(p.top_logprobs or 0),
            as_token_ids=bool(p.return_tokens_as_token_ids), n=int(p.n or 1),
            base_seed=int(seed), seeded=seeded)

    # --- generation ------------------------------------------------------------
    def _events(self, req: _Request, cancel: threading.Event | None = None) -> Iterator[Delta]:
        """Deltas of every choice, then the "done" Delta; holds the model's lock throughout."""
        lm = self._lm
        plan = req.plan
        t0 = time.perf_counter()
        ttft: float | None = None
        outs: list[ChoiceOutput] = []
        prompt_lp = None
        with lm.lock:
            try:
                if req.params.prompt_logprobs is not None:
                    prompt_lp = lm.eval_prompt_with_logprobs(req.prompt_ids, req.params.prompt_logprobs)
                else:
                    lm.eval_prompt(req.prompt_ids)
                for i in range(plan.n):
                    if i:
                        lm.rewind_to_prompt()
                    seed = (plan.base_seed + i) % _SEED_MOD
                    run = _ChoiceRun(lm, req, i, seed)
                    for kind, text in run.run(cancel):
                        yield Delta(kind, text, i)
                    if ttft is None and run.first_token_t is not None:
                        ttft = run.first_token_t - t0
                    assert run.out is not None
                    outs.append(run.out)
            finally:
                lm.llm._requires_eval = True  # our in-place edits left the logits buffer changed
        latency = time.perf_counter() - t0
        raw = to_response_dict(self.model, outs, len(req.prompt_ids), prompt_logprobs=prompt_lp)
        c = Completion.from_response(raw, backend=BACKEND, params=req.params, messages=req.messages,
                                     latency_s=latency, ttft_s=ttft)
        for ch, o in zip(c.choices, outs):
            ch.usage = _usage_copy(ch.usage, o.reasoning_tokens)
            ch.info = {"sampling_defaults": dict(lm.defaults), "seed": o.seed, "seeded": plan.seeded,
                       "prompt_text": req.prompt_text, "token_ids": o.token_ids,
                       "prompt_token_ids": req.prompt_ids.tolist()}
            if o.constraint_accepting is not None:
                ch.info["constraint_accepting"] = o.constraint_accepting
                ch.info["guided_engine"] = "llguidance"
        yield Delta("done", index=0, completion=c)

    def chat(self, messages: MessagesLike, params: Params | None = None, **overrides: Any) -> Completion:
        """Generate the answer (all ``n`` choices in ``.choices``); see the module doc for semantics."""
        req = self._prepare(messages, params, overrides, streaming=False)
        done = None
        for d in self._events(req):
            if d.kind == "done":
                done = d.completion
        assert done is not None
        done.ttft_s = None  # only meaningful when streamed
        for ch in done.choices:
            ch.ttft_s = None
        return done

    async def achat(self, messages: MessagesLike, params: Params | None = None, **overrides: Any) -> Completion:
        """`chat` in a worker thread (the event loop is not blocked)."""
        return await asyncio.to_thread(self.chat, messages, params, **overrides)

    def stream(self, messages: MessagesLike, params: Params | None = None, **overrides: Any) -> Iterator[Delta]:
        """Yield reasoning/content Deltas as they are generated, then a "done" Delta with the Completion."""
        req = self._prepare(messages, params, overrides, streaming=True)
        return self._events(req)

    async def astream(self, messages: MessagesLike, params: Params | None = None,
                      **overrides: Any) -> AsyncIterator[Delta]:
        """Async twin of `stream`: generation runs in a thread, Deltas arrive through a queue."""
        req = self._prepare(messages, params, overrides, streaming=True)
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()
        end = object()

        def produce() -> None:
            try:
                for d in self._events(req, cancel):
                    loop.call_soon_threadsafe(q.put_nowait, d)
                    if cancel.is_set():
                        break
            except BaseException as exc:  # handed to the consumer
                loop.call_soon_threadsafe(q.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(q.put_nowait, end)

        worker = asyncio.ensure_future(asyncio.to_thread(produce))
        try:
            while True:
                item = await q.get()
                if item is end:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()
            await asyncio.shield(worker)

    # --- first-token tools (the explorer and the statistical tests) ------------------
    def next_token_logits(self, messages: MessagesLike, params: Params | None = None,
                          **overrides: Any) -> np.ndarray:
        """The model's raw logits for the first answer token (a float32 copy)."""
        req = self._prepare(messages, params, overrides, streaming=False)
        with self._lm.lock:
            self._lm.eval_prompt(req.prompt_ids)
            out = self._lm.saved_logits.copy()
            self._lm.llm._requires_eval = True
        return out

    def sample_from_logits(self, logits: np.ndarray, params: Params | None = None, *, seed: int,
                           prompt_ids: Sequence[int] = (), output_ids: Sequence[int] = (),
                           **overrides: Any) -> int:
        """Draw one token from ``logits`` exactly as generation does (same code, same chain).

        ``prompt_ids``/``output_ids`` feed the penalties and min_tokens; ``logits`` is not modified.
        """
        p = merge_params(params, overrides)
        lm = self._lm
        plan = self._plan(p, 1)
        x = np.array(logits, dtype=np.float32, copy=True)
        if x.shape != (lm.n_vocab,):
            raise ValueError(f"logits must have shape ({lm.n_vocab},), got {x.shape}")
        with lm.lock:
            s = _TokenSampler(lm, plan, seed % _SEED_MOD, prompt_ids)
            try:
                for t in output_ids:
                    s.accept(int(t))
                return s.pick(x, from_ctx=False)
            finally:
                s.close()

    def close(self) -> None:
        """Nothing to release per backend: loaded models are shared (see `unload_all`)."""


def _usage_copy(u: Any, reasoning_tokens: int | None) -> Any:
    from ..completion import Usage

    return Usage(u.prompt_tokens, u.completion_tokens, u.total_tokens, reasoning_tokens)


class _ChoiceRun:
    """The token loop of one choice; ``run()`` yields (kind, text) pieces, ``out`` holds the result."""

    def __init__(self, lm: _LoadedModel, req: _Request, index: int, seed: int) -> None:
        self.lm = lm
        self.req = req
        self.index = index
        self.seed = seed
        self.out: ChoiceOutput | None = None
        self.first_token_t: float | None = None  # perf_counter() when the first token was drawn

    def run(self, cancel: threading.Event | None) -> Iterator[tuple[str, str]]:
        lm, req = self.lm, self.req
        plan = req.plan
        p_len = len(req.prompt_ids)
        sampler = _TokenSampler(lm, plan, self.seed, req.prompt_ids if plan.repetition_penalty != 1.0 else ())
        constraint = _constraint_for(req.params, lm)
        text = _TextState(plan)
        splitter = _reasoning.ReasoningSplitter(req.parser_on)
        think_end = lm.think_end
        in_reasoning = req.parser_on
        out_ids: list[int] = []
        logprobs: list[dict[str, Any]] | None = [] if plan.logprobs else None
        finish: str | None = None
        stop_reason: int | str | None = None
        eos_ids, stop_ids = plan.eos_ids, plan.stop_token_ids
        skip_special, include_stop = plan.skip_special, plan.include_stop
        think_ids = (lm.think_start, lm.think_end) if req.parser_on else ()
        max_tokens, min_tokens = plan.max_tokens, plan.min_tokens
        stopped_by_token = False
        try:
            while True:
                x = lm.logits_view()
                tok = sampler.pick(x, constraint if constraint is not None and not in_reasoning else None)
                n_out = len(out_ids) + 1
                out_ids.append(tok)
                if logprobs is not None:
                    logprobs.append(sampler.logprob_entry(tok, lm))
                if constraint is not None and not in_reasoning:
                    constraint.consume(tok)
                if in_reasoning and tok == think_end:
                    in_reasoning = False
                stopped_by_token = False
                if n_out >= min_tokens:
                    if tok in eos_ids:
                        finish, stopped_by_token = "stop", True
                        stop_reason = None if tok == lm.eos else tok
                    elif tok in stop_ids:
                        finish, stopped_by_token = "stop", True
                        stop_reason = tok
                if not stopped_by_token or include_stop:
                    data, control = lm.piece(tok)
                    if control and skip_special and tok not in think_ids:
                        data = b""
                    hit = text.add(data, n_out)
                    if hit is not None:
                        finish, stop_reason = "stop", hit
                if finish is None and constraint is not None and not in_reasoning and constraint.is_stopped():
                    finish = "stop"
                if finish is None and (n_out >= max_tokens or p_len + n_out >= lm.n_ctx):
                    finish = "length"
                if self.first_token_t is None:
                    self.first_token_t = time.perf_counter()
                if finish is not None:
                    break
                piece = text.take(False)
                if piece:
                    yield from splitter.feed(piece)
                if cancel is not None and cancel.is_set():
                    finish = "abort"
                    break
                lm.eval_token(tok)
            text.flush()
            yield from splitter.feed(text.take(True))
            yield from splitter.finish()
        finally:
            sampler.close()
        reasoning_content, content = splitter.result()
        n_reason = None
        if lm.has_reasoning and req.parser_on:
            # the EOS / stop token that ended an unterminated think block is not reasoning
            n_reason = _reasoning.count_reasoning_tokens(
                out_ids[:-1] if stopped_by_token else out_ids, lm.think_start, lm.think_end)
        self.out = ChoiceOutput(
            index=self.index, content=content, reasoning_content=reasoning_content,
            finish_reason=finish, stop_reason=stop_reason, completion_tokens=len(out_ids),
            reasoning_tokens=n_reason, logprobs=logprobs, token_ids=out_ids, seed=self.seed,
            constraint_accepting=None if constraint is None else bool(constraint.is_accepting()))
