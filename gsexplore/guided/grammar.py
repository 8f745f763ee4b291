"""Params -> llguidance grammar, and validation without a model (see the package doc)."""

from __future__ import annotations

import json
import os
import re
import unicodedata
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..errors import ParamsError, UnsupportedParam
from ..params import GUIDED_KINDS, Params, schema_of

#: Kinds a constraint can have (``Params.guided_kind``).
KINDS = (*GUIDED_KINDS, "json_object")

#: The engine the local backend uses; reported as ``Completion.info["guided_engine"]``.
ENGINE = "llguidance"

_LOG_LEVEL = int(os.environ.get("GSEXPLORE_LLGUIDANCE_LOG_LEVEL", "0"))


def _llg() -> Any:
    import llguidance

    return llguidance


@dataclass(frozen=True)
class GrammarSpec:
    """One request's constraint, compiled to llguidance's grammar format.

    kind: ``guided_json`` (also a json_schema response_format), ``json_object``,
    ``guided_regex``, ``guided_choice`` or ``guided_grammar``.
    field: the Params field that carries it (``response_format`` for the
    response_format kinds), named in errors.
    grammar: the llguidance grammar (JSON text) for ``LLMatcher``.
    """

    kind: str
    field: str
    grammar: str
    source: str  # the constraint as given, as text (schema JSON, regex, choices JSON, grammar)


def grammar_spec(params: Params) -> GrammarSpec | None:
    """The llguidance grammar of the constraint in ``params`` (None when there is none).

    Raises ParamsError when the constraint cannot be translated (a GBNF grammar
    that does not parse, a regex construct Rust's engine lacks); the grammar is
    not checked further here: :func:`validate` does that.
    Raises UnsupportedParam for ``guided_whitespace_pattern`` without a JSON
    constraint (nothing it could apply to).
    """
    kind = params.guided_kind
    ws = params.guided_whitespace_pattern
    if ws is not None and kind not in ("guided_json", "json_object"):
        raise UnsupportedParam(
            "guided_whitespace_pattern", "local",
            "it only applies to JSON constraints (guided_json or a json response_format)")
    if kind is None:
        return None
    if kind == "guided_json":
        field_ = "guided_json" if params.guided_json is not None else "response_format"
        schema = schema_of(params)
        # key order matters: llguidance emits properties in the order the schema lists them
        text = json.dumps(schema, ensure_ascii=False)
        return GrammarSpec(kind, field_, _json_grammar(text, ws), text)
    if kind == "json_object":
        text = '{"type": "object"}'
        return GrammarSpec(kind, "response_format", _json_grammar(text, ws), text)
    if kind == "guided_regex":
        rx = params.guided_regex or ""
        return GrammarSpec(kind, kind, _regex_grammar(rx), rx)
    if kind == "guided_choice":
        choices = list(params.guided_choice or [])
        if not choices:
            raise ParamsError("guided_choice=[] is not allowed: needs at least one option",
                              field="guided_choice", value=choices)
        text = json.dumps(choices, ensure_ascii=False)
        return GrammarSpec(kind, kind, _choice_grammar(text), text)
    if kind == "guided_grammar":
        g = params.guided_grammar or ""
        return GrammarSpec(kind, kind, _cfg_grammar(g), g)
    raise ParamsError(f"unknown guided kind {kind!r}")  # pragma: no cover


@lru_cache(maxsize=256)
def _json_grammar(schema_text: str, whitespace_pattern: str | None) -> str:
    llg = _llg()
    defaults = {"whitespace_flexible": True}
    overrides = {"whitespace_pattern": whitespace_pattern} if whitespace_pattern is not None else None
    return llg.LLMatcher.grammar_from_json_schema(schema_text, defaults=defaults, overrides=overrides)


@lru_cache(maxsize=256)
def _regex_grammar(regex: str) -> str:
    rust = python_regex_to_rust(regex)
    return _llg().LLMatcher.grammar_from_regex(rust)


