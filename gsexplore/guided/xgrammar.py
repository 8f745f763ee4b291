"""xgrammar's language (as vLLM 0.10-0.11 calls it), translated for llguidance.

vLLM compiles guided_* with xgrammar unless the constraint needs something
xgrammar lacks. llguidance stays the engine here; these functions rewrite a
constraint so that llguidance accepts what xgrammar accepts (read in
``cpp/regex_converter.cc``, ``cpp/json_schema_converter.cc`` and checked with
xgrammar 0.2.8's matcher):

* regex: ``\\d`` = ``[0-9]``, ``\\w`` = ``[a-zA-Z0-9_]``, ``\\s`` =
  ``[ \\t\\n\\r\\f\\v\\u00a0]`` (and their negations), ``.`` matches any
  character including a newline, ``^`` and ``$`` match the empty string
  wherever they are, ``\\A`` and ``\\Z`` are the letters A and Z (xgrammar
  warns). Flags, look-arounds, ``\\b``, back-references, named groups,
  possessive quantifiers, ``{,n}`` and a ``{`` that is no quantifier are
  errors in xgrammar: :class:`XgrammarUnsupported`.
* JSON schema, strict mode: an object schema with ``properties`` is closed
  unless ``additionalProperties`` (or ``unevaluatedProperties``) opens it;
  ``prefixItems`` without ``items`` allows no more items; ``properties``
  without ``type`` means an object; string ``pattern`` uses the regex rules above.
  The keywords vLLM's ``has_xgrammar_unsupported_json_features`` lists are
  :class:`XgrammarUnsupported` (vLLM then falls back to guidance).
"""

from __future__ import annotations

import copy
from typing import Any

#: String formats xgrammar implements (vLLM 0.11 ``STRING_SUPPORTED_FORMATS``).
STRING_FORMATS = frozenset({
    "email", "date", "time", "date-time", "duration", "ipv4", "ipv6", "hostname", "uuid", "uri",
    "uri-reference", "uri-template", "json-pointer", "relative-json-pointer"})


class XgrammarUnsupported(ValueError):
    """The constraint uses something xgrammar rejects (vLLM's "auto" then uses guidance)."""


# --- regex -------------------------------------------------------------------

_CLASS_BODY = {"d": "0-9", "w": "a-zA-Z0-9_", "s": r" \t\n\r\x0C\x0B\xA0"}
_SIMPLE_ESC = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "v": "\v", "a": "\a", "0": "\0"}
_META = set(r"\.+*?()|[]{}^$#&-~")


def _lit(ch: str) -> str:
    """``ch`` as a Rust regex literal."""
    if ch in _META:
        return "\\" + ch
    if ord(ch) < 0x20 or ch == "\x7f":
        return f"\\x{{{ord(ch):x}}}"
    return ch


def _hex_escape(rx: str, i: int) -> tuple[str, int]:
    """A ``\\xHH`` / ``\\uHHHH`` / ``\\UHHHHHHHH`` escape at ``rx[i]`` ('\\'): (char, next index)."""
    width = {"x": 2, "u": 4, "U": 8}[rx[i + 1]]
    digits = rx[i + 2:i + 2 + width]
    if len(digits) != width or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise XgrammarUnsupported(f"escape {rx[i:i + 2 + width]!r} at {i}")
    return chr(int(digits, 16)), i + 2 + width


def _escape(rx: str, i: int, in_class: bool, warns: list[str]) -> tuple[str, int]:
    """Translate the escape at ``rx[i]``; returns (Rust text, next index)."""
    if i + 1 >= len(rx):
        raise XgrammarUnsupported("a trailing backslash")
    c = rx[i + 1]
    if c.lower() in _CLASS_BODY:
        body = _CLASS_BODY[c.lower()]
        if c.islower():
            return (body if in_class else f"[{body}]"), i + 2
        return f"[^{body}]", i + 2  # nested inside a class: Rust unions it
    if c in _SIMPLE_ESC:
        if c == "0" and i + 2 < len(rx) and rx[i + 2].isdigit():
            raise XgrammarUnsupported(f"octal escape at {i}")
        return _lit(_SIMPLE_ESC[c]), i + 2
    if c in "xuU":
        ch, j = _hex_escape(rx, i)
        return _lit(ch), j
    if c in "AZ" and not in_class:
        warns.append(f"xgrammar reads \\{c} as the letter {c}")
        return c, i + 2
    if c.isalnum():
        raise XgrammarUnsupported(f"escape \\{c} at {i}")
    return _lit(c), i + 2


def _class(rx: str, i: int, warns: list[str]) -> tuple[str, int]:
    """Translate the class starting at ``rx[i]`` ('['); returns (Rust text, next index)."""
    out = ["["]
    i += 1
    if i < len(rx) and rx[i] == "^":
        out.append("^")
        i += 1
    if i < len(rx) and rx[i] == "]":
        raise XgrammarUnsupported(f"a ']' first in a class at {i}")
    first = len(out)
    while i < len(rx) and rx[i] != "]":
        c = rx[i]
        if c == "\\":
            text, i = _escape(rx, i, True, warns)
            out.append(text)
        elif c == "-" and len(out) > first and i + 1 < len(rx) and rx[i + 1] != "]":
            out.append("-")  # a range between the previous item and the next one
            i += 1
        else:
            out.append(_lit(c))
            i += 1
    if i >= len(rx):
        raise XgrammarUnsupported("an unterminated class")
    out.append("]")
    return "".join(out), i + 1


