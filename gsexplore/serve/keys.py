"""Where the server's keys come from (file and environment), and loopback binding (see `identity` for who is who)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Collection
from pathlib import Path

from ..errors import GSExploreError
from .identity import DEFAULT_PREFIX, parse_key_lines

__all__ = ["KEYS_ENV", "load_keys", "load_labelled_keys", "is_loopback", "check_binding"]

KEYS_ENV = "GSEXPLORE_SERVER_KEYS"


def load_keys(api_key_file: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> set[str]:
    """Server keys from a file (one per line, # comments) and from $GSEXPLORE_SERVER_KEYS (comma-separated)."""
    return set(load_labelled_keys(api_key_file, env))


def load_labelled_keys(api_key_file: str | os.PathLike[str] | None = None,
                       env: dict[str, str] | None = None, prefix: str = DEFAULT_PREFIX) -> dict[str, str]:
    """``{key: label}`` from a key file (``KEY [label]`` a line, see `identity`) and from
    $GSEXPLORE_SERVER_KEYS (comma-separated, unlabelled: named alumno-N after the file's)."""
    text = ""
    if api_key_file:
        try:
            text = Path(api_key_file).read_text(encoding="utf-8")
        except OSError as e:
            raise GSExploreError(f"cannot read the API key file {api_key_file}: {e.strerror or e}") from None
    raw = (env if env is not None else os.environ).get(KEYS_ENV, "")
    text += "\n" + "\n".join(k.strip() for k in raw.split(",") if k.strip())
    return parse_key_lines(text, str(api_key_file or KEYS_ENV), prefix=prefix)


def is_loopback(host: str) -> bool:
    """Whether `host` is only reachable from this machine."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, api_keys: Collection[str] | None) -> None:
    """Refuse to serve beyond loopback without keys: anyone on the network could use the model."""
    if not api_keys and not is_loopback(host):
        raise GSExploreError(
            f"refusing to listen on {host} without API keys: anyone who can reach this machine could use "
            "the model. Give keys with --api-key-file FILE or GSEXPLORE_SERVER_KEYS=key1,key2, "
            "or listen on 127.0.0.1 only.")
