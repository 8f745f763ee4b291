"""Loading a GGUF into llama.cpp with the machine's safe defaults: threads and buffer types.

``load_llama`` builds a ``llama_cpp.Llama`` with ``use_extra_bufts`` chosen by
``hardware.choose_extra_buffers`` (llama-cpp-python's ``Llama`` has no argument for
it, so its model parameters get the value for the duration of the load) and reads
llama.cpp's load log for the buffer types the weights really went to.
"""
from __future__ import annotations

import ctypes
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .hardware import BufferChoice, ExtraBuffers, choose_extra_buffers, default_threads

__all__ = ["llama_cpp_module", "system_info", "load_llama", "LoadReport"]

_LOAD_LOCK = threading.Lock()
_BUFFER_LINE = re.compile(r"(\S+) model buffer size\s*=\s*([\d.]+) MiB")


def llama_cpp_module() -> Any:
    """``llama_cpp`` (llama-cpp-python), with a clear message when it is missing."""
    try:
        import llama_cpp
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "the local backend needs llama-cpp-python: pip install llama-cpp-python "
            "(see the README for the CUDA build)") from exc
    return llama_cpp


def system_info() -> str:
    """llama.cpp's ``llama_print_system_info()``: the CPU features its build uses."""
    return llama_cpp_module().llama_print_system_info().decode("utf-8", errors="replace").strip()


@dataclass
class LoadReport:
    """How a model was loaded: threads, the buffer-type decision and where the weights went."""

    n_threads: int
    n_threads_batch: int
    buffers: BufferChoice
    buffer_sizes_mib: dict[str, float] = field(default_factory=dict)


@contextmanager
def _extra_bufts(use: bool) -> Iterator[None]:
    """Make llama-cpp-python's model parameters carry ``use_extra_bufts=use`` while loading."""
    lc = llama_cpp_module().llama_cpp
    original = lc.llama_model_default_params

    def params() -> Any:
        p = original()
        p.use_extra_bufts = use
        return p

    lc.llama_model_default_params = params
    try:
        yield
    finally:
        lc.llama_model_default_params = original


@contextmanager
def _captured_log(echo: bool) -> Iterator[list[str]]:
    """llama.cpp's log lines while the block runs (echoed to stderr when ``echo``)."""
    llama_cpp = llama_cpp_module()
    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        s = text.decode("utf-8", errors="replace")
        lines.append(s)
        if echo:
            print(s, end="", file=sys.stderr, flush=True)

    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        from llama_cpp import _logger

        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def load_llama(path: Path, *, n_gpu_layers: int, n_ctx: int, n_threads: int | None = None,
               n_threads_batch: int | None = None, extra_buffers: ExtraBuffers | bool | None = "auto",
               verbose: bool = False, **llama_kw: Any) -> tuple[Any, LoadReport]:
    """A ``llama_cpp.Llama`` over ``path`` and the report of how it was loaded.

    Threads default to the physical cores this process may use (llama.cpp's own
    tools' default; llama-cpp-python's is half the logical CPUs).
    """
    llama_cpp = llama_cpp_module()
    choice = choose_extra_buffers(system_info(), extra_buffers)
    threads = int(n_threads) if n_threads else default_threads()
    threads_batch = int(n_threads_batch) if n_threads_batch else threads
    with _LOAD_LOCK, _extra_bufts(choice.use_extra_bufts), _captured_log(verbose) as log:
        llm = llama_cpp.Llama(model_path=str(path), n_gpu_layers=n_gpu_layers, n_ctx=n_ctx,
                              n_threads=threads, n_threads_batch=threads_batch, verbose=verbose,
                              **llama_kw)
    sizes: dict[str, float] = {}
    for name, mib in _BUFFER_LINE.findall("".join(log)):
        sizes[name] = sizes.get(name, 0.0) + float(mib)
    return llm, LoadReport(threads, threads_batch, choice, sizes)
