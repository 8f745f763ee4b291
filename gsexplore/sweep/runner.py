"""Running a sweep's requests: asyncio in a worker thread, each backend bounded by what it declares.

Every request goes through ``achat`` on an asyncio loop in a worker thread (its own
loop, so this also works inside Jupyter, whose loop is already running), submitted
sorted by backend, messages, then parameters, so a local engine evaluates a shared
prompt once and copies its KV cells. Each backend gets as many requests in flight as
it declares (``Backend.slots``: a LocalBackend's batch) or, for a ``remote`` one, the
sweep's ``concurrency``. Before the first request each backend is told the sweep's
largest prompt + max_tokens and its number of requests (``Backend.prepare``: a local
engine sizes its slots from them). Every finished row is in the store before the next is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from typing import Any, Callable

from ..backends.base import Backend, retrying
from ..completion import Completion
from ..store import Store
from .outcome import error_info
from .planning import Cell, SweepPlan, _count_tokens
from .redact import secrets_of
from .rows import base_row, guided_checker, row_error, rows_ok

__all__ = ["Runner"]

log = logging.getLogger("gsexplore.sweep")


class _Interrupted(Exception):
    """A KeyboardInterrupt seen in a worker thread."""


class Runner:
    """Runs the plan's todo requests, records each as it finishes, keeps the first errors."""

    def __init__(self, sp: SweepPlan, store: Store | None, *, concurrency: int, on_error: str,
                 progress: bool, retries: int | None, backoff: float | None, cancel: threading.Event | None = None,
                 on_result: Callable[[list[dict[str, Any]]], None] | None = None) -> None:
        self.sp = sp
        self.cancel = cancel
        self.on_result = on_result
        self.store = store
        self.concurrency = concurrency
        self.on_error = on_error
        self.retries = retries
        self.backoff = backoff
        self.run_id = uuid.uuid4().hex[:12]
        self.rows: list[dict[str, Any]] = []
        self.finished = 0
        self.errors = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.failure: BaseException | None = None  # on_error="raise", or an interrupt in a worker
        self.secrets = secrets_of(sp.backends)
        self.errors_info: dict[tuple, dict[str, Any]] = {}  # error_info by request key (first 100)
        self.checker = guided_checker()
        self.pbar = None
        if progress:
            from tqdm.auto import tqdm

            self.pbar = tqdm(total=sp.n_todo, desc=f"sweep {sp.sweep_id}", unit="req", dynamic_ncols=True)

    # --- recording (any thread) -----------------------------------------------
    def _record(self, rows: list[dict[str, Any]], error: bool) -> None:
        with self.lock:
            if self.store is not None:
                self.store.append(rows)
            self.rows.extend(rows)
            self.finished += 1
            self.errors += int(error)
            if self.pbar is not None:
                self.pbar.update(1)
                if self.errors:
                    self.pbar.set_postfix(errors=self.errors, refresh=False)
        if self.on_result is not None:
            try:
                self.on_result(rows)
            except Exception as exc:  # a display callback must not stop the sweep
                log.warning("on_result callback failed: %s", exc)

    def stopped(self) -> bool:
        return self.stop.is_set() or (self.cancel is not None and self.cancel.is_set())

    def _fail(self, cell: Cell, exc: BaseException, latency: float | None) -> None:
        if self.on_error == "raise":
            if self.failure is None:
                self.failure = exc
            self.stop.set()
            return
        if len(self.errors_info) < 100:
            self.errors_info[cell.key] = error_info(exc, self.secrets)
        self._record([row_error(base_row(self.sp.sweep_id, cell), exc, self.secrets, latency, self.run_id)], True)

    def _succeed(self, cell: Cell, c: Completion) -> None:
        self._record(rows_ok(base_row(self.sp.sweep_id, cell), cell.params, c, self.checker, self.run_id), False)

    # --- every backend: asyncio, each backend bounded by what it declares ----------
    def _limit(self, b: Backend) -> int:
        """Requests in flight on ``b``: the sweep's concurrency for a server, the slots of a local engine."""
        return max(1, self.concurrency if b.remote else int(b.slots))

    async def _one(self, sem: asyncio.Semaphore, cell: Cell) -> None:
        async with sem:
            if self.stopped():
                return
            t0 = time.perf_counter()
            try:
                c = await cell.backend.achat(list(cell.prompt.messages), cell.params)
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:
                self._fail(cell, exc, time.perf_counter() - t0)
            else:
                self._succeed(cell, c)

    async def _run_async(self, cells: list[Cell]) -> None:
        # by backend, then by prompt (an engine shares the KV cells of a common prompt prefix),
        # then by params; repeats last. Semaphores are FIFO: requests start in this order.
        cells = sorted(cells, key=lambda c: (c.backend_index, c.prompt.key, c.params.cache_key(), c.repeat))
        sems = {i: asyncio.Semaphore(self._limit(b)) for i, b in enumerate(self.sp.backends)}
        tasks = [asyncio.create_task(self._one(sems[c.backend_index], c)) for c in cells]
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, timeout=0.1, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    if not t.cancelled() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
                if self.stopped():
                    break
        finally:
            for t in tasks:
                t.cancel()  # a local request frees its slot at the engine's next step
            await asyncio.gather(*tasks, return_exceptions=True)

    def _async_thread(self, cells: list[Cell]) -> None:
        try:
            with retrying(self.retries, self.backoff):
                asyncio.run(self._run_async(cells))
        except KeyboardInterrupt as exc:  # raised by a backend inside the worker
            self.failure = self.failure or _Interrupted(str(exc))
            self.stop.set()
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            self.failure = self.failure or exc
            self.stop.set()

    # --- both ---------------------------------------------------------------
    def _prepare_backends(self, cells: list[Cell]) -> None:
        """Each backend's largest request (prompt + max_tokens; None if one leaves it unset) and count."""
        counted: dict[tuple[int, str], int] = {}
        needs: dict[int, tuple[int | None, int]] = {}
        for c in cells:
            if c.backend.remote:  # a server sizes itself
                continue
            most, count = needs.get(c.backend_index, (0, 0))
            mt = c.params.max_tokens
            most = None if most is None or mt is None else max(most, _count_tokens(c.backend, c.prompt, c.params,
                                                                                   counted) + mt)
            needs[c.backend_index] = (most, count + (c.params.n or 1))
        for i, (most, count) in needs.items():
            self.sp.backends[i].prepare(max_request_tokens=most, concurrency=count)

    def run(self) -> None:
        if not self.sp.todo:
            return
        self._prepare_backends(self.sp.todo)
        # its own loop in its own thread: works whether or not a loop already runs here (Jupyter)
        worker = threading.Thread(target=self._async_thread, args=(list(self.sp.todo),), name="gsexplore-sweep",
                                  daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.1)  # short joins keep Ctrl-C deliverable
        except BaseException:
            self.stop.set()
            self._wait(worker)
            raise
        if isinstance(self.failure, _Interrupted):
            raise KeyboardInterrupt(str(self.failure))
        if self.failure is not None:
            raise self.failure

    def _wait(self, worker: threading.Thread) -> None:
        try:
            worker.join(10)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
            pass

    def close(self) -> None:
        if self.pbar is not None:
            self.pbar.close()
        if self.store is not None:
            self.store.close()
