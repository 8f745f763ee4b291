"""Parameter values as people type them: one reader for every box of every panel.

A number box reads ``0,7`` as 0.7 (the decimal comma) and ``0.7`` as 0.7; a
values list (a sweep's grid) separates values with ``;`` or spaces, and accepts
``, `` (comma and space) as a separator only when no value has a decimal comma.
What could be read two ways (``0,7,1``, ``1.000,5``, ``0,7, 1``) is refused with
a ParamsError that echoes it. An integer box refuses ``2.5`` instead of rounding.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import ParamsError
from .params import ParamSpec

__all__ = ["format_value", "parse_number", "parse_int", "parse_values", "parse_text"]

_TRUE = {"true", "1", "yes", "sí", "si", "verdadero", "on"}
_FALSE = {"false", "0", "no", "falso", "off"}
_NUMBER = re.compile(r"[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)


def _ambiguous(field: str, text: str) -> ParamsError:
    return ParamsError(f"{field}: {text.strip()!r} can be read two ways; separate values with ';'",
                       field=field, value=text, key="ambiguous_number", typed=text.strip())


def _number(field: str, kind: str, raw: str, whole: str) -> float | int:
    """One number token: a decimal comma or point, never both, never two."""
    s = raw.strip()
    if s.count(",") + s.count(".") > 1 and not re.fullmatch(r"[+-]?\d+\.\d*[eE][+-]?\d+", s):
        raise _ambiguous(field, whole)
    if not _NUMBER.fullmatch(s):
        raise ParamsError(f"{field}={s} is not allowed: not {'an integer' if kind == 'int' else 'a number'}",
                          field=field, value=s, key="type", typed=s)
    v = float(s.replace(",", "."))
    if kind == "int":
        if not math.isfinite(v) or v != int(v) or "," in s or "." in s:
            raise ParamsError(f"{field}={s} is not allowed: not an integer", field=field, value=s, key="type",
                              typed=s)
        return int(v)
    if not math.isfinite(v):
        raise ParamsError(f"{field}={s} is not allowed: not a finite number", field=field, value=s, key="type",
                          typed=s)
    return v


def format_value(v: float | int, lang: str = "es") -> str:
    """A number as it is typed back into a box: no thousands separator; es with a decimal comma."""
    from .i18n import number

    return number(v, lang, grouping=False)


def parse_number(spec: ParamSpec, text: str) -> Any:
    """What one number box holds, read by the parameter's kind; ParamsError (echoing it) when it is not one."""
    s = text.strip()
    if not s:
        raise ParamsError(f"{spec.name}: empty; write a value or untick it", field=spec.name, value=text,
                          key="empty_value", typed=text)
    return _number(spec.name, spec.kind, s, s)


def parse_int(field: str, text: str, minimum: int | None = 1) -> int:
    """A whole number typed in a box that is not a parameter (repeats): 2.5 and values below ``minimum`` refused."""
    s = str(text).strip()
    if not s:
        raise ParamsError(f"{field}: empty", field=field, value=text, key="empty_value", typed=s)
    try:
        n = int(_number(field, "int", s, s))
    except ParamsError:
        raise ParamsError(f"{field}={s} is not allowed: not a whole number", field=field, value=s,
                          key="below_minimum", typed=s, minimum=minimum if minimum is not None else "-∞") from None
    if minimum is not None and n < minimum:
        raise ParamsError(f"{field}={s} is not allowed: must be >= {minimum}", field=field, value=s,
                          key="below_minimum", typed=s, minimum=minimum)
    return n


def _split_numbers(field: str, s: str) -> list[str]:
    """The number tokens of a values list: ``;`` first, else spaces (a comma and space separates too)."""
    if ";" in s:
        parts = [p.strip() for p in s.split(";")]
        if parts and parts[-1] == "":
            parts.pop()  # "0,7; 1;" : a trailing separator is not an empty value
        return parts
    separator_commas = re.findall(r",(?=\s|$)", s)
    inner_commas = re.findall(r",(?=[^\s,])", s)
    if separator_commas and inner_commas:
        raise _ambiguous(field, s)  # "0,7, 1": decimal comma and comma separator at once
    if separator_commas:
        parts = [p.strip() for p in re.split(r",\s*", s)]
        if parts[-1] == "":
            parts.pop()
        return parts
    return s.split()


def parse_values(spec: ParamSpec, text: str) -> list[Any]:
    """The values typed for one parameter of a sweep ("0,5; 0,7" or "0.5 0.7"), converted by its kind.

    A JSON list (``[...]``) works for every kind and is the way to give lists or
    objects (``[["sí", "no"], ["a", "b"]]``). Texts and booleans are separated by
    ``;`` or commas. ParamsError names the field and echoes what it could not read.
    """
    s = text.strip()
    if not s:
        raise ParamsError(f"{spec.name}: no values", field=spec.name, key="no_values")
    if s.startswith("[") and spec.kind not in ("list[int]", "list[str]", "str|list[str]") or s.startswith("[["):
        return _json_list(spec, s, text)
    if spec.kind in ("json", "list[int]", "list[str]"):
        return _json_list(spec, s, text)
    if spec.kind in ("float", "int"):
        raws = _split_numbers(spec.name, s)
    else:
        raws = [x.strip() for x in (s.split(";") if ";" in s else s.split(","))]
    out: list[Any] = []
    for raw in raws:
        if raw == "":
            raise ParamsError(f"{spec.name}: an empty value between separators", field=spec.name, value=text,
                              key="empty_between_commas")
        if spec.kind in ("float", "int"):
            out.append(_number(spec.name, spec.kind, raw, s))
        elif spec.kind == "bool":
            low = raw.lower()
            if low not in _TRUE | _FALSE:
                raise ParamsError(f"{spec.name}: {raw} is not yes or no", field=spec.name, value=raw, key="type",
                                  typed=raw)
            out.append(low in _TRUE)
        else:
            out.append(raw)
    return out


def _json_list(spec: ParamSpec, s: str, text: str) -> list[Any]:
    try:
        items = json.loads(s)
    except json.JSONDecodeError as e:
        raise ParamsError(f"{spec.name}: invalid JSON list: {e}", field=spec.name, value=text, key="json_invalid",
                          line=e.lineno, col=e.colno) from None
    if not isinstance(items, list):
        raise ParamsError(f"{spec.name}: expected a JSON list of values", field=spec.name, value=text,
                          key="json_list")
    return items


def parse_text(spec: ParamSpec, text: str) -> Any:
    """The value typed in the text box of a json/list/str-or-list parameter (ParamsError if unreadable)."""
    s = text.strip()
    if spec.kind == "str|list[str]":
        try:
            v = json.loads(s)
            if isinstance(v, (str, list)):
                return v
        except json.JSONDecodeError:
            pass
        return text
    if spec.kind == "list[str]" and not s.startswith("["):
        return [line for line in text.splitlines() if line.strip()]
    if spec.kind == "list[int]" and s and not s.startswith("["):
        s = f"[{s}]"
    if not s:
        raise ParamsError(f"{spec.name}: empty; write a JSON value or untick it", field=spec.name, value=text,
                          key="empty_value")
    try:
        return json.loads(s)
    except json.JSONDecodeError as e:
        raise ParamsError(f"{spec.name}: invalid JSON: {e}", field=spec.name, value=text, key="json_invalid",
                          line=e.lineno, col=e.colno) from None