def _lark_string(s: str) -> str:
    """A Lark string literal for ``s`` (JSON escaping: quotes, backslashes, control characters)."""
    return json.dumps(s, ensure_ascii=False)


@lru_cache(maxsize=256)
def _choice_grammar(choices_json: str) -> str:
    choices = json.loads(choices_json)
    lark = "start: " + " | ".join(_lark_string(c) for c in choices) + "\n"
    return _llg().LLMatcher.grammar_from_lark(lark)


_GBNF_RULE = re.compile(r"^\s*[A-Za-z0-9_-]+\s*::=", re.M)


def grammar_format(text: str) -> str:
    """``"gbnf"`` when the grammar has a ``name ::= ...`` rule (llama.cpp / vLLM xgrammar), else ``"lark"``."""
    if re.search(r"^\s*%llguidance\b", text, re.M):
        return "lark"
    return "gbnf" if _GBNF_RULE.search(text) else "lark"


@lru_cache(maxsize=256)
def _cfg_grammar(text: str) -> str:
    llg = _llg()
    if grammar_format(text) == "gbnf":
        from llguidance.gbnf_to_lark import gbnf_to_lark

        try:
            lark = gbnf_to_lark(text)
        except Exception as e:  # GbnfToLarkError (with position) or a plain Exception
            raise ParamsError(f"guided_grammar is not a valid GBNF grammar: {e}",
                              field="guided_grammar", value=text) from None
        return llg.LLMatcher.grammar_from_lark(lark)
    return llg.LLMatcher.grammar_from_lark(text)


# --- Python regex -> Rust regex (llguidance) ------------------------------

_QUANT = re.compile(r"\{(\d*)(,?)(\d*)\}")


def python_regex_to_rust(rx: str) -> str:
    """Translate the Python ``re`` spellings Rust's regex crate writes differently.

    ``\\Z`` -> ``\\z``; ``{,n}`` -> ``{0,n}``; a ``{`` that is no quantifier is
    escaped (Python reads it literally); inside ``[...]``: a bare ``[`` is
    escaped and ``&&``, ``--``, ``~~`` (set operations in Rust) are made
    literal; ``\\N{NAME}`` becomes the character. Everything else is the same
    in both (and what is not, such as look-arounds, llguidance rejects).
    """
    out: list[str] = []
    i, n = 0, len(rx)
    in_class = False
    class_pos = 0  # index of the first char after "[" or "[^"
    while i < n:
        c = rx[i]
        if c == "\\" and i + 1 < n:
            nxt = rx[i + 1]
            if nxt == "Z" and not in_class:
                out.append(r"\z")
                i += 2
                continue
            if nxt == "N" and i + 2 < n and rx[i + 2] == "{":
                end = rx.find("}", i + 3)
                if end > 0:
                    try:
                        ch = unicodedata.lookup(rx[i + 3:end])
                        out.append(f"\\x{{{ord(ch):x}}}")
                        i = end + 1
                        continue
                    except KeyError:
                        pass
            out.append(rx[i:i + 2])
            i += 2
            continue
        if in_class:
            if c == "]" and i != class_pos:
                in_class = False
                out.append(c)
            elif c == "[":
                out.append(r"\[")
            elif c in "&-~" and i + 1 < n and rx[i + 1] == c:
                out.append(c + "\\" + c)
                i += 2
                continue
            else:
                out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            if i < n and rx[i] == "^":
                out.append("^")
                i += 1
            class_pos = i
            continue
        if c == "{":
            m = _QUANT.match(rx, i)
            if m and (m.group(1) or m.group(3)) and (m.group(1) or m.group(2)):
                lo, comma, hi = m.groups()
                out.append("{" + (lo or "0") + comma + hi + "}")
                i = m.end()
                continue
            out.append(r"\{")
            i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


# --- validation ---------------------------------------------------------------

_AT_LINE_COL = re.compile(r"^(?:at )?(\d+)\((\d+)\): ")


