"""Backends: `LocalBackend` (llama.cpp) and `RemoteBackend` (the HTTP API), one interface."""
from .base import Backend, Delta, to_messages
from .spec import from_spec

__all__ = ["Backend", "Delta", "from_spec", "to_messages"]
