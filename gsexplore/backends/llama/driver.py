"""The one thread that runs llama.cpp in this process, for every engine.

llama.cpp's CPU backend parallelises with OpenMP, and OpenMP gives every calling
thread a team of its own. Two teams on a machine with fewer cores than their
threads make libgomp stop spinning between operations ("throttled" waits), and
then every decode runs about three times slower (measured: 107 tokens/s alone,
33 once a second thread had decoded). So every engine's steps, and anything else
that computes with llama.cpp (a benchmark's raw decode), run on this thread.
"""
from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

__all__ = ["Driver", "driver"]

T = TypeVar("T")


class Steppable(Protocol):
    def has_work(self) -> bool: ...
    def turn(self) -> bool: ...


class Driver:
    """Runs ``turn()`` of every registered engine that has work, and queued calls, on one thread."""

    def __init__(self) -> None:
        self.cv = threading.Condition()
        self._engines: list[Steppable] = []
        self._calls: collections.deque[tuple[Callable[[], Any], Future[Any]]] = collections.deque()
        self._thread: threading.Thread | None = None

    def _ensure_started(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="gsexplore-llama", daemon=True)
            self._thread.start()

    def register(self, engine: Steppable) -> None:
        with self.cv:
            self._engines.append(engine)
            self._ensure_started()

    def unregister(self, engine: Steppable) -> None:
        with self.cv:
            if engine in self._engines:
                self._engines.remove(engine)

    def notify(self) -> None:
        """Something changed (a request came, one was cancelled): look again."""
        with self.cv:
            self.cv.notify()

    def on_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the driver's thread, between engine steps, and return its result."""
        if self.on_thread():
            return fn()
        fut: Future[T] = Future()
        with self.cv:
            self._calls.append((fn, fut))
            self._ensure_started()
            self.cv.notify()
        return fut.result()

    def _run(self) -> None:
        while True:
            with self.cv:
                while not self._calls and not any(e.has_work() for e in self._engines):
                    self.cv.wait()
                calls = list(self._calls)
                self._calls.clear()
                engines = [e for e in self._engines if e.has_work()]
            for fn, fut in calls:
                try:
                    fut.set_result(fn())
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    fut.set_exception(exc)
            progressed = False
            for e in engines:
                progressed |= e.turn()
            if engines and not progressed:
                with self.cv:
                    self.cv.wait(0.001)  # only postponed sequences: let the next arrival in


#: The process's driver.
driver = Driver()
