"""Tool calling with vLLM's meaning: the forced-choice schema and the hermes parser (Qwen3's format).

* ``tool_choice`` unset with ``tools`` given means "auto" (vLLM's default); "none"
  renders the tools but never parses; "auto" parses ``<tool_call>{json}</tool_call>``
  blocks as vLLM's ``hermes`` tool parser does (``tool_parsers/hermes_tool_parser.py``):
  content is the text before the first block (None when empty), each block's JSON
  gives ``name`` and ``arguments`` (re-serialised), finish_reason "tool_calls"; a
  block that is not JSON leaves the whole output as content.
* "required" constrains the output to a JSON array of ``{"name", "parameters"}``
  objects of the given tools (vLLM's ``_get_json_schema_from_tool``), parsed into
  tool_calls, content "", finish_reason "tool_calls" when the output stopped.
* a named function constrains the output to that function's ``parameters`` schema;
  the output is its arguments; content "", finish_reason stays the output's.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from .params import Params

__all__ = ["START", "END", "mode", "forced_schema", "parse_hermes", "tool_message", "StreamFilter"]

START, END = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>|<tool_call>(.*)", re.DOTALL)


def mode(p: Params) -> str | None:
    """What happens with tools: None (no tools), "none", "auto", "required" or "named"."""
    if not p.tools:
        return None
    tc = p.tool_choice
    if tc is None:
        return "auto"
    return "named" if isinstance(tc, dict) else str(tc)


def _functions(p: Params) -> list[dict[str, Any]]:
    return [t["function"] for t in p.tools or ()]


def forced_schema(p: Params) -> dict[str, Any] | None:
    """The JSON schema a forced tool choice constrains the output to (None when not forced)."""
    m = mode(p)
    if m == "named":
        name = p.tool_choice["function"]["name"]  # type: ignore[index]
        fn = next(f for f in _functions(p) if f["name"] == name)
        return fn.get("parameters") or {"type": "object"}
    if m == "required":
        return {"type": "array", "minItems": 1, "items": {"type": "object", "anyOf": [
            {"properties": {"name": {"type": "string", "enum": [f["name"]]},
                            "parameters": f.get("parameters") or {"type": "object"}},
             "required": ["name", "parameters"]} for f in _functions(p)]}}
    return None


def _call(name: str, arguments: Any) -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {"id": f"chatcmpl-tool-{uuid.uuid4().hex}", "type": "function",
            "function": {"name": name, "arguments": args}}


def parse_hermes(text: str) -> tuple[str | None, list[dict[str, Any]]]:
    """(content, tool_calls) of an output in Qwen3's ``<tool_call>`` format, as vLLM's hermes parser."""
    if START not in text:
        return text, []
    try:
        blocks = [json.loads(a or b) for a, b in _BLOCK.findall(text)]
        calls = [_call(b["name"], b.get("arguments", {})) for b in blocks]
    except (ValueError, KeyError, TypeError):
        return text, []  # vLLM logs the failure and returns the output as content
    content = text[:text.find(START)]
    return content or None, calls


def tool_message(p: Params, content: str | None, finish_reason: str | None
                 ) -> tuple[str | None, list[dict[str, Any]], str | None]:
    """(content, tool_calls, finish_reason) of one choice, after vLLM's tool handling."""
    m = mode(p)
    text = content or ""
    if m == "auto":
        content, calls = parse_hermes(text)
        return content, calls, "tool_calls" if calls else finish_reason
    if m == "named":
        return "", [_call(p.tool_choice["function"]["name"], text)], finish_reason  # type: ignore[index]
    if m == "required":
        try:
            calls = [_call(c["name"], c.get("parameters", {})) for c in json.loads(text)]
        except (ValueError, KeyError, TypeError):
            return content, [], finish_reason  # cut short by max_tokens: not a complete array
        return "", calls, "tool_calls" if finish_reason == "stop" else finish_reason
    return content, [], finish_reason


class StreamFilter:
    """Content deltas of one streamed choice with tool-call text held back (sent parsed at the end)."""

    def __init__(self, p: Params) -> None:
        self.mode = mode(p)
        self._held = ""
        self._suppressed = ""
        self._in_call = False

    def feed(self, text: str) -> str:
        """The part of ``text`` that is plain content, now."""
        if self.mode in ("named", "required"):
            return ""
        if self.mode != "auto":
            return text
        if self._in_call:
            self._suppressed += text
            return ""
        buf = self._held + text
        at = buf.find(START)
        if at >= 0:
            self._in_call, self._held, self._suppressed = True, "", buf[at:]
            return buf[:at]
        keep = next((k for k in range(min(len(START) - 1, len(buf)), 0, -1) if START.startswith(buf[-k:])), 0)
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[:len(buf) - keep]

    def flush(self, called: bool) -> str:
        """Content held back and still owed: a partial start that was not one, or a block that did
        not parse (``called`` False: vLLM then gives the whole output as content)."""
        out = self._held + ("" if called else self._suppressed)
        self._held = self._suppressed = ""
        return out
