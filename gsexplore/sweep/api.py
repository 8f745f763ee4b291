"""`sweep()`: plan, run (or export), store, and say the outcome."""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from typing import Any, Callable, Literal, Sequence

import pandas as pd

from ..backends.base import Backend
from ..errors import ParamsError
from ..i18n import msg
from ..params import Params
from ..prompts import PromptsLike
from ..store import KEY, Store, frame, latest_attempts
from .outcome import SweepFailed, show_outcome, sweep_outcome
from .planning import SweepPlan, plan, request_key
from .redact import backend_info, sanitise, secrets_of, versions
from .runner import Runner

__all__ = ["sweep", "done_keys", "sweep_attrs", "plan_rows", "store_keys"]

log = logging.getLogger("gsexplore.sweep")


def done_keys(st: Store | None, force: bool = False) -> set[tuple]:
    """Request keys the store holds without error (what resume skips); compacts a Parquet store first."""
    if st is None or force or not (st.path.exists() or st.journal.exists()):
        return set()
    st.compact()
    prev = st.load(latest=True)
    if not len(prev):
        return set()
    ok = prev[prev["error_type"].isna()]
    return set(store_keys(ok))


def sweep_attrs(sp: SweepPlan, definition: dict[str, Any], store: str | None) -> dict[str, Any]:
    """The attrs of a sweep's DataFrame (and, less the plan counts, its record in the store's meta)."""
    secrets = secrets_of(sp.backends)
    return {
        "sweep_id": sp.sweep_id,
        "sweep": sanitise({**definition,
                           "prompts": [{"id": p.id, "messages": p.messages, "expected": p.expected}
                                       for p in sp.prompts],
                           "n_settings": len(sp.settings)}, secrets),
        "varied": sp.varied,
        "backends": [backend_info(b, secrets) for b in sp.backends],
        "versions": versions(),
        "plan": {"requests": sp.n_requests, "to_run": sp.n_todo, "in_store": sp.n_requests - sp.n_todo,
                 "prompt_tokens_est": sp.prompt_tokens_est, "completion_tokens_max": sp.completion_tokens_max},
        "store": store,
    }


def plan_rows(sp: SweepPlan, st: Store | None, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The latest rows of the plan's requests: from the store when there is one, else from ``rows``."""
    if st is None:
        return latest_attempts(frame(rows))
    st.compact()
    all_rows = st.load(latest=True)
    if all_rows.empty:
        return all_rows
    keys = {request_key(g.cell_id, r, g.seed(r, sp.seed)) for g in sp.groups() for r in range(sp.repeats)}
    mask = [k in keys for k in store_keys(all_rows)]
    return all_rows.loc[mask].reset_index(drop=True)


def store_keys(df: pd.DataFrame) -> list[tuple]:
    """The request key of each row."""
    if df.empty:
        return []
    return [(c, int(r), None if pd.isna(s) else int(s)) for c, r, s in df[KEY].itertuples(index=False, name=None)]


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
    on_error: Literal["record", "raise", "keep"] = "record",
    progress: bool = True,
    force: bool = False,
    seed: int = 0,
    *,
    on_invalid: Literal["raise", "skip"] = "raise",
    retries: int | None = None,
    backoff: float | None = None,
    dry_run: bool = False,
    to_batch: str | os.PathLike | None = None,
    cancel: threading.Event | None = None,
    on_result: Callable[[list[dict[str, Any]]], None] | None = None,
) -> pd.DataFrame:
    """Run every setting x prompt x backend x repeat and return one row per completion.

    See `gsexplore.sweep` for what varies, seeds, ordering, the store and resume.
    ``df.attrs["outcome"]`` says how many requests succeeded and failed (shown in a
    notebook); when every request failed the rows are saved and `SweepFailed` is
    raised, unless ``on_error="keep"``; ``on_error="raise"`` stops at the first error.
    ``dry_run=True`` returns the planned requests without running them;
    ``to_batch="requests.jsonl"`` writes them as an OpenAI/vLLM batch file instead
    (`gsexplore.batch`; import the results with `gsexplore.load_batch`). For panels
    running a sweep in a thread: setting ``cancel`` stops it like Ctrl-C (finished
    rows are returned), and ``on_result(rows)`` is called with the rows of each
    finished request (from a worker thread).
    """
    if on_error not in ("record", "raise", "keep"):
        raise ParamsError(f"on_error must be 'record', 'keep' or 'raise', not {on_error!r}", field="on_error")
    if on_invalid not in ("raise", "skip"):
        raise ParamsError(f"on_invalid must be 'raise' or 'skip', not {on_invalid!r}", field="on_invalid")
    st = Store(store) if store is not None else None
    sp = plan(backends, prompts, grid, zip, samples, repeats, base, seed=seed, on_invalid=on_invalid,
              done=done_keys(st, force), store=None if st is None else str(st.path))
    definition = {"grid": grid, "zip": zip, "samples": samples, "repeats": repeats,
                  "base": (base or Params()).set_fields(), "seed": seed, "concurrency": concurrency}
    attrs = sweep_attrs(sp, definition, None if st is None else str(st.path))
    if to_batch is not None:
        if st is not None:
            st.write_meta(sp.sweep_id, {k: attrs[k] for k in ("sweep", "varied", "backends", "versions")})
        exported = sp.to_batch(to_batch, progress=progress)
        # the planned rows, as dry_run returns them, unless building them would cost what streaming saved
        df = sp.to_frame() if sp.n_requests <= 100_000 else pd.DataFrame()
        df.attrs.update(attrs | {"batch_export": exported.as_dict()})
        return df
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

    runner = Runner(sp, st, concurrency=concurrency, on_error=on_error, progress=progress,
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
    interrupted = interrupted or (cancel is not None and cancel.is_set() and runner.finished < sp.n_todo)

    df = plan_rows(sp, st, runner.rows)
    remaining = sp.n_todo - runner.finished
    outcome = sweep_outcome(df, runner.errors_info)
    attrs.update({"elapsed_s": round(elapsed, 3), "errors": runner.errors, "interrupted": interrupted,
                  "remaining": remaining, "outcome": outcome})
    df.attrs.clear()
    df.attrs.update(attrs)
    if progress:
        show_outcome(outcome, seconds=elapsed)
    if interrupted:
        how = (msg("sweep.resume_store", store=repr(str(st.path))) if st is not None else msg("sweep.resume_hint"))
        warnings.warn(msg("sweep.interrupted_warning", done=runner.finished, total=sp.n_todo, remaining=remaining,
                          how=how),
                      stacklevel=2)
    elif outcome["total"] and not outcome["ok"] and on_error != "keep":
        fe = outcome["first_error"] or {}
        where = f"; the rows are saved in {str(st.path)!r}" if st is not None else ""
        raise SweepFailed(f"all {outcome['total']} requests of sweep {sp.sweep_id} failed "
                          f"({fe.get('type')}: {fe.get('message')}){where}; on_error='keep' returns them "
                          "without raising", outcome, df)
    return df