@lru_cache(maxsize=512)
def _grammar_check(grammar: str) -> tuple[str, tuple[str, ...]]:
    """llguidance's (error, warnings) for a grammar ('' when it is fine); needs no tokenizer."""
    is_error, msgs = _llg().LLMatcher.validate_grammar_with_warnings(grammar)
    if is_error:
        return (msgs[0] if msgs else "invalid grammar"), ()
    return "", tuple(msgs)


def _grammar_error(grammar: str) -> str:
    return _grammar_check(grammar)[0]


_UNIMPLEMENTED = re.compile(r"Unimplemented keys: \[(.*?)\]")


def _where_in_schema(schema: Any, keys: set[str], path: str = "") -> list[str]:
    """JSON pointers of the places in ``schema`` that use any of ``keys``."""
    out: list[str] = []
    if isinstance(schema, dict):
        if keys & set(schema):
            out.append(path or "/")
        for k, v in schema.items():
            out += _where_in_schema(v, keys, f"{path}/{k}")
    elif isinstance(schema, list):
        for i, v in enumerate(schema):
            out += _where_in_schema(v, keys, f"{path}/{i}")
    return out


def _format_error(spec: GrammarSpec, err: str) -> str:
    err = err.strip()
    m = _AT_LINE_COL.match(err)
    if m:
        err = f"line {m.group(1)}, column {m.group(2)}: " + err[m.end():]
    what = {
        "guided_json": "the JSON schema cannot be enforced",
        "json_object": "the JSON object constraint cannot be built",
        "guided_regex": "the regex does not compile in llguidance (Rust regex syntax, no look-arounds, "
                        "no \\b, no back-references)",
        "guided_choice": "the choices do not compile",
        "guided_grammar": "the grammar does not compile",
    }[spec.kind]
    if spec.kind == "guided_grammar" and grammar_format(spec.source) == "gbnf":
        what += " (positions are in its Lark translation)"
    if spec.kind == "guided_regex":
        # llguidance shows the regex inside a one-line Lark grammar; keep its own message
        err = err.replace("(in regex): ", "")
    m = _UNIMPLEMENTED.search(err) if spec.kind == "guided_json" else None
    if m:
        keys = set(json.loads(f"[{m.group(1)}]"))
        where = _where_in_schema(json.loads(spec.source), keys)
        err += (f" (llguidance does not implement them; used at {', '.join(where[:5])})" if where
                else " (llguidance does not implement them)")
    return f"{spec.field}: {what}: {err}"


def validate(params: Params) -> GrammarSpec | None:
    """Check that llguidance can enforce the constraint in ``params``; returns its GrammarSpec.

    No model is needed. Params already checks JSON-schema validity and that the
    regex compiles in Python; this adds what llguidance itself refuses: JSON
    schema keywords it does not implement (``uniqueItems``, ``not``, ``if``, ...),
    unsatisfiable schemas, regex constructs without a token-level equivalent,
    grammar syntax errors (with line and column), an empty choice list.

    What llguidance accepts but ignores (an unknown string ``format``) is a
    :class:`GuidedWarning`.

    Raises:
        ParamsError: naming the field, the problem and where it is.
        UnsupportedParam: guided_whitespace_pattern without a JSON constraint, or
            an llguidance too old for whitespace patterns.
    """
    spec = grammar_spec(params)
    if spec is None:
        return None
    err, warns = _grammar_check(spec.grammar)
    if err:
        if params.guided_whitespace_pattern is not None and "whitespace_pattern" in err:
            raise UnsupportedParam("guided_whitespace_pattern", "local",
                                   f"this llguidance cannot use it: {err}")
        raise ParamsError(_format_error(spec, err), field=spec.field, value=getattr(params, spec.field))
    for w in warns:  # e.g. an unknown string "format": llguidance ignores it; say so
        warnings.warn(f"{spec.field}: llguidance: {w}", GuidedWarning, stacklevel=2)
    return spec


class GuidedWarning(UserWarning):
    """llguidance accepted the constraint but ignores part of it (e.g. an unknown string format)."""
