"""A finished engine request as a Completion: logprobs shaped as OpenAI's and vLLM's, tools applied.

The engine records raw logprob values (ids, log-softmax values, ranks); here they
become the dicts the wire carries: chat ``logprobs.content`` entries
(``token``, ``logprob``, ``bytes``, ``top_logprobs``) and vLLM's ``prompt_logprobs``
(``{token id: {logprob, rank, decoded_token}}`` per position, None first).
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ... import tools as _tools
from ... import wire
from ...completion import Completion, Usage
from ..llama.model import LoadedModel
from ..llama.sampler import PromptLogprob, TokenLogprob, clamp_lp
from ..llama.sequence import EngineRequest
from .policy import BACKEND, constraint_params, guided_engine_info
from .prompt import Prepared

__all__ = ["build_completion", "token_logprobs", "prompt_logprobs"]


def _item(lm: LoadedModel, tok: int, lp: float, as_ids: bool) -> dict[str, Any]:
    if as_ids:
        s = f"token_id:{tok}"
        b = list(s.encode())
    else:
        data = lm.piece(tok)[0]
        s = data.decode("utf-8", errors="replace")
        b = list(data)
    return {"token": s, "logprob": clamp_lp(lp), "bytes": b}


def token_logprobs(lm: LoadedModel, records: Iterable[TokenLogprob], as_ids: bool) -> list[dict[str, Any]]:
    """OpenAI's ``logprobs.content`` entries of the tokens drawn."""
    out = []
    for r in records:
        entry = _item(lm, r.token, r.logprob, as_ids)
        entry["top_logprobs"] = [_item(lm, t, v, as_ids) for t, v in zip(r.top_ids, r.top_logprobs)]
        out.append(entry)
    return out


def prompt_logprobs(lm: LoadedModel, records: Iterable[PromptLogprob]) -> list[dict[str, Any] | None]:
    """vLLM's ``prompt_logprobs``: None for the first position, then the prompt token and the most likely."""
    out: list[dict[str, Any] | None] = [None]
    for r in records:
        entry = {str(r.token): {"logprob": clamp_lp(r.logprob), "rank": r.rank,
                                "decoded_token": lm.token_str(r.token)}}
        for rank, (t, v) in enumerate(zip(r.top_ids, r.top_logprobs), start=1):
            entry.setdefault(str(t), {"logprob": clamp_lp(v), "rank": rank, "decoded_token": lm.token_str(t)})
        out.append(entry)
    return out


def build_completion(lm: LoadedModel, model_name: str, prep: Prepared, er: EngineRequest) -> Completion:
    """The Completion of a finished engine request (vLLM's tool handling applied to each choice)."""
    plan = prep.plan
    p = prep.params
    outs = [o for o in er.outs if o is not None]
    latency = time.perf_counter() - er.t0
    ttft = None if er.first_token_t is None else er.first_token_t - er.t0
    n_prompt = len(prep.prompt_ids)
    completion_tokens = sum(o.completion_tokens for o in outs)
    id_ = wire.new_id()
    prompt_ids = prep.prompt_ids.tolist()
    plp = None if er.prompt_logprobs is None else prompt_logprobs(lm, er.prompt_logprobs)
    guided = None  # the same for every choice: computed once
    choices = []
    for o in outs:
        content, calls, finish = _tools.tool_message(p, o.content, o.finish_reason)
        info: dict[str, Any] = {
            "sampling_defaults": dict(lm.defaults), "seed": o.seed, "seeded": plan.seeded,
            "prompt_text": prep.prompt_text, "token_ids": o.token_ids,
            "prompt_token_ids": list(prompt_ids),
            "prompt_tokens_evaluated": er.prompt_tokens_evaluated}
        if o.constraint_accepting is not None:
            guided = guided if guided is not None else guided_engine_info(constraint_params(p))
            info["constraint_accepting"] = o.constraint_accepting
            info.update(guided)
        lps = None if o.logprobs is None else token_logprobs(lm, o.logprobs, plan.as_token_ids)
        choices.append(Completion(
            content=content, reasoning_content=o.reasoning_content, finish_reason=finish,
            stop_reason=o.stop_reason, tool_calls=calls, logprobs=lps,
            usage=Usage(n_prompt, completion_tokens, n_prompt + completion_tokens, o.reasoning_tokens),
            prompt_logprobs=plp, latency_s=latency, ttft_s=ttft, backend=BACKEND,
            model=model_name, params=p, messages=list(prep.messages), index=o.index, id=id_, info=info))
    if not choices:  # nothing generated (cancelled before any choice started)
        choices.append(Completion(content=None, usage=Usage(n_prompt, 0, n_prompt), latency_s=latency,
                                  backend=BACKEND, model=model_name, params=p,
                                  messages=list(prep.messages), id=id_))
    for c in choices:
        c.choices = choices
    return choices[0]
