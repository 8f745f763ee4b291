"""A GGUF loaded in llama.cpp: its weights, vocabulary, chat template and defaults, shared.

``llm`` is the ``llama_cpp.Llama`` that owns the weights and tokenizer; its own
small context serves direct use (``LocalBackend.llama``, under ``lock``), never
generation. The batched ``Engine`` over a model is made by whoever loads it
(``backends/local/loading.py``): a model knows nothing of engines.
"""
from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from typing import Any

from ... import reasoning as _reasoning
from ...chat_template import CHATML_TEMPLATE
from ...params import Params
from .hardware import ExtraBuffers
from .loading import load_llama

__all__ = ["LoadedModel", "gguf_sampling", "NEUTRAL_DEFAULTS"]

#: the context of ``llm`` itself (tokenising, direct experiments), not the engine's
_OWN_CTX = 512

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
                 n_threads_batch: int, extra_buffers: ExtraBuffers | bool | None, verbose: bool) -> None:
        """``n_ctx``: the context the engine will give each sequence (``llm``'s own is smaller)."""
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
        from .memory import kv_bytes_per_token, kv_shape

        self.kv_shape = kv_shape(llama_cpp, llm.model, self.meta)
        #: an f16 KV cache's bytes per token (other cache types: ``memory.kv_bytes_per_token``)
        self.kv_bytes_per_token = kv_bytes_per_token(self.kv_shape, "f16")

    def close(self) -> None:
        """Free the weights (once; close the engines over them first)."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
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
