"""The rows of a sweep: one per choice of a finished request, one per failed request (see `gsexplore.row`)."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..row import outcome
from .redact import redact

if TYPE_CHECKING:
    from ..completion import Completion
    from ..params import Params
    from ..prompts import Prompt
    from .planning import Cell

__all__ = ["now", "base_row", "cell_row", "rows_ok", "row_error", "guided_checker"]

log = logging.getLogger("gsexplore.sweep")


def now() -> str:
    """The row timestamp: UTC, ISO 8601, milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def cell_row(sweep_id: str, cell: str, repeat: int, backend: str, backend_model: str, prompt: Prompt,
             params: Params) -> dict[str, Any]:
    """Who is asked what, with which parameters: the columns every row of a request shares."""
    row: dict[str, Any] = {
        "sweep_id": sweep_id,
        "cell_id": cell,
        "repeat": repeat,
        "choice": 0,
        "backend": backend,
        "model": backend_model,
        "prompt_id": prompt.id,
        "prompt": prompt.text,
        "expected": prompt.expected_text(),
        "messages": json.dumps(prompt.messages, ensure_ascii=False),
    }
    prow = params.to_row()
    prow.pop("model", None)  # the `model` column: the model asked for, else the backend's
    if params.model:
        row["model"] = params.model
    row.update(prow)
    return row


def base_row(sweep_id: str, cell: Cell) -> dict[str, Any]:
    """`cell_row` of one planned request."""
    return cell_row(sweep_id, cell.cell_id, cell.repeat, cell.backend.name, cell.backend.model, cell.prompt,
                    cell.params)


def guided_checker() -> Any:
    """`gsexplore.guided.check`, or None when guided decoding cannot be imported."""
    try:
        from ..guided import check
    except Exception:  # guided decoding not installed (or not importable): validity stays None
        return None
    return check


def rows_ok(base: dict[str, Any], guided: Params, c: Completion, checker: Any, run_id: str,
            row_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per choice of a finished request: ``base`` (`cell_row`) plus what each choice said.

    ``guided``: the request's params, for the validity check; ``row_ids``: ids to use
    (an importer makes them from the batch line, so a second import adds nothing).
    """
    ts = now()
    rows = []
    for i, ch in enumerate(c.choices or [c]):
        valid = None
        if checker is not None and guided.guided_kind is not None:
            try:
                if ch.params.guided_kind is None:  # a backend that did not attach its params
                    ch.params = guided
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
                     "row_id": row_ids[i] if row_ids and i < len(row_ids) else uuid.uuid4().hex})
    return rows


def row_error(base: dict[str, Any], exc: BaseException, secrets: list[str], latency: float | None, run_id: str,
              row_id: str | None = None) -> dict[str, Any]:
    """The row of a failed request: its type and message (secrets scrubbed), no answer."""
    return {**base,
            "latency_s": latency,
            "error_type": type(exc).__name__,
            "error_message": redact(str(exc) or repr(exc), secrets),
            "timestamp": now(),
            "run_id": run_id,
            "row_id": row_id or uuid.uuid4().hex}
