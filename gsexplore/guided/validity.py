"""Whether an output of either backend satisfies its constraint (see the package doc)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import GSExploreError, ParamsError
from ..params import GUIDED_KINDS, Params, schema_of
from .constraint import _new_matcher
from .grammar import GrammarSpec, _format_error, _grammar_error, _llg, grammar_spec, validate
from .tokenizer import _byte_tokenizer

if TYPE_CHECKING:  # pragma: no cover
    from ..completion import Completion

@dataclass(frozen=True)
class Validity:
    """Whether one output satisfies the constraint it asked for.

    kind: the constraint (``guided_json``, ``json_object``, ``guided_regex``,
    ``guided_choice``, ``guided_grammar``) or None when there was none.
    valid: the output satisfies it in full (None when there is no constraint).
    reason: why not (or what was checked).
    is_prefix: the output can still be extended into a valid one (a valid
    prefix); what a cut output must be.
    cut: generation stopped before the constraint could end (finish_reason
    "length", a stop string, an abort).
    ``ok`` is what a sweep should count: ``valid``, or ``is_prefix`` for a cut output.
    """

    kind: str | None
    valid: bool | None
    reason: str
    is_prefix: bool
    cut: bool = False

    @property
    def ok(self) -> bool | None:
        """valid, or for a cut output a valid prefix; None when there is no constraint."""
        if self.valid is None:
            return None
        return self.valid or (self.cut and self.is_prefix)

    def to_row(self) -> dict[str, Any]:
        """Columns for a DataFrame: guided_kind, guided_valid, guided_prefix, guided_cut, guided_ok, guided_reason."""
        return {"guided_kind": self.kind, "guided_valid": self.valid, "guided_prefix": self.is_prefix,
                "guided_cut": self.cut, "guided_ok": self.ok, "guided_reason": self.reason}


def check(output: Completion | str | None, params: Params | None = None, *,
          finish_reason: str | None = None) -> Validity:
    """Whether an output (a Completion of either backend, or a text) satisfies its constraint.

    A Completion brings its own content, params, finish_reason and stop_reason
    (``params`` overrides); a text needs ``params`` and is taken as finished
    (``finish_reason="stop"``) unless told otherwise. Only the content is
    checked (not the reasoning). The check is semantic where a semantic checker
    exists: ``jsonschema`` for guided_json / json_schema, ``json.loads`` to an
    object for json_object, Python ``re.fullmatch`` for guided_regex, exact
    membership for guided_choice; a grammar is parsed with llguidance over bytes
    (no tokenizer). Prefixes (for cut outputs) are checked with llguidance over
    bytes for every kind (JSON allowing surrounding whitespace).
    """
    stop_reason = None
    if output is not None and not isinstance(output, str):
        text = output.content
        params = params if params is not None else output.params
        finish_reason = finish_reason if finish_reason is not None else output.finish_reason
        stop_reason = output.stop_reason
    else:
        text = output
    if params is None:
        raise ParamsError("check() of a text needs the params it was generated with", field="params")
    return check_text(text, params, finish_reason=finish_reason or "stop", stop_reason=stop_reason)


def check_row(row: Mapping[str, Any]) -> Validity:
    """check() of one sweep row (``gs.completion_row(c)`` columns; lists and dicts as JSON text).

    ``df.apply(guided.check_row, axis=1)`` gives one Validity per row.
    """
    data: dict[str, Any] = {}
    for name in (*GUIDED_KINDS, "response_format", "guided_whitespace_pattern"):
        v = row.get(name)
        if v is None or (isinstance(v, float) and v != v):  # None / NaN
            continue
        if name in ("guided_choice", "response_format") and isinstance(v, str):
            v = json.loads(v)
        data[name] = v
    content = row.get("content")
    if isinstance(content, float):  # NaN
        content = None
    stop_reason = row.get("stop_reason")
    if isinstance(stop_reason, float):
        stop_reason = None
    return check_text(content, Params(**data), finish_reason=row.get("finish_reason") or "stop",
                      stop_reason=stop_reason)


def _is_cut(finish_reason: str | None, stop_reason: Any) -> bool:
    if finish_reason == "stop":
        # a stop string (str) cuts the output; EOS (None) or a stop token id (int, e.g.
        # <|im_end|> listed in stop_token_ids) ends it
        return isinstance(stop_reason, str)
    return finish_reason in ("length", "abort", "cancelled", "timeout")


def check_text(text: str | None, params: Params, finish_reason: str = "stop",
               stop_reason: Any = None) -> Validity:
    """Whether ``text`` satisfies the constraint of ``params`` (see :func:`check`).

    ``finish_reason`` "length" (or a stop string as ``stop_reason``) marks a
    cut output: it is reported as ``cut`` and judged as a prefix (``ok`` when
    ``is_prefix``).
    """
    kind = params.guided_kind
    cut = _is_cut(finish_reason, stop_reason)
    if kind is None:
        return Validity(None, None, "no constraint", True, cut)
    text = text or ""
    spec, problem = _check_spec(params)
    if spec is None and kind == "guided_grammar":
        return Validity(kind, None, f"cannot check: {problem}", False, cut)
    valid, reason = _full_check(kind, text, params, spec)
    if valid:
        is_prefix, preason = True, ""
    elif spec is None and kind != "guided_choice":
        is_prefix, preason = False, f"prefixes cannot be checked: {problem}"
    else:
        is_prefix, preason = _prefix_check(kind, text, params, spec)
    if not valid and cut:
        reason = (f"cut ({finish_reason}) " + ("as a valid prefix" if is_prefix else "and not a valid prefix")
                  + (f": {preason}" if preason else f"; not complete: {reason}"))
    elif not valid and is_prefix:
        reason = f"finished but not valid ({reason}), though a valid prefix"
    return Validity(kind, valid, reason or "ok", is_prefix, cut)


def _check_spec(params: Params) -> tuple[GrammarSpec | None, str]:
    """The grammar check() parses with: the request's (whitespace pattern aside, so any JSON
    whitespace passes); for a JSON schema llguidance cannot enforce in full, the same
    schema compiled leniently (unimplemented keywords ignored: prefixes are then checked
    against a superset). (None, why) when there is none."""
    try:
        spec = grammar_spec(params.replace(guided_whitespace_pattern=None))
    except GSExploreError as e:  # also UnsupportedParam: an "outlines" output is checked with Python re
        return None, str(e)
    assert spec is not None
    err = _grammar_error(spec.grammar)
    if not err:
        return spec, ""
    if spec.kind == "guided_json":
        lenient = _llg().LLMatcher.grammar_from_json_schema(
            spec.source, defaults={"whitespace_flexible": True}, overrides={"lenient": True})
        if not _grammar_error(lenient):
            return GrammarSpec(spec.kind, spec.field, lenient, spec.source), ""
    return None, _format_error(spec, err)


def _full_check(kind: str, text: str, params: Params, spec: GrammarSpec | None) -> tuple[bool, str]:
    if kind in ("guided_json", "json_object"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            return False, f"not JSON: {e}"
        if kind == "json_object":
            return (True, "a JSON object") if isinstance(value, dict) else \
                (False, f"JSON {type(value).__name__}, not an object")
        import jsonschema

        schema = schema_of(params)
        cls = jsonschema.validators.validator_for(schema)
        validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
        err = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if err is not None:
            where = "/".join(str(x) for x in err.absolute_path) or "(root)"
            return False, f"schema violation at {where}: {err.message}"
        return True, "valid against the JSON schema"
    if kind == "guided_regex":
        if spec is not None:  # the regex as vLLM's backend reads it (xgrammar's \\d is [0-9])
            ok, accepting, _ = _byte_parse(spec, text)
            ok = ok and accepting
            return ok, (f"matches the regex ({spec.semantics})" if ok
                        else f"does not match the regex in full ({spec.semantics})")
        ok = re.fullmatch(params.guided_regex or "", text) is not None
        return ok, ("matches the regex (Python re)" if ok else "does not match the regex in full (Python re)")
    if kind == "guided_choice":
        choices = params.guided_choice or []
        return (True, "one of the choices") if text in choices else (False, "not one of the choices")
    # guided_grammar
    assert spec is not None
    ok, accepting, err = _byte_parse(spec, text)
    if ok and accepting:
        return True, "parses with the grammar"
    return False, (err if not ok else "the grammar is not complete at the end of the text")


def accepts(params: Params, text: str) -> bool:
    """Whether the constraint in ``params``, in the language of its backend, accepts ``text`` in full.

    The local engine's own judgement (llguidance over the text's bytes, with
    the xgrammar or guidance semantics that ``guided_decoding_backend`` picks),
    so it can say of any backend's output "vLLM would never produce this".
    True when ``params`` has no constraint. Raises ParamsError /
    UnsupportedParam for a constraint the local engine cannot compile.
    """
    spec = validate(params)
    if spec is None:
        return True
    ok, accepting, _ = _byte_parse(spec, text)
    return ok and accepting


def _prefix_check(kind: str, text: str, params: Params, spec: GrammarSpec | None) -> tuple[bool, str]:
    if kind == "guided_choice":
        text = _strip_partial_char(text)
        ok = any(c.startswith(text) for c in params.guided_choice or [])
        return ok, ("" if ok else "no choice starts with it")
    if kind in ("guided_json", "json_object"):
        text = text.lstrip(" \t\r\n")
    assert spec is not None
    ok, _, err = _byte_parse(spec, _strip_partial_char(text))
    return ok, err


def _strip_partial_char(text: str) -> str:
    """A cut output may end inside a multi-byte character, decoded as U+FFFD: drop it."""
    return text.rstrip("\ufffd")


def _byte_parse(spec: GrammarSpec, text: str) -> tuple[bool, bool, str]:
    """Feed ``text``'s UTF-8 bytes to a byte-level matcher: (all consumed, accepting, error)."""
    m = _new_matcher(_byte_tokenizer(), spec)
    data = text.encode("utf-8")
    n = m.try_consume_tokens(list(data))
    if n < len(data):
        at = len(data[:n].decode("utf-8", "replace"))
        return False, False, f"fails at character {at} ({text[at:at + 20]!r})"
    return True, bool(m.is_accepting()), ""
