"""ChatSession: what a Playground conversation is, apart from any widget.

The system message, the finished turns, and one history row per run. The
Playground is a view of one ChatSession: its widgets read and write this object,
and tests can drive a conversation without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..completion import Completion, Messages
from ..row import completion_row

__all__ = ["ChatSession"]


@dataclass
class ChatSession:
    """A multi-turn conversation: ``system``, finished ``turns`` and ``rows`` (one per run)."""

    system: str = ""
    turns: Messages = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def messages(self, user: str = "") -> Messages:
        """What the next run sends: system, the finished turns, and ``user`` (empty: generate the last answer again)."""
        msgs: Messages = []
        if self.system.strip():
            msgs.append({"role": "system", "content": self.system})
        if user.strip():
            return msgs + self.turns + [{"role": "user", "content": user}]
        turns = self.turns[:-1] if self.turns and self.turns[-1]["role"] == "assistant" else self.turns
        return msgs + turns

    def record(self, c: Completion, sent: Messages, stopped: bool, valid: bool | None = None) -> dict[str, Any]:
        """Add one run: its history row always; its answer joins the conversation unless it was stopped."""
        row = {"run": len(self.rows) + 1, **completion_row(c), "stopped": stopped, "guided_valid": valid}
        self.rows.append(row)
        if not stopped:
            # the answer joins the conversation; a regeneration replaces the last one
            self.turns = [m for m in sent if m["role"] != "system"] + [{"role": "assistant", "content": c.content or ""}]
        return row

    def clear(self) -> None:
        """A new conversation: the turns go, the system message and the history stay."""
        self.turns = []

    @property
    def history(self) -> pd.DataFrame:
        """One row per run: completion_row(c) plus run number, whether it was stopped and guided validity."""
        return pd.DataFrame(self.rows)
