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
from ..sweep import NOT_SWEEPABLE
from ._util import COLUMNS, BackgroundRun, Panel, error_html, esc, explain, figure_png, panel_root, t
from ._util import tf as msg_ui
from ._util import msg
from .params_panel import ParamsPanel, parse_number

__all__ = ["SweepBuilder", "parse_values"]

_TRUE = {"true", "1", "yes", "sí", "si", "verdadero", "on"}
_FALSE = {"false", "0", "no", "falso", "off"}
_KIND_ORDER = {"float": 0, "int": 1, "bool": 2, "str": 3}


def parse_values(spec: ParamSpec, text: str) -> list[Any]:
    """The values typed for one parameter ("0, 0.5, 1"), converted by its kind; ParamsError names a bad one.

    Numbers and booleans are comma-separated; a JSON list (``[...]``) works for
    every kind and is the way to give lists or objects (``[["sí", "no"], ["a", "b"]]``).
    """
    s = text.strip()
    if not s:
        raise ParamsError(f"{spec.name}: no values; write them separated by commas", field=spec.name, key="no_values")
    if s.startswith("[") and spec.kind not in ("list[int]", "list[str]", "str|list[str]") or s.startswith("[["):
        try:
            items = json.loads(s)
        except json.JSONDecodeError as e:
            raise ParamsError(f"{spec.name}: invalid JSON list: {e}", field=spec.name, value=text, key="json_invalid",
                              line=e.lineno, col=e.colno) from None
        if not isinstance(items, list):
            raise ParamsError(f"{spec.name}: expected a JSON list of values", field=spec.name, value=text,
                              key="json_list")
        return items
    if spec.kind in ("json", "list[int]", "list[str]"):
        try:
            items = json.loads(s)
        except json.JSONDecodeError as e:
            raise ParamsError(f"{spec.name}: write a JSON list of values, e.g. [[1, 2], [3]]: {e}",
                              field=spec.name, value=text, key="json_list") from None
        if not isinstance(items, list):
            raise ParamsError(f"{spec.name}: expected a JSON list of values", field=spec.name, value=text,
                              key="json_list")
        return items
    out: list[Any] = []
    for raw in (x.strip() for x in s.split(",")):
        if raw == "":
            raise ParamsError(f"{spec.name}: an empty value between commas", field=spec.name, value=text,
                              key="empty_between_commas")
        try:
            if spec.kind == "float":
                out.append(float(raw))
            elif spec.kind == "int":
                f = float(raw)
                if f != int(f):
                    raise ValueError
                out.append(int(f))
            elif spec.kind == "bool":
                low = raw.lower()
                if low not in _TRUE | _FALSE:
                    raise ValueError
                out.append(low in _TRUE)
            else:
                out.append(raw)
        except ValueError:
            raise ParamsError(f"{spec.name}: {raw} is not a valid {spec.kind}", field=spec.name,
                              value=raw, key="type", typed=raw) from None
    return out


def _suggest(spec: ParamSpec) -> str:
    if spec.kind == "bool":
        return "false, true"
    if spec.numeric and spec.ui_min is not None and spec.ui_max is not None:
        lo, hi, step = spec.ui_min, spec.ui_max, spec.step or 1
        mid = round(round((lo + hi) / 2 / step) * step, 6)
        vals = [lo, mid, hi] if spec.kind == "float" else [int(lo), int(mid), int(hi)]
        return ", ".join(f"{v:g}" for v in dict.fromkeys(vals))
    return ""


def _sweepable() -> list[ParamSpec]:
    specs = [s for s in Params.specs() if s.name not in NOT_SWEEPABLE]
    return sorted(specs, key=lambda s: _KIND_ORDER.get(s.kind, 9))  # numeric first, stable otherwise


