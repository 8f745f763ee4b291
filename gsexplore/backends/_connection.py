"""Who the remote backend is and where it connects: the bearer auth (the API key lives there and
nowhere else), one TLS context for every client, and whether a URL is this machine."""

from __future__ import annotations

import functools
import ipaddress
import ssl
from collections.abc import Generator
from urllib.parse import urlsplit

import httpx

__all__ = ["BearerAuth", "is_loopback", "ssl_context"]


class BearerAuth(httpx.Auth):
    """Adds `Authorization: Bearer <key>`; the key lives here and nowhere else."""

    def __init__(self, key: str | None) -> None:
        self.__key = key or None

    @property
    def secret(self) -> str | None:
        return self.__key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.__key:
            request.headers["Authorization"] = f"Bearer {self.__key}"
        yield request

    def __repr__(self) -> str:
        return "<BearerAuth ***>" if self.__key else "<BearerAuth none>"


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One verifying SSL context for every client: loading the CA bundle costs tens of ms per client."""
    return httpx.create_ssl_context()


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (localhost or a loopback address)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
