"""Render a model's own chat template (Jinja2) the way Hugging Face and vLLM do.

The GGUF carries the template in its ``tokenizer.chat_template`` metadata. We render
it ourselves (instead of llama-cpp-python's chat handlers) so that
``chat_template_kwargs`` such as Qwen3's ``enable_thinking`` reach the template, as
they do on a vLLM server.

Environment as in transformers' ``chat_template_utils``: a sandboxed Jinja2
environment with ``trim_blocks`` and ``lstrip_blocks``, the ``loopcontrols``
extension, a ``tojson`` filter that keeps non-ASCII text, and the helpers
``raise_exception(msg)`` and ``strftime_now(fmt)``; the ``{% generation %}`` tag
is accepted and ignored.
"""
from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

__all__ = ["CHATML_TEMPLATE", "TemplateError", "render_chat_template"]

#: Used when a GGUF has no chat template (plain ChatML, as llama.cpp's fallback).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class TemplateError(ValueError):
    """The chat template refused the messages (its own ``raise_exception``) or failed."""


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


@lru_cache(maxsize=16)
def _compile(template: str) -> Any:
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _IgnoreGeneration(jinja2.ext.Extension):
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            parser.stream.skip(1)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True,
        extensions=[_IgnoreGeneration, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(template)


def render_chat_template(template: str, messages: list[dict[str, Any]], *,
                         add_generation_prompt: bool = True, bos_token: str = "",
                         eos_token: str = "", continue_final_message: bool = False,
                         **template_kwargs: Any) -> str:
    """The prompt text for ``messages``; ``template_kwargs`` become template variables.

    ``continue_final_message`` cuts the prompt right after the last message's text
    (no end-of-turn token), so the model continues that message, as transformers'
    ``apply_chat_template`` and vLLM do.

    >>> render_chat_template(CHATML_TEMPLATE, [{"role": "user", "content": "hola"}])
    '<|im_start|>user\\nhola<|im_end|>\\n<|im_start|>assistant\\n'
    >>> render_chat_template(CHATML_TEMPLATE, [{"role": "user", "content": "hola"},
    ...     {"role": "assistant", "content": "Buen"}], add_generation_prompt=False,
    ...     continue_final_message=True)
    '<|im_start|>user\\nhola<|im_end|>\\n<|im_start|>assistant\\nBuen'
    """
    import jinja2

    if continue_final_message and add_generation_prompt:
        raise TemplateError("continue_final_message and add_generation_prompt cannot both be on")
    variables = dict(template_kwargs)
    variables.update(messages=messages, add_generation_prompt=add_generation_prompt,
                     bos_token=bos_token, eos_token=eos_token)
    try:
        text = _compile(template).render(**variables)
    except TemplateError:
        raise
    except (jinja2.TemplateError, TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
        # the template met messages it does not expect (its own code failed): the request's fault
        raise TemplateError(f"the chat template failed: {type(exc).__name__}: {exc}") from exc
    return _cut_after_final(text, messages) if continue_final_message else text


def _cut_after_final(text: str, messages: list[dict[str, Any]]) -> str:
    """The rendered prompt up to the end of the final message's content (transformers' rule)."""
    final = messages[-1].get("content") if messages else None
    if not isinstance(final, str) or not final.strip():
        raise TemplateError("continue_final_message needs a final message with text to continue")
    loc = text.rfind(final.strip())
    if loc < 0:
        raise TemplateError("continue_final_message: the template does not render the final message's text")
    if text[loc:loc + len(final.lstrip())] == final.lstrip():
        return text[:loc + len(final.lstrip())]  # the template kept the message's trailing spaces
    return text[:loc + len(final.strip())]
