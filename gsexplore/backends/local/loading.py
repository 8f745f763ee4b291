"""Loading a GGUF for LocalBackend: the model, its batched engine (sized from memory) and the shared registry.

One ``Loaded`` per file and load options (``load`` keeps a registry; ``shared=False``
makes a private one). The model is loaded at once; the engine (the llama.cpp context
and its KV cache) is made at first use, sized by ``llama/memory.py``'s policy from the
memory this process can use and from what the caller needs: ``ensure(max_request_tokens,
concurrency)`` (``LocalBackend.prepare``, which ``gs.sweep`` calls with its largest prompt
+ max_tokens and its number of requests) or, for a plain request, that request's need.
What the user fixed (``n_ctx=``, ``slots=``) is never changed. An idle engine is made
again, for the new need, when a need does not fit it (an auto ``n_ctx`` smaller than a
request's prompt + max_tokens, or fewer auto slots than a sweep's requests); a busy one
keeps its size and a request that does not fit is refused by name (``max_tokens``), as with
a fixed ``n_ctx``. Sizing and submitting happen under ``Loaded.lock``, so no request is
planned for one engine and queued in another.
"""
from __future__ import annotations

import atexit
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import EngineError, ParamsError
from ..llama.engine import Engine
from ..llama.hardware import ExtraBuffers, choose_extra_buffers
from ..llama.loading import system_info
from ..llama.memory import KV_TYPES, PLAIN_SLOTS, SlotPlan, plan_for_model
from ..llama.model import LoadedModel

__all__ = ["Loaded", "EngineOptions", "load", "loaded_models", "unload_all", "KV_LAYOUTS"]

#: "streams": a KV stream of n_ctx cells per slot (batch invariant on CPU, see memory.py);
#: "unified": one pool of slots x n_ctx cells that any slot may grow into (not batch invariant)
KV_LAYOUTS = ("streams", "unified")


