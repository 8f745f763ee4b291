"""The panels' use of the one catalogue (`gsexplore.i18n`): messages, column labels, errors."""

from __future__ import annotations

from typing import Any

from ..errors import GSExploreError
from ..i18n import explain, explain_row, msg, number

__all__ = ["PanelRefusal", "column", "explain", "explain_row", "msg", "number"]


class PanelRefusal(GSExploreError):
    """A panel refusing an action ("write a prompt first"): English ``str()``, the catalogue's key for people."""

    def __init__(self, key: str, **ctx: Any) -> None:
        super().__init__(msg(key, "en", **ctx))
        self.key = key
        self.ctx = ctx


def column(name: str, lang: str | None = None) -> str:
    """A result column's label in ``lang`` ("content" -> "respuesta"); unknown columns keep their name."""
    try:
        return msg(f"col.{name}", lang)
    except KeyError:
        return name
