"""A sweep's outcome, said first: how many requests went well, how many failed and why.

`outcome` reads ``df.attrs["outcome"]`` when `gsexplore.sweep` wrote it, and
otherwise computes the same facts from the rows (their ``error_type`` and
``error_message`` columns). `gsexplore.i18n.outcome_text` says them through the catalogue.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from ..i18n import explain_first, outcome_text

__all__ = ["outcome", "outcome_text", "failed_mask", "explain_first"]


def failed_mask(df: pd.DataFrame) -> pd.Series:
    """True for the rows whose request failed."""
    if "error_type" not in df.columns:
        return pd.Series(False, index=df.index)
    err = df["error_type"]
    return err.notna() & (err.astype(str) != "")


def outcome(df: pd.DataFrame) -> dict[str, Any]:
    """``{"total", "ok", "failed", "by_type", "first_error"}`` of a sweep's result, as `gs.sweep` reports it."""
    given = df.attrs.get("outcome")
    if isinstance(given, dict) and {"total", "ok", "failed"} <= set(given):
        return given
    bad = failed_mask(df)
    first = None
    if bad.any():
        row = df[bad].iloc[0]
        text = str(row.get("error_message") or "")
        m = re.match(r"HTTP (\d{3}): ", text)
        first = {"type": str(row["error_type"]), "status": int(m.group(1)) if m else None, "code": None,
                 "message": re.sub(r"^HTTP \d{3}: ", "", text)}
    by_type = {str(k): int(v) for k, v in df.loc[bad, "error_type"].value_counts().items()} if bad.any() else {}
    return {"total": int(len(df)), "ok": int((~bad).sum()), "failed": int(bad.sum()), "by_type": by_type,
            "first_error": first}