#: Default token limit of every request of a sweep: a sweep never runs without one.
DEFAULT_MAX_TOKENS = 64
#: Measured throughput (completion tokens per second of wall time) by (backend name, model).
_SPEED: dict[tuple[str, str], float] = {}
_PLOT_KINDS = (("líneas", "lines", "line"), ("cajas", "boxes", "box"), ("violín", "violin", "violin"),
               ("puntos", "points", "strip"), ("mapa de calor", "heatmap", "heatmap"))
_TABLE_COLUMNS = ("backend", "prompt", "repeat", "content", "finish_reason", "completion_tokens", "latency_s",
                  "error_type")
_DT_ES = {"search": "Buscar:", "info": "Filas _START_ a _END_ de _TOTAL_", "infoEmpty": "Sin filas",
          "infoFiltered": "(filtradas de _MAX_)", "lengthMenu": "Mostrar _MENU_ filas",
          "zeroRecords": "Ninguna fila coincide", "emptyTable": "Sin datos", "entries": {"_": "filas", "1": "fila"},
          "paginate": {"first": "«", "last": "»", "next": "›", "previous": "‹"}}


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
        es = lang == "es"
        base = base if base is not None else Params()

        specs = _sweepable()
        self._specs = {s.name: s for s in specs}
        self.vary = W.SelectMultiple(options=[s.name for s in specs], rows=8, description=t("vary", lang),
                                     style={"description_width": "initial"},
                                     layout=W.Layout(width="auto", max_width="100%"),
                                     tooltip="Ctrl/Cmd + clic para elegir varios" if es
                                     else "Ctrl/Cmd + click to choose several")
        self.vary.add_class("gs-sweep-vary")
        self.values_box = W.VBox([], layout=W.Layout(flex="1 1 300px", min_width="0"))
        self.value_inputs: dict[str, W.Text] = {}

        from ..prompts import list_prompt_sets

        sets = list_prompt_sets()
        manual = "(escritos aquí)" if es else "(typed here)"
        self.prompt_set = W.Dropdown(options=[(manual, "")] + [(s, s) for s in sets], value="",
                                     description=t("prompt_file", lang), style={"description_width": "initial"},
                                     layout=W.Layout(width="auto", max_width="100%"))
        if isinstance(prompts, str) and prompts in sets:
            self.prompt_set.value = prompts
            text = ""
        else:
            text = "\n".join([prompts] if isinstance(prompts, str) else list(prompts or []))
        self.prompts = W.Textarea(value=text, rows=4, placeholder=t("prompts", lang),
                                  description="prompts", layout=W.Layout(width="auto"))
        self.prompts.add_class("gs-sweep-prompts")
        self.repeats = W.BoundedIntText(value=int(repeats), min=1, max=10_000, description=t("repeats", lang),
                                        style={"description_width": "initial"}, layout=W.Layout(width="190px"))
        self.max_tokens = W.Text(value=str(base.max_tokens or DEFAULT_MAX_TOKENS), description="max_tokens",
                                 continuous_update=True, tooltip=Params.spec("max_tokens").help(lang),
                                 style={"description_width": "initial"}, layout=W.Layout(width="190px"))
        self.max_tokens.add_class("gs-sweep-max-tokens")
        self.store = W.Text(value=store or "", description=t("store", lang), placeholder="results/mi_sweep.parquet",
                            style={"description_width": "initial"}, layout=W.Layout(width="auto"))
        self.base_panel = ParamsPanel(base.replace(max_tokens=None), lang=lang,
                                      exclude={*NOT_SWEEPABLE, "max_tokens"})
        base_box = W.Accordion([self.base_panel.widget], titles=(t("fixed", lang),), selected_index=None)
        self.count = W.HTML("")
        self.count.add_class("gs-sweep-count")
        self.message = W.HTML("")
        self.message.add_class("gs-sweep-message")
        self.run_button = W.Button(description=t("run", lang), button_style="primary", icon="play")
        self.run_button.add_class("gs-sweep-run")
        self.stop_button = W.Button(description=t("stop", lang), button_style="danger", icon="stop", disabled=True)
        self.stop_button.add_class("gs-sweep-stop")
        self.progress = W.IntProgress(value=0, min=0, max=1, description="0 / 0",
                                      style={"description_width": "initial"}, layout=W.Layout(width="auto"))
        self.progress.add_class("gs-sweep-progress")
        self.status = W.HTML("")
        self.status.add_class("gs-sweep-status")
        self.placeholder = W.HTML(f'<i style="color:#666">{esc(t("no_data", lang))}</i>')
        self.table = _new_table()
        self.table.add_class("gs-sweep-table")
        self.row_detail = W.HTML("")
        self.row_detail.add_class("gs-sweep-row-detail")
        self.table.observe(self._on_select, "selected_rows")
        self.y = W.Dropdown(description=t("metric", lang), options=[], layout=W.Layout(width="auto"),
                        style={"description_width": "initial"})
        self.x = W.Dropdown(description=t("x", lang), options=[], layout=W.Layout(width="auto"),
                        style={"description_width": "initial"})
        self.hue = W.Dropdown(description=t("hue", lang), options=[], layout=W.Layout(width="auto"),
                        style={"description_width": "initial"})
        self.kind = W.Dropdown(description=t("kind", lang),
                               options=[(k[0] if es else k[1], k[2]) for k in _PLOT_KINDS], value="line",
                               layout=W.Layout(width="auto"), style={"description_width": "initial"})
        self.plot_image = W.Image(format="png", layout=W.Layout(max_width="100%", height="auto"))
        self.plot_image.layout.display = "none"  # an Image without data is a broken-image icon
        self.plot_message = W.HTML("")
        wrap = W.Layout(flex_flow="row wrap", width="auto")
        self.results = W.VBox([self.table, self.row_detail, W.HBox([self.y, self.x, self.hue, self.kind], layout=wrap),
                               self.plot_message, self.plot_image], layout=W.Layout(width="auto"))
        self.results.layout.display = "none"  # nothing to show before the first result
        self.widget = panel_root("gs-sweep-builder", [
            W.HBox([self.vary, self.values_box], layout=wrap), self.prompt_set, self.prompts,
            W.HBox([self.repeats, self.max_tokens], layout=wrap), base_box, self.store, self.count, self.message,
            W.HBox([self.run_button, self.stop_button]), self.progress, self.status, self.placeholder,
            self.results], width="auto")

        self.vary.observe(self._on_vary, "value")
        for w in (self.prompts, self.repeats, self.prompt_set, self.max_tokens):
            w.observe(self._update, "value")
        self.base_panel.observe(self._update, "value")
        self.prompt_set.observe(self._on_prompt_set, "value")
        for w in (self.y, self.x, self.hue, self.kind):
            w.observe(self._redraw, "value")
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
        """{parameter: values} as typed (ParamsError when a value cannot be read)."""
        return {name: parse_values(self._specs[name], self.value_inputs[name].value) for name in self.vary.value}

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
        from ..sweep import plan

        prompts = self.prompt_list
        if not prompts:
            raise ParamsError("no prompts: write one per line or choose a prompt file", field="prompts",
                              key="no_prompts")
        if self.base_panel.error:
            raise ParamsError(self.base_panel.error)
        sp = plan(self.backends, prompts, grid=self.grid or None, repeats=int(self.repeats.value), base=self.base)
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
            raise ParamsError(f"{name!r} cannot be varied in a sweep", field=name)
        text = values if isinstance(values, str) else ", ".join(
            json.dumps(v, ensure_ascii=False) if not isinstance(v, (int, float)) else f"{v:g}" for v in values)
        self._texts[name] = text
        if name not in self.vary.value:
            self.vary.value = (*self.vary.value, name)
        self.value_inputs[name].value = text

    # --- running -------------------------------------------------------------------------------
    def run(self, wait: bool = False) -> pd.DataFrame | threading.Thread | None:
        """Run the sweep in a thread (returned), or wait=True to block and return the DataFrame."""
        if self.running:
            raise GSExploreError(msg("already_running", self.lang))
        sp = self.plan()
        grid, prompts, repeats, base = self.grid, self.prompt_list, int(self.repeats.value), self.base
        store = self.store.value.strip() or None
        self._done = 0
        self._run_tokens = 0
        self._run_t0 = time.perf_counter()
        self._planned = len(sp.cells)
        self.progress.max = max(1, len(sp.cells))
        self.progress.value = 0
        self.progress.bar_style = "info"
        self.progress.description = f"0 / {len(sp.cells)}"
        self.status.value = esc(msg_ui("running_sweep", self.lang, done=0, n=len(sp.cells)))
        self.run_button.disabled = True
        self.stop_button.disabled = False
        self.message.value = ""

        def work() -> None:
            from ..sweep import sweep

            said = ""
            try:
                with warnings.catch_warnings(record=True):  # "interrupted" is said in the panel, in its language
                    warnings.simplefilter("always")
                    df = sweep(self.backends, prompts, grid=grid or None, repeats=repeats, base=base, store=store,
                               progress=False, cancel=self._stop, on_result=self._tick)
            except BaseException as e:  # noqa: BLE001 - shown in the panel; run(wait=True) re-raises
                self.last_error = e
                said = error_html(explain(e, self.lang))
                self.progress.bar_style = "danger"
            else:
                interrupted = df.attrs.get("interrupted")
                self.progress.bar_style = "warning" if interrupted else "success"
                elapsed = time.perf_counter() - self._run_t0
                if interrupted:
                    said = error_html(f"{t('stopped', self.lang)}: {len(df)} / {len(sp.cells)}")
                self._measure(df, elapsed)
                if len(df):
                    self._show(df)
                self.value = df
                self.status.value = esc(msg_ui("finished", self.lang, n=len(df), s=elapsed))  # once all is shown
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
        line = msg_ui("running_sweep", self.lang, done=done, n=self.progress.max)
        if done and tokens and elapsed > 0:
            left = (self.progress.max - done) * elapsed / done
            line += f" · {tokens / elapsed:.0f} tokens/s · " + ("faltan" if self.lang == "es" else "left") \
                + f" {_fmt_duration(left, self.lang)}"
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
                w = W.Text(value=self._texts.get(name, _suggest(spec)), description=name, continuous_update=True,
                           tooltip=spec.help(self.lang), placeholder="0, 0.5, 1",
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
        per_text = f"{per[0]:,}" if len(per) == 1 else f"{per[0]:,}–{per[-1]:,}"
        eta = self.estimate_s(sp)
        eta_text = (msg_ui("eta", lang, eta=_fmt_duration(eta, lang), speed=_SPEED[_speed_key(sp.backends[0])])
                    if eta is not None else msg_ui("eta_unknown", lang))
        self.count.value = (
            f'<b style="font-size:larger">{esc(msg_ui("plan", lang, n=n, max_tokens=per_text, total=f"{sp.completion_tokens_max:,}"))}</b>'
            f'<br><span style="color:#555">{esc(msg_ui("plan_detail", lang, settings=len(sp.settings), prompts=len(sp.prompts), backends=len(sp.backends), repeats=int(self.repeats.value)))}'
            f" · {esc(eta_text)}</span>")

    def _click_run(self) -> None:
        try:
            self.run(wait=False)
        except GSExploreError as e:
            self.message.value = error_html(explain(e, self.lang))

    def table_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """The results as the table shows them: Spanish headers, long texts cut (the full text on selecting a row)."""
        from ..metrics import varied_params

        varied = varied_params(df)
        cols = [c for c in dict.fromkeys(("backend", *varied, *_TABLE_COLUMNS)) if c in df.columns]
        if "backend" in cols and df["backend"].nunique() < 2:
            cols.remove("backend")
        view = df[cols].copy()
        for c, n in (("content", 80), ("prompt", 40)):
            if c in view:
                full = view[c].fillna("").astype(str).str.replace("\n", " ", regex=False)
                view[c] = full.where(full.str.len() <= n, full.str.slice(0, n - 1) + "…")
        if "repeat" in view:
            view["repeat"] = pd.to_numeric(view["repeat"], errors="coerce") + 1  # repetition 1..n, as people count
        if "latency_s" in view:
            view["latency_s"] = pd.to_numeric(view["latency_s"], errors="coerce").round(2)
        view = view.astype(object).where(view.notna(), "")
        return view.rename(columns={c: COLUMNS[c][0 if self.lang == "es" else 1] for c in view.columns
                                    if c in COLUMNS})

    def _show(self, df: pd.DataFrame) -> None:
        from ..metrics import MEASURES, METRICS, varied_params

        varied = varied_params(df)
        self._table_df = df.reset_index(drop=True)
        self.table.df = self.table_frame(self._table_df)
        self.row_detail.value = ""
        self.placeholder.layout.display = "none"
        self.results.layout.display = ""
        metrics = {**METRICS, **MEASURES}
        options, seen = [], set()
        for name, m in metrics.items():
            label = m.label(self.lang)
            if label in seen:  # n_tokens is completion_tokens: one entry
                continue
            if name in MEASURES and name not in df.columns:
                continue
            seen.add(label)
            options.append((label, name))
        self.y.options = options
        self.y.value = "distinct_2" if "distinct_2" in dict((v, k) for k, v in options) else options[0][1]
        xs = varied or [c for c in ("backend", "prompt") if c in df.columns]
        self.x.options = xs
        if xs:
            self.x.value = xs[0]
        self.hue.options = [("—", "")] + [(c, c) for c in [*varied, "backend", "prompt"] if c in df.columns]
        self.hue.value = varied[1] if len(varied) > 1 else ""
        self._redraw(df=df)

    def _on_select(self, change: dict[str, Any]) -> None:
        rows = change["new"] or []
        df = getattr(self, "_table_df", None)
        if df is None or not rows:
            self.row_detail.value = ""
            return
        r = df.iloc[int(rows[0])]
        parts = [f"<b>{esc(COLUMNS['prompt'][0 if self.lang == 'es' else 1])}:</b> {esc(str(r.get('prompt', '')))}",
                 f"<b>{esc(COLUMNS['content'][0 if self.lang == 'es' else 1])}:</b>"
                 f"<div style='white-space:pre-wrap;border-left:3px solid #1976d2;padding:4px 8px'>"
                 f"{esc(str(r.get('content', '') or ''))}</div>"]
        self.row_detail.value = "<div>" + "<br>".join(parts) + "</div>"

    def _redraw(self, change: Any = None, df: pd.DataFrame | None = None) -> None:
        df = df if df is not None else self.value
        if df is None or not len(df) or not self.x.value or not self.y.value:
            return
        from matplotlib.figure import Figure

        from ..plots import plot

        fig = Figure(figsize=(6.4, 4.0), layout="constrained")
        ax = fig.add_subplot()
        try:
            plot(df, x=self.x.value, y=self.y.value, hue=self.hue.value or None, kind=self.kind.value,
                 ax=ax, lang=self.lang)
        except Exception as e:  # a plot that cannot be drawn says why, the table stays
            self.plot_message.value = error_html(explain(e, self.lang))
            return
        self.plot_message.value = ""
        self.plot_image.value = figure_png(fig)
        self.plot_image.layout.display = ""


def _new_table() -> W.Widget:
    """The results table: itables' DataTable widget (sortable, searchable), Spanish labels."""
    from itables.widget import ITable

    table = ITable(df=pd.DataFrame({"": []}), classes="display compact nowrap", select={"style": "single"},
                   language=_DT_ES, pageLength=10, lengthMenu=[10, 25, 100],
                   scrollX=True)  # a wide result scrolls inside the table, the panel stays its width
    table.layout.width = "auto"  # the widget's box (DataTables' own `layout` option is something else)
    return table
