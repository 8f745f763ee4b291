"""gsexplore: explore how generation parameters change what a chat model says.

The heavy parts (llama.cpp, widgets, matplotlib) load on first use, so
``import gsexplore`` stays quick.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from .completion import Completion, Usage
from .errors import (APIConnectionError, APIError, APITimeoutError, AuthenticationError,
                     BadRequestError, EngineError, GSExploreError, ModelNotFoundError, ParamsError,
                     RateLimitError, ServerError, UnsupportedParam)
from .params import Params, ParamSpec

from ._version import __version__

_LAZY = {
    "LocalBackend": ("gsexplore.backends.local", "LocalBackend"),
    "RemoteBackend": ("gsexplore.backends.remote", "RemoteBackend"),
    "plot": ("gsexplore.plots", "plot"),
    "load": ("gsexplore.store", "load"),
    "load_batch": ("gsexplore.batch", "load_batch"),
    "SweepFailed": ("gsexplore.sweep.outcome", "SweepFailed"),
    "add_metrics": ("gsexplore.metrics", "add_metrics"),
    "check": ("gsexplore.guided", "check"),
    "panels": ("gsexplore.panels", None),
    "plots": ("gsexplore.plots", None),
    "guided": ("gsexplore.guided", None),
    "sampling": ("gsexplore.sampling", None),
    "models": ("gsexplore.models", None),
    "metrics": ("gsexplore.metrics", None),
    "stats": ("gsexplore.stats", None),
    "compare": ("gsexplore.comparison", "compare"),
}

__all__ = ["APIConnectionError", "APIError", "APITimeoutError", "AuthenticationError", "BadRequestError",
           "Completion", "EngineError", "GSExploreError", "ModelNotFoundError", "ParamSpec", "Params", "ParamsError",
           "RateLimitError", "ServerError", "UnsupportedParam", "Usage", "sweep", "agreement", "agreement_sweep", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'gsexplore' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = import_module(module) if attr is None else getattr(import_module(module), attr)
    globals()[name] = value
    return value


def _register_accessor() -> None:
    """`df.gs.summary()` / `df.gs.plot()` work as soon as gsexplore is imported."""
    try:
        import_module("gsexplore.accessor")
    except ImportError:  # pandas missing: the rest of gsexplore still works
        pass


_register_accessor()

# Imported now, not lazily: the function shares its name with its module, and the first
# import of the module `gsexplore.sweep` (by the panels, the CLI...) would otherwise
# rebind `gs.sweep` to the module.
from .sweep import sweep  # noqa: E402
from .agreement import agreement, agreement_sweep  # noqa: E402  (the same reason: module and function share a name)
