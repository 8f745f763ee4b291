"""One exception tree, so users catch errors at the level they care about.

GSExploreError
├── ParamsError          invalid parameter value or combination (also a ValueError)
├── UnsupportedParam     a parameter this backend cannot honour
├── ModelNotFoundError   a model file or repository that cannot be resolved
├── EngineError          the local engine (llama.cpp) failed, or its model was closed
└── APIError             anything the remote API (or the path to it) did wrong
    ├── AuthenticationError  401 / 403
    ├── BadRequestError      400 / 404 / 422
    ├── RateLimitError       429
    ├── ServerError          5xx
    ├── APITimeoutError
    └── APIConnectionError
"""

from __future__ import annotations

from typing import Any


class GSExploreError(Exception):
    """Base class of every error gsexplore raises on purpose."""


class ParamsError(GSExploreError, ValueError):
    """A parameter value, or a combination of them, is not allowed."""

    def __init__(self, message: str, *, field: str | None = None, value: Any = None,
                 key: str | None = None, **ctx: Any) -> None:
        super().__init__(message)
        self.field = field
        self.value = value
        #: which message this is (the panels' catalogue translates it) and what fills it in
        self.key = key
        self.ctx = ctx


class UnsupportedParam(GSExploreError):
    """A backend was asked for a parameter it cannot honour."""

    def __init__(self, param: str, backend: str, reason: str = "") -> None:
        msg = f"parameter {param!r} is not supported by the {backend} backend"
        super().__init__(msg + (f": {reason}" if reason else ""))
        self.param = param
        self.backend = backend


class ModelNotFoundError(GSExploreError, FileNotFoundError):
    """A model path, offline model or Hugging Face file could not be resolved."""


class EngineError(GSExploreError, RuntimeError):
    """llama.cpp failed while generating, or the model was closed (not the request's fault)."""


class APIError(GSExploreError):
    """The remote API answered with an error, or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        prefix = f"HTTP {status}: " if status else ""
        suffix = f" (request id {request_id})" if request_id else ""
        super().__init__(prefix + message + suffix)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.body = body


class AuthenticationError(APIError):
    """The API key is missing, wrong or not allowed (401/403)."""


class BadRequestError(APIError):
    """The server rejected the request (400/404/422)."""


class RateLimitError(APIError):
    """Too many requests (429); `retry_after` holds the server's hint in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(APIError):
    """The server failed (5xx) or answered something that is not valid JSON."""


class APITimeoutError(APIError):
    """The request took longer than the configured timeout."""


class APIConnectionError(APIError):
    """The server could not be reached, or dropped the connection."""
