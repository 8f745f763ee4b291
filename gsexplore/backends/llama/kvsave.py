"""A sequence's KV cells to host memory and back (llama-server's slot save/restore, kept in memory).

Preemption uses these: the cells are copied byte for byte (``llama_state_seq_get_data``)
and put back into any free slot (``llama_state_seq_set_data``, which clears that
slot's stream first and places them from its first cell), so the sequence resumes on
the same numbers it left and its tokens are those it would have drawn unpreempted.
"""
from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from ...errors import EngineError
from .step import SavedCells

__all__ = ["save_cells", "restore_cells"]


def _ptr(buf: np.ndarray) -> Any:
    return buf.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))


def save_cells(lc: Any, ctx: Any, slot: int, saved: SavedCells) -> None:
    """Copy the cells of ``slot`` into ``saved`` (``data``, ``nbytes``)."""
    size = lc.llama_state_seq_get_size(ctx, slot)
    buf = np.empty(size, dtype=np.uint8)
    n = lc.llama_state_seq_get_data(ctx, _ptr(buf), size, slot)
    if n == 0:
        raise EngineError(f"llama.cpp could not save the {len(saved.tokens)} KV cells of slot {slot}")
    saved.data, saved.nbytes = buf, int(n)


def restore_cells(lc: Any, ctx: Any, mem: Any, slot: int, saved: SavedCells) -> None:
    """Put ``saved`` into ``slot`` (whatever it held goes); the host copy is freed."""
    if saved.data is None:
        raise EngineError(f"the saved KV cells for slot {slot} were freed before their restore")
    lc.llama_memory_seq_rm(mem, slot, 0, -1)
    if lc.llama_state_seq_set_data(ctx, _ptr(saved.data), saved.nbytes, slot) == 0:
        raise EngineError(f"llama.cpp could not restore {len(saved.tokens)} saved KV cells into slot {slot}")
    saved.data = None
