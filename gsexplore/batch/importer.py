"""`load_batch`: the results of a batch file, as the rows an online sweep would have written.

Each result line becomes the rows `gsexplore.sweep` writes for a request: one per
choice with the same columns (parameters, metrics, ``guided_valid``, the seed),
parsed by `Completion.from_response` as RemoteBackend parses an answer; a failed
line becomes an error row with the error class and message an online request gets.
Latency is unknown in a batch (None). Rows go into the store as a sweep writes them,
so running the sweep afterwards finds them done.

Idempotent: a request already in the store without error is skipped, and a row's
``row_id`` is derived from the result line, so importing a file twice adds nothing.
A file cut short imports its complete lines. A custom_id that no plan file knows is
reported (``df.attrs["batch"]["unknown_custom_ids"]`` and a warning), never guessed.
"""

from __future__ import annotations

import hashlib
import os
import uuid
import warnings
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ..completion import Completion
from ..errors import ParamsError
from ..i18n import msg, number
from ..store import Store, read_meta
from ..sweep.api import done_keys
from ..sweep.export import plan_path
from ..sweep.outcome import show_outcome, sweep_outcome
from ..sweep.planning import request_key
from ..sweep.redact import versions
from ..sweep.rows import guided_checker, row_error, rows_ok
from .lines import engine_of, is_success, iter_json_lines, line_error, parse_custom_id
from .planfile import PlanIndex, read_plan

__all__ = ["load_batch"]

_CHUNK = 1000  # rows per durable append: a crash mid-import loses no row it wrote


def _plans(plan: Any, st: Store) -> list[PlanIndex]:
    if plan is not None:
        paths = [plan] if isinstance(plan, (str, os.PathLike)) else list(plan)
        out = []
        for p in paths:
            p = Path(p)
            out.append(read_plan(p if p.name.endswith(".plan.jsonl") else plan_path(p)))
        return out
    found: list[PlanIndex] = []
    for meta in read_meta(st.path).values():
        for e in reversed(meta.get("batch_exports") or []):  # the newest export first
            if Path(e["plan"]).exists():
                found.append(read_plan(e["plan"]))
    if not found:
        raise ParamsError(f"no batch export is recorded in {st.path.name}'s meta: pass plan='requests.jsonl' "
                          "(the batch file the export wrote; its plan file requests.plan.jsonl lies beside it)",
                          field="plan")
    return found


def _row_id(line: dict[str, Any], cid: str, choice: int) -> str:
    ident = line.get("id") or (line.get("response") or {}).get("request_id") or ""
    return hashlib.sha256(f"batch|{ident}|{cid}|{choice}".encode()).hexdigest()[:32]


