"""Quantize a GGUF with llama.cpp's own quantizer (``llama_model_quantize``), through llama_cpp's low-level API.

The same code path as llama.cpp's ``llama-quantize`` tool, so a Q8_0 made here is
the Q8_0 a user downloads: ``quantize("model-f16.gguf", "model-Q8_0.gguf", "Q8_0")``.
Tensors whose rows do not fit a type's block size (K-quants need rows of 256)
get llama.cpp's fallback type, as with the tool.
"""

from __future__ import annotations

import os
from pathlib import Path

from gsexplore.errors import EngineError, ModelNotFoundError

__all__ = ["quantize", "quant_kinds"]

_PREFIX = "LLAMA_FTYPE_MOSTLY_"


def quant_kinds() -> dict[str, int]:
    """The quantization types this llama.cpp build offers: {"Q8_0": 7, "Q4_K_M": 15, "F16": 1, ...}."""
    import llama_cpp

    return {n[len(_PREFIX):]: int(getattr(llama_cpp, n)) for n in dir(llama_cpp) if n.startswith(_PREFIX)}


def quantize(src: str | os.PathLike[str], dst: str | os.PathLike[str], kind: str = "Q8_0", *,
             threads: int | None = None) -> Path:
    """Write ``src`` quantized to ``kind`` (e.g. "Q8_0", "Q4_K_M") as ``dst``; returns ``dst``.

    The file appears whole or not at all (written beside ``dst``, then renamed).

    Raises:
        ModelNotFoundError: ``src`` does not exist.
        ValueError: ``kind`` is not a type of this llama.cpp build (the message lists them).
        EngineError: llama.cpp refused to quantize the file.
    """
    import ctypes

    import llama_cpp

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise ModelNotFoundError(f"no GGUF at {src}")
    kinds = quant_kinds()
    key = kind.upper()
    if key not in kinds:
        raise ValueError(f"kind must be one of {', '.join(sorted(kinds))}, not {kind!r}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = kinds[key]
    params.nthread = int(threads or 0)  # 0: llama.cpp uses every core
    try:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0 or not tmp.is_file():
            raise EngineError(f"llama.cpp could not quantize {src.name} to {key} (code {rc})")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst
