"""SweepBuilder: choose what to vary, see how many requests that is, run it, read the table and plot.

The grid is checked with `gsexplore.sweep.plan` as it is edited (every invalid
setting is named before anything runs). Run calls `gsexplore.sweep.sweep` in a
background thread; progress and Stop work through a thin wrapper around each
backend (the wrapper keeps the backend's name and model, so cell ids and
resuming from a store are unchanged).
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Sequence
from typing import Any

import ipywidgets as W
import pandas as pd
import traitlets

from ..backends.base import Backend
from ..errors import GSExploreError, ParamsError
from ..params import Params, ParamSpec
from ..params_text import format_value, parse_int, parse_number, parse_values
from ..sweep import NOT_SWEEPABLE
from ..sweep_spec import SweepSpec
from ._i18n import PanelRefusal, number
from ._util import BackgroundRun, Panel, error_html, esc, explain, msg, panel_root
from .params_panel import ParamsPanel
from .sweep_outcome import outcome, outcome_text
from .sweep_results import SweepResults

__all__ = ["SweepBuilder", "parse_values"]

_KIND_ORDER = {"float": 0, "int": 1, "bool": 2, "str": 3}


def _suggest(spec: ParamSpec, lang: str) -> str:
    if spec.kind == "bool":
        return "false; true"
    if spec.numeric and spec.ui_min is not None and spec.ui_max is not None:
        lo, hi, step = spec.ui_min, spec.ui_max, spec.step or 1
        mid = round(round((lo + hi) / 2 / step) * step, 6)
        vals = [lo, mid, hi] if spec.kind == "float" else [int(lo), int(mid), int(hi)]
        return "; ".join(format_value(v, lang) for v in dict.fromkeys(vals))
    return ""


def _sweepable() -> list[ParamSpec]:
    specs = [s for s in Params.specs() if s.name not in NOT_SWEEPABLE]
    return sorted(specs, key=lambda s: _KIND_ORDER.get(s.kind, 9))  # numeric first, stable otherwise


#: Default token limit of every request of a sweep: a sweep never runs without one.
DEFAULT_MAX_TOKENS = 64
#: Measured throughput (completion tokens per second of wall time) by (backend name, model).
_SPEED: dict[tuple[str, str], float] = {}



def _speed_key(b: Backend) -> tuple[str, str]:
    return (b.name, b.model)


def _fmt_duration(seconds: float, lang: str) -> str:
    if seconds < 60:
        return f"~{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


class SweepBuilder(BackgroundRun, Panel):
    """Build a sweep with widgets and run it; `value` (and `.df`) is the result DataFrame.

    Every request has a token limit (`max_tokens`, 64 unless given or varied); the plan line
    says how many requests, how many tokens at most and how long that takes at the speed
    measured on the backend. Stop cancels the requests in flight (the sweep's cancel event).
    """

    value = traitlets.Instance(pd.DataFrame, allow_none=True)

    def __init__(self, backends: Backend | Sequence[Backend], base: Params | None = None,
                 prompts: str | Sequence[str] | None = None, lang: str = "es", store: str | None = None,
                 grid: dict[str, Any] | None = None, repeats: int = 1) -> None:
        super().__init__(value=None)
        self.backends = [backends] if isinstance(backends, Backend) else list(backends)
        self.lang = lang
        self._init_run()
        self._texts: dict[str, str] = {}
        self._error: str | None = None
        self._done = 0
        self._run_t0 = 0.0
        self._run_tokens = 0
        self._lock = threading.Lock()
        base = base if base is not None else Params()

        specs = _sweepable()
        self._specs = {s.name: s for s in specs}
        self.vary = W.SelectMultiple(options=[s.name for s in specs], rows=8, description=msg("ui.vary", lang),
                                     style={"description_width": "initial"},
                                     layout=W.Layout(width="auto", max_width="100%"),
                                     tooltip=msg("ui.vary_tip", lang))
        self.vary.add_class("gs-sweep-vary")
        self.values_box = W.VBox([], layout=W.Layout(flex="1 1 300px", min_width="0"))
        self.value_inputs: dict[str, W.Text] = {}

        from ..prompts import list_prompt_sets

        sets = list_prompt_sets()
        manual = msg("ui.typed_here", lang)
        self.prompt_set = W.Dropdown(options=[(manual, "")] + [(s, s) for s in sets], value="",
                                     description=msg("ui.prompt_file", lang), style={"description_width": "initial"},
                                     layout=W.Layout(width="auto", max_width="100%"))
        if isinstance(prompts, str) and prompts in sets:
            self.prompt_set.value = prompts
            text = ""
        else:
            text = "\n".join([prompts] if isinstance(prompts, str) else list(prompts or []))
        self.prompts = W.Textarea(value=text, rows=4, placeholder=msg("ui.prompts", lang),
                                  description="prompts", layout=W.Layout(width="auto"))
        self.prompts.add_class("gs-sweep-prompts")
        self.repeats = W.Text(value=str(repeats), description=msg("ui.repeats", lang), continuous_update=True,
                              style={"description_width": "initial"}, layout=W.Layout(width="190px"))
        self.repeats.add_class("gs-sweep-repeats")
        self.max_tokens = W.Text(value=str(base.max_tokens or DEFAULT_MAX_TOKENS), description="max_tokens",
                                 continuous_update=True, tooltip=Params.spec("max_tokens").help(lang),
                                 style={"description_width": "initial"}, layout=W.Layout(width="190px"))
        self.max_tokens.add_class("gs-sweep-max-tokens")
        self.store = W.Text(value=store or "", description=msg("ui.store", lang), placeholder="results/mi_sweep.parquet",
                            style={"description_width": "initial"}, layout=W.Layout(width="auto"))
        self.base_panel = ParamsPanel(base.replace(max_tokens=None), lang=lang,
                                      exclude={*NOT_SWEEPABLE, "max_tokens"})
        base_box = W.Accordion([self.base_panel.widget], titles=(msg("ui.fixed", lang),), selected_index=None)
        self.count = W.HTML("")
        self.count.add_class("gs-sweep-count")
        self.message = W.HTML("")
        self.message.add_class("gs-sweep-message")
        self.run_button = W.Button(description=msg("ui.run", lang), button_style="primary", icon="play")
        self.run_button.add_class("gs-sweep-run")
        self.stop_button = W.Button(description=msg("ui.stop", lang), button_style="danger", icon="stop", disabled=True)
        self.stop_button.add_class("gs-sweep-stop")
        self.progress = W.IntProgress(value=0, min=0, max=1, description="0 / 0",
                                      style={"description_width": "initial"}, layout=W.Layout(width="auto"))
        self.progress.add_class("gs-sweep-progress")
        self.status = W.HTML("")
        self.status.add_class("gs-sweep-status")
        self.view = SweepResults(lang)
        v = self.view
        self.placeholder, self.table, self.row_detail, self.results = v.placeholder, v.table, v.row_detail, v.box
        self.y, self.x, self.hue, self.kind = v.y, v.x, v.hue, v.kind
        self.plot_image, self.plot_message = v.plot_image, v.plot_message
        wrap = W.Layout(flex_flow="row wrap", width="auto")
        self.widget = panel_root("gs-sweep-builder", [
            W.HBox([self.vary, self.values_box], layout=wrap), self.prompt_set, self.prompts,
            W.HBox([self.repeats, self.max_tokens], layout=wrap), base_box, self.store, self.count, self.message,
            W.HBox([self.run_button, self.stop_button]), self.progress, self.status, self.placeholder,
            self.results], width="auto")

        self.vary.observe(self._on_vary, "value")
        for w in (self.prompts, self.repeats, self.prompt_set, self.max_tokens):
            w.observe(self._update, "value")
        self.base_panel.observe(self._update, "value")
        self.base_panel.observe(self._update, "problem")
        self.prompt_set.observe(self._on_prompt_set, "value")
        self.run_button.on_click(lambda _b: self._click_run())
        self.stop_button.on_click(lambda _b: self.stop())
        self._on_prompt_set({"new": self.prompt_set.value})
        for name, values in (grid or {}).items():
            self.set_values(name, values)
        self._update()

    # --- what the widgets say ---------------------------------------------------------------
    @property
    def df(self) -> pd.DataFrame | None:
        """The result of the last run."""
        return self.value

    @property
    def spec(self) -> SweepSpec:
        """The sweep as written (ParamsError naming every field that cannot be read)."""
        if self.base_panel.error:
            raise ParamsError(self.base_panel.error, key="as_shown", text=self.base_panel.error)
        return SweepSpec(prompts=self.prompt_list, grid=self.grid, repeats=self.repeat_count, base=self.base)

    @property
    def repeat_count(self) -> int:
        """The repeats typed (ParamsError for 2.5, 0 or text)."""
        return parse_int(msg("ui.repeats", self.lang), self.repeats.value, minimum=1)

    @property
    def base(self) -> Params:
        """The fixed parameters every request shares, with the token limit."""
        spec = Params.spec("max_tokens")
        try:
            n = parse_number(spec, self.max_tokens.value)
        except ParamsError as e:
            e.key = "needs_max_tokens" if e.key == "empty_value" else e.key
            raise
        return self.base_panel.params.replace(max_tokens=n)

    @property
    def grid(self) -> dict[str, list[Any]]:
        """{parameter: values} as typed (ParamsError naming every box that cannot be read)."""
        out, bad = {}, []
        for name in self.vary.value:
            try:
                out[name] = parse_values(self._specs[name], self.value_inputs[name].value)
            except ParamsError as e:
                bad.append(e)
                self.value_inputs[name].add_class("gs-invalid")
            else:
                self.value_inputs[name].remove_class("gs-invalid")
        if len(bad) == 1:
            raise bad[0]
        if bad:
            text = "\n".join(explain(e, self.lang) for e in bad)
            raise ParamsError("; ".join(str(e) for e in bad), key="as_shown", text=text)
        return out

    @property
    def prompt_list(self) -> str | list[str]:
        """The prompts: a prompt-set name, or the lines typed."""
        if self.prompt_set.value:
            return self.prompt_set.value
        return [ln.strip() for ln in self.prompts.value.splitlines() if ln.strip()]

    @property
    def error(self) -> str | None:
        """Why the sweep as written cannot run (in the panel's language), None when it can."""
        return self._error

    def plan(self) -> Any:
        """The `gsexplore.sweep.SweepPlan` of the sweep as written (ParamsError if invalid)."""
        problems: list[ParamsError] = []
        for check in (lambda: self.prompt_list or _no_prompts(), lambda: self.grid, lambda: self.repeat_count,
                      lambda: self.base, lambda: self.base_panel.error and _as_shown(self.base_panel.error)):
            try:
                check()
            except ParamsError as e:  # every problem at once, not the first one
                problems.append(e)
        if len(problems) == 1:
            raise problems[0]
        if problems:
            text = "\n".join(dict.fromkeys(explain(e, self.lang) for e in problems))
            raise ParamsError("; ".join(str(e) for e in problems), key="as_shown", text=text)
        sp = self.spec.plan(self.backends)
        if any(c.params.max_tokens is None for c in sp.cells):
            raise ParamsError("a sweep needs max_tokens", field="max_tokens", key="needs_max_tokens")
        return sp

    @property
    def request_count(self) -> int:
        """How many requests the sweep as written makes (0 when it is invalid)."""
        try:
            return len(self.plan().cells)
        except GSExploreError:
            return 0

    def estimate_s(self, sp: Any = None) -> float | None:
        """Seconds the sweep as written takes at the measured speed (None before any measurement)."""
        sp = sp if sp is not None else self.plan()
        total = 0.0
        for b in sp.backends:
            speed = _SPEED.get(_speed_key(b))
            if not speed:
                return None
            cells = [c for c in sp.todo if c.backend is b]
            total += sum((c.params.max_tokens or 0) * (c.params.n or 1) for c in cells) / speed
        return total

    def set_values(self, name: str, values: str | Sequence[Any]) -> None:
        """Vary name over values (text as typed, or a list)."""
        if name not in self._specs:
            Params.spec(name)
            raise ParamsError(f"{name!r} cannot be varied in a sweep", field=name, key="not_sweepable")
        text = values if isinstance(values, str) else "; ".join(
            json.dumps(v, ensure_ascii=False) if not isinstance(v, (int, float)) else format_value(v, self.lang)
            for v in values)
        self._texts[name] = text
        if name not in self.vary.value:
            self.vary.value = (*self.vary.value, name)
        self.value_inputs[name].value = text

    # --- running -------------------------------------------------------------------------------
    def run(self, wait: bool = False) -> pd.DataFrame | threading.Thread | None:
        """Run the sweep in a thread (returned), or wait=True to block and return the DataFrame."""
        if self.running:
            raise PanelRefusal("params.already_running")
        sp = self.plan()
        spec = self.spec.replace(on_error="keep") if _sweep_keeps_failures() else self.spec
        store = self.store.value.strip() or None
        self._done = 0
        self._run_tokens = 0
        self._run_t0 = time.perf_counter()
        self._planned = len(sp.cells)
        self.progress.max = max(1, len(sp.cells))
        self.progress.value = 0
        self.progress.bar_style = "info"
        self.progress.description = f"0 / {len(sp.cells)}"
        self.outcome = None
        self.status.value = esc(msg("ui.running_sweep", self.lang, done=0, n=number(len(sp.cells), self.lang)))
        self.run_button.disabled = True
        self.stop_button.disabled = False
        self.message.value = ""

        def work() -> None:
            said = ""
            try:
                with warnings.catch_warnings(record=True):  # "interrupted" is said in the panel, in its language
                    warnings.simplefilter("always")
                    df = spec.run(self.backends, store=store, progress=False, cancel=self._stop,
                                  on_result=self._tick)
            except BaseException as e:  # noqa: BLE001 - shown in the panel; run(wait=True) re-raises
                self.last_error = e
                said = error_html(explain(e, self.lang))
                self.progress.bar_style = "danger"
            else:
                interrupted = df.attrs.get("interrupted")
                elapsed = time.perf_counter() - self._run_t0
                oc = outcome(df)
                self.outcome = oc
                self.progress.bar_style = "danger" if oc["failed"] else "warning" if interrupted else "success"
                if interrupted:
                    said = error_html(msg("sweep.interrupted", self.lang, done=number(len(df), self.lang),
                                          total=number(len(sp.cells), self.lang)))
                self._measure(df, elapsed)
                if len(df):
                    self.view.show(df)
                self.value = df
                line = outcome_text(oc, self.lang, elapsed)  # said last, once everything is shown
                self.status.value = (error_html(line) if oc["failed"] else
                                     f'<span class="gs-sweep-ok" style="color:#2e7d32">✔ {esc(line)}</span>')
            finally:
                self.run_button.disabled = False
                self.stop_button.disabled = True
                self._update()
                self.run_button.disabled = self._error is not None  # this thread is ending: not "running"
                if said:
                    self.message.value = said

        return self._start(work, "gsexplore-sweep-builder", wait)

    def __repr__(self) -> str:
        return (f"SweepBuilder(backends={[b.name for b in self.backends]}, "
                f"grid={self._texts!r}, requests={self.request_count})")

    # --- internals ---------------------------------------------------------------------------------
    def _tick(self, rows: list[dict[str, Any]] | None = None) -> None:
        with self._lock:
            self._done += 1
            done = self._done
            for r in rows or []:
                n = r.get("completion_tokens")
                if isinstance(n, (int, float)) and n == n:
                    self._run_tokens += int(n)
            tokens = self._run_tokens
        self.progress.value = min(done, self.progress.max)
        self.progress.description = f"{done} / {self.progress.max}"
        elapsed = time.perf_counter() - self._run_t0
        lang = self.lang
        line = msg("ui.running_sweep", lang, done=number(done, lang), n=number(self.progress.max, lang))
        if done and tokens and elapsed > 0:
            left = (self.progress.max - done) * elapsed / done
            line += (f" · {number(round(tokens / elapsed), lang)} tokens/s · "
                     + msg("sweep.left", lang, eta=_fmt_duration(left, lang)))
        self.status.value = esc(line)

    def _measure(self, df: pd.DataFrame, elapsed: float) -> None:
        if "completion_tokens" not in df.columns or elapsed <= 0:
            return
        for b in self.backends:
            rows = df if len(self.backends) == 1 else df[df["backend"] == b.name]
            tokens = pd.to_numeric(rows["completion_tokens"], errors="coerce").sum()
            if tokens > 0:
                _SPEED[_speed_key(b)] = float(tokens) / elapsed

    def _on_vary(self, change: dict[str, Any]) -> None:
        rows = []
        for name in change["new"]:
            spec = self._specs[name]
            if name not in self.value_inputs:
                w = W.Text(value=self._texts.get(name, _suggest(spec, self.lang)), description=name,
                           continuous_update=True, tooltip=spec.help(self.lang), placeholder="0,5; 0,7; 1",
                           style={"description_width": "initial"}, layout=W.Layout(width="auto", max_width="480px"))
                w.add_class(f"gs-sweep-values-{name}")
                w.observe(self._on_text(name), "value")
                self.value_inputs[name] = w
            rows.append(self.value_inputs[name])
        self.values_box.children = rows
        self.max_tokens.disabled = "max_tokens" in change["new"]  # the grid's values apply
        self._update()

    def _on_text(self, name: str) -> Any:
        def handler(change: dict[str, Any]) -> None:
            self._texts[name] = change["new"]
            self._update()
        return handler

    def _on_prompt_set(self, change: dict[str, Any]) -> None:
        name = change["new"]
        self.prompts.disabled = bool(name)
        if name:
            from ..prompts import load_prompts

            try:
                self.prompts.value = "\n".join(p.text for p in load_prompts(name))
            except GSExploreError as e:
                self.message.value = error_html(explain(e, self.lang))

    def _update(self, change: Any = None) -> None:
        try:
            sp = self.plan()
        except GSExploreError as e:
            self._error = explain(e, self.lang)
            self.count.value = ""
            # nothing typed yet is not an error: a grey hint, not a red message
            hint = getattr(e, "key", None) == "no_prompts" and not self.prompts.value.strip()
            self.message.value = (f'<i style="color:#666">{esc(self._error)}</i>' if hint
                                  else error_html(self._error))
            self.run_button.disabled = True
            return
        self._error = None
        self.message.value = ""
        self.run_button.disabled = self.running
        n = len(sp.cells)
        lang = self.lang
        per = sorted({c.params.max_tokens for c in sp.cells})
        per_text = number(per[0], lang) if len(per) == 1 else f"{number(per[0], lang)}–{number(per[-1], lang)}"
        eta = self.estimate_s(sp)
        eta_text = (msg("ui.eta", lang, eta=_fmt_duration(eta, lang),
                        speed=number(round(_SPEED[_speed_key(sp.backends[0])]), lang))
                    if eta is not None else msg("ui.eta_unknown", lang))
        plan_line = msg("ui.plan", lang, n=number(n, lang), max_tokens=per_text,
                        total=number(sp.completion_tokens_max, lang))
        detail = msg("ui.plan_detail", lang, settings=number(len(sp.settings), lang),
                     prompts=number(len(sp.prompts), lang), backends=len(sp.backends),
                     repeats=number(self.repeat_count, lang))
        self.count.value = (f'<b style="font-size:larger">{esc(plan_line)}</b>'
                            f'<br><span style="color:#555">{esc(detail)} · {esc(eta_text)}</span>')

    def _click_run(self) -> None:
        try:
            self.run(wait=False)
        except GSExploreError as e:
            self.message.value = error_html(explain(e, self.lang))

    def table_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """The results as the table shows them (see `sweep_results.table_frame`)."""
        from .sweep_results import table_frame

        return table_frame(df, self.lang)


def _no_prompts() -> None:
    raise ParamsError("no prompts: write one per line or choose a prompt file", field="prompts", key="no_prompts")


def _as_shown(text: str) -> None:
    raise ParamsError(text, key="as_shown", text=text)


def _sweep_keeps_failures() -> bool:
    """Whether gs.sweep takes on_error="keep" (return the rows even when every request failed)."""
    import inspect

    from ..sweep import sweep

    return "keep" in str(inspect.signature(sweep).parameters["on_error"].annotation)
