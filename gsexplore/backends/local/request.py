"""The handle of a request in the local engine: its events, its result, its cancellation.

The engine's thread calls ``_sink`` with text deltas and the end; the handle turns
them into Deltas (holding back text that is a tool call, as vLLM's tool parser
streams) for a callback, or a queue read by ``events()`` and ``result()``.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ... import tools as _tools
from ...completion import Completion
from ...errors import EngineError, GSExploreError
from ..base import Delta
from ..llama.sequence import EngineRequest
from .prompt import Prepared

if TYPE_CHECKING:
    from .backend import LocalBackend

__all__ = ["LocalRequest"]


class LocalRequest:
    """A request in the engine: wait for it, iterate its Deltas, or cancel it."""

    def __init__(self, backend: LocalBackend, prep: Prepared, on_event: Callable[[Any], None] | None) -> None:
        self.backend = backend
        self.prep = prep
        self.engine_request: EngineRequest | None = None
        self._on_event = on_event
        self._q: queue.SimpleQueue[Any] | None = None if on_event is not None else queue.SimpleQueue()
        self._done = threading.Event()
        self.completion: Completion | None = None
        self.error: BaseException | None = None
        self._tools = _tools.mode(prep.params) not in (None, "none")
        self._filters: dict[int, _tools.StreamFilter] = {}

    # called from the engine's thread
    def _sink(self, kind: str, value: Any, index: Any) -> None:
        if self._done.is_set():
            return
        if kind == "finished":
            try:
                self.completion = self.backend._completion(self.prep, value)
                for ch in self.completion.choices:  # content held back by the tool filter and still owed
                    owed = self._filters.pop(ch.index).flush(bool(ch.tool_calls)) if ch.index in self._filters else ""
                    if owed:
                        self._emit(Delta("content", owed, ch.index))
                ev: Any = Delta("done", index=0, completion=self.completion)
            except Exception as exc:  # noqa: BLE001 - handed to the waiting caller
                self.error = ev = exc
            self._done.set()
        elif kind == "error":
            self.error = ev = _user_error(value)
            self._done.set()
        elif kind == "content" and self._tools:
            # as vLLM's tool parser streams: text that is a tool call is not content
            f = self._filters.get(index)
            if f is None:
                f = self._filters[index] = _tools.StreamFilter(self.prep.params)
            text = f.feed(value)
            if not text:
                return
            ev = Delta(kind, text, index)
        else:
            ev = Delta(kind, value, index)
        self._emit(ev)

    def _emit(self, ev: Any) -> None:
        if self._on_event is not None:
            self._on_event(ev)
        else:
            assert self._q is not None
            self._q.put(ev)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        """Stop generating: the choices end with finish_reason "abort" at the engine's next step."""
        er = self.engine_request
        if er is not None and not self._done.is_set():
            er.cancel()
            self.backend._engine.wake()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the request has finished (or failed); False on timeout."""
        return self._done.wait(timeout)

    def result(self, timeout: float | None = None) -> Completion:
        """The Completion, once finished (raises what generation raised; cancels on Ctrl-C)."""
        try:
            while not self._done.wait(0.1 if timeout is None else timeout):
                if timeout is not None:
                    raise TimeoutError("the local request did not finish in time")
        except BaseException:
            self.cancel()
            raise
        if self.error is not None:
            raise self.error
        assert self.completion is not None
        return self.completion

    def events(self) -> Iterator[Delta]:
        """The Deltas as they come, then the "done" Delta; closing the iterator cancels."""
        if self._q is None:
            raise RuntimeError("events() needs a request submitted without on_event")
        try:
            while True:
                try:
                    ev = self._q.get(timeout=0.1)
                except queue.Empty:
                    continue
                if isinstance(ev, BaseException):
                    raise ev
                yield ev
                if ev.kind == "done":
                    return
        finally:
            self.cancel()


def _user_error(exc: BaseException) -> BaseException:
    if isinstance(exc, (GSExploreError, ValueError)):
        return exc
    return EngineError(f"local generation failed: {exc}")
