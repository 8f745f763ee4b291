"""Backends: `LocalBackend` (llama.cpp) and `RemoteBackend` (the HTTP API), one contract (`Backend`)."""
from .base import Backend, Delta, retrying, to_messages
from .spec import from_spec

__all__ = ["Backend", "Delta", "from_spec", "retrying", "to_messages"]