@dataclass(frozen=True)
class EngineOptions:
    """What the user asked of the engine; None = the memory policy decides."""

    n_ctx: int | None
    slots: int | None
    kv_cache_type: str
    kv_layout: str
    n_threads: int
    n_threads_batch: int

    def check(self) -> None:
        """ParamsError naming the option that is not allowed."""
        if self.kv_cache_type not in KV_TYPES:
            raise ParamsError(f"kv_cache_type must be one of {', '.join(map(repr, KV_TYPES))}, got "
                              f"{self.kv_cache_type!r}", field="kv_cache_type", value=self.kv_cache_type)
        if self.kv_layout not in KV_LAYOUTS:
            raise ParamsError(f"kv_layout must be one of {', '.join(map(repr, KV_LAYOUTS))}, got "
                              f"{self.kv_layout!r}", field="kv_layout", value=self.kv_layout)
        for name in ("n_ctx", "slots"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ParamsError(f"{name} must be at least 1 (or None: chosen from memory), got {v}",
                                  field=name, value=v)


@dataclass(eq=False)
class Loaded:
    """A model in memory and the engine that generates with it (made at first use)."""

    model: LoadedModel
    options: EngineOptions
    closed: bool = False
    slot_plan: SlotPlan | None = None
    #: the requests the last ``ensure`` was told to expect at once (None: not told)
    wanted: int | None = None
    _engine: Engine | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def engine(self) -> Engine:
        """The engine, made now with the default sizes if nothing sized it yet."""
        eng = self._engine
        return eng if eng is not None else self.ensure()

    @property
    def sized(self) -> bool:
        return self._engine is not None

    def plan(self, max_request_tokens: int | None = None, concurrency: int | None = None) -> SlotPlan:
        """The memory policy's slots and tokens per slot for these needs (nothing is made)."""
        o = self.options
        try:
            return plan_for_model(self.model, n_ctx=o.n_ctx if o.n_ctx is not None else max_request_tokens,
                                  slots=o.slots, kv_type=o.kv_cache_type,
                                  want_slots=None if o.slots is not None else (concurrency or PLAIN_SLOTS),
                                  want_why="wanted" if concurrency else "nobody said how many at once")
        except ValueError as exc:  # the head size refuses the cache type, or not one slot fits
            field_ = "kv_cache_type" if "kv_cache_type" in str(exc) else "n_ctx"
            raise ParamsError(str(exc), field=field_, value=getattr(o, field_)) from exc

    def ensure(self, max_request_tokens: int | None = None, concurrency: int | None = None) -> Engine:
        """An engine that holds ``max_request_tokens`` per request and ``concurrency`` slots, if it can be had.

        Made at first call; made again (larger) while idle when these needs do not fit.
        Hold ``lock`` from this call to the engine's ``submit`` so no other thread remakes it between.
        """
        with self.lock:
            if self.closed:
                raise EngineError(f"the model {self.model.path.name} was closed")
            if concurrency is None:
                concurrency = self.wanted  # a remake for one request keeps the slots a caller asked for
            else:
                self.wanted = concurrency
            eng = self._engine
            if eng is not None and not self._outgrown(eng, max_request_tokens, concurrency):
                return eng
            plan = self.plan(max_request_tokens, concurrency)
            if eng is not None:
                assert self.slot_plan is not None
                if (plan.n_ctx, plan.slots) == (self.slot_plan.n_ctx, self.slot_plan.slots) or not eng.idle():
                    return eng
                self._engine = None
                eng.close()
            o = self.options
            self._engine = Engine(self.model, n_ctx=plan.n_ctx, slots=plan.slots, n_threads=o.n_threads,
                                  n_threads_batch=o.n_threads_batch, kv_cache_type=o.kv_cache_type,
                                  kv_unified=o.kv_layout == "unified")
            self.slot_plan = plan
            return self._engine

    def _outgrown(self, eng: Engine, need: int | None, want: int | None) -> bool:
        o = self.options
        if o.n_ctx is None and need is not None and need > eng.n_ctx:
            return True
        return o.slots is None and want is not None and want > eng.n_slots

    def close(self) -> None:
        """Stop the engine and free llama.cpp's memory (once)."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            _OPEN.discard(self)
            if self._engine is not None:
                self._engine.close()
            self.model.close()


def _load(path: Path, *, n_gpu_layers: int, options: EngineOptions, extra_buffers: Any, verbose: bool) -> Loaded:
    lm = LoadedModel(path, n_gpu_layers=n_gpu_layers, n_ctx=options.n_ctx or 512, n_threads=options.n_threads,
                     n_threads_batch=options.n_threads_batch, extra_buffers=extra_buffers, verbose=verbose)
    loaded = Loaded(lm, options)
    try:
        loaded.plan()  # a cache type the heads refuse, or an n_ctx no memory holds, fails here, not later
    except BaseException:
        lm.close()
        raise
    _OPEN.add(loaded)
    return loaded


_LoadKey = tuple[Any, ...]
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


def load(path: Path, *, n_gpu_layers: int, n_ctx: int | None, n_threads: int, n_threads_batch: int,
         extra_buffers: ExtraBuffers | bool | None, slots: int | None, verbose: bool,
         kv_cache_type: str = "f16", kv_layout: str = "streams", shared: bool = True) -> Loaded:
    """The loaded model (engine made at first use) for these options: the shared one, or (``shared=False``) a
    private copy."""
    choice = choose_extra_buffers(system_info(), extra_buffers)
    options = EngineOptions(None if n_ctx is None else int(n_ctx), None if slots is None else int(slots),
                            str(kv_cache_type), str(kv_layout), int(n_threads), int(n_threads_batch))
    options.check()
    if not shared:
        return _load(path, n_gpu_layers=int(n_gpu_layers), options=options, extra_buffers=choice.requested,
                     verbose=verbose)
    key = (str(path.resolve()), int(n_gpu_layers), choice.requested, options)
    with _REGISTRY_LOCK:
        loaded = _REGISTRY.get(key)
        if loaded is None:
            loaded = _REGISTRY[key] = _load(path, n_gpu_layers=int(n_gpu_layers), options=options,
                                            extra_buffers=choice.requested, verbose=verbose)
        return loaded


def loaded_models() -> list[dict[str, Any]]:
    """The shared models in memory: file, n_gpu_layers, n_ctx, threads, extra_buffers, slots, KV type and layout
    (n_ctx and slots as asked: None = from memory)."""
    return [{"file": k[0], "n_gpu_layers": k[1], "n_ctx": k[3].n_ctx, "n_threads": k[3].n_threads,
             "n_threads_batch": k[3].n_threads_batch, "extra_buffers": k[2], "slots": k[3].slots,
             "kv_cache_type": k[3].kv_cache_type, "kv_layout": k[3].kv_layout} for k in _REGISTRY]


def unload_all() -> None:
    """Forget every shared model (memory is freed once no LocalBackend uses it)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()
