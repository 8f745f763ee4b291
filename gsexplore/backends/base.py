"""The backend contract: what every backend implements, and what it declares to sweeps and the server.

A backend implements one event stream, `Backend.events` (and, when it has a
native async one, `Backend.aevents`); ``chat``, ``achat``, ``stream`` and
``astream`` are written here once over it, so both backends give them the same
meaning.
"""

from __future__ import annotations

import contextlib
import contextvars
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from ..completion import Completion, Messages, MessagesLike, to_messages
from ..errors import ParamsError
from ..params import Params
from .bridge import aiter_in_thread

__all__ = ["Backend", "Delta", "Messages", "MessagesLike", "RetryOverride", "merge_params", "retrying",
           "to_messages"]


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


@dataclass(frozen=True)
class RetryOverride:
    """Retries a caller asks for in place of a backend's own (``gs.sweep(retries=, backoff=)``)."""

    max_retries: int | None = None
    backoff_s: float | None = None


_RETRY: contextvars.ContextVar[RetryOverride | None] = contextvars.ContextVar("gsexplore_retry", default=None)


@contextlib.contextmanager
def retrying(max_retries: int | None = None, backoff_s: float | None = None) -> Iterator[None]:
    """Within this block (and the asyncio tasks it starts) backends retry this many times instead.

    None keeps a backend's own setting. Backends that retry (RemoteBackend) read it
    through `Backend.retry_override`; the rest have nothing to retry.
    """
    token = _RETRY.set(RetryOverride(max_retries, backoff_s))
    try:
        yield
    finally:
        _RETRY.reset(token)


def is_done(d: Any) -> bool:
    """Whether ``d`` is the last item of an event stream (the "done" Delta)."""
    return isinstance(d, Delta) and d.kind == "done"


class Backend(ABC):
    """Generates Completions from messages and Params; local and remote share this shape.

    What a backend declares, for sweeps and ``gsexplore serve``:
    ``remote`` (it generates on a server: the caller's concurrency bounds it),
    ``slots`` (requests it generates at once in this process), ``n_ctx`` (tokens one
    request may hold, None when unknown), ``source`` (the model spec it was loaded from), ``secrets()`` (values to scrub),
    ``prompt_token_count()`` (its tokenizer's count, None when it has none).
    """

    name: str = "backend"
    model: str = ""
    #: Generates on a server: callers bound it with their own concurrency (gs.sweep's ``concurrency``).
    remote: bool = False
    #: Requests generated at once in this process (a local engine's batch); callers keep this many in flight.
    #: A caller may submit more (``gsexplore serve`` submits every admitted request at once): the backend
    #: queues them (LocalBackend's engine, by ``priority`` then arrival).
    slots: int = 1
    #: The model spec the backend was loaded from ("demo", a path, a repo id); None when it has none.
    source: str | None = None
    #: Tokens one request may hold (prompt + completion); None when the backend cannot say.
    n_ctx: int | None = None

    def prepare(self, *, max_request_tokens: int | None = None, concurrency: int | None = None) -> None:
        """Told before a batch of work (``gs.sweep``): its largest prompt + max_tokens (None: unknown)
        and how many requests it has. A backend that sizes itself (LocalBackend's engine) uses it; the
        default does nothing."""

    def secrets(self) -> list[str]:
        """Values (API keys) that must never appear in rows, logs or stores."""
        return []

    def prompt_token_count(self, messages: MessagesLike, params: Params | None = None) -> int | None:
        """How many tokens the prompt of this request has, by the backend's tokenizer; None without one."""
        return None

    @staticmethod
    def retry_override() -> RetryOverride | None:
        """The retries a caller asked for with `retrying` (None: the backend's own)."""
        return _RETRY.get()

    # --- the event stream a backend implements ------------------------------------
    @abstractmethod
    def events(self, messages: MessagesLike, params: Params, *, streaming: bool) -> Iterator[Delta]:
        """Reasoning and content Deltas, then a "done" Delta with the Completion.

        ``streaming`` False: the backend may produce the whole answer at once (one
        non-streaming request); the Deltas still come before "done". Closing the
        iterator early cancels the request.
        """

    def aevents(self, messages: MessagesLike, params: Params, *, streaming: bool) -> AsyncIterator[Delta]:
        """Async twin of `events`; by default `events` runs in a worker thread."""
        return aiter_in_thread(lambda: self.events(messages, params, streaming=streaming), is_done,
                               name=f"gsexplore-{self.name}")

    # --- written once over it -----------------------------------------------------
    def chat(self, messages: MessagesLike, params: Params | None = None, **overrides: Any) -> Completion:
        """Generate one answer (all n choices in `.choices`); with ``stream=True`` it streams and measures ttft."""
        p = merge_params(params, overrides)
        last = None
        for last in self.events(messages, p, streaming=bool(p.stream)):
            pass
        return _finished(last, p)

    async def achat(self, messages: MessagesLike, params: Params | None = None, **overrides: Any) -> Completion:
        """Async twin of `chat`."""
        p = merge_params(params, overrides)
        last = None
        async for last in self.aevents(messages, p, streaming=bool(p.stream)):
            pass
        return _finished(last, p)

    def stream(self, messages: MessagesLike, params: Params | None = None, **overrides: Any) -> Iterator[Delta]:
        """Yield reasoning and content deltas, then a "done" Delta with the Completion (closing it cancels)."""
        return self.events(messages, _streamed(merge_params(params, overrides)), streaming=True)

    def astream(self, messages: MessagesLike, params: Params | None = None, **overrides: Any) -> AsyncIterator[Delta]:
        """Async twin of `stream`."""
        return self.aevents(messages, _streamed(merge_params(params, overrides)), streaming=True)

    def info(self) -> dict[str, Any]:
        """What this backend is: kind, model and its settings."""
        return {"backend": self.name, "model": self.model}

    def close(self) -> None:
        """Release connections or models held by this backend."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _streamed(p: Params) -> Params:
    """p with stream=True (validates the rules that only apply to streaming)."""
    return p if p.stream else p.replace(stream=True)


def _finished(last: Delta | None, p: Params) -> Completion:
    if last is None or last.completion is None:
        raise RuntimeError("the backend's event stream ended without a 'done' Delta")
    c = last.completion
    if not p.stream:  # time to first token only means something when streamed
        for ch in c.choices:
            ch.ttft_s = None
    return c
