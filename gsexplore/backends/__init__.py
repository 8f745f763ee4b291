"""Backends: `LocalBackend` (llama.cpp) and `RemoteBackend` (the HTTP API), one interface."""
from .base import Backend, Delta, to_messages

__all__ = ["Backend", "Delta", "to_messages"]
