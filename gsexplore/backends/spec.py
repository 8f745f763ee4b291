"""A backend from a spec string: the one place that decides what "demo", a path or a URL means."""

from __future__ import annotations

from typing import Any

from .base import Backend

__all__ = ["from_spec"]


def is_url(spec: str) -> bool:
    """Whether `spec` names a server (http:// or https://) rather than a model."""
    return spec.startswith(("http://", "https://"))


def from_spec(spec: str, *, filename: str | None = None, **kw: Any) -> Backend:
    """A RemoteBackend for a URL, else a LocalBackend of the model it names.

    ``spec``: ``"https://.../v1"`` (``kw`` go to RemoteBackend: api_key, model, timeout, ...),
    ``"demo"``, ``"tiny-qwen3"`` (alias ``"tiny"``), a ``.gguf`` path or folder, or a
    Hugging Face repo id with ``filename`` a glob (``kw`` go to LocalBackend).
    """
    if is_url(spec):
        from .remote import RemoteBackend

        return RemoteBackend(base_url=spec, **kw)
    from .local import LocalBackend

    return LocalBackend(spec, filename, **kw)
