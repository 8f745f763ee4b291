"""Params -> llguidance grammar, and validation without a model (see the package doc)."""

from __future__ import annotations

import json
import os
import re
import unicodedata
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..errors import ParamsError, UnsupportedParam
from ..params import GUIDED_KINDS, Params, schema_of
from . import xgrammar as xgr

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
    source: str  # the constraint as compiled, as text (schema JSON, regex, choices JSON, grammar)
    semantics: str = "guidance"  # whose language: "xgrammar" (vLLM's default) or "guidance"
    fallback: str = ""  # why "auto" fell back to guidance, as vLLM does ('' when it did not)
    notes: tuple[str, ...] = ()  # what the translation warns about (e.g. xgrammar's \\Z)


def grammar_spec(params: Params) -> GrammarSpec | None:
    """The llguidance grammar of the constraint in ``params`` (None when there is none).

    The language is the one ``guided_decoding_backend`` gives on vLLM
    (:func:`requested_backend`): xgrammar's by default, guidance's when asked
    or when "auto" falls back (see :mod:`gsexplore.guided.xgrammar`).
    Raises ParamsError when the constraint cannot be translated (a GBNF grammar
    that does not parse, a regex construct Rust's engine lacks, a construct
    xgrammar rejects with ``guided_decoding_backend="xgrammar"``); the grammar
    is not checked further here: :func:`validate` does that.
    Raises UnsupportedParam for ``guided_whitespace_pattern`` without a JSON
    constraint (nothing it could apply to) and for backends whose language is
    not reproduced.
    """
    kind = params.guided_kind
    ws = params.guided_whitespace_pattern
    if ws is not None and kind not in ("guided_json", "json_object"):
        raise UnsupportedParam(
            "guided_whitespace_pattern", "local",
            "it only applies to JSON constraints (guided_json or a json response_format)")
    if kind is None:
        return None
    backend = requested_backend(params)
    sem = "guidance" if backend == "guidance" else "xgrammar"
    if kind == "guided_json":
        field_ = "guided_json" if params.guided_json is not None else "response_format"
        schema, sem, fallback, notes = _in_language(
            schema_of(params), sem, xgr.strict_schema, _same, backend, field_, params, "the JSON schema uses")
        # key order matters: llguidance emits properties in the order the schema lists them
        text = json.dumps(schema, ensure_ascii=False)
        return GrammarSpec(kind, field_, _json_grammar(text, ws), text, sem, fallback, notes)
    if kind == "json_object":
        text = '{"type": "object"}'  # an open object in both languages
        return GrammarSpec(kind, "response_format", _json_grammar(text, ws), text, sem)
    if kind == "guided_regex":
        rx = params.guided_regex or ""
        rust, sem, fallback, notes = _in_language(
            rx, sem, xgr.regex_to_rust, python_regex_to_rust, backend, kind, params, "the regex has")
        return GrammarSpec(kind, kind, _regex_grammar(rust), rx, sem, fallback, notes)
    if kind == "guided_choice":
        choices = list(params.guided_choice or [])
        if not choices:
            raise ParamsError("guided_choice=[] is not allowed: needs at least one option",
                              field="guided_choice", value=choices)
        text = json.dumps(choices, ensure_ascii=False)
        return GrammarSpec(kind, kind, _choice_grammar(text), text, sem)
    if kind == "guided_grammar":
        g = params.guided_grammar or ""
        fallback = ""
        if sem == "xgrammar" and grammar_format(g) == "lark":
            # vLLM 0.10-0.11 turn simple Lark into EBNF for xgrammar; llguidance reads Lark itself
            sem, fallback = "guidance", "a Lark grammar is compiled with llguidance's own Lark"
        return GrammarSpec(kind, kind, _cfg_grammar(g), g, sem, fallback)
    raise ParamsError(f"unknown guided kind {kind!r}")  # pragma: no cover


#: ``guided_decoding_backend`` values vLLM 0.10-0.11 accept ("auto" when unset).
BACKENDS = ("auto", "xgrammar", "guidance", "outlines", "lm-format-enforcer")


