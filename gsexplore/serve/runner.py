"""Running the app: uvicorn in a background thread (`ServerThread`), or in the foreground (`serve`)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import GSExploreError
from .app import create_app
from .keys import check_binding

__all__ = ["ServerThread", "serve"]


def _uvicorn_config(app: Any, host: str, port: int, log_level: str, access_log: bool, **kw: Any) -> Any:
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=access_log,
                          timeout_graceful_shutdown=2, lifespan="on", **kw)


class ServerThread:
    """uvicorn serving `app` in a background thread (tests, benchmarks, notebooks).

    >>> with ServerThread(create_app("tiny-qwen3")) as srv:   # doctest: +SKIP
    ...     print(srv.url)                                    # http://127.0.0.1:PORT/v1
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                 access_log: bool = False, **uvicorn_kwargs: Any) -> None:
        import uvicorn

        self.app = app
        self.host = host
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so (else Nagle adds ~40 ms)
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                                   socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        self.server = uvicorn.Server(_uvicorn_config(app, host, self.port, log_level, access_log, **uvicorn_kwargs))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]},
                                        name=f"gsexplore-serve-{self.port}", daemon=True)

    @property
    def base(self) -> str:
        """http://host:port"""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The base_url for RemoteBackend (…/v1)."""
        return f"{self.base}/v1"

    def start(self, timeout: float = 30.0) -> ServerThread:
        """Start serving; returns once uvicorn accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise GSExploreError(f"the server on {self.base} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    model: str,
    *,
    filename: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_keys: Iterable[str] | dict[str, str] | None = None,
    instances: int = 1,
    served_model_names: Sequence[str] | None = None,
    max_tokens_cap: int = 4096,
    max_queue: int = 64,
    max_body_bytes: int = 1_000_000,
    artificial_latency_s: float = 0.0,
    backend_kwargs: dict[str, Any] | None = None,
    log_level: str = "info",
    max_n: int = 16,
    docs: bool = True,
    admin_keys: Iterable[str] | dict[str, str] | None = None,
    max_running_per_key: int | None = None,
    tpm_per_key: int | None = None,
    class_store: str | None = None,
) -> None:
    """Load the model and serve it until interrupted (what `gsexplore serve` runs)."""
    import uvicorn

    keys = dict(api_keys) if isinstance(api_keys, dict) else set(api_keys or ())
    admins = dict(admin_keys) if isinstance(admin_keys, dict) else set(admin_keys or ())
    check_binding(host, {*keys, *admins})  # before loading anything
    app = create_app(model, keys, max_body_bytes=max_body_bytes, max_tokens_cap=max_tokens_cap,
                     max_queue=max_queue, artificial_latency_s=artificial_latency_s,
                     served_model_names=served_model_names, filename=filename, instances=instances,
                     backend_kwargs=backend_kwargs, max_n=max_n, docs=docs, admin_keys=admins,
                     max_running_per_key=max_running_per_key, tpm_per_key=tpm_per_key,
                     class_store=class_store)
    names = app.state.served_model_names
    shown = f"[{host}]" if ":" in host else host
    print(f"gsexplore serve: {', '.join(names)} ({instances} instance{'s' if instances > 1 else ''}, "
          f"{app.state.admission.size} requests at once) "
          f"on http://{shown}:{port}/v1 and /functions/v1; "
          + (f"API keys required ({len(keys)} students)" if keys else "no API key (loopback only)")
          + (f"; the class view at http://{shown}:{port}/class" if admins or not keys else "")
          + (f"; class record in {class_store}" if class_store else ""), flush=True)
    uvicorn.Server(_uvicorn_config(app, host, port, log_level, access_log=True)).run()
