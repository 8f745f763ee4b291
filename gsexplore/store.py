"""The append-only sweep store: every finished row is on disk before the next one starts.

Two formats, chosen by the file name:

* ``results.jsonl``: one JSON row a line. Each row is written, flushed and
  fsync'ed as it completes, so a crash or a kill loses nothing finished; a line
  cut short by a crash is skipped (with a warning) when the file is read.
* ``results.parquet``: rows are appended, exactly as above, to the journal
  ``results.parquet.journal.jsonl`` beside it; `compact` (run when a sweep ends
  and when the next one starts) folds the journal into the Parquet file with an
  atomic replace and then deletes the journal. `load` reads both, so a crash at
  any point loses nothing, and every row's ``row_id`` keeps a row from counting
  twice.

Rows are never rewritten. An error row stays in the file; a later attempt of the
same request (same cell, repeat and seed) supersedes it when `load` is called
with ``latest=True``. Sweep definitions are kept in ``<store>.meta.json``, by sweep
id, with the provenance of rows that came from batch files: ``batch_exports`` (the
files a plan was written to) and ``batches`` (each imported results file: its name,
sha256, the engine and models its lines report, and the ``run_id`` of its rows).

One process writes to a store at a time.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from .params import Params
from .row import ROW_COLUMNS

__all__ = ["Store", "load", "compact", "frame", "ROW_COLUMNS", "KEY"]

#: What identifies one request: resume skips keys that finished without error.
KEY = ["cell_id", "repeat", "seed"]

_INT_COLS = ["repeat", "choice", "prompt_tokens", "completion_tokens", "reasoning_tokens", "total_tokens"]
_FLOAT_COLS = ["latency_s", "ttft_s", "tokens_per_s", "mean_entropy", "perplexity"]


def _json_default(o: Any) -> Any:
    if isinstance(o, (datetime, date)):
        return o.isoformat()
    if hasattr(o, "item") and callable(o.item):
        return o.item()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    return str(o)


def _clean(v: Any) -> Any:
    """NaN and pandas NA become None, so JSONL holds null (valid JSON) not NaN."""
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if v is pd.NA or v is pd.NaT:
        return None
    return v


def frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """A DataFrame of sweep rows with the stable columns and dtypes (ints stay ints)."""
    return conform(pd.DataFrame.from_records(list(rows)))


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """df with every sweep column, in order (missing ones empty, extra ones last), and its dtypes."""
    extra = [c for c in df.columns if c not in ROW_COLUMNS]
    df = df.reindex(columns=ROW_COLUMNS + extra)
    return normalise(df)


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Give a sweep DataFrame its dtypes: nullable Int64 for int parameters and counts,
    float64 for floats, nullable boolean for flags, UTC datetimes for timestamp."""
    specs = {s.name: s for s in Params.specs()}
    for col in df.columns:
        s = specs.get(col)
        kind = s.kind if s else None
        try:
            if col in _INT_COLS or kind == "int":
                df[col] = pd.to_numeric(df[col], errors="coerce").round().astype("Int64")
            elif col in _FLOAT_COLS or kind == "float":
                df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
            elif col == "guided_valid" or kind == "bool":
                df[col] = df[col].astype("boolean")
            elif col == "timestamp":
                df[col] = pd.to_datetime(df[col], utc=True, errors="coerce", format="ISO8601")
        except (TypeError, ValueError):  # a column a user made by hand: leave it as it is
            pass
    return df


