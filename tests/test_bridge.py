"""The thread-to-asyncio bridge under a backend that only streams synchronously (Backend's default aevents)."""

from __future__ import annotations

import asyncio
import threading
import time

from gsexplore.backends.base import Backend, Delta
from gsexplore.completion import Completion


class SyncOnly(Backend):
    """Yields `n` deltas, `delay` apart, then "done"; its clean-up takes `cleanup` s and is recorded."""

    def __init__(self, n: int = 2, delay: float = 0.0, cleanup: float = 0.0):
        self.n, self.delay, self.cleanup = n, delay, cleanup
        self.closed = threading.Event()
        self.yielded = 0

    def events(self, messages, params, *, streaming):
        try:
            for i in range(self.n):
                time.sleep(self.delay)
                self.yielded += 1
                yield Delta("content", f"t{i}")
            yield Delta("done", completion=Completion(content="ok"))
        finally:
            time.sleep(self.cleanup)
            self.closed.set()


async def test_achat_returns_after_the_sync_generator_is_closed():
    # as after a sync `for`: a caller that frees a resource when achat returns (the server's slot)
    # never overlaps the generator's own clean-up
    b = SyncOnly(cleanup=0.05)
    for _ in range(3):
        b.closed.clear()
        assert (await b.achat("x")).content == "ok"
        assert b.closed.is_set()


async def test_leaving_early_stops_the_thread_at_its_next_item():
    b = SyncOnly(n=1000, delay=0.01)
    it = b.astream("x")
    assert (await it.__anext__()).text == "t0"
    await it.aclose()
    await asyncio.to_thread(b.closed.wait, 2)
    assert b.closed.is_set() and b.yielded < 10
