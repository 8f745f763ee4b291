"""Playground: chat with a backend, change parameters, watch the answer stream in.

Generation runs in a background thread that streams deltas into HTML widgets
(ipywidgets sends value updates from any thread), so the kernel stays free: Stop
is an ordinary button click that sets an event the thread checks at every delta.

Run with text in the message box starts a new turn; Run with the box empty
generates the last answer again (with the parameters as they are now).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import ipywidgets as W
import pandas as pd
import traitlets

from ..backends.base import Backend
from ..completion import Completion, Messages
from ..errors import GSExploreError, ParamsError
from ..params import GROUPS, Params
from . import codegen
from ._i18n import PanelRefusal
from ._util import BackgroundRun, Panel, column, error_html, esc, explain, msg, panel_root
from ._i18n import number
from .chat_session import ChatSession
from .backend_panel import BackendPanel
from .guided_panel import GuidedPanel, check_text
from .params_panel import ParamsPanel

__all__ = ["Playground"]

_PUSH_EVERY_S = 0.08  # how often streamed text is sent to the browser
#: The answer's token limit unless the caller gives one: a class never waits minutes for a rambling answer.
DEFAULT_MAX_TOKENS = 256
#: Guided fields are edited in the GuidedPanel, stream is always on here.
_GUIDED = tuple(s.name for s in Params.specs() if s.group == "guided")


class Playground(BackgroundRun, Panel):
    """System and user messages, multi-turn chat, parameters, streaming answer, reasoning, code.

    `value` is the last Completion (observers fire after every run, from the
    generation thread); `.history` has one row per run.

    >>> pg = Playground(LocalBackend.tiny(), Params(max_tokens=16))  # doctest: +SKIP
    >>> pg.user.value = "Hola"; pg.run(wait=True).content             # doctest: +SKIP
    """

    value = traitlets.Instance(Completion, allow_none=True)

    def __init__(self, backend: Backend | None = None, params: Params | None = None, lang: str = "es",
                 system: str = "", user: str = "") -> None:
        super().__init__(value=None)
        self.lang = lang
        params = params if params is not None else Params()
        if params.max_tokens is None:
            params = params.replace(max_tokens=DEFAULT_MAX_TOKENS)  # visible in the panel; untick it for none
        #: the conversation this panel shows (the model; the widgets are its view)
        self.session = ChatSession(system=system)
        self._init_run()
        self._sent: Messages = []
        self._refused = False  # whether the message under Run is a refusal of the parameters
        self._run_params: Params | None = None

        self.backend_panel = BackendPanel(backend, lang=lang)
        self.params_panel = ParamsPanel(
            Params(**{k: v for k, v in params.set_fields().items() if k not in _GUIDED}),
            groups=[g for g in GROUPS if g != "guided"], lang=lang, exclude=("stream",))
        self.guided_panel = GuidedPanel(params, lang=lang)

        self.system = W.Textarea(value=system, rows=2, placeholder=msg("ui.system", lang) + "…",
                                 description=msg("ui.system", lang), layout=W.Layout(width="auto"))
        self.system.add_class("gs-system")
        self.chat = W.HTML("")
        self.chat.add_class("gs-chat")
        self.user = W.Textarea(value=user, rows=3, continuous_update=True, description=msg("ui.user", lang),
                               placeholder=msg("ui.user_placeholder", lang),
                               layout=W.Layout(width="auto"))
        self.user.add_class("gs-user")
        self.run_button = W.Button(description=msg("ui.run", lang), button_style="primary", icon="play")
        self.run_button.add_class("gs-run")
        self.stop_button = W.Button(description=msg("ui.stop", lang), button_style="danger", icon="stop", disabled=True)
        self.stop_button.add_class("gs-stop")
        self.clear_button = W.Button(description=msg("ui.clear", lang), icon="trash",
                                      layout=W.Layout(width="auto", flex="0 0 auto"))
        self.clear_button.add_class("gs-clear")
        self.reasoning = W.HTML("")
        self.reasoning.add_class("gs-reasoning")
        self.reasoning_box = W.Accordion([self.reasoning], titles=(msg("ui.reasoning", lang),), selected_index=None,
                                         layout=W.Layout(width="auto"))
        self.answer = W.HTML("")
        self.answer.add_class("gs-answer")
        self.stale = W.HTML("")
        self.stale.add_class("gs-stale")
        self.stats = W.HTML("")
        self.stats.add_class("gs-stats")
        self.message = W.HTML("")
        self.message.add_class("gs-message")

        self.code = {name: W.HTML("") for name in ("cURL", "Python", "JavaScript")}
        for name, w in self.code.items():
            w.add_class(f"gs-code-{name.lower()}")
        code_tabs = W.Tab(list(self.code.values()), titles=tuple(self.code))
        code_tabs.add_class("gs-code")
        self.history_table = _history_table(lang)
        self.history_table.add_class("gs-history-tab")
        self.tabs = W.Tab([self.params_panel.widget, self.guided_panel.widget, code_tabs, self.history_table],
                          titles=(msg("ui.params", lang), msg("ui.guided_tab", lang), msg("ui.code", lang),
                                  msg("ui.history", lang)),
                          selected_index=0, layout=W.Layout(width="auto"))
        backend_box = W.Accordion([self.backend_panel.widget], titles=(msg("ui.backend", lang),),
                                  selected_index=None if backend is not None else 0, layout=W.Layout(width="auto"))
        self.backend_title = backend_box
        self.answer_box = W.VBox([self.message, self.reasoning_box, W.HTML(f"<b>{esc(msg('ui.answer', lang))}</b>"),
                                  self.stale, self.answer, self.stats], layout=W.Layout(width="auto"))
        self.answer_box.add_class("gs-answer-box")
        chat_col = W.VBox([backend_box, self.system, self.chat, self.user,
                           W.HBox([self.run_button, self.stop_button, self.clear_button],
                                  layout=W.Layout(flex_flow="row wrap")),
                           self.answer_box],
                          layout=W.Layout(flex="1 1 380px", min_width="300px", padding="0 8px 0 0"))
        chat_col.add_class("gs-chat-col")
        # the controls scroll inside their column: the answer beside them stays on screen (1280x800)
        side = W.VBox([self.tabs], layout=W.Layout(flex="1 1 380px", min_width="300px", max_height="600px",
                                                   overflow_y="auto"))
        side.add_class("gs-controls-col")
        self.widget = panel_root("gs-playground", [chat_col, side], box=W.HBox, flex_flow="row wrap", width="100%")

        self.run_button.on_click(lambda _b: self._click_run())
        self.stop_button.on_click(lambda _b: self.stop())
        self.clear_button.on_click(lambda _b: self.clear())
        self.params_panel.observe(self._refresh_code, names="value")
        self.params_panel.observe(self._refresh_refusal, names="problem")
        self.guided_panel.observe(self._refresh_refusal, names="value")
        self.system.observe(lambda c: setattr(self.session, "system", c["new"]), names="value")
        self.guided_panel.observe(self._refresh_code, names="value")
        self.backend_panel.observe(self._on_backend, names="backend")
        for w in (self.system, self.user):
            w.observe(self._refresh_code, names="value")
        self._render_chat(self.messages()[:-1] if self.user.value.strip() else self.messages())
        self._refresh_code()
        self._on_backend({"new": self.backend})

    # --- state --------------------------------------------------------------------------
    @property
    def backend(self) -> Backend | None:
        """The backend runs go to (set it, or connect one in the Backend section)."""
        return self.backend_panel.backend

    @backend.setter
    def backend(self, b: Backend | None) -> None:
        self.backend_panel.backend = b

    @property
    def params(self) -> Params:
        """The parameters of the next run: the Parameters tab merged with the guided constraint."""
        return self.params_panel.params.replace(**self.guided_panel.params_update())

    @params.setter
    def params(self, p: Params) -> None:
        self.params_panel.set(Params(**{k: v for k, v in p.set_fields().items() if k not in _GUIDED}))
        self.guided_panel.set(p)

    @property
    def error(self) -> str | None:
        """The validation message of the parameters being edited, None when they are valid."""
        return self.params_panel.error or self.guided_panel.error

    def messages(self) -> Messages:
        """What the next Run sends: system, the finished turns, and the message box (or a regeneration)."""
        return self.session.messages(self.user.value)

    @property
    def history(self) -> pd.DataFrame:
        """One row per run: completion_row(c) plus run number and whether it was stopped."""
        return self.session.history

    def request_body(self) -> dict[str, Any]:
        """The JSON body the next Run corresponds to (no key, none is ever here)."""
        base_url, model, spelling = self._target()
        return codegen.request_body(self.params, self.messages() or [{"role": "user", "content": ""}],
                                    model, spelling)

    # --- actions --------------------------------------------------------------------------
    def run(self, wait: bool = False) -> Completion | threading.Thread | None:
        """Generate the answer: in a thread (returned), or wait=True to block and return the Completion."""
        if self.running:
            raise PanelRefusal("params.already_running")
        backend = self.backend
        if backend is None:
            raise PanelRefusal("ui.no_backend")
        if self.error:
            raise ParamsError(self.error, key="as_shown", text=self.error)
        params = self.params
        messages = self.messages()
        if not messages or messages[-1]["role"] != "user":
            raise PanelRefusal("params.no_message")
        new_turn = bool(self.user.value.strip())
        self._sent = messages
        self._run_params = params
        self._render_chat(messages)
        self.answer.value = ""
        self.stale.value = ""
        self.reasoning.value = ""
        self.reasoning_box.set_title(0, msg("ui.reasoning", self.lang))
        self.message.value = ""
        self.stats.value = f"<i>{esc(msg('ui.running', self.lang))}</i>"
        self.run_button.disabled = True
        self.stop_button.disabled = False
        return self._start(lambda: self._work(backend, messages, params, new_turn), "gsexplore-playground", wait)

    def clear(self) -> None:
        """Start a new conversation (the system message stays)."""
        if self.running:
            self.stop()
            self.wait(10)
        self.session.clear()
        self.answer.value = self.reasoning.value = self.stats.value = ""
        self._render_chat([])
        self._refresh_code()

    def __repr__(self) -> str:
        return (f"Playground(backend={self.backend!r}, params={self.params!r}, "
                f"turns={len(self.session.turns) // 2}, runs={len(self.session.rows)})")

    # --- the worker thread ---------------------------------------------------------------
    def _work(self, backend: Backend, messages: Messages, params: Params, new_turn: bool) -> None:
        reasoning: list[str] = []
        content: list[str] = []
        completion: Completion | None = None
        t0 = time.perf_counter()
        last = 0.0
        stream = None
        try:
            stream = backend.stream(messages, params)
            for d in stream:
                if self._stop.is_set():
                    break
                if d.kind == "done":
                    completion = d.completion
                elif d.index == 0 and d.kind == "reasoning":
                    reasoning.append(d.text)
                elif d.index == 0 and d.kind == "content":
                    content.append(d.text)
                now = time.perf_counter()
                if now - last > _PUSH_EVERY_S:
                    last = now
                    self._show_text("".join(reasoning), "".join(content), streaming=True)
        except Exception as e:  # shown in the panel; run(wait=True) re-raises it
            self.last_error = e
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                try:
                    close()  # stops the backend's generation when we stopped early
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass
        stopped = completion is None and self.last_error is None
        if stopped:
            completion = Completion(content="".join(content), reasoning_content="".join(reasoning) or None,
                                    finish_reason="abort", latency_s=time.perf_counter() - t0,
                                    backend=backend.name, model=backend.model,
                                    params=params, messages=messages)
        try:
            if completion is not None:
                self._finish(completion, messages, new_turn, stopped)
            else:
                self._show_text("".join(reasoning), "".join(content), streaming=False)
                self.stats.value = ""
                self.message.value = error_html(explain(self.last_error, self.lang))
        finally:
            self.run_button.disabled = False
            self.stop_button.disabled = True

    def _finish(self, c: Completion, messages: Messages, new_turn: bool, stopped: bool) -> None:
        self._show_text(c.reasoning_content or "", c.content or "", streaming=False)
        n_reason = c.usage.reasoning_tokens
        self.reasoning_box.set_title(0, msg("ui.reasoning", self.lang)
                                     + (msg("ui.reasoning_tokens", self.lang, n=n_reason) if n_reason else "")
                                     + ("" if c.reasoning_content else " — " + msg("ui.empty_reasoning", self.lang)))
        valid = None
        why = ""
        asked = c.params if c.params.guided_kind is not None else self._run_params
        if asked is not None and asked.guided_kind is not None:
            try:
                valid, why = check_text(c, asked)
            except Exception as e:  # noqa: BLE001 - the answer matters more than its check
                why = explain(e, self.lang)
        self.stats.value = self._stats_html(c, stopped, valid, why)
        self.session.record(c, messages, stopped, valid)
        if not stopped and new_turn:
            self.user.value = ""
        self._render_history()
        self._refresh_code()
        self.value = c

    # --- rendering ---------------------------------------------------------------------------
    def _show_text(self, reasoning: str, content: str, streaming: bool) -> None:
        cursor = "▌" if streaming else ""
        self.reasoning.value = (f'<pre style="white-space:pre-wrap;color:#555;margin:0">{esc(reasoning)}</pre>'
                                if reasoning else "")
        self.answer.value = (f'<div class="gs-answer-text" style="white-space:pre-wrap;border-left:3px solid #1976d2;'
                             f'padding:4px 8px;background:#f7f9fc">{esc(content)}{cursor}</div>'
                             if content or streaming else "")

    def _stats_html(self, c: Completion, stopped: bool, valid: bool | None, why: str) -> str:
        u = c.usage
        lang = self.lang
        parts = [f"finish_reason: <b>{esc(str(c.finish_reason))}</b>"
                 + (f" ({esc(msg('ui.stopped', lang))})" if stopped else "")]
        if u.prompt_tokens is not None or u.completion_tokens is not None:
            parts.append(esc(msg("ui.tokens_line", lang, prompt=u.prompt_tokens, completion=u.completion_tokens)
                             + (msg("ui.tokens_reasoning", lang, n=u.reasoning_tokens) if u.reasoning_tokens else "")))
        if c.latency_s is not None:
            parts.append(esc(msg("ui.latency", lang, s=number(round(c.latency_s, 2), lang, digits=2))))
        if c.ttft_s is not None:
            parts.append(f"TTFT: {number(round(c.ttft_s, 2), lang, digits=2)} s")
        if c.tokens_per_s:
            parts.append(f"{number(round(c.tokens_per_s, 1), lang, digits=1)} tok/s")
        if valid is not None:
            parts.append(('<span style="color:#2e7d32">✔ ' + esc(msg("ui.valid", lang)) + "</span>") if valid else
                         # the checker's reason is English (xgrammar's words): a tooltip, not the text
                         (f'<span style="color:#c62828" title="{esc(why)}">✘ ' + esc(msg("ui.not_valid", lang))
                          + "</span>"))
        return '<div class="gs-stats-line" style="color:#555;font-size:smaller">' + " · ".join(parts) + "</div>"

    def _render_chat(self, messages: Messages) -> None:
        shown = [m for m in messages if m["role"] != "system"]
        if not shown:
            self.chat.value = ""
            return
        rows = []
        for m in shown:
            who = msg("ui.user" if m["role"] == "user" else "ui.assistant", self.lang)
            color = "#eef3fb" if m["role"] == "user" else "#f5f5f5"
            rows.append(f'<div style="background:{color};padding:4px 8px;margin:2px 0;border-radius:4px;'
                        f'white-space:pre-wrap"><b>{esc(who)}:</b> {esc(str(m.get("content") or ""))}</div>')
        self.chat.value = "".join(rows)

    def _render_history(self) -> None:
        df = self.history
        cols = [c for c in ("run", "finish_reason", "completion_tokens", "latency_s", "temperature", "top_p",
                            "top_k", "max_tokens", "content") if c in df.columns]
        view = df[cols].tail(50).copy()
        if "content" in view:
            view["content"] = _truncate(view["content"], 60)
        if "latency_s" in view:
            view["latency_s"] = pd.to_numeric(view["latency_s"], errors="coerce").round(2)
        view = view.astype(object).where(view.notna(), "")
        self.history_table.df = view.rename(columns={c: column(c, self.lang) for c in view.columns})

    def _target(self) -> tuple[str | None, str | None, str]:
        b = self.backend
        from ..backends.remote import RemoteBackend

        if isinstance(b, RemoteBackend):
            return b.base_url, b.model, b.guided_spelling
        return None, None, "guided"

    def _refresh_code(self, change: Any = None) -> None:
        if self.error:
            return  # keep showing the last valid request
        base_url, model, spelling = self._target()
        msgs = self.messages() or [{"role": "user", "content": ""}]
        try:
            code = codegen.snippets(base_url, self.params, msgs, model, spelling)
        except GSExploreError as e:
            self.message.value = error_html(explain(e, self.lang))
            return
        copy = msg("ui.copy", self.lang)
        for name, text in code.items():
            # the button sits on its own line above the code: it never covers the URL
            self.code[name].value = (
                '<div><div style="text-align:right">'
                f'<button title="{esc(copy)}" '
                "onclick=\"navigator.clipboard.writeText(this.parentElement.parentElement.querySelector('pre').innerText)\">"
                f"📋 {esc(copy)}</button></div>"
                f'<pre style="white-space:pre-wrap;font-size:12px;background:#f7f7f7;padding:8px;'
                f'user-select:all">{esc(text)}</pre></div>')

    def _on_backend(self, change: dict[str, Any]) -> None:
        b = self.backend
        if b is not None and not b.remote:
            try:
                info = b.info()
                self.params_panel.set_limits(vocab_size=info.get("vocab_size"), n_ctx=info.get("n_ctx"))
            except Exception:  # noqa: BLE001 - limits only feed warnings
                pass
        self._refresh_code()

    def _refresh_refusal(self, change: Any = None) -> None:
        """A refusal on screen is recomputed on every edit: it says what is wrong now, or goes."""
        if not self._refused:
            return
        self.message.value = error_html(self.error) if self.error else ""
        self._refused = bool(self.error)

    def _click_run(self) -> None:
        self._refused = False
        try:
            self.run(wait=False)
        except GSExploreError as e:
            self._refused = isinstance(e, ParamsError)
            self.message.value = error_html(explain(e, self.lang))
            if self.answer.value:  # the answer shown is not what these parameters would give
                self.stale.value = (f'<div class="gs-stale-note" style="color:#8a5a00;font-size:smaller">'
                                    f'{esc(msg("ui.stale", self.lang))}</div>')


def _truncate(texts: pd.Series, n: int) -> pd.Series:
    """Texts on one line, cut at ``n`` characters with an ellipsis (the full text is in `.history`)."""
    one = texts.fillna("").astype(str).str.replace("\n", " ", regex=False)
    return one.where(one.str.len() <= n, one.str.slice(0, n - 1) + "…")


def _history_table(lang: str) -> W.Widget:
    """The Historial tab: itables' DataTable (sortable, its columns as wide as their text allows)."""
    from itables.widget import ITable

    from ._table import datatables_language

    table = ITable(df=pd.DataFrame({"": []}), classes="display compact", language=datatables_language(lang),
                   pageLength=10, lengthMenu=[10, 25, 50], scrollX=True, autoWidth=False)
    table.layout.width = "auto"
    return table
