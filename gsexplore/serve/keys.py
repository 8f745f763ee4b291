"""Who may use the server: API keys (file and environment), the bearer check, and loopback binding."""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Collection
from pathlib import Path

from ..errors import GSExploreError
from .errors import Reject

__all__ = ["KEYS_ENV", "load_keys", "is_loopback", "check_binding", "authorize"]

KEYS_ENV = "GSEXPLORE_SERVER_KEYS"


def load_keys(api_key_file: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> set[str]:
    """Server keys from a file (one per line, # comments) and from $GSEXPLORE_SERVER_KEYS (comma-separated)."""
    keys: set[str] = set()
    if api_key_file:
        try:
            text = Path(api_key_file).read_text(encoding="utf-8")
        except OSError as e:
            raise GSExploreError(f"cannot read the API key file {api_key_file}: {e.strerror or e}") from None
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                keys.add(line)
    raw = (env if env is not None else os.environ).get(KEYS_ENV, "")
    keys.update(k.strip() for k in raw.split(",") if k.strip())
    return keys


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


def authorize(keys: Collection[str], authorization: str) -> None:
    """401 unless the ``Authorization`` header carries one of ``keys`` (none needed when there are none)."""
    if not keys:
        return
    scheme, _, token = authorization.partition(" ")
    token_b = token.strip().encode()
    ok = False
    for k in keys:  # compare with every key, in constant time each
        ok |= hmac.compare_digest(token_b, k.encode())
    if scheme.lower() != "bearer" or not ok:
        raise Reject(401, "missing or invalid API key: send the header 'Authorization: Bearer <key>'",
                     "AuthenticationError", headers={"WWW-Authenticate": "Bearer"})
