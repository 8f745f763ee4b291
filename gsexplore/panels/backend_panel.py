"""BackendPanel: connect to the API (remote) or load a model (local), and show what it is.

The API key is typed in a password field and taken out of it at once: the panel
keeps it in a private attribute until Connect, then hands it to the backend and
forgets it. The widget's value is emptied, so no saved widget state (notebook
metadata) can ever hold the key.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import ipywidgets as W
import traitlets

from ..backends.base import Backend
from ..wire import DEFAULT_BASE_URL, DEFAULT_MODEL
from ._util import Panel, error_html, esc, explain, msg, panel_root, start_thread

__all__ = ["BackendPanel"]

_SOURCES = ("demo", "tiny-qwen3", "path", "hf")  # the labels are ui.source.<name> in the catalogue


class BackendPanel(Panel):
    """Choose and connect a backend; `.backend` is the connected one (observers fire on change)."""

    backend = traitlets.Instance(Backend, allow_none=True)

    def __init__(self, backend: Backend | None = None, lang: str = "es", mode: str | None = None) -> None:
        super().__init__(backend=backend)
        self.lang = lang
        self.last_error: BaseException | None = None
        self.__key: str | None = None  # the typed key, until Connect hands it to the backend
        self._thread: threading.Thread | None = None
        self.mode = W.ToggleButtons(options=[(msg("ui.remote", lang), "remote"),
                                             ("Local (llama.cpp)", "local")],
                                    value=mode or ("remote" if _is_remote(backend) else "local"))
        # remote
        self.url = W.Text(value=DEFAULT_BASE_URL, description="URL", layout=W.Layout(width="100%"))
        self.api_key = W.Password(value="", description="API key", continuous_update=False,
                                  placeholder=msg("ui.key_placeholder", lang),
                                  layout=W.Layout(width="100%"))
        self.api_key.add_class("gs-api-key")
        self.key_status = W.HTML("")
        self.model = W.Text(value=DEFAULT_MODEL, description=msg("ui.model", lang))
        self.spelling = W.Dropdown(options=[("guided_* (vLLM ≤ 0.11)", "guided"),
                                            ("structured_outputs (vLLM ≥ 0.11)", "structured_outputs")],
                                   value="guided", description=msg("ui.guided_spelling", lang),
                                   tooltip=msg("ui.guided_spelling_tip", lang))
        remote_box = W.VBox([self.url, self.api_key, self.key_status, self.model, self.spelling])
        # local
        self.source = W.Dropdown(options=[(msg(f"ui.source.{k}", lang), k) for k in _SOURCES],
                                 value="demo", description=msg("ui.model", lang),
                                 layout=W.Layout(width="100%"))
        self.path = W.Text(placeholder="/ruta/al/modelo.gguf", description="GGUF", layout=W.Layout(width="100%"))
        self.repo = W.Text(placeholder="Qwen/Qwen3-1.7B-GGUF", description="repo", layout=W.Layout(width="100%"))
        self.filename = W.Text(placeholder="*Q8_0.gguf", description=msg("ui.file", lang),
                               layout=W.Layout(width="100%"))
        self.n_gpu_layers = W.IntText(value=_backend_attr(backend, "n_gpu_layers", -1), description="n_gpu_layers", style={"description_width": "initial"},
                                      tooltip=msg("ui.gpu_layers_tip", lang))
        self.n_ctx = W.IntText(value=_backend_attr(backend, "n_ctx", 4096), description="n_ctx", style={"description_width": "initial"},
                               tooltip=msg("ui.n_ctx_tip", lang))
        self.local_extra = W.Stack([W.VBox([]), W.VBox([]), W.VBox([self.path]),
                                    W.VBox([self.repo, self.filename])], selected_index=0)
        local_box = W.VBox([self.source, self.local_extra, W.HBox([self.n_gpu_layers, self.n_ctx])])
        self.forms = W.Stack([remote_box, local_box], selected_index=0 if self.mode.value == "remote" else 1)
        self.connect_button = W.Button(description=msg("ui.connect", lang), button_style="primary", icon="plug")
        self.connect_button.add_class("gs-connect")
        self.in_use = W.HTML("")
        self.in_use.add_class("gs-backend-in-use")
        # switching away from a working backend (a class server) is asked first
        self.confirm_text = W.HTML("")
        self.confirm_yes = W.Button(description=msg("ui.confirm_yes", lang), button_style="warning")
        self.confirm_yes.add_class("gs-confirm-yes")
        self.confirm_no = W.Button(description=msg("ui.confirm_no", lang))
        self.confirm_no.add_class("gs-confirm-no")
        self.confirm = W.VBox([self.confirm_text, W.HBox([self.confirm_yes, self.confirm_no])])
        self.confirm.add_class("gs-backend-confirm")
        self.confirm.layout.display = "none"
        self.status = W.HTML("")
        self.info = W.HTML("")
        rows = [self.in_use, self.mode, self.forms, W.HBox([self.connect_button, self.status]), self.confirm,
                self.info]
        self.widget = panel_root("gs-backend-panel", rows, css=False)

        self.mode.observe(self._on_mode, "value")
        self.source.observe(lambda c: setattr(self.local_extra, "selected_index", _SOURCES.index(c["new"])),
                            "value")
        self.api_key.observe(self._take_key, "value")
        self.connect_button.on_click(lambda _b: self._click_connect())
        self.confirm_yes.on_click(lambda _b: self._confirmed(True))
        self.confirm_no.on_click(lambda _b: self._confirmed(False))
        self._fill_form(backend)
        self.observe(lambda c: (self._fill_form(c["new"]), self._show_info()), names="backend")
        self._on_mode({"new": self.mode.value})
        self._show_info()

    # --- public surface ---------------------------------------------------------------
    def connect(self, wait: bool = True) -> Backend | threading.Thread | None:
        """Create the backend from the form (in a thread unless wait): the Connect/Load button."""
        if self._thread is not None and self._thread.is_alive():
            return self._thread
        key, self.__key = self.__key, None  # from here on the key lives only in the backend
        self._key_note(False)
        self.connect_button.disabled = True
        self.status.value = f"<i>{esc(msg('ui.connecting' if self.mode.value == 'remote' else 'ui.loading', self.lang))}</i>"
        result: list[Any] = []

        def work() -> None:
            try:
                result.append(self._create(key))
            except Exception as e:  # shown in the panel; connect(wait=True) re-raises it
                self.last_error = e
                self.status.value = error_html(self._explain(e))
            else:
                self.last_error = None
                self.status.value = '<span style="color:#2e7d32">✔</span>'
                self.backend = result[0]
            finally:
                self.connect_button.disabled = False

        if not wait:
            self._thread = start_thread(work, "gsexplore-backend-connect")
            return self._thread
        work()
        if self.last_error is not None:
            raise self.last_error
        return self.backend

    def __repr__(self) -> str:
        return f"BackendPanel(backend={self.backend!r})"

    # --- internals ----------------------------------------------------------------------
    def _create(self, key: str | None) -> Backend:
        from ..backends.spec import from_spec

        if self.mode.value == "remote":
            return from_spec(self.url.value.strip() or DEFAULT_BASE_URL, api_key=key,
                             model=self.model.value.strip() or DEFAULT_MODEL,
                             guided_spelling=self.spelling.value)
        kw = {"n_gpu_layers": self.n_gpu_layers.value, "n_ctx": self.n_ctx.value}
        src = self.source.value
        if src in ("demo", "tiny-qwen3"):
            return from_spec(src, **kw)
        if src == "path":
            return from_spec(self.path.value.strip(), **kw)
        return from_spec(self.repo.value.strip(), filename=self.filename.value.strip() or None, **kw)

    def _click_connect(self) -> None:
        """Connect: straight away without a backend; with one, ask first (it may be the class server)."""
        if self.backend is None:
            self.connect(wait=False)
            return
        self.confirm_text.value = esc(msg("ui.confirm_switch", self.lang, current=_describe(self.backend),
                                          new=self._form_target()))
        self.confirm.layout.display = ""

    def _confirmed(self, yes: bool) -> None:
        self.confirm.layout.display = "none"
        if yes:
            self.connect(wait=False)

    def _form_target(self) -> str:
        """What the form would connect to, in words."""
        if self.mode.value == "remote":
            return f"{self.url.value.strip() or DEFAULT_BASE_URL} ({self.model.value.strip() or DEFAULT_MODEL})"
        src = self.source.value
        return {"path": self.path.value.strip(), "hf": self.repo.value.strip()}.get(src, src)

    def _fill_form(self, b: Backend | None) -> None:
        """The form shows the backend in use, so Connect without edits reconnects the same one."""
        if b is None:
            return
        if b.remote:
            self.url.value = str(getattr(b, "base_url", "") or DEFAULT_BASE_URL)
            self.model.value = str(getattr(b, "model", "") or DEFAULT_MODEL)
            spelling = getattr(b, "guided_spelling", "guided")
            if spelling in ("guided", "structured_outputs"):
                self.spelling.value = spelling
            return
        source = str(getattr(b, "source", "") or "")
        if source in ("demo", "tiny-qwen3"):
            self.source.value = source
        elif getattr(b, "path", None) is not None:
            self.source.value = "path"
            self.path.value = str(b.path)

    def _explain(self, e: BaseException) -> str:
        from ..errors import ModelNotFoundError

        if isinstance(e, ModelNotFoundError) and self.mode.value == "local":
            typed = {"path": self.path.value, "hf": self.repo.value}.get(self.source.value, self.source.value)
            return msg("models.not_found_named", self.lang, name=typed.strip())
        return explain(e, self.lang)

    def _take_key(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.__key = change["new"].strip() or None
            self.api_key.value = ""  # never left in widget state
            self._key_note(True)

    def _key_note(self, held: bool) -> None:
        self.key_status.value = (
            '<span style="color:#2e7d32;font-size:smaller">🔑 '
            + esc(msg("ui.key_received", self.lang)) + "</span>") if held else ""

    def _on_mode(self, change: dict[str, Any]) -> None:
        remote = change["new"] == "remote"
        self.forms.selected_index = 0 if remote else 1
        self.connect_button.description = msg("ui.connect" if remote else "ui.load", self.lang)

    def _show_info(self) -> None:
        b = self.backend
        self.in_use.value = (f'<b>{esc(msg("ui.in_use", self.lang, backend=_describe(b)))}</b>' if b is not None
                             else f'<i>{esc(msg("ui.in_use_none", self.lang))}</i>')
        if b is None:
            self.info.value = ""
            return
        try:
            info = b.info()
        except Exception as e:  # info is for display only
            info = {"backend": b.name, "info_error": str(e)}
        rows = "".join(f"<tr><td style='padding-right:1em'><b>{esc(str(k))}</b></td>"
                       f"<td><code>{esc(_fmt(v))}</code></td></tr>" for k, v in info.items())
        self.info.value = (f'<div class="gs-table-wrap"><table class="gs-backend-info" style="font-size:smaller">'
                           f'{rows}</table></div>')


def _fmt(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, default=str)
    return str(v)


def _backend_attr(b: Backend | None, name: str, default: int) -> int:
    """What the connected backend was loaded with, so the form and the info table agree."""
    v = getattr(b, name, None) if b is not None and not b.remote else None
    return int(v) if isinstance(v, int) else default


def _is_remote(b: Backend | None) -> bool:
    return b is not None and b.remote


def _describe(b: Backend) -> str:
    """A backend in a few words: 'remote http://host/v1 (model)' or 'local demo (file.gguf)'."""
    if b.remote:
        return f"{b.name} {getattr(b, 'base_url', '')} ({b.model})"
    return f"{b.name} {getattr(b, 'source', '') or ''} ({b.model})".replace("  ", " ")
