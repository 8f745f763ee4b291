"""Every sentence a user reads, from one catalogue per language (``es.py``, ``en.py``), keyed by a stable id.

Code says ``msg("sweep.failed", ok=7, total=9, first=...)``, never an inline
``"..." if es else "..."``. Library exceptions keep an English ``str()`` for logs
and API clients; panels and notebooks render them through this catalogue.
Numbers are written the way the language writes them (es: ``2.285,5``).
"""
from __future__ import annotations

import os
from typing import Any

from . import en, es

__all__ = ["LANGUAGES", "language", "msg", "number", "set_language"]

LANGUAGES: dict[str, dict[str, str]] = {"es": es.MESSAGES, "en": en.MESSAGES}
_language: str | None = None


def language() -> str:
    """The language of messages: `set_language`, else ``GSEXPLORE_LANG``, else Spanish."""
    lang = _language or os.environ.get("GSEXPLORE_LANG", "es")
    return lang if lang in LANGUAGES else "es"


def set_language(lang: str) -> None:
    """Messages in ``lang`` ("es" or "en") from now on."""
    if lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {sorted(LANGUAGES)}, not {lang!r}")
    global _language
    _language = lang


def msg(key: str, lang: str | None = None, **fields: Any) -> str:
    """The message ``key`` in ``lang`` (default `language()`), its ``{fields}`` filled in."""
    table = LANGUAGES[lang or language()]
    text = table.get(key)
    if text is None:
        raise KeyError(f"no message {key!r} in the {lang or language()} catalogue")
    return text.format(**fields) if fields else text


def number(x: float | int, lang: str | None = None, digits: int | None = None, grouping: bool = True) -> str:
    """``x`` as the language writes it: es ``2.285`` and ``0,73``; en ``2,285`` and ``0.73``.

    ``grouping=False`` leaves out the thousands separator (a value typed back into a box).
    """
    g = "," if grouping else ""
    if isinstance(x, int) or (digits is None and float(x).is_integer()):
        s = f"{int(x):{g}}"
    else:
        s = f"{x:{g}.{digits}f}" if digits is not None else (f"{x:,}" if grouping else repr(float(x)))
    if (lang or language()) == "es":
        s = s.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return s


from .explain import allowed_text, explain, explain_check, explain_first, explain_row, outcome_text  # noqa: E402

__all__ += ["allowed_text", "explain", "explain_check", "explain_first", "explain_row", "outcome_text"]
