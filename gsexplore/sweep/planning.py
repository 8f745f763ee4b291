"""The plan of a sweep: its cells (a backend, a prompt, a setting), their ids and seeds, what is left to run.

A request is ``(cell_id, repeat, seed)``. The plan keeps the settings, prompts
and backends and generates the requests from them (`SweepPlan.iter_cells`), so a
sweep of 200,000 requests is counted and exported without holding 200,000
objects; `SweepPlan.cells` and `SweepPlan.todo` build the lists when asked.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Iterator, Literal, Sequence

import pandas as pd

from ..backends.base import Backend
from ..errors import ParamsError
from ..i18n import msg, number
from ..params import Params
from ..prompts import Prompt, PromptsLike, load_prompts
from .grid import Setting, expand

if TYPE_CHECKING:
    from .export import BatchExport

__all__ = ["plan", "Cell", "SweepPlan", "cell_id", "derive_seed", "request_key"]


def _sha(*parts: Any) -> str:
    data = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def cell_id(backend: Backend, messages: list[dict[str, Any]], params: Params) -> str:
    """Stable id of one setting on one prompt on one backend (12 hex digits)."""
    return _sha(backend.name, backend.model, messages, params.cache_key())[:12]


def derive_seed(cell: str, repeat: int, sweep_seed: int) -> int:
    """The seed of repeat `repeat` of a cell: reproducible, different per repeat."""
    return int(_sha("seed", cell, repeat, sweep_seed)[:8], 16) % (2**31 - 1)


def request_key(cell: str, repeat: int, seed: int | None) -> tuple[str, int, int | None]:
    """What identifies one request in a store (`gsexplore.store.KEY`)."""
    return (cell, int(repeat), None if seed is None else int(seed))


@dataclass
class Cell:
    """One request of a sweep: a backend, a prompt, the params and the repeat."""

    backend_index: int
    backend: Backend
    prompt: Prompt
    params: Params  # with the repeat's seed
    repeat: int
    cell_id: str

    @property
    def key(self) -> tuple[str, int, int | None]:
        return (self.cell_id, self.repeat, self.params.seed)


@dataclass(frozen=True)
class CellGroup:
    """The repeats of one cell: what they share (the export and the importer work per group)."""

    backend_index: int
    backend: Backend
    prompt: Prompt
    params: Params  # without a derived seed
    cell_id: str

    def seed(self, repeat: int, sweep_seed: int) -> int | None:
        """The seed repeat ``repeat`` runs with: the user's, else derived."""
        return self.params.seed if self.params.seed is not None else derive_seed(self.cell_id, repeat, sweep_seed)


@dataclass
class SweepPlan:
    """What a sweep will run: its settings x prompts x backends x repeats, and what the store already holds."""

    sweep_id: str
    settings: list[tuple[Setting, Params]]
    prompts: list[Prompt]
    backends: list[Backend]
    varied: list[str]
    repeats: int
    seed: int
    done: set[tuple] = field(default_factory=set, repr=False)
    n_requests: int = 0
    n_todo: int = 0
    prompt_tokens_est: int = 0
    completion_tokens_max: int | None = None
    store: str | None = None

    # --- the requests ---------------------------------------------------------
    def groups(self) -> Iterator[CellGroup]:
        """Every cell (backend x prompt x setting), in plan order."""
        for bi, b in enumerate(self.backends):
            for pr in self.prompts:
                for _, p in self.settings:
                    yield CellGroup(bi, b, pr, p, cell_id(b, pr.messages, p))

    def iter_cells(self, todo: bool = False) -> Iterator[Cell]:
        """Every request (``todo=True``: those the store does not hold yet), generated one at a time."""
        for g in self.groups():
            for r in range(self.repeats):
                seed = g.seed(r, self.seed)
                if todo and request_key(g.cell_id, r, seed) in self.done:
                    continue
                p = g.params if g.params.seed is not None else g.params.replace(seed=seed)
                yield Cell(g.backend_index, g.backend, g.prompt, p, r, g.cell_id)

    @cached_property
    def cells(self) -> list[Cell]:
        """Every request of the sweep."""
        return list(self.iter_cells())

    @cached_property
    def todo(self) -> list[Cell]:
        """The requests not yet in the store."""
        return list(self.iter_cells(todo=True))

    # --- views ------------------------------------------------------------------
    def describe(self, lang: str | None = None) -> str:
        """One line: requests, tokens, what the store already has (in `gsexplore.i18n.language()`)."""
        done = self.n_requests - self.n_todo
        ctok = (number(self.completion_tokens_max, lang) if self.completion_tokens_max is not None
                else msg("sweep.tokens_unknown", lang))
        in_store = (msg("sweep.plan_in_store", lang, in_store=number(done, lang), total=number(self.n_requests, lang))
                    if done else "")
        return msg("sweep.plan", lang, sweep_id=self.sweep_id, requests=number(self.n_todo, lang), in_store=in_store,
                   settings=len(self.settings), prompts=len(self.prompts), backends=len(self.backends),
                   repeats=self.repeats, prompt_tokens=number(self.prompt_tokens_est, lang), completion_tokens=ctok)

    def to_frame(self) -> pd.DataFrame:
        """The planned requests as rows (no results), for checking a sweep before running it."""
        from ..store import frame
        from .rows import base_row

        return frame(base_row(self.sweep_id, c) | {"run_id": None, "row_id": None} for c in self.iter_cells())

    def to_batch(self, path: str | os.PathLike, *, spelling: Literal["guided", "structured_outputs"] | None = None,
                 model: str | None = None, store: str | os.PathLike | None = None,
                 progress: bool = True) -> BatchExport:
        """Write the requests not yet in the store as an OpenAI/vLLM batch file, and its plan file beside it
        (see `gsexplore.sweep.export`); import the results with `gsexplore.load_batch`."""
        from .export import export  # export builds on this module

        return export(self, path, spelling=spelling, model=model, store=store or self.store, progress=progress)


