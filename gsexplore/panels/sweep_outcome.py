"""A sweep's outcome, said first: how many requests went well, how many failed and why.

`outcome` reads ``df.attrs["outcome"]`` when `gsexplore.sweep` wrote it, and
otherwise computes the same facts from the rows (their ``error_type`` and
``error_message`` columns). `outcome_text` says them through the catalogue.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from ._i18n import explain_row, msg, number

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


def explain_first(first: dict[str, Any] | None, lang: str) -> str:
    """The first error of an outcome in ``lang`` (by its type and HTTP status)."""
    if not first:
        return ""
    status = first.get("status")
    message = str(first.get("message") or "")
    return explain_row(first.get("type"), f"HTTP {status}: {message}" if status else message, lang)


def outcome_text(oc: dict[str, Any], lang: str, seconds: float | None = None) -> str:
    """"7 de 9 bien, 2 con error: Clave inválida ..." (or "9 de 9 bien en 3,2 s")."""
    total, ok, failed = oc["total"], oc["ok"], oc["failed"]
    if not failed:
        secs = number(round(seconds or 0.0, 1), lang, digits=1)
        return msg("sweep.outcome_ok", lang, ok=number(ok, lang), total=number(total, lang), seconds=secs)
    first = explain_first(oc.get("first_error"), lang)
    if not ok:
        line = msg("sweep.outcome_all_failed", lang, total=number(total, lang), first=first)
    else:
        line = msg("sweep.outcome_failed", lang, ok=number(ok, lang), total=number(total, lang),
                   failed=number(failed, lang), first=first)
    by_type = oc.get("by_type") or {}
    if len(by_type) > 1:
        line += "\n" + msg("sweep.outcome_by_type", lang,
                           types=", ".join(f"{k} × {number(v, lang)}" for k, v in by_type.items()))
    return line
