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

Running: see `gsexplore.sweep.runner` (asyncio in a worker thread, each backend
bounded by its ``slots`` or ``concurrency``). Retries are the backend's own
(RemoteBackend's policy: 429, 5xx and connection errors, with backoff and
Retry-After); ``retries`` / ``backoff`` replace its count and base delay for this
sweep (`gsexplore.backends.base.retrying`). Mixed sweeps run every backend at once.

Store and resume: see `gsexplore.store`. With ``store=`` every row is on disk as
soon as it finishes; running the same sweep again skips requests that finished
without error (error rows are retried); ``force=True`` runs everything again.
Ctrl-C (or a kernel interrupt) returns the finished rows and warns how many remain.

Outcome: ``df.attrs["outcome"]`` counts successes and failures (`gsexplore.sweep.outcome`);
a sweep where every request failed raises `SweepFailed` after saving its rows.
Past one machine: ``to_batch=`` / `SweepPlan.to_batch` write the requests as an
OpenAI/vLLM batch file, `gsexplore.load_batch` imports the results (`gsexplore.batch`).

Modules: ``grid`` (what varies), ``planning`` (cells, ids, seeds), ``rows``,
``redact`` (what is recorded, without secrets), ``runner``, ``outcome``, ``api`` (`sweep`).
"""

from __future__ import annotations

from .api import sweep
from .grid import NOT_SWEEPABLE, expand
from .outcome import SweepFailed
from .planning import Cell, SweepPlan, cell_id, derive_seed, plan

__all__ = ["sweep", "expand", "plan", "Cell", "SweepPlan", "derive_seed", "cell_id", "NOT_SWEEPABLE", "SweepFailed"]
