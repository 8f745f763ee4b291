"""Errors as a person reads them: an exception (or a sweep row's error) said through the catalogue.

Library exceptions keep an English ``str()`` for logs and API clients. Panels and
notebooks call `explain` instead, which picks the message by what the error *is*
(its type, HTTP status, the server's error ``type``/``code``, a ParamsError's
``key``), never by parsing English prose, and fills it in the user's language.
"""
from __future__ import annotations

import re
from typing import Any

from . import language, msg, number

__all__ = ["allowed_text", "explain", "explain_check", "explain_first", "explain_row", "outcome_text"]

#: Python's ``re.error`` messages, by the catalogue key that says them.
_REGEX_REASONS = {"missing ), unterminated subpattern": "params.regex_reason.unclosed_paren",
                  "unbalanced parenthesis": "params.regex_reason.extra_paren",
                  "unterminated character set": "params.regex_reason.unclosed_set",
                  "nothing to repeat": "params.regex_reason.nothing_to_repeat",
                  "multiple repeat": "params.regex_reason.multiple_repeat",
                  "missing ), unterminated name": "params.regex_reason.unclosed_name"}


def allowed_text(field: str, lang: str | None = None) -> str:
    """What a parameter accepts, from its spec: 'un número entero ≥ -1', 'un número > 0 y ≤ 1'."""
    from ..params import Params  # params declares; this module only reads its specs

    s = Params.spec(field)
    key = f"params.kind.{s.kind}"
    try:
        words = msg(key, lang)
    except KeyError:
        words = s.kind
    bounds = []
    if s.minimum is not None:
        bounds.append(f"{'>' if s.exclusive_minimum else '≥'} {_num(s.minimum, lang)}")
    if s.maximum is not None:
        bounds.append(f"≤ {_num(s.maximum, lang)}")
    return words + (" " + msg("params.and", lang).join(bounds) if bounds else "")


def _num(x: float, lang: str | None) -> str:
    return number(int(x) if float(x).is_integer() else x, lang)


def explain(exc: BaseException, lang: str | None = None) -> str:
    """``exc`` in ``lang`` (default `language()`): by its key, type, HTTP status and the server's code."""
    lang = lang or language()
    from .. import errors as E

    if isinstance(exc, E.ParamsError):
        return _params(exc, lang)
    if isinstance(exc, E.APIError):
        return _api(exc, lang)
    if isinstance(exc, E.ModelNotFoundError):
        return msg("models.gated" if "gated" in str(exc) else "models.not_found", lang)
    if isinstance(exc, E.UnsupportedParam):
        return msg("errors.unsupported", lang, backend=exc.backend, param=exc.param)
    if isinstance(exc, E.EngineError):
        return msg("errors.engine", lang)
    outcome = getattr(exc, "outcome", None)  # a sweep where every request failed (gsexplore.sweep.SweepFailed)
    if isinstance(outcome, dict) and "first_error" in outcome:
        return msg("sweep.all_failed", lang, total=number(outcome.get("total", 0), lang),
                   first=explain_first(outcome.get("first_error"), lang))
    key = getattr(exc, "key", None)  # errors of other layers that carry a catalogue key
    if isinstance(key, str):
        try:
            return msg(key, lang, **(getattr(exc, "ctx", None) or {}))
        except (KeyError, IndexError):
            pass
    if isinstance(exc, TimeoutError):
        return msg("errors.timeout", lang)
    if isinstance(exc, ConnectionError):
        return msg("errors.connection", lang)
    return msg("errors.other", lang, type=type(exc).__name__)


def explain_row(error_type: str | None, message: str | None, lang: str | None = None) -> str:
    """A sweep row's error (its ``error_type`` and ``error_message`` columns) in ``lang``."""
    if not error_type:
        return ""
    from .. import errors as E

    cls = getattr(E, str(error_type), None)
    status = _status_of(message or "")
    if isinstance(cls, type) and issubclass(cls, E.APIError):
        return _api(cls(_strip_status(message or ""), status=status), lang or language())
    if cls is E.ParamsError:
        # a row keeps only the English text; its head "field=value" is structured (params._fail writes it)
        m = re.match(r"(\w+)=(\S+) ", message or "")
        if m:
            return msg("errors.param_refused", lang, field=m.group(1), typed=m.group(2))
        return msg("errors.param_refused_any", lang)
    if isinstance(cls, type) and issubclass(cls, E.GSExploreError):
        try:
            return explain(cls(message or ""), lang)
        except TypeError:  # an error class whose constructor needs more than a message
            pass
    if error_type in ("TimeoutError", "ReadTimeout", "ConnectTimeout"):
        return msg("errors.timeout", lang)
    if error_type in ("ConnectionError", "ConnectError", "ConnectionRefusedError"):
        return msg("errors.connection", lang)
    return msg("errors.other", lang, type=error_type)


def _status_of(text: str) -> int | None:
    m = re.match(r"HTTP (\d{3}): ", text)
    return int(m.group(1)) if m else None


def _strip_status(text: str) -> str:
    return re.sub(r"^HTTP \d{3}: ", "", text)


