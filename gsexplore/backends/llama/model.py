"""A GGUF loaded in llama.cpp: its weights, vocabulary, chat template and defaults, shared.

One ``LoadedModel`` per file and load options (``load_model`` keeps a registry),
with its batched ``Engine`` (``engine.py``). ``llm`` is the ``llama_cpp.Llama``
that owns the weights and tokenizer; its own small context serves direct use
(``LocalBackend.llama``, under ``lock``), never generation.
"""
from __future__ import annotations

import atexit
import ctypes
import threading
import weakref
from pathlib import Path
from typing import Any

from ... import reasoning as _reasoning
from ...chat_template import CHATML_TEMPLATE
from ...params import Params
from .hardware import ExtraBuffers, choose_extra_buffers
from .loading import load_llama, system_info

__all__ = ["LoadedModel", "load_model", "loaded_models", "unload_all", "gguf_sampling", "NEUTRAL_DEFAULTS"]

#: the context of ``llm`` itself (tokenising, direct experiments), not the engine's
_OWN_CTX = 512
#: ``slots=None``: as many slots (up to MAX_AUTO_SLOTS) as fit this much KV cache
KV_BUDGET_BYTES = 2 << 30
MAX_AUTO_SLOTS = 16

# GGUF general.sampling.* keys -> Params names (what vLLM reads from generation_config)
_GGUF_SAMPLING_KEYS = {
    "general.sampling.temp": ("temperature", float),
    "general.sampling.top_k": ("top_k", int),
    "general.sampling.top_p": ("top_p", float),
    "general.sampling.min_p": ("min_p", float),
    "general.sampling.penalty_repeat": ("repetition_penalty", float),
}
#: The sampling knobs a request may leave unset, with vLLM's neutral defaults (from Params'
#: metadata), used for whatever the GGUF does not set.
NEUTRAL_DEFAULTS: dict[str, Any] = {
    name: Params.spec(name).server_default
    for name in ("temperature", "top_k", "top_p", "min_p", "repetition_penalty", "presence_penalty",
                 "frequency_penalty")
}


