"""Loading the served model's instances, and the names the server answers to."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import wire
from ..backends.base import Backend

__all__ = ["GRADIENTESUR_MODEL", "load_backends", "served_names"]

#: The model name of the GradienteSur API (served as an alias unless names are given).
GRADIENTESUR_MODEL = wire.DEFAULT_MODEL


def load_backends(model: str, *, filename: str | None = None, instances: int = 1,
                  **backend_kwargs: Any) -> list[Any]:
    """`instances` backends of one model spec (a path, "demo", "tiny-qwen3" or a HF repo id).

    Each instance holds its own llama.cpp model and engine (``slots=`` in ``backend_kwargs``
    is its number of sequences batched together): copies for machines with several GPUs.
    """
    from ..backends.spec import from_spec

    backends = [from_spec(model, filename=filename, **backend_kwargs)]
    for _ in range(1, max(1, instances)):
        backends.append(from_spec(model, filename=filename, shared=False, **backend_kwargs))
    return backends


def _stem(b: Backend) -> str:
    """The model's file name without ``.gguf`` (the backend's model name otherwise)."""
    name = str(b.model or "local")
    return Path(name).stem if name.endswith(".gguf") else name


def served_names(backends: Sequence[Backend], served_model_names: Sequence[str] | None,
                 model_spec: str | None = None) -> list[str]:
    """The names a server answers to: ``--served-model-name`` values, the ``--model`` spec as typed
    (or the backend's declared ``source``), the model file's stem, and the GradienteSur model name
    (so the seed's examples run unchanged)."""
    spec = model_spec or backends[0].source
    names = [*(served_model_names or ())]
    if spec:
        names.append(str(spec))
    names += [_stem(backends[0]), GRADIENTESUR_MODEL]
    return list(dict.fromkeys(n for n in names if n))