def requested_backend(params: Params) -> str:
    """``params.guided_decoding_backend`` checked: "auto" (unset), "xgrammar" or "guidance".

    Raises UnsupportedParam for "outlines" and "lm-format-enforcer" (their
    languages are not reproduced locally) and ParamsError for unknown names.
    """
    b = params.guided_decoding_backend
    if b is None:
        return "auto"
    if b in ("outlines", "lm-format-enforcer"):
        raise UnsupportedParam(
            "guided_decoding_backend", "local",
            f"{b!r}'s language (its own regex engine and JSON-schema-to-regex compiler, "
            f"{'a [ ]? whitespace default, ' if b == 'outlines' else ''}no token-level grammar in common "
            "with llguidance) is not reproduced locally; use 'xgrammar' (vLLM's default) or 'guidance'")
    if b not in BACKENDS:
        raise ParamsError(f"guided_decoding_backend={b!r} is not one of {', '.join(BACKENDS)}",
                          field="guided_decoding_backend", value=b)
    return b


def _fall_back(backend: str, field_: str, params: Params, why: str) -> tuple[str, str]:
    """vLLM's rule: "auto" uses guidance for what xgrammar rejects; "xgrammar" is an error (400)."""
    if backend == "xgrammar":
        raise ParamsError(f"{field_}: xgrammar cannot compile it ({why}); vLLM answers 400 with "
                          "guided_decoding_backend='xgrammar'. Unset it (or 'auto') to fall back to "
                          "guidance as vLLM does, or ask for 'guidance'",
                          field=field_, value=getattr(params, field_))
    return "guidance", f"{why}, which xgrammar rejects: vLLM's 'auto' uses guidance"


def _in_language(
    value: Any, sem: str,
    to_xgrammar: Callable[[Any], tuple[Any, list[str]]], to_guidance: Callable[[Any], Any],
    backend: str, field_: str, params: Params, what: str,
) -> tuple[Any, str, str, tuple[str, ...]]:
    """``value`` (a schema, a regex) translated for llguidance in the language ``sem``.

    Returns ``(translated, semantics, fallback, notes)``. With ``sem="xgrammar"``,
    ``to_xgrammar`` translates it (and its warnings become the notes); when it
    raises XgrammarUnsupported, :func:`_fall_back` decides (``what`` starts its
    reason) and ``to_guidance`` translates it instead.
    """
    fallback = ""
    if sem == "xgrammar":
        try:
            out, warns = to_xgrammar(value)
            return out, sem, fallback, tuple(warns)
        except xgr.XgrammarUnsupported as e:
            sem, fallback = _fall_back(backend, field_, params, f"{what} {e}")
    return to_guidance(value), sem, fallback, ()


def _same(value: Any) -> Any:
    """The identity: a JSON schema needs no translation for guidance."""
    return value


def engine_info(params: Params) -> dict[str, Any]:
    """What ``Completion.info`` records for a constrained local output: engine, semantics, fallback."""
    spec = grammar_spec(params)
    if spec is None:
        return {}
    info: dict[str, Any] = {"guided_engine": ENGINE, "guided_semantics": spec.semantics}
    if spec.fallback:
        info["guided_fallback"] = spec.fallback
    return info


@lru_cache(maxsize=256)
def _json_grammar(schema_text: str, whitespace_pattern: str | None) -> str:
    llg = _llg()
    defaults = {"whitespace_flexible": True}
    overrides = {"whitespace_pattern": whitespace_pattern} if whitespace_pattern is not None else None
    return llg.LLMatcher.grammar_from_json_schema(schema_text, defaults=defaults, overrides=overrides)


@lru_cache(maxsize=256)
def _regex_grammar(rust: str) -> str:
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
    for w in spec.notes:  # e.g. xgrammar reads \\Z as the letter Z
        warnings.warn(f"{spec.field}: {w}", GuidedWarning, stacklevel=2)
    return spec


class GuidedWarning(UserWarning):
    """llguidance accepted the constraint but ignores part of it (e.g. an unknown string format)."""
