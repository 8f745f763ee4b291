"""The narrow interface every backend implements, and the helpers they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Union

from ..completion import Completion, Messages
from ..errors import ParamsError
from ..params import Params

MessagesLike = Union[str, Messages]


@dataclass
class Delta:
    """One piece of a streamed answer.

    kind "reasoning" / "content" carry text; the last item of every stream has
    kind "done" and the finished `Completion` (usage, finish_reason, latency, ttft).
    """

    kind: Literal["reasoning", "content", "done"]
    text: str = ""
    index: int = 0
    completion: Completion | None = None


def to_messages(messages: MessagesLike) -> Messages:
    """A str becomes one user message; a list of {"role", "content"} dicts is checked and copied."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if not isinstance(messages, list) or not messages:
        raise ParamsError("messages must be a non-empty str or list of {'role', 'content'} dicts",
                          field="messages", value=messages)
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise ParamsError(f"messages[{i}] must be a dict with 'role' and 'content'",
                              field="messages", value=m)
        if m["role"] not in ("system", "user", "assistant", "tool", "developer"):
            raise ParamsError(f"messages[{i}].role={m['role']!r} is not allowed: "
                              "use system, user, assistant, tool or developer", field="messages", value=m)
    return [dict(m) for m in messages]


def merge_params(params: Params | None, overrides: dict[str, Any]) -> Params:
    """params with keyword overrides applied (validated)."""
    base = params if params is not None else Params()
    if not isinstance(base, Params):
        raise ParamsError(f"params must be a gsexplore.Params, not {type(base).__name__}", field="params")
    return base.replace(**overrides) if overrides else base


class Backend(ABC):
    """Generates Completions from messages and Params; local and remote share this shape."""

    name: str = "backend"
    model: str = ""

    @abstractmethod
    def chat(self, messages: MessagesLike, params: Params | None = None, **overrides: Any) -> Completion:
        """Generate one answer (all n choices in `.choices`)."""

    @abstractmethod
    async def achat(self, messages: MessagesLike, params: Params | None = None, **overrides: Any) -> Completion:
        """Async twin of `chat`."""

    @abstractmethod
    def stream(self, messages: MessagesLike, params: Params | None = None, **overrides: Any) -> Iterator[Delta]:
        """Yield reasoning and content deltas, then a "done" Delta with the Completion."""

    @abstractmethod
    def astream(self, messages: MessagesLike, params: Params | None = None, **overrides: Any) -> AsyncIterator[Delta]:
        """Async twin of `stream`."""

    def info(self) -> dict[str, Any]:
        """What this backend is: kind, model and its settings."""
        return {"backend": self.name, "model": self.model}

    def close(self) -> None:
        """Release connections or models held by this backend."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
