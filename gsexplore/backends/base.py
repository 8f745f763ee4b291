"""The narrow interface every backend implements, and the helpers they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from ..completion import Completion, Messages, MessagesLike, to_messages
from ..errors import ParamsError
from ..params import Params

__all__ = ["Backend", "Delta", "Messages", "MessagesLike", "merge_params", "to_messages"]


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
    #: Runs requests in this process (one engine): sweeps send them in order from one thread,
    #: prefix-cache friendly, instead of as concurrent async requests.
    sequential: bool = False
    #: Retries rate-limited (429) requests itself, so a sweep must not retry them again.
    retries_rate_limits: bool = False

    def secrets(self) -> list[str]:
        """Values (API keys) that must never appear in rows, logs or stores."""
        return []

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
