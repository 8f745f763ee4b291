"""Parameter sweeps: expand a grid, run it on one or more backends, collect a DataFrame.

>>> df = sweep(LocalBackend.demo(), ["¿Cuál es la capital de Chile?"],
...            grid={"temperature": [0, 0.7, 1.4]}, repeats=3,
...            base=Params(max_tokens=32), store="results/temp.parquet")

What varies (each part is optional; they combine by Cartesian product)

* ``grid={"temperature": [0, 1], "top_k": [5, 50]}``: every combination (4 settings).
* ``zip={"temperature": [0, 1], "top_p": [1.0, 0.9]}``: parallel lists, row by row
  (2 settings; lists of different lengths are a ParamsError).
* ``samples={"n": 20, "seed": 1, "ranges": {"temperature": (0, 2), "top_k": [5, 50, 100]}}``:
  20 random settings. A ``(lo, hi)`` tuple (or ``{"uniform": [lo, hi]}``) draws
  uniformly (integers for int parameters, other values rounded to 4 decimals), a
  list (or ``{"choice": [...]}``) picks one of its values, ``{"loguniform": [lo, hi]}``
  draws on a log scale. Duplicate draws are merged.

Every name is checked against ``Params.names()`` and every setting is built as
``base.replace(**setting)`` before anything runs; all invalid settings are
reported at once in one ParamsError (``on_invalid="skip"`` drops them with a warning).

Rows: one per completion (a request with ``n > 1`` gives one row per choice),
columns in `gsexplore.store.ROW_COLUMNS` (every parameter has its column).
``guided_valid`` (rows with a constraint) says whether the output satisfies it in
full (`gsexplore.guided.check(...).valid`): an output cut by max_tokens counts as
not valid even when it is a valid prefix, since what a user can parse is what
counts; ``guided.check_row(row).ok`` gives the prefix-tolerant reading.
``cell_id`` hashes backend name, model, messages and ``params.cache_key()``; a
request is ``(cell_id, repeat, seed)``. Unless the user fixed ``seed`` (in
``base`` or in what varies), repeat r of a cell runs with
``seed = sha256(cell_id, r, sweep seed) mod 2**31``, recorded in the ``seed``
column, so every row can be reproduced.

Running: every request goes through ``achat`` on an asyncio loop in a worker thread
(its own loop, so this also works inside Jupyter, whose loop is already running),
submitted sorted by backend, messages, then parameters, so a local engine
evaluates a shared prompt once and copies its KV cells. Each backend gets as many
requests in flight as it declares (``Backend.slots``: a LocalBackend's batch) or,
for a ``remote`` one, ``concurrency``. Retries are the backend's own
(RemoteBackend's policy: 429, 5xx and connection errors, with backoff and
Retry-After); ``retries`` / ``backoff`` replace its count and base delay for this
sweep (`gsexplore.backends.base.retrying`). Mixed sweeps run every backend at once.

Store and resume: see `gsexplore.store`. With ``store=`` every row is on disk as
soon as it finishes; running the same sweep again skips requests that finished
without error (error rows are retried); ``force=True`` runs everything again.
Ctrl-C (or a kernel interrupt) returns the finished rows and warns how many remain.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import json
import logging
import math
import os
import random
import sys
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from difflib import get_close_matches
from itertools import product
from typing import Any, Callable, Iterable, Literal, Sequence

import pandas as pd

from .backends._http import scrub
from .backends.base import Backend, retrying
from .completion import Completion
from .errors import ParamsError
from .params import Params, shown
from .prompts import Prompt, PromptsLike, load_prompts
from .row import outcome
from .store import KEY, Store, frame, latest_attempts

__all__ = ["sweep", "expand", "plan", "Cell", "SweepPlan", "derive_seed", "cell_id"]

log = logging.getLogger("gsexplore.sweep")

Setting = dict[str, Any]

#: Parameters a sweep cannot vary or set, and why.
NOT_SWEEPABLE = {"stream": "sweeps collect whole answers; streaming is for the playground"}


# --------------------------------------------------------------------------
# expansion and validation


def _check_names(names: Iterable[str], where: str) -> None:
    known = Params.names()
    for name in names:
        if name not in known:
            close = get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ParamsError(f"unknown parameter {name!r} in {where}{hint}", field=name)
        if name in NOT_SWEEPABLE:
            raise ParamsError(f"{name!r} cannot be used in a sweep: {NOT_SWEEPABLE[name]}", field=name)


def _values(name: str, v: Any, where: str) -> list[Any]:
    if isinstance(v, (list, tuple)):
        vals = list(v)
    elif hasattr(v, "tolist"):  # numpy arrays, ranges of numpy
        vals = list(v.tolist())
    elif isinstance(v, range):
        vals = list(v)
    else:
        vals = [v]
    if not vals:
        raise ParamsError(f"{where}[{name!r}] is empty", field=name)
    return [x.item() if hasattr(x, "item") else x for x in vals]


def _grid(grid: dict[str, Any] | None) -> list[Setting]:
    if not grid:
        return [{}]
    _check_names(grid, "grid")
    keys = list(grid)
    values = [_values(k, grid[k], "grid") for k in keys]
    return [dict(builtins.zip(keys, combo)) for combo in product(*values)]


def _zip(z: dict[str, Any] | None) -> list[Setting]:
    if not z:
        return [{}]
    _check_names(z, "zip")
    cols = {k: _values(k, v, "zip") for k, v in z.items()}
    lengths = {k: len(v) for k, v in cols.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise ParamsError(f"zip lists must have the same length ({desc})", field="zip", value=lengths)
    n = next(iter(lengths.values()))
    return [{k: cols[k][i] for k in cols} for i in range(n)]


def _draw(name: str, spec: Any, rng: random.Random) -> Any:
    kind, args = None, spec
    if isinstance(spec, dict):
        if len(spec) != 1 or next(iter(spec)) not in ("uniform", "loguniform", "choice"):
            raise ParamsError(f"samples range of {name!r} must be (lo, hi), a list, or one of "
                              "{'uniform': [lo, hi]}, {'loguniform': [lo, hi]}, {'choice': [...]}",
                              field=name, value=spec)
        kind, args = next(iter(spec.items()))
    elif isinstance(spec, tuple):
        kind = "uniform"
    elif isinstance(spec, list):
        kind = "choice"
    else:
        raise ParamsError(f"samples range of {name!r} must be a (lo, hi) tuple or a list of values",
                          field=name, value=spec)
    if kind == "choice":
        if not args:
            raise ParamsError(f"samples choice list of {name!r} is empty", field=name)
        return rng.choice(list(args))
    if not isinstance(args, (list, tuple)) or len(args) != 2:
        raise ParamsError(f"samples range of {name!r} needs exactly two ends (lo, hi)", field=name, value=spec)
    lo, hi = args
    if lo > hi:
        raise ParamsError(f"samples range of {name!r}: lo={lo} > hi={hi}", field=name, value=spec)
    ints = Params.spec(name).kind == "int"  # (0, 2) for temperature is a float range
    if kind == "loguniform":
        if lo <= 0:
            raise ParamsError(f"loguniform range of {name!r} needs lo > 0", field=name, value=spec)
        x = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    else:
        x = rng.uniform(lo, hi)
    return int(round(x)) if ints else round(x, 4)


def _samples(samples: dict[str, Any] | None, default_seed: int) -> list[Setting]:
    if not samples:
        return [{}]
    if "ranges" not in samples or "n" not in samples:
        raise ParamsError("samples must be {'n': N, 'ranges': {name: (lo, hi) or [values]}, 'seed': s}",
                          field="samples", value=samples)
    unknown = set(samples) - {"n", "ranges", "seed"}
    if unknown:
        raise ParamsError(f"samples has unknown key(s) {sorted(unknown)}; use n, ranges, seed", field="samples")
    ranges = samples["ranges"]
    _check_names(ranges, "samples")
    n = int(samples["n"])
    if n < 1:
        raise ParamsError("samples n must be >= 1", field="samples", value=n)
    rng = random.Random(samples.get("seed", default_seed))
    return [{k: _draw(k, spec, rng) for k, spec in ranges.items()} for _ in range(n)]


def expand(
    grid: dict[str, Any] | None = None,
    zip: dict[str, Any] | None = None,  # noqa: A002 - the public keyword
    samples: dict[str, Any] | None = None,
    base: Params | None = None,
    *,
    seed: int = 0,
    on_invalid: Literal["raise", "skip"] = "raise",
) -> list[tuple[Setting, Params]]:
    """Every setting (what varies) with its validated Params, duplicates merged.

    grid x zip x samples (Cartesian product of the three parts). Raises one
    ParamsError listing every invalid setting, or skips them with a warning.
    """
    base = base if base is not None else Params()
    if not isinstance(base, Params):
        raise ParamsError(f"base must be a gsexplore.Params, not {type(base).__name__}", field="base")
    _check_names(base.set_fields(), "base")
    parts = [_grid(grid), _zip(zip), _samples(samples, seed)]
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        both = set(parts[a][0]) & set(parts[b][0])
        if both:
            raise ParamsError(f"parameter(s) {sorted(both)} appear in more than one of grid/zip/samples",
                              field=sorted(both)[0])
    out: list[tuple[Setting, Params]] = []
    seen: set[str] = set()
    bad: list[str] = []
    bad_items: list[tuple[str, ParamsError]] = []
    for a, b, c in product(*parts):
        setting = {**a, **b, **c}
        try:
            p = base.replace(**setting)
        except ParamsError as exc:
            bad.append(f"  {_fmt_setting(setting)}: {exc}")
            bad_items.append((_fmt_setting(setting), exc))
            continue
        key = p.cache_key()
        if key not in seen:
            seen.add(key)
            out.append((setting, p))
    if bad:
        msg = f"{len(bad)} invalid setting(s) of {len(bad) + len(out)}:\n" + "\n".join(bad)
        if on_invalid == "skip":
            warnings.warn(msg + "\n(skipped)", stacklevel=3)
        else:
            raise ParamsError(msg, field="grid", key="invalid_settings", n_bad=len(bad),
                              n_total=len(bad) + len(out), items=bad_items)
    if not out:
        raise ParamsError("no valid setting to run", field="grid", key="no_setting")
    return out


def _fmt_setting(s: Setting) -> str:
    return ", ".join(f"{k}={shown(v)}" for k, v in s.items()) or "(base)"


# --------------------------------------------------------------------------
# cells


def _sha(*parts: Any) -> str:
    data = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def cell_id(backend: Backend, messages: list[dict[str, Any]], params: Params) -> str:
    """Stable id of one setting on one prompt on one backend (12 hex digits)."""
    return _sha(backend.name, backend.model, messages, params.cache_key())[:12]


def derive_seed(cell: str, repeat: int, sweep_seed: int) -> int:
    """The seed of repeat `repeat` of a cell: reproducible, different per repeat."""
    return int(_sha("seed", cell, repeat, sweep_seed)[:8], 16) % (2**31 - 1)


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


@dataclass
class SweepPlan:
    """What a sweep will run: its cells, and what the store already holds."""

    sweep_id: str
    cells: list[Cell]
    todo: list[Cell]
    settings: list[tuple[Setting, Params]]
    prompts: list[Prompt]
    backends: list[Backend]
    varied: list[str]
    prompt_tokens_est: int
    completion_tokens_max: int | None
    repeats: int = 1

    def describe(self) -> str:
        """One line: requests, tokens, what the store already has."""
        done = len(self.cells) - len(self.todo)
        ctok = f"<= {self.completion_tokens_max:,}" if self.completion_tokens_max is not None \
            else "? (max_tokens not set)"
        return (f"sweep {self.sweep_id}: {len(self.todo)} requests to run"
                + (f" ({done} of {len(self.cells)} already in the store)" if done else "")
                + f" = {len(self.settings)} settings x {len(self.prompts)} prompts x {len(self.backends)} "
                f"backend(s) x {self.repeats} repeats; ~{self.prompt_tokens_est:,} prompt tokens, "
                f"{ctok} completion tokens")

    def to_frame(self) -> pd.DataFrame:
        """The planned requests as rows (no results), for checking a sweep before running it."""
        return frame(_base_row(self.sweep_id, c) | {"run_id": None, "row_id": None} for c in self.cells)


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
) -> SweepPlan:
    """Expand and validate a sweep without running anything (see `sweep`)."""
    blist = [backends] if isinstance(backends, Backend) else list(backends)
    if not blist:
        raise ParamsError("no backend given", field="backends")
    for b in blist:
        if not isinstance(b, Backend):
            raise ParamsError(f"backends must be gsexplore Backends, not {type(b).__name__}", field="backends")
    if not isinstance(repeats, int) or repeats < 1:
        raise ParamsError(f"repeats must be an int >= 1, not {repeats!r}", field="repeats", value=repeats)
    plist = load_prompts(prompts)
    settings = expand(grid, zip, samples, base, seed=seed, on_invalid=on_invalid)
    varied = [k for k in Params.names() if any(k in s for s, _ in settings)]
    cells: list[Cell] = []
    for bi, b in enumerate(blist):
        for pr in plist:
            for _, p in settings:
                cid = cell_id(b, pr.messages, p)
                fixed_seed = p.seed is not None
                for r in range(repeats):
                    rp = p if fixed_seed else p.replace(seed=derive_seed(cid, r, seed))
                    cells.append(Cell(bi, b, pr, rp, r, cid))
    sweep_id = _sha("sweep", [(b.name, b.model) for b in blist],
                    [pr.messages for pr in plist], [p.cache_key() for _, p in settings], seed)[:10]
    done = done or set()
    todo = [c for c in cells if c.key not in done]
    counted: dict[tuple[int, str], int] = {}
    ptok = sum(_count_tokens(c.backend, c.prompt, c.params, counted) for c in todo)
    if all(c.params.max_tokens is not None for c in todo):
        ctok: int | None = sum(c.params.max_tokens * (c.params.n or 1) for c in todo)  # type: ignore[operator]
    else:
        ctok = None
    return SweepPlan(sweep_id, cells, todo, settings, plist, blist, varied, ptok, ctok, repeats)


# --------------------------------------------------------------------------
# rows


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _base_row(sweep_id: str, cell: Cell) -> dict[str, Any]:
    row: dict[str, Any] = {
        "sweep_id": sweep_id,
        "cell_id": cell.cell_id,
        "repeat": cell.repeat,
        "choice": 0,
        "backend": cell.backend.name,
        "model": cell.backend.model,
        "prompt_id": cell.prompt.id,
        "prompt": cell.prompt.text,
        "expected": cell.prompt.expected_text(),
        "messages": json.dumps(cell.prompt.messages, ensure_ascii=False),
    }
    prow = cell.params.to_row()
    prow.pop("model", None)  # the `model` column: the model asked for, else the backend's
    if cell.params.model:
        row["model"] = cell.params.model
    row.update(prow)
    return row


def _guided_checker() -> Any:
    try:
        from .guided import check
    except Exception:  # guided decoding not installed (or not importable): validity stays None
        return None
    return check


def _rows_ok(sweep_id: str, run_id: str, cell: Cell, c: Completion, checker: Any) -> list[dict[str, Any]]:
    base = _base_row(sweep_id, cell)
    ts = _now()
    rows = []
    for i, ch in enumerate(c.choices or [c]):
        valid = None
        if checker is not None and cell.params.guided_kind is not None:
            try:
                if ch.params.guided_kind is None:  # a backend that did not attach its params
                    ch.params = cell.params
                valid = checker(ch).valid
            except Exception as exc:  # a checker failure must not lose the answer
                log.warning("guided validity check failed: %s", exc)
        rows.append({**base,
                     "choice": ch.index if ch.index is not None else i,
                     "model": ch.model or base["model"],
                     # what was sent, e.g. with the system prompt a LocalBackend adds
                     "messages": (json.dumps(ch.messages, ensure_ascii=False) if ch.messages
                                  else base["messages"]),
                     **outcome(ch),
                     "guided_valid": valid,
                     "error_type": None,
                     "error_message": None,
                     "timestamp": ts,
                     "run_id": run_id,
                     "row_id": uuid.uuid4().hex})
    return rows


def _row_error(sweep_id: str, run_id: str, cell: Cell, exc: BaseException, secrets: list[str],
               latency: float | None) -> dict[str, Any]:
    return {**_base_row(sweep_id, cell),
            "latency_s": latency,
            "error_type": type(exc).__name__,
            "error_message": _redact(str(exc) or repr(exc), secrets),
            "timestamp": _now(),
            "run_id": run_id,
            "row_id": uuid.uuid4().hex}


# --------------------------------------------------------------------------
# secrets: never in rows, attrs or the store


_SECRET_WORDS = ("api_key", "apikey", "secret", "password", "authorization", "bearer", "token_value")


def _secrets(backends: list[Backend]) -> list[str]:
    return [s for b in backends for s in b.secrets()]


def _redact(text: str, secrets: list[str]) -> str:
    for s in secrets:
        text = scrub(text, s)
    return text


def _sanitise(obj: Any, secrets: list[str]) -> Any:
    """A JSON-friendly copy without secret-looking keys or known secret values."""
    if isinstance(obj, dict):
        return {str(k): _sanitise(v, secrets) for k, v in obj.items()
                if not any(w in str(k).lower().replace("-", "_") for w in _SECRET_WORDS)
                and str(k).lower() != "key"}
    if isinstance(obj, (list, tuple)):
        return [_sanitise(v, secrets) for v in obj]
    if isinstance(obj, str):
        return _redact(obj, secrets)
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    return _redact(str(obj), secrets)


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    from ._version import __version__

    def v(*names: str) -> str | None:
        for n in names:
            try:
                return version(n)
            except PackageNotFoundError:
                continue
        return None

    llama = sys.modules.get("llama_cpp")
    return {"gsexplore": __version__,
            "llama_cpp": getattr(llama, "__version__", None) or v("llama_cpp_python", "llama-cpp-python"),
            "pandas": pd.__version__,
            "python": sys.version.split()[0]}


def _backend_info(b: Backend, secrets: list[str]) -> dict[str, Any]:
    try:
        info = b.info()
    except Exception as exc:  # info is for the record; a failure must not stop the sweep
        info = {"backend": b.name, "model": b.model, "info_error": str(exc)}
    return _sanitise(info, secrets)


# --------------------------------------------------------------------------
# running


class _Interrupted(Exception):
    """A KeyboardInterrupt seen in a worker thread."""


class _Runner:
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
        self.secrets = _secrets(sp.backends)
        self.checker = _guided_checker()
        self.pbar = None
        if progress:
            from tqdm.auto import tqdm

            self.pbar = tqdm(total=len(sp.todo), desc=f"sweep {sp.sweep_id}", unit="req", dynamic_ncols=True)

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
        self._record([_row_error(self.sp.sweep_id, self.run_id, cell, exc, self.secrets, latency)], True)

    def _succeed(self, cell: Cell, c: Completion) -> None:
        self._record(_rows_ok(self.sp.sweep_id, self.run_id, cell, c, self.checker), False)

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
    def run(self) -> None:
        if not self.sp.todo:
            return
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


# --------------------------------------------------------------------------
# the public entry point


def sweep(
    backends: Backend | Sequence[Backend],
    prompts: PromptsLike,
    grid: dict[str, Any] | None = None,
    zip: dict[str, Any] | None = None,  # noqa: A002 - mirrors the concept
    samples: dict[str, Any] | None = None,
    repeats: int = 1,
    base: Params | None = None,
    store: str | os.PathLike | None = None,
    concurrency: int = 8,
    on_error: Literal["record", "raise"] = "record",
    progress: bool = True,
    force: bool = False,
    seed: int = 0,
    *,
    on_invalid: Literal["raise", "skip"] = "raise",
    retries: int | None = None,
    backoff: float | None = None,
    dry_run: bool = False,
    cancel: threading.Event | None = None,
    on_result: Callable[[list[dict[str, Any]]], None] | None = None,
) -> pd.DataFrame:
    """Run every setting x prompt x backend x repeat and return one row per completion.

    See the module docstring for what varies, seeds, ordering, the store and resume.
    ``dry_run=True`` returns the planned requests without running them. For panels
    running a sweep in a thread: setting ``cancel`` stops it like Ctrl-C (finished
    rows are returned), and ``on_result(rows)`` is called with the rows of each
    finished request (from a worker thread).
    """
    if on_error not in ("record", "raise"):
        raise ParamsError(f"on_error must be 'record' or 'raise', not {on_error!r}", field="on_error")
    if on_invalid not in ("raise", "skip"):
        raise ParamsError(f"on_invalid must be 'raise' or 'skip', not {on_invalid!r}", field="on_invalid")
    st = Store(store) if store is not None else None
    prev = pd.DataFrame()
    if st is not None and (st.path.exists() or st.journal.exists()):
        st.compact()
        prev = st.load(latest=True)
    done: set[tuple] = set()
    if not force and len(prev):
        ok = prev[prev["error_type"].isna()]
        done = {(c, int(r), None if pd.isna(s) else int(s))
                for c, r, s in ok[KEY].itertuples(index=False, name=None)}
    sp = plan(backends, prompts, grid, zip, samples, repeats, base, seed=seed, on_invalid=on_invalid, done=done)
    secrets = _secrets(sp.backends)
    attrs: dict[str, Any] = {
        "sweep_id": sp.sweep_id,
        "sweep": _sanitise({
            "grid": grid, "zip": zip, "samples": samples, "repeats": repeats,
            "base": (base or Params()).set_fields(), "seed": seed, "concurrency": concurrency,
            "prompts": [{"id": p.id, "messages": p.messages, "expected": p.expected} for p in sp.prompts],
            "n_settings": len(sp.settings),
        }, secrets),
        "varied": sp.varied,
        "backends": [_backend_info(b, secrets) for b in sp.backends],
        "versions": _versions(),
        "plan": {"requests": len(sp.cells), "to_run": len(sp.todo), "in_store": len(sp.cells) - len(sp.todo),
                 "prompt_tokens_est": sp.prompt_tokens_est, "completion_tokens_max": sp.completion_tokens_max},
        "store": str(st.path) if st is not None else None,
    }
    if dry_run:
        df = sp.to_frame()
        df.attrs.update(attrs)
        return df
    if progress:
        print(sp.describe())  # stdout: in a notebook it is an ordinary output, not the pink stderr box
    else:
        log.info(sp.describe())
    if st is not None:
        st.write_meta(sp.sweep_id, {k: attrs[k] for k in ("sweep", "varied", "backends", "versions")})

    runner = _Runner(sp, st, concurrency=concurrency, on_error=on_error, progress=progress,
                     retries=retries, backoff=backoff, cancel=cancel, on_result=on_result)
    interrupted = False
    t0 = time.perf_counter()
    try:
        runner.run()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        runner.close()
    elapsed = time.perf_counter() - t0
    interrupted = interrupted or (cancel is not None and cancel.is_set() and runner.finished < len(sp.todo))

    keys = {c.key for c in sp.cells}
    if st is not None:
        st.compact()
        all_rows = st.load(latest=True)
        mask = [k in keys for k in _keys(all_rows)]
        df = all_rows.loc[mask].reset_index(drop=True)
    else:
        df = latest_attempts(frame(runner.rows))
    remaining = len(sp.todo) - runner.finished
    attrs.update({"elapsed_s": round(elapsed, 3), "errors": runner.errors, "interrupted": interrupted,
                  "remaining": remaining})
    df.attrs.clear()
    df.attrs.update(attrs)
    if interrupted:
        how = (f"run the same sweep with store={str(st.path)!r} again to resume" if st is not None
               else "pass store='results.parquet' to make a sweep resumable")
        warnings.warn(f"sweep interrupted: {runner.finished} of {len(sp.todo)} requests finished, "
                      f"{remaining} remain; {how}", stacklevel=2)
    return df


def _keys(df: pd.DataFrame) -> list[tuple]:
    if df.empty:
        return []
    return [(c, int(r), None if pd.isna(s) else int(s))
            for c, r, s in df[KEY].itertuples(index=False, name=None)]