class LoadedModel:
    """One model in memory and what we derive from it; shared by every LocalBackend on it."""

    def __init__(self, path: Path, *, n_gpu_layers: int, n_ctx: int, n_threads: int,
                 n_threads_batch: int, extra_buffers: ExtraBuffers | bool | None, slots: int | None,
                 verbose: bool) -> None:
        from .engine import Engine

        self.llm, self.load_report = load_llama(
            path, n_gpu_layers=n_gpu_layers, n_ctx=min(n_ctx, _OWN_CTX), n_threads=n_threads,
            n_threads_batch=n_threads_batch, extra_buffers=extra_buffers, verbose=verbose,
            logits_all=False, flash_attn=True)  # as the engine's context: the same numbers
        import llama_cpp

        self.lc = llama_cpp
        self.path = path
        self.n_gpu_layers = n_gpu_layers
        self.lock = threading.Lock()  # for direct use of ``llm`` and its own context
        llm = self.llm
        self.vocab = llm._model.vocab
        self.n_vocab = int(llm.n_vocab())
        self.n_layer = int(llama_cpp.llama_model_n_layer(llm.model))
        self.n_ctx_train = int(llm._model.n_ctx_train())
        self.meta: dict[str, str] = dict(llm.metadata)
        self.bos = int(llama_cpp.llama_vocab_bos(self.vocab))
        self.eos = int(llama_cpp.llama_vocab_eos(self.vocab))
        self.eog_ids = tuple(i for i in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self.vocab, i))
        self.template = self.meta.get("tokenizer.chat_template") or CHATML_TEMPLATE
        self.has_template = "tokenizer.chat_template" in self.meta
        self.bos_text = self.token_text(self.bos) if self.bos >= 0 else ""
        self.eos_text = self.token_text(self.eos) if self.eos >= 0 else ""
        self.think_start = self._single_token(_reasoning.THINK_START)
        self.think_end = self._single_token(_reasoning.THINK_END)
        self.has_reasoning = self.think_start is not None and self.think_end is not None
        self.gguf_sampling = gguf_sampling(self.meta)
        self.defaults = {**NEUTRAL_DEFAULTS, **self.gguf_sampling}
        # detokenisation cache: token id -> (bytes with special tokens rendered, is_control)
        self._pieces: dict[int, tuple[bytes, bool]] = {}
        self._piece_lock = threading.Lock()
        self._piece_buf = ctypes.create_string_buffer(256)
        self.kv_bytes_per_token = self._kv_bytes_per_token()
        if slots is None:
            per_slot = max(1, self.kv_bytes_per_token * n_ctx)
            fit = max(1, min(MAX_AUTO_SLOTS, KV_BUDGET_BYTES // per_slot))
            slots = 1 << (fit.bit_length() - 1)  # a power of two
            self.slots_reason = (f"auto: {slots} slots of {n_ctx} tokens (a power of two, at most "
                                 f"{MAX_AUTO_SLOTS}) fit a KV cache of {KV_BUDGET_BYTES >> 30} GiB; "
                                 "pass slots= (and n_ctx=) to choose")
        else:
            self.slots_reason = "asked for"
        self.engine = Engine(self, n_ctx=n_ctx, slots=slots, n_threads=n_threads,
                             n_threads_batch=n_threads_batch)
        self.n_ctx = self.engine.n_ctx
        _OPEN.add(self)

    def _kv_bytes_per_token(self) -> int:
        """An f16 KV cache's bytes per token: layers x KV heads x head size x (K and V) x 2 bytes."""
        lc, model = self.lc, self.llm.model
        arch = self.meta.get("general.architecture", "")
        n_head = max(1, int(lc.llama_model_n_head(model)))
        head_k = int(self.meta.get(f"{arch}.attention.key_length") or lc.llama_model_n_embd(model) // n_head)
        head_v = int(self.meta.get(f"{arch}.attention.value_length") or head_k)
        return self.n_layer * int(lc.llama_model_n_head_kv(model)) * (head_k + head_v) * 2

    def close(self) -> None:
        """Stop the engine and free llama.cpp's memory (once)."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        _OPEN.discard(self)
        self.engine.close()
        self.llm.close()

    # --- vocabulary ---------------------------------------------------------
    def token_text(self, tok: int) -> str:
        return self.lc.llama_vocab_get_text(self.vocab, tok).decode("utf-8", errors="replace")

    def _single_token(self, text: str) -> int | None:
        ids = self.tokenize(text, add_special=False)
        return ids[0] if len(ids) == 1 else None

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=True)

    def piece(self, tok: int) -> tuple[bytes, bool]:
        """(bytes of the token with special tokens rendered, whether it is a control token)."""
        got = self._pieces.get(tok)
        if got is None:
            with self._piece_lock:
                return self._piece_locked(tok)
        return got

    def _piece_locked(self, tok: int) -> tuple[bytes, bool]:
        got = self._pieces.get(tok)
        if got is None:
            lc = self.lc
            n = lc.llama_token_to_piece(self.vocab, tok, self._piece_buf, 256, 0, True)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = lc.llama_token_to_piece(self.vocab, tok, buf, -n, 0, True)
                data = buf.raw[:n]
            else:
                data = self._piece_buf.raw[:n]
            attr = lc.llama_vocab_get_attr(self.vocab, tok)
            control = bool(attr & (lc.LLAMA_TOKEN_ATTR_CONTROL | lc.LLAMA_TOKEN_ATTR_UNKNOWN))
            got = self._pieces[tok] = (data, control)
        return got

    def token_str(self, tok: int) -> str:
        return self.piece(tok)[0].decode("utf-8", errors="replace")


_LoadKey = tuple[str, int, int, int, int, str, "int | None"]
_REGISTRY: dict[_LoadKey, LoadedModel] = {}
_REGISTRY_LOCK = threading.Lock()
_OPEN: weakref.WeakSet[LoadedModel] = weakref.WeakSet()


@atexit.register
def _free_models_at_exit() -> None:
    """Free every loaded model while the interpreter is still whole.

    Left to ``Llama.__del__`` during shutdown, llama-cpp-python finds its module
    globals already gone and prints ``TypeError: 'NoneType' object is not callable``.
    """
    for lm in list(_OPEN):
        try:
            lm.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def load_model(path: Path, *, n_gpu_layers: int, n_ctx: int, n_threads: int, n_threads_batch: int,
               extra_buffers: ExtraBuffers | bool | None, slots: int | None, verbose: bool,
               shared: bool = True) -> LoadedModel:
    """The loaded model for these options: the shared one, or (``shared=False``) a private copy."""
    choice = choose_extra_buffers(system_info(), extra_buffers)
    kw = dict(n_gpu_layers=int(n_gpu_layers), n_ctx=int(n_ctx), n_threads=int(n_threads),
              n_threads_batch=int(n_threads_batch), extra_buffers=choice.requested,
              slots=None if slots is None else int(slots),
              verbose=verbose)
    if not shared:
        return LoadedModel(path, **kw)
    key = (str(path.resolve()), kw["n_gpu_layers"], kw["n_ctx"], kw["n_threads"], kw["n_threads_batch"],
           choice.requested, kw["slots"])
    with _REGISTRY_LOCK:
        lm = _REGISTRY.get(key)
        if lm is None:
            lm = _REGISTRY[key] = LoadedModel(path, **kw)
        return lm


def loaded_models() -> list[dict[str, Any]]:
    """The shared models in memory: file, n_gpu_layers, n_ctx, threads, extra_buffers, slots."""
    names = ("file", "n_gpu_layers", "n_ctx", "n_threads", "n_threads_batch", "extra_buffers", "slots")
    return [dict(zip(names, k)) for k in _REGISTRY]


def unload_all() -> None:
    """Forget every shared model (memory is freed once no LocalBackend uses it)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()


def gguf_sampling(meta: dict[str, str]) -> dict[str, Any]:
    """The sampling defaults a GGUF carries (``general.sampling.*``) as Params names."""
    out: dict[str, Any] = {}
    for key, (name, cast) in _GGUF_SAMPLING_KEYS.items():
        if key in meta:
            try:
                out[name] = cast(float(meta[key])) if cast is int else cast(meta[key])
            except ValueError:
                continue
    if out.get("top_k") == 0:
        out["top_k"] = -1
    return out
