"""A request's sampling settings resolved against the model (``Params -> Plan``).

``Plan`` is everything one choice's token loop needs, in the units the sampler
uses (ids as arrays, stop sets, the seed); ``make_plan`` builds it from ``Params``
and the model's defaults (the GGUF's ``general.sampling.*``, else vLLM's
neutral values), raising ``ParamsError`` for what cannot be honoured.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import ParamsError
from ...params import Params

if TYPE_CHECKING:
    from .model import LoadedModel

__all__ = ["Plan", "make_plan", "SAMPLING_EPS", "MIN_TEMPERATURE", "LOGIT_BIAS_LIMIT", "SEED_MOD"]

SAMPLING_EPS = 1e-5        # vLLM: temperature below this is greedy
MIN_TEMPERATURE = 1e-2     # vLLM lifts 0 < t < 0.01 to 0.01
LOGIT_BIAS_LIMIT = 100.0
SEED_MOD = 0xFFFFFFFF      # llama.cpp reads seed 0xFFFFFFFF as "random": stay below it


@dataclass
class Plan:
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
    #: vLLM's prompt_logprobs: None (off) or how many most likely tokens per prompt position
    prompt_logprobs: int | None = None

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


def _check_ids(name: str, ids: Any, n_vocab: int, value: Any) -> None:
    bad = [i for i in ids if not 0 <= int(i) < n_vocab]
    if bad:
        raise ParamsError(f"{name} has ids outside the vocabulary (0..{n_vocab - 1}): {bad}", field=name, value=value)


def make_plan(lm: LoadedModel, p: Params, n_prompt: int, n_ctx: int, default_seed: int | None) -> Plan:
    """The Plan of ``p`` on model ``lm`` for a prompt of ``n_prompt`` tokens in slots of ``n_ctx``.

    ``default_seed``: the seed of a request that sets none (None: fresh randomness).
    """
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
    room = n_ctx - n_prompt
    if room <= 0:
        raise ParamsError(f"the prompt has {n_prompt} tokens and each slot of this model holds "
                          f"{n_ctx}: nothing can be generated (shorten it, use truncate_prompt_tokens, "
                          "or load the model with a larger n_ctx)", field="messages", key="prompt_too_long",
                          n_prompt=n_prompt, n_ctx=n_ctx)
    max_tokens = room if p.max_tokens is None else p.max_tokens
    if max_tokens > room:
        raise ParamsError(f"max_tokens={max_tokens} is too large: each slot holds {n_ctx} tokens "
                          f"and the prompt has {n_prompt} ({max_tokens} > {room}); load the model "
                          "with a larger n_ctx", field="max_tokens", value=max_tokens, key="max_tokens_room",
                          typed=max_tokens, n_ctx=n_ctx, n_prompt=n_prompt, room=room)
    for name in ("allowed_token_ids", "stop_token_ids"):
        ids = getattr(p, name) or []
        _check_ids(name, ids, lm.n_vocab, ids)
    allowed = None
    if p.allowed_token_ids is not None:
        allowed = np.unique(np.asarray(p.allowed_token_ids, dtype=np.int64))
    bias_ids = bias_vals = None
    if p.logit_bias:
        _check_ids("logit_bias", p.logit_bias, lm.n_vocab, p.logit_bias)
        bias_ids = np.asarray([int(i) for i in p.logit_bias], dtype=np.int64)
        bias_vals = np.clip(np.asarray(list(p.logit_bias.values()), dtype=np.float32),
                            -LOGIT_BIAS_LIMIT, LOGIT_BIAS_LIMIT)
    stop_ids = frozenset(p.stop_token_ids or ())
    eos_ids = frozenset() if p.ignore_eos else frozenset(lm.eog_ids)
    # vLLM blocks every stop id during min_tokens, the model's EOS ids even with ignore_eos
    min_block = np.asarray(sorted(frozenset(lm.eog_ids) | stop_ids), dtype=np.int64)
    stop = (p.stop,) if isinstance(p.stop, str) else tuple(p.stop or ())
    seed = p.seed if p.seed is not None and p.seed != -1 else default_seed
    seeded = seed is not None
    if seed is None:
        seed = secrets.randbits(32)
    return Plan(
        temperature=t, top_k=top_k, top_p=float(pick("top_p")), min_p=float(pick("min_p")),
        repetition_penalty=float(pick("repetition_penalty")),
        presence_penalty=float(pick("presence_penalty")),
        frequency_penalty=float(pick("frequency_penalty")),
        greedy=t < SAMPLING_EPS, max_tokens=int(max_tokens), min_tokens=int(p.min_tokens or 0),
        eos_ids=eos_ids, stop_token_ids=stop_ids, stop=stop,
        include_stop=bool(p.include_stop_str_in_output),
        skip_special=p.skip_special_tokens is not False,
        allowed=allowed, bias_ids=bias_ids, bias_vals=bias_vals, min_block=min_block,
        logprobs=bool(p.logprobs), top_logprobs=int(p.top_logprobs or 0),
        as_token_ids=bool(p.return_tokens_as_token_ids), n=int(p.n or 1),
        base_seed=int(seed), seeded=seeded, prompt_logprobs=p.prompt_logprobs)
