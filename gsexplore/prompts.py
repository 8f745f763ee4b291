"""Prompt sets: what a sweep asks, from strings, message lists, dicts or JSONL files.

A prompt file is JSONL, one prompt a line::

    {"id": "cap-01", "messages": [{"role": "user", "content": "¿Cuál es la capital de Chile?"}], "expected": "Santiago"}

``messages`` may be replaced by ``"prompt": "text"`` (one user message); ``expected``
(a string, or a list of acceptable answers) is optional. The sets shipped in
``data/prompts/`` are found by name: ``load_prompts("capitales_es")``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from .completion import last_user_text
from .errors import ParamsError

__all__ = ["Prompt", "PromptsLike", "data_dir", "list_prompt_sets", "load_prompts"]


@dataclass(frozen=True)
class Prompt:
    """One prompt of a sweep: an id, the chat messages, and an optional expected answer."""

    id: str
    messages: list[dict[str, Any]] = field(hash=False)
    expected: str | list[str] | None = field(default=None, hash=False)

    @property
    def text(self) -> str:
        """The text of the last user message (what tables show as `prompt`)."""
        return last_user_text(self.messages)

    @property
    def key(self) -> str:
        """Canonical JSON of the messages (what cell ids hash)."""
        return json.dumps(self.messages, sort_keys=True, ensure_ascii=False)

    def expected_text(self) -> str | None:
        """`expected` as one string for a DataFrame cell: lists become JSON text."""
        if self.expected is None or isinstance(self.expected, str):
            return self.expected
        return json.dumps(list(self.expected), ensure_ascii=False)


PromptsLike = Union[str, os.PathLike, list, dict, Prompt]


def data_dir() -> Path:
    """The folder of the shipped prompt sets (``$GSEXPLORE_PROMPTS`` overrides it)."""
    env = os.environ.get("GSEXPLORE_PROMPTS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "data" / "prompts"


def list_prompt_sets() -> list[str]:
    """Names of the prompt sets in data/prompts/ (usable as `prompts=` in a sweep)."""
    d = data_dir()
    return sorted(p.stem for p in d.glob("*.jsonl")) if d.is_dir() else []


def _as_file(s: str | os.PathLike) -> Path | None:
    """The prompt file a string names (a path, or a set name in data/prompts/), else None."""
    s = os.fspath(s)
    if "\n" in s or len(s) > 500:
        return None
    p = Path(s).expanduser()
    if p.suffix in (".jsonl", ".json", ".ndjson") or p.is_file():
        if p.is_file():
            return p
        shipped = data_dir() / p.name
        if shipped.is_file():
            return shipped
        raise ParamsError(f"prompt file {s!r} not found (shipped sets: {', '.join(list_prompt_sets())})",
                          field="prompts", value=s)
    shipped = data_dir() / f"{s}.jsonl"
    return shipped if shipped.is_file() else None


def _messages(value: Any, where: str) -> list[dict[str, Any]]:
    from .completion import to_messages

    try:
        return to_messages(value)
    except ParamsError as exc:
        raise ParamsError(f"{where}: {exc}", field="prompts", value=value) from None


def _from_dict(d: dict[str, Any], default_id: str, where: str) -> Prompt:
    unknown = set(d) - {"id", "messages", "prompt", "content", "expected", "system"}
    if unknown:
        raise ParamsError(f"{where}: unknown key(s) {sorted(unknown)}; use id, messages (or prompt), "
                          "expected, system", field="prompts", value=d)
    if "messages" in d:
        msgs = _messages(d["messages"], where)
    elif "prompt" in d or "content" in d:
        msgs = _messages(str(d.get("prompt", d.get("content"))), where)
    else:
        raise ParamsError(f"{where}: a prompt needs 'messages' or 'prompt'", field="prompts", value=d)
    if d.get("system"):
        msgs = [{"role": "system", "content": d["system"]}] + msgs
    expected = d.get("expected")
    if expected is not None and not isinstance(expected, str):
        expected = [str(e) for e in expected] if isinstance(expected, (list, tuple)) else str(expected)
    return Prompt(id=str(d.get("id", default_id)), messages=msgs, expected=expected)


def read_jsonl(path: str | os.PathLike) -> list[Prompt]:
    """Prompts of one JSONL file (blank lines and lines starting with // are skipped)."""
    path = Path(path)
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("//"):
                continue
            where = f"{path.name}:{lineno}"
            try:
                d = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ParamsError(f"{where}: not valid JSON ({exc})", field="prompts") from None
            if not isinstance(d, dict):
                raise ParamsError(f"{where}: each line must be a JSON object", field="prompts")
            out.append(_from_dict(d, f"{path.stem}-{len(out):02d}", where))
    return out


def load_prompts(prompts: PromptsLike) -> list[Prompt]:
    """Normalise what a sweep was given into Prompts with unique ids.

    Accepts a file path or a shipped set name (``"capitales_es"``), one prompt
    string, one message list, a dict ``{id, messages|prompt, expected}``, a
    `Prompt`, or a list mixing those (strings in a list are prompt texts).
    """
    if isinstance(prompts, (str, os.PathLike)):
        f = _as_file(prompts)
        items: list[Any] = read_jsonl(f) if f is not None else [str(prompts)]
    elif isinstance(prompts, (dict, Prompt)):
        items = [prompts]
    elif isinstance(prompts, list) and prompts and all(isinstance(m, dict) and "role" in m for m in prompts):
        items = [prompts]  # one conversation
    elif isinstance(prompts, (list, tuple)):
        items = list(prompts)
    else:
        raise ParamsError(f"prompts must be a str, a path, a list or a dict, not {type(prompts).__name__}",
                          field="prompts", value=prompts)
    if not items:
        raise ParamsError("prompts is empty", field="prompts")
    out: list[Prompt] = []
    for i, item in enumerate(items):
        default_id = f"p{i:02d}"
        where = f"prompts[{i}]"
        if isinstance(item, Prompt):
            out.append(item)
        elif isinstance(item, str):
            out.append(Prompt(default_id, _messages(item, where)))
        elif isinstance(item, list):
            out.append(Prompt(default_id, _messages(item, where)))
        elif isinstance(item, dict):
            out.append(_from_dict(item, default_id, where))
        else:
            raise ParamsError(f"{where} must be a str, a message list or a dict, not {type(item).__name__}",
                              field="prompts", value=item)
    seen: set[str] = set()
    for p in out:
        if p.id in seen:
            raise ParamsError(f"duplicate prompt id {p.id!r}", field="prompts", value=p.id)
        seen.add(p.id)
    return out
