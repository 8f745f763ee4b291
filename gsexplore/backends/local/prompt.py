"""A request's prompt on the local backend: messages -> chat template -> token ids -> Plan, validated.

The GGUF's own chat template is rendered with Jinja2 (``chat_template_kwargs`` as
template variables, tools as vLLM passes them); ``add_special_tokens`` and
``truncate_prompt_tokens`` apply to the token ids; ``prepare`` also resolves the
sampling Plan (``llama/plan.py``) and whether the reasoning parser is on.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ... import reasoning as _reasoning
from ...chat_template import render_chat_template
from ...completion import Messages
from ...errors import ParamsError
from ...params import Params
from ..base import MessagesLike, to_messages
from ..llama.model import LoadedModel
from ..llama.plan import Plan, make_plan

__all__ = ["Prepared", "with_system", "render", "tokenize_prompt", "prepare"]


@dataclass(slots=True)
class Prepared:
    """A validated request: params, messages, prompt and plan."""

    params: Params
    messages: Messages
    prompt_text: str
    prompt_ids: np.ndarray
    plan: Plan
    parser_on: bool


def with_system(messages: MessagesLike, system_prompt: str | None) -> Messages:
    """The request's messages, with ``system_prompt`` first when they have no system message."""
    msgs = to_messages(messages)
    if system_prompt is not None and not any(m.get("role") == "system" for m in msgs):
        msgs = [{"role": "system", "content": system_prompt}, *msgs]
    return msgs


def render(lm: LoadedModel, model_name: str, msgs: Messages, p: Params) -> str:
    """The prompt text the chat template makes of ``msgs`` (with chat_template_kwargs,
    add_generation_prompt and continue_final_message, as vLLM applies them)."""
    kwargs = dict(p.chat_template_kwargs or {})
    if p.tools:
        if "tools" not in lm.template:
            raise ParamsError(f"tools: the chat template of {model_name} does not render tools, so this "
                              "model cannot be offered any", field="tools", value=p.tools)
        kwargs["tools"] = list(p.tools)  # the tool dicts, as vLLM passes them
    return render_chat_template(lm.template, msgs, add_generation_prompt=p.add_generation_prompt is not False,
                                continue_final_message=bool(p.continue_final_message),
                                bos_token=lm.bos_text, eos_token=lm.eos_text, **kwargs)


def tokenize_prompt(lm: LoadedModel, text: str, p: Params, n_ctx: int) -> np.ndarray:
    """The prompt's token ids (add_special_tokens and truncate_prompt_tokens applied)."""
    toks = lm.tokenize(text, add_special=bool(p.add_special_tokens))
    if p.truncate_prompt_tokens is not None:
        if p.truncate_prompt_tokens > n_ctx:
            raise ParamsError(f"truncate_prompt_tokens={p.truncate_prompt_tokens} is larger than the "
                              f"context ({n_ctx} tokens)", field="truncate_prompt_tokens",
                              value=p.truncate_prompt_tokens)
        toks = toks[-p.truncate_prompt_tokens:]
    return np.asarray(toks, dtype=np.intc)


def prepare(lm: LoadedModel, p: Params, *, model_name: str, system_prompt: str | None, n_ctx: int,
            default_seed: int | None, messages: MessagesLike | None, prompt: str | None = None,
            fit: Callable[[int], int] | None = None) -> Prepared:
    """Render, tokenise and plan a request; ``prompt``: a raw prompt text (no template, no tools, no parser).

    ``n_ctx``: the context truncate_prompt_tokens is checked against; ``fit(n_prompt)``, if
    given, returns the context the request then gets (the engine sized for it), else ``n_ctx``.
    """
    if prompt is None:
        msgs = with_system(messages if messages is not None else [], system_prompt)
        text = render(lm, model_name, msgs, p)
    else:  # a raw prompt (/v1/completions)
        if p.tools:
            raise ParamsError("tools need a chat template: send them with messages", field="tools")
        msgs, text = [], prompt
    toks = tokenize_prompt(lm, text, p, n_ctx)
    if len(toks) == 0:
        raise ParamsError("the prompt is empty after tokenisation", field="prompt" if prompt else "messages")
    plan = make_plan(lm, p, len(toks), n_ctx if fit is None else fit(len(toks)), default_seed)
    parser_on = prompt is None and lm.has_reasoning and p.enable_thinking is not False and not (
        _reasoning.reasoning_ended_in_prompt(toks.tolist(), lm.think_start, lm.think_end))
    return Prepared(p, msgs, text, toks, plan, parser_on)
