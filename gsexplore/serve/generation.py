"""Running a job: admission, the backend's answer as JSON or as an SSE stream, and the metrics of it.

However a request ends (finished, failed, the client gone), its Deltas are closed,
which cancels it in the backend, and its ticket is counted out.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi.responses import JSONResponse, Response

from ..backends.base import Backend, Delta
from ..errors import GSExploreError
from ..params import Params
from .admission import Admission, Ticket
from .errors import reject_for
from .jobs import Job
from .metrics import ServerMetrics
from .responses import Chunks, EventStream
from .room import Room, Visit

__all__ = ["Generation"]


async def _end(events: AsyncIterator[Delta] | None, ticket: Ticket, visit: Visit) -> None:
    """Close a generation's Deltas (the backend cancels the request) and count it out; safe to repeat."""
    try:
        aclose = getattr(events, "aclose", None)  # an async iterator need not be a generator
        if aclose is not None:
            await aclose()
    finally:
        ticket.close()
        visit.close()


class Generation:
    """Generates the jobs of one server: admits them, submits them at once, answers and counts."""

    def __init__(self, admission: Admission, metrics: ServerMetrics, room: Room, *, max_tokens_cap: int,
                 artificial_latency_s: float) -> None:
        self.admission, self.metrics, self.room = admission, metrics, room
        self.max_tokens_cap, self.artificial_latency_s = max_tokens_cap, artificial_latency_s

    async def answer(self, job: Job, t0: float) -> Response:
        """Admit (or 429: the sender's limits, then the server's), generate; JSON or, when streaming, SSE.

        The sender is ``job.params.user`` (set by the server from the key's label or the body).
        """
        visit = self.room.enter(job.params.user or "", job.messages or [{"role": "user", "content": job.prompt}],
                                t0)
        try:
            ticket = self.admission.admit()
        except BaseException:
            visit.refused()
            visit.close()
            raise
        if job.stream:
            return await self.stream(job, ticket, visit, t0)
        try:
            async with ticket:
                b = await self._start(ticket)
                c = await job.complete(b, await self.cap(b, job), visit.first_token)
            self.metrics.finished(c, time.perf_counter() - t0)
            await visit.finished(c)
        except Exception as e:
            await visit.failed(reject_for(e), job.params)
            raise
        finally:
            visit.close()
        data = job.response(c)
        return JSONResponse(data, headers={"x-request-id": str(data["id"])})

    async def _start(self, ticket: Ticket) -> Backend:
        """The artificial latency (a network delay that holds no model), then the instance to submit to."""
        if self.artificial_latency_s > 0:
            await asyncio.sleep(self.artificial_latency_s)
        return ticket.backend()

    async def cap(self, b: Backend, job: Job) -> Params:
        """Unset max_tokens: what fits in ``b``'s context (as vLLM), but at most --max-tokens-cap."""
        p, cap = job.params, self.max_tokens_cap
        if p.max_tokens is not None:
            return p
        if b.n_ctx is None:
            return p.replace(max_tokens=cap)
        if b.n_ctx <= cap:
            return p  # the context is the tighter bound
        n_prompt = await asyncio.get_running_loop().run_in_executor(None, job.prompt_tokens, b)
        if n_prompt is None:
            return p.replace(max_tokens=cap)
        room = b.n_ctx - n_prompt
        return p.replace(max_tokens=min(cap, room)) if room > 0 else p

    async def stream(self, job: Job, ticket: Ticket, visit: Visit, t0: float) -> Response:
        """Start generating; a failure before the first Delta is a JSON error, else the answer streams as SSE.

        The response owns ``ticket`` and the Deltas: however it ends (the client leaving
        included), closing them cancels the request in the backend and counts it out.
        """
        events: AsyncIterator[Delta] | None = None
        try:
            b = await self._start(ticket)
            events = job.events(b, await self.cap(b, job))
            first = await anext(events, None)
            if first is None:
                raise GSExploreError("the model produced nothing")
        except BaseException as e:
            if isinstance(e, Exception):
                await visit.failed(reject_for(e), job.params)
            await _end(events, ticket, visit)
            raise
        ttft = time.perf_counter() - t0
        visit.first_token()
        chunks = job.chunks()
        end = functools.partial(_end, events, ticket, visit)
        return EventStream(self._sse(chunks, first, events, t0, ttft, end, visit, job), on_close=end,
                           headers={"x-request-id": chunks.id, "Cache-Control": "no-cache"})

    async def _sse(self, chunks: Chunks, first: Delta, events: AsyncIterator[Delta], t0: float, ttft: float,
                   end: Callable[[], Awaitable[None]], visit: Visit, job: Job) -> AsyncIterator[bytes]:
        """The SSE body: a chunk per Delta, an error event if generation fails after the 200, then [DONE]."""
        try:
            yield chunks.start()
            d: Delta | None = first
            try:
                while d is not None:
                    if d.kind == "done" and d.completion is not None:
                        await visit.finished(d.completion)  # in the class record before the client hears
                    out = self._chunk(chunks, d, t0, ttft)
                    if out:
                        yield out
                    d = await anext(events, None)
            except Exception as e:  # noqa: BLE001 - reported to the client in the stream
                r = reject_for(e)
                self.metrics.error(r.status)
                await visit.failed(r, job.params)
                yield chunks.error(r.status, r.message, r.type)
            yield chunks.DONE
        finally:
            await end()

    def _chunk(self, chunks: Chunks, d: Delta, t0: float, ttft: float) -> bytes:
        if d.kind != "done":
            return chunks.delta(d.kind, d.text, d.index)
        assert d.completion is not None
        self.metrics.finished(d.completion, time.perf_counter() - t0, ttft)
        return chunks.finish(d.completion)