def _quantifier(rx: str, i: int) -> tuple[str, int]:
    """A ``{n}``, ``{n,}`` or ``{n,m}`` at ``rx[i]``; anything else xgrammar rejects."""
    j = rx.find("}", i)
    body = rx[i + 1:j] if j > 0 else ""
    lo, comma, hi = body.partition(",")
    if j < 0 or not lo.isdigit() or (hi and not hi.isdigit()):
        raise XgrammarUnsupported(f"'{{' at {i} is not a quantifier xgrammar reads ({{n}}, {{n,}}, {{n,m}})")
    return "{" + lo + comma + hi + "}", j + 1


def regex_to_rust(rx: str) -> tuple[str, list[str]]:
    """``rx`` (Python syntax) with xgrammar's meaning, as a Rust regex for llguidance.

    Returns (regex, warnings). Raises XgrammarUnsupported for what xgrammar rejects.
    """
    out: list[str] = []
    warns: list[str] = []
    i, n = 0, len(rx)
    while i < n:
        c = rx[i]
        if c == "\\":
            text, i = _escape(rx, i, False, warns)
            out.append(text)
        elif c == "[":
            text, i = _class(rx, i, warns)
            out.append(text)
        elif c == ".":
            out.append("(?s:.)")
            i += 1
        elif c in "^$":
            out.append("(?:)")
            i += 1
        elif c == "(":
            if rx.startswith("(?", i) and not rx.startswith("(?:", i):
                raise XgrammarUnsupported(f"group syntax {rx[i:i + 3]!r} at {i} (flags, look-arounds, "
                                          "named groups)")
            out.append("(?:" if rx.startswith("(?:", i) else "(")
            i += 3 if rx.startswith("(?:", i) else 1
        elif c in "*+?" or c == "{":
            if c == "{":
                text, i = _quantifier(rx, i)
            else:
                text, i = c, i + 1
            out.append(text)
            if i < n and rx[i] == "+":
                raise XgrammarUnsupported(f"a possessive quantifier at {i}")
            if i < n and rx[i] == "?":  # lazy: the same language
                i += 1
        elif c in ")|":
            out.append(c)
            i += 1
        else:
            out.append(_lit(c))
            i += 1
    return "".join(out), warns


# --- JSON schema -------------------------------------------------------------

def _types(d: dict[str, Any]) -> set[str]:
    t = d.get("type")
    if isinstance(t, str):
        return {t}
    return {x for x in t if isinstance(x, str)} if isinstance(t, list) else set()


def _unsupported(d: dict[str, Any]) -> str | None:
    """What vLLM's ``has_xgrammar_unsupported_json_features`` finds in ``d`` itself."""
    types = _types(d)
    if types & {"integer", "number"} and "multipleOf" in d:
        return "multipleOf"
    if "array" in types:
        for k in ("uniqueItems", "contains", "minContains", "maxContains"):
            if k in d:
                return k
    if "string" in types and "format" in d and d["format"] not in STRING_FORMATS:
        return f"format {d['format']!r}"
    if "object" in types:
        for k in ("minProperties", "maxProperties", "propertyNames", "patternProperties"):
            if k in d:
                return k
    return None


_SUB_DICT = ("items", "additionalProperties", "unevaluatedProperties", "unevaluatedItems", "not",
             "if", "then", "else", "contains")
_SUB_MAP = ("properties", "$defs", "definitions", "patternProperties")
_SUB_LIST = ("anyOf", "oneOf", "allOf", "prefixItems")


def _strict(d: Any, warns: list[str], where: str) -> Any:
    if isinstance(d, list):
        return [_strict(x, warns, f"{where}/{i}") for i, x in enumerate(d)]
    if not isinstance(d, dict):
        return d
    why = _unsupported(d)
    if why:
        raise XgrammarUnsupported(f"{why} at {where or '/'}")
    d = dict(d)
    for k in _SUB_DICT:
        if isinstance(d.get(k), dict):
            d[k] = _strict(d[k], warns, f"{where}/{k}")
    for k in _SUB_MAP:
        if isinstance(d.get(k), dict):
            d[k] = {name: _strict(v, warns, f"{where}/{k}/{name}") for name, v in d[k].items()}
    for k in _SUB_LIST:
        if isinstance(d.get(k), list):
            d[k] = _strict(d[k], warns, f"{where}/{k}")
    if "properties" in d and "type" not in d and not {"anyOf", "oneOf", "allOf", "$ref", "enum", "const"} & set(d):
        d["type"] = "object"  # xgrammar reads a schema with properties as an object
    if "properties" in d and "additionalProperties" not in d:
        d["additionalProperties"] = d.pop("unevaluatedProperties", False)
    if "prefixItems" in d and "items" not in d:
        d["items"] = d.pop("unevaluatedItems", False)
    if isinstance(d.get("pattern"), str):
        d["pattern"], w = regex_to_rust(d["pattern"])
        warns += [f"{where}/pattern: {x}" for x in w]
    return d


def strict_schema(schema: Any) -> tuple[Any, list[str]]:
    """``schema`` rewritten so llguidance accepts what xgrammar's strict mode accepts.

    Returns (schema, warnings); the input is not modified. Raises
    XgrammarUnsupported for keywords vLLM sends to guidance instead.
    """
    warns: list[str] = []
    return _strict(copy.deepcopy(schema), warns, ""), warns
