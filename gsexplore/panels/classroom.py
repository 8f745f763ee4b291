"""`Classroom`: the teacher's view of a `gsexplore serve` room in a notebook (what /class shows).

>>> panel = gs.panels.Classroom("http://127.0.0.1:8000", admin_key)   # doctest: +SKIP
>>> panel.refresh()            # fetch once (the panel also polls every ``refresh_s`` seconds)
>>> panel.data["totals"]       # the room's totals, as /class/data answers

It polls the server's ``/class/data`` with the admin key (a Bearer header) and
shows the table of students and the plot of what the class tried, rendered by
the server in the panel's language. The key is kept private: it never appears
in the panel's repr, its widgets or its errors.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import ipywidgets as W

from ..i18n import language, msg
from ._util import Panel

__all__ = ["Classroom"]


def _base(url: str) -> str:
    """The server's root from its URL or its /v1 base_url."""
    url = url.rstrip("/")
    for suffix in ("/functions/v1", "/v1"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


class Classroom(Panel):
    """The class view of the server at ``url`` (its root or /v1), with the teacher's ``admin_key``.

    ``refresh_s``: seconds between polls (0: only on `refresh`). ``lang``: "es" (default) or "en".
    """

    def __init__(self, url: str, admin_key: str | None, *, refresh_s: float = 2.0, lang: str | None = None,
                 metric: str = "n_words", timeout: float = 10.0) -> None:
        super().__init__()
        self.url = _base(url)
        self.lang = lang or language()
        self.__key = admin_key or ""
        self._client = httpx.Client(timeout=timeout)
        self.data: dict[str, Any] = {}
        self.error: str | None = None
        self.x = W.Dropdown(description=msg("class.plot.x", self.lang), options=[], layout=W.Layout(width="260px"))
        self.metric = W.Dropdown(description=msg("class.plot.metric", self.lang), options=[metric],
                                 value=metric, layout=W.Layout(width="260px"))
        self.status = W.HTML()
        self.table = W.HTML()
        self.plot = W.HTML()
        self.widget = W.VBox([self.status, W.HBox([self.table, W.VBox([W.HBox([self.x, self.metric]), self.plot])],
                                                  layout=W.Layout(flex_flow="row wrap"))])
        self._quiet = False  # while the panel itself sets the dropdowns
        self.x.observe(self._chosen, names="value")
        self.metric.observe(self._chosen, names="value")
        self._stop = threading.Event()
        self._updated = threading.Condition()
        self._thread: threading.Thread | None = None
        self.refresh()
        if refresh_s > 0:
            self._thread = threading.Thread(target=self._poll, args=(refresh_s,), daemon=True,
                                            name="gsexplore-classroom")
            self._thread.start()

    def __repr__(self) -> str:
        t = self.data.get("totals") or {}
        return (f"Classroom(url={self.url!r}, students={t.get('students', 0)}, finished={t.get('finished', 0)}, "
                f"running={t.get('running', 0)}, waiting={t.get('waiting', 0)})")

    def _chosen(self, _: Any) -> None:
        if not self._quiet:
            self.refresh()

    # --- fetching ---------------------------------------------------------------------------
    def refresh(self) -> dict[str, Any]:
        """Fetch /class/data once and redraw; returns the data (on failure the panel shows why)."""
        params = {"lang": self.lang, "metric": self.metric.value}
        if self.x.value:
            params["x"] = self.x.value
        headers = {"Authorization": f"Bearer {self.__key}"} if self.__key else {}
        try:
            r = self._client.get(f"{self.url}/class/data", params=params, headers=headers)
        except httpx.HTTPError as e:
            self._fail(msg("class.panel.unreachable", self.lang, url=self.url, error=type(e).__name__))
            return self.data
        if r.status_code != 200:
            try:
                message = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = r.reason_phrase
            self._fail(msg("class.panel.error", self.lang, status=r.status_code, message=message))
            return self.data
        self.data, self.error = r.json(), None
        self.table.value, self.plot.value = self.data["html"], self.data["svg"]
        self._quiet = True
        try:
            metric = self.data.get("metric")
            metrics = self.data.get("metrics") or [metric]
            if list(self.metric.options) != metrics:
                self.metric.options = metrics
                self.metric.value = metric
            tried = self.data.get("tried") or []
            if list(self.x.options) != tried:
                self.x.options = tried
            if self.data.get("x") in tried and self.x.value != self.data["x"]:
                self.x.value = self.data["x"]
        finally:
            self._quiet = False
        self.status.value = ""
        with self._updated:
            self._updated.notify_all()
        return self.data

    def _fail(self, text: str) -> None:
        self.error = text.replace(self.__key, "***") if self.__key else text
        self.status.value = f"<b style='color:#b00020'>{self.error}</b>"

    def wait_for(self, condition: Any, timeout: float = 30.0) -> dict[str, Any]:
        """Refresh until ``condition(data)`` holds (or raise TimeoutError after ``timeout`` seconds)."""
        import time

        deadline = time.monotonic() + timeout
        while not (self.data and condition(self.data)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the class view did not reach the condition in {timeout} s")
            if self._thread is None or not self._thread.is_alive():
                self.refresh()
            with self._updated:
                self._updated.wait(min(left, 0.5))
        return self.data

    def _poll(self, every: float) -> None:
        while not self._stop.wait(every):
            self.refresh()

    def stop(self) -> None:
        """Stop polling (the last view stays)."""
        self._stop.set()
        self.status.value = msg("class.panel.stopped", self.lang)

    def close(self) -> None:
        """Stop polling, close the connection and the widget."""
        self._stop.set()
        self._client.close()
        super().close()