def load_batch(results: str | os.PathLike, store: str | os.PathLike, *, plan: Any = None,
               progress: bool = True) -> pd.DataFrame:
    """Import a batch results file (vLLM ``run-batch``, OpenAI's Batch API, Ray Data, ``gsexplore batch run``)
    into ``store``; returns the rows of the sweep(s) it belongs to, as `gsexplore.sweep` returns them.

    ``plan``: the batch file the export wrote (or its ``.plan.jsonl``), or a list of
    them; by default the exports recorded in the store's meta. ``df.attrs["batch"]``
    says what was imported, skipped and not recognised; ``df.attrs["outcome"]`` as a sweep's.
    """
    src = Path(results)
    if not src.exists():
        raise ParamsError(f"results file {str(src)!r} not found", field="results", value=str(src))
    st = Store(store)
    plans = _plans(plan, st)
    done = done_keys(st)
    existing = set()
    if st.path.exists() or st.journal.exists():
        existing = set(st.load(latest=False)["row_id"].dropna())
    run_id = uuid.uuid4().hex[:12]
    checker = guided_checker()
    sha = hashlib.sha256()
    counts = Counter()
    engines: Counter[str] = Counter()
    models: Counter[str] = Counter()
    unknown: list[str] = []
    used: set[str] = set()
    buffer: list[dict[str, Any]] = []
    try:
        with open(src, "rb") as f:
            for line in iter_json_lines(f, sha.update):
                if line is None:
                    counts["incomplete"] += 1
                    continue
                counts["lines"] += 1
                cid = line.get("custom_id")
                parsed = parse_custom_id(cid)
                index = next((p for p in plans if parsed and p.knows(*parsed)), None)
                if index is None:
                    unknown.append(str(cid))
                    continue
                cell, repeat = parsed  # type: ignore[misc]
                key = request_key(cell, repeat, index.seed(cell, repeat))
                engines[engine_of(line)] += 1
                first_id = _row_id(line, str(cid), 0)
                if key in done or first_id in existing:
                    counts["skipped"] += 1
                    continue
                used.add(index.sweep_id)
                base = index.base(cell, repeat)
                if is_success(line):
                    body = line["response"]["body"]
                    if body.get("model"):
                        models[str(body["model"])] += 1
                    c = Completion.from_response(body, backend=index.backend(cell), params=index.params(cell),
                                                 messages=index.messages(cell))
                    ids = [_row_id(line, str(cid), i) for i in range(max(1, len(c.choices)))]
                    buffer.extend(rows_ok(base, index.params(cell), c, checker, run_id, ids))
                    done.add(key)
                else:
                    buffer.append(row_error(base, line_error(line), [], None, run_id, first_id))
                    counts["failed"] += 1
                existing.add(first_id)
                counts["imported"] += 1
                if len(buffer) >= _CHUNK:
                    st.append(buffer)
                    counts["rows"] += len(buffer)
                    buffer = []
        st.append(buffer)
        counts["rows"] += len(buffer)
    finally:
        st.close()
    st.compact()
    record = {"file": src.name, "path": str(src.resolve()), "sha256": sha.hexdigest(),
              "engine": ", ".join(sorted(engines)) or None, "engines": dict(engines), "models": dict(models),
              "run_id": run_id, "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "lines": counts["lines"], "imported": counts["imported"], "failed": counts["failed"],
              "skipped": counts["skipped"], "incomplete": counts["incomplete"], "unknown": len(unknown),
              "unknown_custom_ids": unknown[:20], "rows": counts["rows"], "gsexplore": versions()["gsexplore"]}
    for index in plans:
        if index.sweep_id in used:
            st.write_meta(index.sweep_id, {k: index.header[k] for k in ("varied", "backends")}
                          | {"versions": index.header.get("versions")})
            st.add_meta(index.sweep_id, "batches", record)
    return _result(st, plans, used or {p.sweep_id for p in plans}, record, progress)


def _result(st: Store, plans: list[PlanIndex], sweeps: set[str], record: dict[str, Any],
            progress: bool) -> pd.DataFrame:
    df = st.load(latest=True) if (st.path.exists() or st.journal.exists()) else pd.DataFrame()
    if not df.empty:
        df = df[df["sweep_id"].isin(sweeps)].reset_index(drop=True)
    first = next(p for p in plans if p.sweep_id in sweeps) if sweeps else plans[0]
    outcome = sweep_outcome(df)
    df.attrs.update({"sweep_id": first.sweep_id, "varied": first.header.get("varied"),
                     "backends": first.header.get("backends"), "store": str(st.path), "batch": record,
                     "outcome": outcome, "sweeps": read_meta(st.path)})
    if record["unknown"]:
        warnings.warn(msg("batch.unknown_ids", n=number(record["unknown"]), file=record["file"],
                          ids=", ".join(record["unknown_custom_ids"][:5])), stacklevel=3)
    if progress:
        print(msg("batch.imported", rows=number(record["rows"]), lines=number(record["lines"]), file=record["file"],
                  skipped=number(record["skipped"]), unknown=number(record["unknown"]),
                  incomplete=number(record["incomplete"])), flush=True)
        show_outcome(outcome)
    return df
