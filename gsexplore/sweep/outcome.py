"""A sweep's outcome first: how many requests succeeded, how many failed and why (``df.attrs["outcome"]``).

The dict (what panels and notebooks read)::

    {"total": 9, "ok": 7, "failed": 2, "by_type": {"AuthenticationError": 2},
     "first_error": {"type": "AuthenticationError", "status": 401, "code": "invalid_api_key",
                     "message": "HTTP 401: ..."}}        # None when nothing failed

counts requests (a request with ``n > 1`` is one request), after resume: a request
that failed once and then succeeded counts as ok. ``message`` is the exception's
English text with secrets scrubbed; ``code`` is the server's error code when it sent
a string one (OpenAI: ``"invalid_api_key"``), a ParamsError's message key, else None.
"""

from __future__ import annotations

import html
import re
import sys
from typing import Any

import pandas as pd

from ..errors import APIError, GSExploreError, ParamsError
from ..i18n.explain import outcome_text
from .redact import redact

__all__ = ["sweep_outcome", "error_info", "outcome_line", "show_outcome", "SweepFailed"]

_STATUS = re.compile(r"^HTTP (\d{3}): ")


class SweepFailed(GSExploreError):
    """Every request of a sweep failed. The rows are saved; ``outcome`` and ``df`` hold them."""

    def __init__(self, message: str, outcome: dict[str, Any], df: pd.DataFrame) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.df = df


def error_info(exc: BaseException, secrets: list[str] | None = None) -> dict[str, Any]:
    """``first_error`` of an exception: type, HTTP status, error code, English message."""
    status = getattr(exc, "status", None)
    code = None
    if isinstance(exc, APIError) and isinstance(exc.body, dict):
        err = exc.body.get("error") if isinstance(exc.body.get("error"), dict) else exc.body
        code = err.get("code") if isinstance(err.get("code"), str) else None
    elif isinstance(exc, ParamsError):
        code = exc.key
    return {"type": type(exc).__name__, "status": status if isinstance(status, int) else None, "code": code,
            "message": redact(str(exc) or repr(exc), secrets or [])}


def _row_info(row: pd.Series) -> dict[str, Any]:
    message = str(row["error_message"]) if pd.notna(row.get("error_message")) else ""
    m = _STATUS.match(message)
    return {"type": str(row["error_type"]), "status": int(m.group(1)) if m else None, "code": None,
            "message": message}


def sweep_outcome(df: pd.DataFrame, errors: dict[tuple, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The outcome of the requests in ``df`` (latest attempts); ``errors``: `error_info` by request key,
    known for the requests that failed in this run (the rows alone do not keep the error code)."""
    empty = {"total": 0, "ok": 0, "failed": 0, "by_type": {}, "first_error": None}
    if df.empty or "cell_id" not in df.columns:
        return empty
    keys = df["cell_id"].astype(str) + "|" + df["repeat"].astype(str) + "|" + df["seed"].astype(str)
    failed_mask = df["error_type"].notna()
    failed_keys = set(keys[failed_mask])
    total = int(keys.nunique())
    bad = df[failed_mask].assign(_key=keys[failed_mask]).drop_duplicates("_key")
    by_type = {str(k): int(v) for k, v in bad["error_type"].value_counts().items()}
    first = None
    if len(bad):
        if "timestamp" in bad.columns and bad["timestamp"].notna().any():
            bad = bad.sort_values("timestamp", kind="stable")
        row = bad.iloc[0]
        rkey = (str(row["cell_id"]), int(row["repeat"]), None if pd.isna(row["seed"]) else int(row["seed"]))
        first = (errors or {}).get(rkey) or _row_info(row)
    return {"total": total, "ok": total - len(failed_keys), "failed": len(failed_keys), "by_type": by_type,
            "first_error": first}


def outcome_line(outcome: dict[str, Any], lang: str | None = None, seconds: float | None = None) -> str:
    """The outcome in one sentence of the message catalogue (`gsexplore.i18n.language()`)."""
    return outcome_text(outcome, lang, seconds)


def _in_notebook() -> bool:
    ip = sys.modules.get("IPython")
    shell = ip.get_ipython() if ip is not None and hasattr(ip, "get_ipython") else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def show_outcome(outcome: dict[str, Any], lang: str | None = None, seconds: float | None = None) -> None:
    """Say the outcome: an HTML line in a notebook (red when anything failed), else a line on stdout."""
    line = outcome_line(outcome, lang, seconds)
    if _in_notebook():
        from IPython.display import HTML, display

        color = "#b00020" if outcome["failed"] else "#1b5e20"
        display(HTML(f'<div class="gs-sweep-outcome" style="color:{color};font-weight:600">{html.escape(line)}</div>'))
    else:
        print(line, flush=True)
