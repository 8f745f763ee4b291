"""Branching: "what would it have said" had the model picked another token at some point.

The answer up to token ``index``, plus the chosen alternative, is sent back as a
final assistant message with ``continue_final_message=True,
add_generation_prompt=False`` (vLLM's names, also honoured by `LocalBackend`), so
the model continues that text instead of starting a new turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .completion import Completion
from .params import Params
from .tokens import Tokens

__all__ = ["Branch", "branch", "branch_request"]


@dataclass
class Branch:
    """A continuation from an alternative token: ``text = prefix + token + completion.content``."""

    index: int
    prefix: str
    token: str
    completion: Completion

    @property
    def continuation(self) -> str:
        """What the model wrote after the alternative."""
        return self.completion.content or ""

    @property
    def text(self) -> str:
        """The whole branched answer."""
        return self.prefix + self.token + self.continuation


def branch_request(completion: Completion, index: int, token: str,
                   params: Params | None = None) -> tuple[list[dict[str, Any]], Params]:
    """The messages and params that continue ``completion`` from ``token`` at position ``index``."""
    toks = Tokens(completion)
    if not 0 <= index < len(toks):
        raise IndexError(f"token index {index} is outside the answer's {len(toks)} tokens")
    if toks[index].part != "content":
        raise ValueError("branching inside the reasoning is not supported: pick a token of the answer")
    final: dict[str, Any] = {"role": "assistant", "content": toks.prefix(index) + token}
    if completion.reasoning_content:
        final["reasoning_content"] = completion.reasoning_content  # the template re-renders the thought
    messages = [m for m in completion.messages] + [final]
    base = params or completion.params
    top = max(base.top_logprobs or 0, 5)
    p = base.replace(continue_final_message=True, add_generation_prompt=False, logprobs=True,
                     top_logprobs=top, n=None, stream=None)
    return messages, p


def branch(backend: Any, completion: Completion, index: int, token: str, params: Params | None = None) -> Branch:
    """Continue ``completion`` on ``backend`` from ``token`` (an alternative) at position ``index``."""
    messages, p = branch_request(completion, index, token, params)
    c = backend.chat(messages, p)
    return Branch(index, Tokens(completion).prefix(index), token, c)
