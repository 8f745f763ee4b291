"""Events produced on another thread, consumed on an asyncio loop: the one bridge between them.

The local engine calls back from its own thread; a backend that only streams
synchronously runs in a worker thread. Both reach ``async for`` through
`aiter_from_thread`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

Emit = Callable[[Any], None]


async def aiter_from_thread(start: Callable[[Emit], Callable[[], None]],
                            is_last: Callable[[Any], bool]) -> AsyncGenerator[Any, None]:
    """Yield what ``start(emit)`` emits from any thread, on this loop, until ``is_last(item)``.

    ``start`` begins producing and returns a function that stops it; ``emit(item)`` may
    be called from any thread. An emitted exception is raised here. Leaving the loop
    early (``break``, cancellation, an error) calls the stop function.
    """
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[Any] = asyncio.Queue()

    def emit(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(q.put_nowait, item)
        except RuntimeError:  # the loop has closed: nobody is listening any more
            pass

    stop = start(emit)
    try:
        while True:
            item = await q.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if is_last(item):
                return
    finally:
        stop()


class _End:
    """Marker: the thread has closed the iterator."""


def aiter_in_thread(make: Callable[[], Iterator[T]], is_last: Callable[[Any], bool],
                    name: str = "gsexplore-stream") -> AsyncIterator[T]:
    """An async iterator over ``make()`` run in a daemon thread, up to its last item (``is_last``).

    It ends once the thread has closed ``make()``'s iterator, so the iterator's own clean-up
    has run by then (as after a sync ``for`` over it); a consumer leaving early stops the
    thread at its next item.
    """
    end = _End()

    def start(emit: Emit) -> Callable[[], None]:
        stopped = threading.Event()

        def produce() -> None:
            try:
                it = make()
                try:
                    for item in it:
                        emit(item)
                        if stopped.is_set() or is_last(item):
                            break
                finally:
                    close = getattr(it, "close", None)
                    if close is not None:
                        close()
                emit(end)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                emit(exc)

        threading.Thread(target=produce, name=name, daemon=True).start()
        return stopped.set

    async def run() -> AsyncIterator[T]:
        # closed with run(): the thread is told to stop as soon as the consumer leaves
        async with contextlib.aclosing(aiter_from_thread(start, lambda x: x is end)) as items:
            async for item in items:
                if item is end:
                    return
                yield item

    return run()
