"""Loading a GGUF for LocalBackend: the model, its batched engine and the registry that shares them.

One ``Loaded`` per file and load options (``load`` keeps a registry; ``shared=False``
makes a private one). The engine is made here, by the loader, so that the model
(``llama/model.py``) knows nothing of engines.
"""
from __future__ import annotations

import atexit
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..llama.engine import Engine
from ..llama.hardware import ExtraBuffers, choose_extra_buffers
from ..llama.loading import system_info
from ..llama.model import LoadedModel

__all__ = ["Loaded", "load", "loaded_models", "unload_all", "KV_BUDGET_BYTES", "MAX_AUTO_SLOTS"]

#: ``slots=None``: as many slots (up to MAX_AUTO_SLOTS) as fit this much KV cache
KV_BUDGET_BYTES = 2 << 30
MAX_AUTO_SLOTS = 16


@dataclass(eq=False)
class Loaded:
    """A model in memory and the engine that generates with it."""

    model: LoadedModel
    engine: Engine
    slots_reason: str
    closed: bool = False

    def close(self) -> None:
        """Stop the engine and free llama.cpp's memory (once)."""
        if self.closed:
            return
        self.closed = True
        _OPEN.discard(self)
        self.engine.close()
        self.model.close()


def _auto_slots(lm: LoadedModel, n_ctx: int, slots: int | None) -> tuple[int, str]:
    if slots is not None:
        return int(slots), "asked for"
    per_slot = max(1, lm.kv_bytes_per_token * n_ctx)
    fit = max(1, min(MAX_AUTO_SLOTS, KV_BUDGET_BYTES // per_slot))
    n = 1 << (fit.bit_length() - 1)  # a power of two
    return n, (f"auto: {n} slots of {n_ctx} tokens (a power of two, at most {MAX_AUTO_SLOTS}) fit a KV "
               f"cache of {KV_BUDGET_BYTES >> 30} GiB; pass slots= (and n_ctx=) to choose")


def _load(path: Path, *, n_gpu_layers: int, n_ctx: int, n_threads: int, n_threads_batch: int,
          extra_buffers: Any, slots: int | None, verbose: bool) -> Loaded:
    lm = LoadedModel(path, n_gpu_layers=n_gpu_layers, n_ctx=n_ctx, n_threads=n_threads,
                     n_threads_batch=n_threads_batch, extra_buffers=extra_buffers, verbose=verbose)
    try:
        n_slots, reason = _auto_slots(lm, n_ctx, slots)
        engine = Engine(lm, n_ctx=n_ctx, slots=n_slots, n_threads=n_threads, n_threads_batch=n_threads_batch)
    except BaseException:
        lm.close()
        raise
    loaded = Loaded(lm, engine, reason)
    _OPEN.add(loaded)
    return loaded


_LoadKey = tuple[str, int, int, int, int, str, "int | None"]
_REGISTRY: dict[_LoadKey, Loaded] = {}
_REGISTRY_LOCK = threading.Lock()
_OPEN: weakref.WeakSet[Loaded] = weakref.WeakSet()


@atexit.register
def _free_models_at_exit() -> None:
    """Free every loaded model while the interpreter is still whole.

    Left to ``Llama.__del__`` during shutdown, llama-cpp-python finds its module
    globals already gone and prints ``TypeError: 'NoneType' object is not callable``.
    """
    for loaded in list(_OPEN):
        try:
            loaded.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def load(path: Path, *, n_gpu_layers: int, n_ctx: int, n_threads: int, n_threads_batch: int,
         extra_buffers: ExtraBuffers | bool | None, slots: int | None, verbose: bool,
         shared: bool = True) -> Loaded:
    """The loaded model and engine for these options: the shared ones, or (``shared=False``) a private copy."""
    choice = choose_extra_buffers(system_info(), extra_buffers)
    kw: dict[str, Any] = dict(n_gpu_layers=int(n_gpu_layers), n_ctx=int(n_ctx), n_threads=int(n_threads),
                              n_threads_batch=int(n_threads_batch), extra_buffers=choice.requested,
                              slots=None if slots is None else int(slots), verbose=verbose)
    if not shared:
        return _load(path, **kw)
    key = (str(path.resolve()), kw["n_gpu_layers"], kw["n_ctx"], kw["n_threads"], kw["n_threads_batch"],
           choice.requested, kw["slots"])
    with _REGISTRY_LOCK:
        loaded = _REGISTRY.get(key)
        if loaded is None:
            loaded = _REGISTRY[key] = _load(path, **kw)
        return loaded


def loaded_models() -> list[dict[str, Any]]:
    """The shared models in memory: file, n_gpu_layers, n_ctx, threads, extra_buffers, slots."""
    names = ("file", "n_gpu_layers", "n_ctx", "n_threads", "n_threads_batch", "extra_buffers", "slots")
    return [dict(zip(names, k)) for k in _REGISTRY]


def unload_all() -> None:
    """Forget every shared model (memory is freed once no LocalBackend uses it)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()
