"""The background runner: panel work in a daemon thread, with Run / Stop / wait."""

from __future__ import annotations

import threading
from typing import Any, Callable


def start_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """Run target in a daemon thread, so the kernel's event loop stays free."""
    th = threading.Thread(target=target, name=name, daemon=True)
    th.start()
    return th


class BackgroundRun:
    """The Run / Stop / wait lifecycle of a panel whose work runs in a thread.

    The panel sets ``last_error`` when the work fails and ``value`` when it ends;
    the work watches ``_stop`` (set by ``stop()``).
    """

    value: Any
    last_error: BaseException | None

    def _init_run(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error = None

    @property
    def running(self) -> bool:
        """Whether the work is in progress."""
        return self._thread is not None and self._thread.is_alive()

    def _start(self, work: Callable[[], None], name: str, wait: bool) -> Any:
        """Run ``work`` in a thread; return the thread, or with ``wait`` the value (re-raising its error)."""
        self._stop.clear()
        self.last_error = None
        self._thread = start_thread(work, name)
        if not wait:
            return self._thread
        self._thread.join()
        if self.last_error is not None:
            raise self.last_error
        return self.value

    def stop(self) -> None:
        """Ask the work to stop (what the Stop button does); what finished is kept."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for the work in progress and return ``value``."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.value


