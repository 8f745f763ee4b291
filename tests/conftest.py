"""Shared fixtures: the offline models and LocalBackends over them (loaded once per session)."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    """The tiny Qwen3-architecture GGUF (random weights, real Qwen3 tokenizer and template)."""
    from gsexplore.models import tiny_qwen3

    return tiny_qwen3()


@pytest.fixture(scope="session")
def demo_model_path() -> Path:
    """The offline demo model, SmolLM2-135M-Instruct (Q4_1)."""
    from gsexplore.models import demo_path

    return demo_path()


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_path: Path):
    """A LocalBackend on the tiny Qwen3 model (needs llama-cpp-python)."""
    from gsexplore.backends.local import LocalBackend

    return LocalBackend(str(tiny_model_path), n_ctx=2048)


@pytest.fixture(scope="session")
def demo_backend(demo_model_path: Path):
    """A LocalBackend on the demo model (needs llama-cpp-python)."""
    from gsexplore.backends.local import LocalBackend

    return LocalBackend(str(demo_model_path), n_ctx=2048)