def _server_error(body: Any) -> dict[str, Any]:
    """vLLM's (and serve's) error body ``{"error": {"message", "type", "param", "code"}}``, or {}."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return err
    return {}


def _api(exc: Any, lang: str) -> str:
    from .. import errors as E

    status = exc.status
    err = _server_error(exc.body)
    etype, code, param = str(err.get("type") or ""), str(err.get("code") or ""), err.get("param")
    if isinstance(exc, E.APITimeoutError):
        return msg("errors.timeout", lang)
    if isinstance(exc, E.APIConnectionError):
        return msg("errors.connection", lang)
    if status == 401 or (isinstance(exc, E.AuthenticationError) and status != 403):
        return msg("errors.auth_401", lang)
    if status == 403:
        return msg("errors.auth_403", lang)
    if status == 404:
        if etype == "NotFoundError" and (param == "model" or "model" in code or "model" in str(exc.message)):
            return msg("errors.model_404", lang, model=_model_named(err, exc))
        return msg("errors.not_found_404", lang)
    if status == 429 or isinstance(exc, E.RateLimitError):
        retry = getattr(exc, "retry_after", None)
        return (msg("errors.rate_limit", lang, retry=_num(round(retry), lang)) if retry
                else msg("errors.rate_limit_no_hint", lang))
    if status is not None and status >= 500 or isinstance(exc, E.ServerError):
        return msg("errors.server", lang, status=status or "5xx")
    if code == "context_length_exceeded" or "maximum context length" in str(exc.message):
        return msg("errors.context_length", lang)
    where = msg("errors.bad_param", lang, param=param) if param else ""
    # the server's own words (English, as vLLM writes them): the part no catalogue can know
    return msg("errors.bad_request", lang, status=status or 400, param=where, detail=str(exc.message))


def _model_named(err: dict[str, Any], exc: Any) -> str:
    m = re.search(r"[Tt]he model `?([^`'\s]+)`? does not exist|model '?([^'\s]+)'? ", str(err.get("message") or exc.message))
    return next((g for g in (m.groups() if m else ()) if g), "?")


def _params(exc: Any, lang: str) -> str:
    key, field = exc.key, exc.field
    ctx = dict(exc.ctx or {})
    if key is None and field == "guided_grammar" and "grammar" in str(exc):
        key, ctx = "grammar_invalid", {"detail": _grammar_detail(str(exc), lang)}
    if key is None:
        if field:
            typed = exc.value if exc.value is not None else ""
            return msg("params.invalid_generic", lang, field=field, typed=typed)
        return msg("errors.other", lang, type=type(exc).__name__)
    ctx.setdefault("typed", "")
    ctx["field"] = field or ""
    if key in ("range", "type", "not_number"):
        ctx["allowed"] = allowed_text(field, lang) if field else ""
    if key == "unknown":
        ctx["hint"] = msg("params.unknown_hint", lang, close=ctx["close"]) if ctx.get("close") else "."
    if key == "one_guided":
        ctx["others"] = msg("params.and", lang).join(ctx.get("others") or [])
    if key == "regex":
        reason = str(ctx.get("reason"))
        ctx["reason"] = msg(_REGEX_REASONS[reason], lang) if reason in _REGEX_REASONS else reason
    if key == "invalid_settings":
        ctx["items"] = "\n".join(f"  {where}: {explain(sub, lang)}" for where, sub in ctx.get("items") or [])
    try:
        return msg(f"params.{key}", lang, **ctx)
    except (KeyError, IndexError):
        return msg("params.invalid_generic", lang, field=field or "?", typed=ctx.get("typed", ""))


def _grammar_detail(text: str, lang: str) -> str:
    detail = text.split(": ", 1)[-1]
    return re.sub(r"Expected (.+?) at line (\d+)",
                  lambda m: msg("params.grammar_expected", lang, what=m.group(1), line=m.group(2)), detail)


def explain_first(first: dict[str, Any] | None, lang: str | None = None) -> str:
    """The first error of an outcome in ``lang`` (by its type and HTTP status)."""
    if not first:
        return ""
    status = first.get("status")
    message = str(first.get("message") or "")
    return explain_row(first.get("type"), f"HTTP {status}: {message}" if status else message, lang)


def outcome_text(oc: dict[str, Any], lang: str | None = None, seconds: float | None = None) -> str:
    """"7 de 9 bien, 2 con error: Clave inválida ..." (or "9 de 9 bien en 3,2 s")."""
    total, ok, failed = oc["total"], oc["ok"], oc["failed"]
    if not failed:
        secs = number(round(seconds or 0.0, 1), lang, digits=1)
        return msg("sweep.outcome_ok", lang, ok=number(ok, lang), total=number(total, lang), seconds=secs)
    first = explain_first(oc.get("first_error"), lang)
    if not ok:
        line = msg("sweep.outcome_all_failed", lang, total=number(total, lang), first=first)
    else:
        line = msg("sweep.outcome_failed", lang, ok=number(ok, lang), total=number(total, lang),
                   failed=number(failed, lang), first=first)
    by_type = oc.get("by_type") or {}
    if len(by_type) > 1:
        line += "\n" + msg("sweep.outcome_by_type", lang,
                           types=", ".join(f"{k} × {number(v, lang)}" for k, v in by_type.items()))
    return line


def explain_check(v: Any, lang: str | None = None) -> str:
    """A `gsexplore.guided.Validity` in words: valid, a cut but valid prefix, or which constraint it breaks."""
    if v.kind is None:
        return msg("guided.none", lang)
    if v.valid is None:
        return msg("guided.check_unavailable", lang)
    if v.valid:
        return msg("guided.valid", lang)
    if v.cut and v.is_prefix:
        return msg("guided.valid_prefix", lang)
    what = msg(f"guided.kind.{v.kind}", lang) if f"guided.kind.{v.kind}" in _keys(lang) else v.kind
    return msg("guided.breaks", lang, what=what)


def _keys(lang: str | None) -> dict[str, str]:
    from . import LANGUAGES

    return LANGUAGES[lang or language()]
