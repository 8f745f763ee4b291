"""Every failure of a request as vLLM's error answer: ``{"error": {...}}`` with its HTTP status.

`Reject` is an answer the server decided on (a 400 naming a field, a 401, a 404,
a 429 with Retry-After); `reject_for` maps any exception to one, so a client
never sees a bare 500 for its own input.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from pydantic import ValidationError

from ..chat_template import TemplateError
from ..errors import EngineError, GSExploreError, ParamsError, UnsupportedParam

__all__ = ["Reject", "reject_for", "validation_reject", "require"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Reject(Exception):
    """An HTTP error answer in vLLM's shape."""

    def __init__(self, status: int, message: str, type_: str = "BadRequestError", param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.headers = status, message, type_, param, headers


def reject_for(exc: BaseException) -> Reject:
    """The answer for ``exc``: 400 for what the client asked, 500 (logged) for the engine's or our failures."""
    if isinstance(exc, Reject):
        return exc
    if isinstance(exc, UnsupportedParam):
        return Reject(400, str(exc), param=exc.param)
    if isinstance(exc, ParamsError):
        return Reject(400, str(exc), param=exc.field)
    if isinstance(exc, EngineError):  # llama.cpp failed: the server's fault, as vLLM's 500
        log.error("generation failed: %s", exc)
        return Reject(500, f"generation failed: {exc}", "InternalServerError")
    if isinstance(exc, (GSExploreError, TemplateError)):
        return Reject(400, str(exc))
    log.exception("generation failed", exc_info=exc)
    return Reject(500, f"generation failed: {type(exc).__name__}: {exc}", "InternalServerError")


def validation_reject(exc: ValidationError) -> Reject:
    """A pydantic error as vLLM's 400: the first problem, where it is, and the top-level field."""
    err = exc.errors()[0]
    loc = [str(x) for x in err.get("loc", ())]
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    where = ".".join(loc)
    given = err.get("input")
    if isinstance(given, (str, int, float, bool)) and len(repr(given)) <= 80 and "missing" not in err["type"]:
        msg += f" (got {given!r})"
    return Reject(400, f"{where}: {msg}" if where else msg, param=loc[0] if loc else None)


def require(backend: Any, capability: type[T], what: str) -> T:
    """``backend`` when it offers ``capability`` (a protocol of `backends.capabilities`), else a 400
    saying what this server's backend cannot do."""
    if not isinstance(backend, capability):
        raise Reject(400, f"this server's backend cannot {what}")
    return backend
