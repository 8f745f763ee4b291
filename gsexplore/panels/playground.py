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
from ._util import COLUMNS, BackgroundRun, Panel, error_html, esc, explain, msg, panel_root, t
from .backend_panel import BackendPanel
from .guided_panel import GuidedPanel, check_text
from .params_panel import ParamsPanel

__all__ = ["Playground"]

_PUSH_EVERY_S = 0.08  # how often streamed text is sent to the browser
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
        self._turns: Messages = []       # finished user/assistant turns
        self._rows: list[dict[str, Any]] = []
        self._init_run()
        self._sent: Messages = []
        self._run_params: Params | None = None

        self.backend_panel = BackendPanel(backend, lang=lang)
        self.params_panel = ParamsPanel(
            Params(**{k: v for k, v in params.set_fields().items() if k not in _GUIDED}),
            groups=[g for g in GROUPS if g != "guided"], lang=lang, exclude=("stream",))
        self.guided_panel = GuidedPanel(params, lang=lang)

        self.system = W.Textarea(value=system, rows=2, placeholder=t("system", lang) + "…",
                                 description=t("system", lang), layout=W.Layout(width="auto"))
        self.system.add_class("gs-system")
        self.chat = W.HTML("")
        self.chat.add_class("gs-chat")
        self.user = W.Textarea(value=user, rows=3, continuous_update=True, description=t("user", lang),
                               placeholder=("Escribí tu mensaje (vacío: repetir la última respuesta)" if lang == "es"
                                            else "Type your message (empty: generate the last answer again)"),
                               layout=W.Layout(width="auto"))
        self.user.add_class("gs-user")
        self.run_button = W.Button(description=t("run", lang), button_style="primary", icon="play")
        self.run_button.add_class("gs-run")
        self.stop_button = W.Button(description=t("stop", lang), button_style="danger", icon="stop", disabled=True)
        self.stop_button.add_class("gs-stop")
        self.clear_button = W.Button(description=t("clear", lang), icon="trash",
                                      layout=W.Layout(width="auto", flex="0 0 auto"))
        self.clear_button.add_class("gs-clear")
        self.reasoning = W.HTML("")
        self.reasoning.add_class("gs-reasoning")
        self.reasoning_box = W.Accordion([self.reasoning], titles=(t("reasoning", lang),), selected_index=None,
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
        self.history_table = W.HTML("")
        self.history_table.add_class("gs-history-tab")
        self.tabs = W.Tab([self.params_panel.widget, self.guided_panel.widget, code_tabs, self.history_table],
                          titles=(t("params", lang), t("guided_tab", lang), t("code", lang),
                                  t("history", lang)),
                          selected_index=0, layout=W.Layout(width="auto"))
        backend_box = W.Accordion([self.backend_panel.widget], titles=(t("backend", lang),),
                                  selected_index=None if backend is not None else 0, layout=W.Layout(width="auto"))
        self.backend_title = backend_box
        chat_col = W.VBox([backend_box, self.system, self.chat, self.user,
                           W.HBox([self.run_button, self.stop_button, self.clear_button],
                                  layout=W.Layout(flex_flow="row wrap")),
                           self.message, self.reasoning_box,
                           W.HTML(f"<b>{esc(t('answer', lang))}</b>"), self.stale, self.answer, self.stats],
                          layout=W.Layout(flex="1 1 380px", min_width="300px", padding="0 8px 0 0"))
        side = W.VBox([self.tabs], layout=W.Layout(flex="1 1 380px", min_width="300px"))
        self.widget = panel_root("gs-playground", [chat_col, side], box=W.HBox, flex_flow="row wrap", width="100%")

        self.run_button.on_click(lambda _b: self._click_run())
        self.stop_button.on_click(lambda _b: self.stop())
        self.clear_button.on_click(lambda _b: self.clear())
        self.params_panel.observe(self._refresh_code, names="value")
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
        msgs: Messages = []
        if self.system.value.strip():
            msgs.append({"role": "system", "content": self.system.value})
        text = self.user.value
        if text.strip():
            return msgs + self._turns + [{"role": "user", "content": text}]
        turns = self._turns[:-1] if self._turns and self._turns[-1]["role"] == "assistant" else self._turns
        return msgs + turns

    @property
    def history(self) -> pd.DataFrame:
        """One row per run: Completion.to_row() plus run number and whether it was stopped."""
        return pd.DataFrame(self._rows)

    def request_body(self) -> dict[str, Any]:
        """The JSON body the next Run corresponds to (no key, none is ever here)."""
        base_url, model, spelling = self._target()
        return codegen.request_body(self.params, self.messages() or [{"role": "user", "content": ""}],
                                    model, spelling)

    # --- actions --------------------------------------------------------------------------
    def run(self, wait: bool = False) -> Completion | threading.Thread | None:
        """Generate the answer: in a thread (returned), or wait=True to block and return the Completion."""
        if self.running:
            raise GSExploreError(msg("already_running", self.lang))
        backend = self.backend
        if backend is None:
            raise GSExploreError(t("no_backend", self.lang))
        if self.error:
            raise ParamsError(self.error)
        params = self.params
        messages = self.messages()
        if not messages or messages[-1]["role"] != "user":
            raise GSExploreError(msg("no_message", self.lang))
        new_turn = bool(self.user.value.strip())
        self._sent = messages
        self._run_params = params
        self._render_chat(messages)
        self.answer.value = ""
        self.stale.value = ""
        self.reasoning.value = ""
        self.reasoning_box.set_title(0, t("reasoning", self.lang))
        self.message.value = ""
        self.stats.value = f"<i>{esc(t('running', self.lang))}</i>"
        self.run_button.disabled = True
        self.stop_button.disabled = False
        return self._start(lambda: self._work(backend, messages, params, new_turn), "gsexplore-playground", wait)

    def clear(self) -> None:
        """Start a new conversation (the system message stays)."""
        if self.running:
            self.stop()
            self.wait(10)
        self._turns = []
        self.answer.value = self.reasoning.value = self.stats.value = ""
        self._render_chat([])
        self._refresh_code()

    def __repr__(self) -> str:
        return (f"Playground(backend={self.backend!r}, params={self.params!r}, "
                f"turns={len(self._turns) // 2}, runs={len(self._rows)})")

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
        self.reasoning_box.set_title(0, t("reasoning", self.lang)
                                     + (f" ({n_reason} token{'s' if n_reason != 1 else ''})" if n_reason else "")
                                     + ("" if c.reasoning_content else " — " + ("vacío" if self.lang == "es" else "empty")))
        valid = None
        why = ""
        asked = c.params if c.params.guided_kind is not None else self._run_params
        if asked is not None and asked.guided_kind is not None:
            try:
                valid, why = check_text(c, asked)
            except Exception as e:  # noqa: BLE001 - the answer matters more than its check
                why = str(e)
        self.stats.value = self._stats_html(c, stopped, valid, why)
        row = {"run": len(self._rows) + 1, **c.to_row(), "stopped": stopped, "guided_valid": valid}
        self._rows.append(row)
        if not stopped:
            # the answer joins the conversation; a regeneration replaces the last one
            self._turns = [m for m in messages if m["role"] != "system"] + [
                {"role": "assistant", "content": c.content or ""}]
            if new_turn:
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
        es = self.lang == "es"
        parts = [f"finish_reason: <b>{esc(str(c.finish_reason))}</b>"
                 + (f" ({esc(t('stopped', self.lang))})" if stopped else "")]
        if u.prompt_tokens is not None or u.completion_tokens is not None:
            parts.append(f"tokens: {u.prompt_tokens} prompt + {u.completion_tokens} "
                         + ("respuesta" if es else "completion")
                         + (f" ({u.reasoning_tokens} " + ("de razonamiento" if es else "reasoning") + ")"
                            if u.reasoning_tokens else ""))
        if c.latency_s is not None:
            parts.append(("latencia" if es else "latency") + f": {c.latency_s:.2f} s")
        if c.ttft_s is not None:
            parts.append(f"TTFT: {c.ttft_s:.2f} s")
        if c.tokens_per_s:
            parts.append(f"{c.tokens_per_s:.1f} tok/s")
        if valid is not None:
            parts.append(('<span style="color:#2e7d32">✔ ' + t("valid", self.lang) + "</span>") if valid else
                         ('<span style="color:#c62828">✘ ' + t("not_valid", self.lang)
                          + (f": {esc(why)}" if why else "") + "</span>"))
        return '<div class="gs-stats-line" style="color:#555;font-size:smaller">' + " · ".join(parts) + "</div>"

    def _render_chat(self, messages: Messages) -> None:
        shown = [m for m in messages if m["role"] != "system"]
        if not shown:
            self.chat.value = ""
            return
        rows = []
        for m in shown:
            who = t("user" if m["role"] == "user" else "assistant", self.lang)
            color = "#eef3fb" if m["role"] == "user" else "#f5f5f5"
            rows.append(f'<div style="background:{color};padding:4px 8px;margin:2px 0;border-radius:4px;'
                        f'white-space:pre-wrap"><b>{esc(who)}:</b> {esc(str(m.get("content") or ""))}</div>')
        self.chat.value = "".join(rows)

    def _render_history(self) -> None:
        df = self.history
        cols = [c for c in ("run", "finish_reason", "completion_tokens", "latency_s", "temperature", "top_p",
                            "top_k", "max_tokens", "content") if c in df.columns]
        view = df[cols].tail(20).copy()
        if "content" in view:
            view["content"] = view["content"].fillna("").str.slice(0, 80)
        es = self.lang == "es"
        view = view.rename(columns={c: COLUMNS[c][0 if es else 1] for c in view.columns if c in COLUMNS})
        # fixed layout, text wrapped inside its cell: the table is as wide as the tab, never wider
        self.history_table.value = ('<div class="gs-table-wrap">'
                                    + view.to_html(index=False, float_format=lambda x: f"{x:.3g}", na_rep="",
                                                   classes="gs-history", border=0) + "</div>")

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
        copy = t("copy", self.lang)
        for name, text in code.items():
            self.code[name].value = (
                '<div style="position:relative">'
                '<button title="copy" style="position:absolute;right:4px;top:4px" '
                "onclick=\"navigator.clipboard.writeText(this.parentElement.querySelector('pre').innerText)\">"
                f"📋 {esc(copy)}</button>"
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

    def _click_run(self) -> None:
        try:
            self.run(wait=False)
        except GSExploreError as e:
            self.message.value = error_html(explain(e, self.lang))
            if self.answer.value:  # the answer shown is not what these parameters would give
                self.stale.value = (f'<div class="gs-stale-note" style="color:#8a5a00;font-size:smaller">'
                                    f'{esc(t("stale", self.lang))}</div>')