def _count_tokens(backend: Backend, prompt: Prompt, params: Params, cache: dict[tuple[int, str], int]) -> int:
    """The prompt's tokens: counted by the backend's tokenizer when it has one, else estimated."""
    key = (id(backend), prompt.key)
    if key not in cache:
        try:
            n = backend.prompt_token_count(prompt.messages, params)
        except Exception:  # counting is advice: fall back to the estimate
            n = None
        cache[key] = _estimate_tokens(prompt.messages) if n is None else n
    return cache[key]


def _estimate_tokens(messages: list[dict[str, Any]]) -> int:
    # ~4 characters per token for Latin-script text, plus the chat template's markers per message
    chars = sum(len(m.get("content") or "") if isinstance(m.get("content"), str)
                else len(json.dumps(m.get("content"))) for m in messages)
    return math.ceil(chars / 4) + 5 * len(messages)


def plan(
    backends: Backend | Sequence[Backend],
    prompts: PromptsLike,
    grid: dict[str, Any] | None = None,
    zip: dict[str, Any] | None = None,  # noqa: A002
    samples: dict[str, Any] | None = None,
    repeats: int = 1,
    base: Params | None = None,
    *,
    seed: int = 0,
    on_invalid: Literal["raise", "skip"] = "raise",
    done: set[tuple] | None = None,
    store: str | os.PathLike | None = None,
) -> SweepPlan:
    """Expand and validate a sweep without running anything (see `gsexplore.sweep.sweep`).

    ``done``: request keys ``(cell_id, repeat, seed)`` already finished (left out of
    `SweepPlan.todo`); ``store``: where the sweep's rows go (recorded by `SweepPlan.to_batch`).
    """
    blist = [backends] if isinstance(backends, Backend) else list(backends)
    if not blist:
        raise ParamsError("no backend given", field="backends")
    for b in blist:
        if not isinstance(b, Backend):
            raise ParamsError(f"backends must be gsexplore Backends, not {type(b).__name__}", field="backends")
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ParamsError(f"repeats must be an int >= 1, not {repeats!r}", field="repeats", value=repeats)
    plist = load_prompts(prompts)
    settings = expand(grid, zip, samples, base, seed=seed, on_invalid=on_invalid)
    varied = [k for k in Params.names() if any(k in s for s, _ in settings)]
    sweep_id = _sha("sweep", [(b.name, b.model) for b in blist],
                    [pr.messages for pr in plist], [p.cache_key() for _, p in settings], seed)[:10]
    sp = SweepPlan(sweep_id, settings, plist, blist, varied, repeats, seed, set(done or ()),
                   store=None if store is None else str(store))
    # counted one cell at a time: nothing of size requests is built
    counted: dict[tuple[int, str], int] = {}
    n_todo = ptok = 0
    ctok: int | None = 0
    for g in sp.groups():
        todo = sum(1 for r in range(repeats)
                   if request_key(g.cell_id, r, g.seed(r, seed)) not in sp.done) if sp.done else repeats
        sp.n_requests += repeats
        if not todo:
            continue
        n_todo += todo
        ptok += todo * _count_tokens(g.backend, g.prompt, g.params, counted)
        if ctok is not None and g.params.max_tokens is not None:
            ctok += todo * g.params.max_tokens * (g.params.n or 1)
        else:
            ctok = None
    sp.n_todo, sp.prompt_tokens_est, sp.completion_tokens_max = n_todo, ptok, ctok
    return sp
