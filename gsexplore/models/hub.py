"""Hugging Face GGUFs: find a repo's file in the local hub cache, else download it from the Hub.

``$HF_HUB_CACHE`` and ``$HF_HUB_OFFLINE`` are read at call time.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path

from gsexplore.errors import ModelNotFoundError

_SHARD_RE = re.compile(r"^(?P<stem>.*)-(?P<i>\d{5})-of-(?P<n>\d{5})\.gguf$")
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

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


def _looks_like_repo_id(model: str) -> bool:
    """``org/name`` with no ``.gguf`` suffix and no path-like start."""
    return bool(_REPO_ID_RE.match(model)) and not model.lower().endswith(".gguf") \
        and not model.startswith((".", "~"))
