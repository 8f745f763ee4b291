"""Advice a notebook expects to give (an underpowered test, a slow setting): a note, not red stderr."""

from __future__ import annotations

from typing import Any

from ._i18n import msg
from ._style import note_html

__all__ = ["note"]


class _Note:
    """A displayable note: HTML in notebooks, its text in a terminal."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_html_(self) -> str:
        return note_html(self.text)

    def __repr__(self) -> str:
        return f"ℹ {self.text}"


def note(key_or_text: str, lang: str | None = None, **fields: Any) -> _Note:
    """A note from the catalogue (``note("stats.not_significant", n=2, ...)``), or of a text already said."""
    try:
        text = msg(key_or_text, lang, **fields)
    except KeyError:
        text = key_or_text
    return _Note(text)
