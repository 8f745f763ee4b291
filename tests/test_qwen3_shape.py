"""The Qwen3-1.7B-shaped benchmark model: its dimensions and cache name (the 1.1 GB build is never run here)."""
from __future__ import annotations

import pytest

from gsexplore.backends.llama.memory import KvShape, kv_bytes_per_token
from gsexplore.models.qwen3_shape import (QWEN3_17B_SHAPE_CONFIG, QWEN3_17B_SHAPE_NAME, parameter_count,
                                          qwen3_17b_shape_path)
from gsexplore.models.tiny import TINY_QWEN3_CONFIG


def test_the_shape_is_qwen3_1_7b() -> None:
    cfg = QWEN3_17B_SHAPE_CONFIG
    assert (cfg["n_layer"], cfg["n_embd"], cfg["n_head"], cfg["n_head_kv"], cfg["head_dim"], cfg["n_ff"]) == \
        (28, 2048, 16, 8, 128, 6144)
    assert cfg["vocab_size"] == TINY_QWEN3_CONFIG["vocab_size"] == 151936
    # Qwen3-1.7B's model card: 1.7B parameters, 1.4B without the (tied) embeddings
    total = parameter_count(cfg)
    embed = cfg["vocab_size"] * cfg["n_embd"]
    assert round(total / 1e9, 2) == 1.72 and round((total - embed) / 1e9, 1) == 1.4
    # what the KV cache policy will budget per token: 28 layers x 8 heads x 128 x (K + V) x 2 bytes
    shape = KvShape(cfg["n_layer"], cfg["n_head_kv"], cfg["head_dim"], cfg["head_dim"])
    assert kv_bytes_per_token(shape, "f16") == 112 * 1024
    assert kv_bytes_per_token(shape, "q8_0") == 112 * 1024 * 34 // 64  # heads of 128: q8_0 allowed


def test_cached_by_quantization_in_the_models_folder() -> None:
    q4, q8 = qwen3_17b_shape_path("Q4_K_M"), qwen3_17b_shape_path("q8_0")
    assert q4.parent == q8.parent and q4.name.startswith(QWEN3_17B_SHAPE_NAME)
    assert q4.name.endswith("-Q4_K_M.gguf") and q8.name.endswith("-Q8_0.gguf")
    with pytest.raises(ValueError, match="quant must be one of Q4_K_M, Q8_0"):
        qwen3_17b_shape_path("Q2_K")