class Store:
    """One store file, opened for appending rows (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            self.format = "jsonl"
            self.journal = self.path
        elif suffix in (".parquet", ".pq"):
            self.format = "parquet"
            self.journal = self.path.with_name(self.path.name + ".journal.jsonl")
        else:
            raise ValueError(f"store must end in .jsonl or .parquet, not {self.path.name!r}")
        self.meta_path = self.path.with_name(self.path.name + ".meta.json")
        self._fh: Any = None

    # --- writing ----------------------------------------------------------
    def append(self, rows: list[dict[str, Any]]) -> None:
        """Write rows durably (write, flush, fsync) before returning."""
        if not rows:
            return
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _terminate_last_line(self.journal)
            self._fh = open(self.journal, "a", encoding="utf-8")
        data = "".join(json.dumps({k: _clean(v) for k, v in r.items()}, ensure_ascii=False,
                                  default=_json_default, allow_nan=False) + "\n" for r in rows)
        self._fh.write(data)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Close the journal (rows are already on disk)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def compact(self) -> None:
        """Fold the journal into the Parquet file (no-op for JSONL)."""
        self.close()
        compact(self.path)

    def write_meta(self, sweep_id: str, meta: dict[str, Any]) -> None:
        """Remember a sweep's definition beside the store (its other entries, such as batch provenance, stay)."""
        data = read_meta(self.path)
        data[sweep_id] = {**data.get(sweep_id, {}), **meta}
        self._write_meta(data)

    def add_meta(self, sweep_id: str, key: str, entry: dict[str, Any]) -> None:
        """Append ``entry`` to the list ``key`` of a sweep's meta (``batch_exports``, ``batches``)."""
        data = read_meta(self.path)
        sweep = data.setdefault(sweep_id, {})
        sweep.setdefault(key, []).append(entry)
        self._write_meta(data)

    def _write_meta(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.meta_path.with_name(self.meta_path.name + ".tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1, default=_json_default), encoding="utf-8")
        os.replace(tmp, self.meta_path)  # atomic: a crash leaves the old meta or the new one

    # --- reading ----------------------------------------------------------
    def load(self, latest: bool = True) -> pd.DataFrame:
        """All rows (see `load`)."""
        return load(self.path, latest=latest)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _terminate_last_line(path: Path) -> None:
    """After a crash mid-line, start the next row on a fresh line."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return
            f.seek(-1, os.SEEK_END)
            last = f.read(1)
    except FileNotFoundError:
        return
    if last != b"\n":
        with open(path, "ab") as f:
            f.write(b"\n")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    bad = 0
    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError:
        return rows
    with f:
        for line in f:
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                bad += 1
    if bad:
        warnings.warn(f"{path.name}: skipped {bad} incomplete line(s) (written during a crash)", stacklevel=3)
    return rows


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The sweep definitions kept beside a store, by sweep id."""
    p = Path(path)
    meta = p.with_name(p.name + ".meta.json")
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _raw(path: Path) -> pd.DataFrame:
    st = Store(path)
    parts = []
    if st.format == "parquet" and path.exists():
        parts.append(pd.read_parquet(path))
    journal = _read_jsonl(st.journal)
    if journal:
        parts.append(pd.DataFrame.from_records(journal))
    parts = [p for p in parts if len(p)]
    if not parts:
        return frame([])
    df = parts[0] if len(parts) == 1 else pd.concat([p.astype(object) for p in parts], ignore_index=True)
    if "row_id" in df.columns:
        df = df.drop_duplicates("row_id", keep="first")
    return df.reset_index(drop=True)


def latest_attempts(df: pd.DataFrame) -> pd.DataFrame:
    """Per request (cell_id, repeat, seed): the rows of its last successful attempt, else of its last one.

    An attempt is one run of the request (``run_id``); its rows are its choices.
    """
    if df.empty or not set(KEY + ["run_id"]).issubset(df.columns):
        return df
    df = df.reset_index(drop=True)
    # (a nullable Int64 NA, an unseeded request, would make the whole key NA and drop the row)
    key = df["cell_id"].astype(str) + "|" + df["repeat"].astype(str) + "|" + df["seed"].astype("string").fillna("")
    ok = df["error_type"].isna().to_numpy() if "error_type" in df.columns else True
    attempt = key + "#" + df["run_id"].astype(str)
    tmp = pd.DataFrame({"key": key, "attempt": attempt, "ok": ok, "order": range(len(df))})
    # rank: successful attempts beat errors, later beats earlier
    tmp["rank"] = tmp["ok"].astype(int) * (len(df) + 1) + tmp["order"]
    best = tmp.loc[tmp.groupby("key")["rank"].idxmax(), "attempt"]
    keep = attempt.isin(set(best)).to_numpy()
    return df.loc[keep].reset_index(drop=True)


def load(path: str | os.PathLike, latest: bool = True) -> pd.DataFrame:
    """Read a store (Parquet + its journal, or JSONL) into a DataFrame.

    ``latest=True`` keeps, per request, only its last successful attempt (or its
    last error when it never succeeded); ``latest=False`` returns every row ever
    written. ``df.attrs["sweeps"]`` holds the sweep definitions seen in the store.
    """
    path = Path(path)
    if not path.exists() and not Store(path).journal.exists():
        raise FileNotFoundError(f"no sweep store at {path}")
    df = conform(_raw(path))
    if latest:
        df = latest_attempts(df)
    df.attrs["store"] = str(path)
    meta = read_meta(path)
    if meta:
        df.attrs["sweeps"] = meta
    return df


def compact(path: str | os.PathLike) -> None:
    """Fold a Parquet store's journal into the Parquet file (atomic; no-op for JSONL)."""
    st = Store(path)
    if st.format != "parquet" or not st.journal.exists():
        return
    df = conform(_raw(st.path))
    tmp = st.path.with_name(st.path.name + ".tmp")
    st.path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(tmp, index=False)
    os.replace(tmp, st.path)
    # A crash here leaves journal rows that are also in the Parquet file: row_id dedupes them.
    st.journal.unlink(missing_ok=True)
