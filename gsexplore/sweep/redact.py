"""What a sweep records about itself (definition, backends, versions), with secrets never in it."""

from __future__ import annotations

import sys
from typing import Any

import pandas as pd

from ..backends._http import scrub
from ..backends.base import Backend

__all__ = ["secrets_of", "redact", "sanitise", "versions", "backend_info"]

_SECRET_WORDS = ("api_key", "apikey", "secret", "password", "authorization", "bearer", "token_value")


def secrets_of(backends: list[Backend]) -> list[str]:
    """Every secret the backends hold (API keys), to scrub from what is recorded."""
    return [s for b in backends for s in b.secrets()]


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with every secret replaced."""
    for s in secrets:
        text = scrub(text, s)
    return text


def sanitise(obj: Any, secrets: list[str]) -> Any:
    """A JSON-friendly copy without secret-looking keys or known secret values."""
    if isinstance(obj, dict):
        return {str(k): sanitise(v, secrets) for k, v in obj.items()
                if not any(w in str(k).lower().replace("-", "_") for w in _SECRET_WORDS)
                and str(k).lower() != "key"}
    if isinstance(obj, (list, tuple)):
        return [sanitise(v, secrets) for v in obj]
    if isinstance(obj, str):
        return redact(obj, secrets)
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    return redact(str(obj), secrets)


def versions() -> dict[str, str | None]:
    """Versions of what produced the rows."""
    from importlib.metadata import PackageNotFoundError, version

    from .._version import __version__

    def v(*names: str) -> str | None:
        for n in names:
            try:
                return version(n)
            except PackageNotFoundError:
                continue
        return None

    llama = sys.modules.get("llama_cpp")
    return {"gsexplore": __version__,
            "llama_cpp": getattr(llama, "__version__", None) or v("llama_cpp_python", "llama-cpp-python"),
            "pandas": pd.__version__,
            "python": sys.version.split()[0]}


def backend_info(b: Backend, secrets: list[str]) -> dict[str, Any]:
    """A backend's `info()` for the record (never its key)."""
    try:
        info = b.info()
    except Exception as exc:  # info is for the record; a failure must not stop the sweep
        info = {"backend": b.name, "model": b.model, "info_error": str(exc)}
    return sanitise(info, secrets)
