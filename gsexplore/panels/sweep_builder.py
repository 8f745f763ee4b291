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
from collections.abc import Sequence
from typing import Any

import ipywidgets as W
import pandas as pd
import traitlets

from ..backends.base import Backend
from ..errors import GSExploreError, ParamsError
from ..params import Params, ParamSpec
from ..sweep import NOT_SWEEPABLE
from ._util import BackgroundRun, Panel, error_html, figure_png, t
from .params_panel import ParamsPanel

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
        raise ParamsError(f"{spec.name}: no values; write them separated by commas", field=spec.name)
    if s.startswith("[") and spec.kind not in ("list[int]", "list[str]", "str|list[str]") or s.startswith("[["):
        try:
            items = json.loads(s)
        except json.JSONDecodeError as e:
            raise ParamsError(f"{spec.name}: invalid JSON list: {e}", field=spec.name, value=text) from None
        if not isinstance(items, list):
            raise ParamsError(f"{spec.name}: expected a JSON list of values", field=spec.name, value=text)
        return items
    if spec.kind in ("json", "list[int]", "list[str]"):
        try:
            items = json.loads(s)
        except json.JSONDecodeError as e:
            raise ParamsError(f"{spec.name}: write a JSON list of values, e.g. [[1, 2], [3]]: {e}",
                              field=spec.name, value=text) from None
        if not isinstance(items, list):
            raise ParamsError(f"{spec.name}: expected a JSON list of values", field=spec.name, value=text)
        return items
    out: list[Any] = []
    for raw in (x.strip() for x in s.split(",")):
        if raw == "":
            raise ParamsError(f"{spec.name}: an empty value between commas", field=spec.name, value=text)
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
            raise ParamsError(f"{spec.name}: {raw!r} is not a valid {spec.kind}", field=spec.name,
                              value=raw) from None
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


class SweepBuilder(BackgroundRun, Panel):
    """Build a sweep with widgets and run it; `value` (and `.df`) is the result DataFrame."""

    value = traitlets.Instance(pd.DataFrame, allow_none=True)

    def __init__(self, backends: Backend | Sequence[Backend], base: Params | None = None,
                 prompts: str | Sequence[str] | None = None, lang: str = "es", store: str | None = None) -> None:
        super().__init__(value=None)
        self.backends = [backends] if isinstance(backends, Backend) else list(backends)
        self.lang = lang
        self._init_run()
        self._texts: dict[str, str] = {}
        self._error: str | None = None
        self._done = 0
        self._lock = threading.Lock()

        specs = _sweepable()
        self._specs = {s.name: s for s in specs}
        self.vary = W.SelectMultiple(options=[s.name for s in specs], rows=8, description=t("vary", lang),
                                     style={"description_width": "initial"},
                                     tooltip="Ctrl/Cmd + clic para elegir varios" if lang == "es"
                                     else "Ctrl/Cmd + click to choose several")
        self.vary.add_class("gs-sweep-vary")
        self.values_box = W.VBox([])
        self.value_inputs: dict[str, W.Text] = {}

        from ..prompts import list_prompt_sets

        sets = list_prompt_sets()
        manual = "(escritos aquí)" if lang == "es" else "(typed here)"
        self.prompt_set = W.Dropdown(options=[(manual, "")] + [(s, s) for s in sets], value="",
                                     description=t("prompt_file", lang), style={"description_width": "initial"})
        if isinstance(prompts, str) and prompts in sets:
            self.prompt_set.value = prompts
            text = ""
        else:
            text = "\n".join([prompts] if isinstance(prompts, str) else list(prompts or []))
        self.prompts = W.Textarea(value=text, rows=4, placeholder=t("prompts", lang),
                                  description="prompts", layout=W.Layout(width="100%"))
        self.prompts.add_class("gs-sweep-prompts")
        self.repeats = W.BoundedIntText(value=1, min=1, max=10_000, description=t("repeats", lang),
                                        style={"description_width": "initial"})
        self.store = W.Text(value=store or "", description=t("store", lang), placeholder="results/mi_sweep.parquet",
                            style={"description_width": "initial"}, layout=W.Layout(width="100%"))
        self.base_panel = ParamsPanel(base, lang=lang, exclude=set(NOT_SWEEPABLE))
        base_box = W.Accordion([self.base_panel.widget], titles=(t("fixed", lang),), selected_index=None)
        self.count = W.HTML("")
        self.count.add_class("gs-sweep-count")
        self.message = W.HTML("")
        self.run_button = W.Button(description=t("run", lang), button_style="primary", icon="play")
        self.run_button.add_class("gs-sweep-run")
        self.stop_button = W.Button(description=t("stop", lang), button_style="danger", icon="stop", disabled=True)
        self.progress = W.IntProgress(value=0, min=0, max=1, description="0 / 0",
                                      style={"description_width": "initial"}, layout=W.Layout(width="100%"))
        self.table = W.HTML("")
        self.table.add_class("gs-sweep-table")
        self.y = W.Dropdown(description=t("metric", lang), options=[])
        self.x = W.Dropdown(description=t("x", lang), options=[])
        self.hue = W.Dropdown(description=t("hue", lang), options=[])
        self.kind = W.Dropdown(description="tipo" if lang == "es" else "kind",
                               options=["line", "box", "violin", "strip", "heatmap"], value="line")
        self.plot_image = W.Image(format="png")
        self.plot_message = W.HTML("")
        self.results = W.VBox([self.table, W.HBox([self.y, self.x]), W.HBox([self.hue, self.kind]),
                               self.plot_message, self.plot_image])
        self.widget = W.VBox([
            W.HBox([self.vary, self.values_box]), self.prompt_set, self.prompts,
            W.HBox([self.repeats]), base_box, self.store, self.count, self.message,
            W.HBox([self.run_button, self.stop_button]), self.progress, self.results])
        self.widget.add_class("gs-sweep-builder")

        self.vary.observe(self._on_vary, "value")
        for w in (self.prompts, self.repeats, self.prompt_set):
            w.observe(self._update, "value")
        self.base_panel.observe(self._update, "value")
        self.prompt_set.observe(self._on_prompt_set, "value")
        for w in (self.y, self.x, self.hue, self.kind):
            w.observe(self._redraw, "value")
        self.run_button.on_click(lambda _b: self._click_run())
        self.stop_button.on_click(lambda _b: self.stop())
        self._on_prompt_set({"new": self.prompt_set.value})
        self._update()

    # --- what the widgets say ---------------------------------------------------------------
    @property
    def df(self) -> pd.DataFrame | None:
        """The result of the last run."""
        return self.value

    @property
    def base(self) -> Params:
        """The fixed parameters every request shares."""
        return self.base_panel.params

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
        """Why the sweep as written cannot run, None when it can."""
        return self._error

    def plan(self) -> Any:
        """The `gsexplore.sweep.SweepPlan` of the sweep as written (ParamsError if invalid)."""
        from ..sweep import plan

        prompts = self.prompt_list
        if not prompts:
            raise ParamsError("no prompts: write one per line or choose a prompt file" if self.lang != "es" else
                              "sin prompts: escribí uno por línea o elegí un archivo", field="prompts")
        if self.base_panel.error:
            raise ParamsError(self.base_panel.error)
        return plan(self.backends, prompts, grid=self.grid or None, repeats=int(self.repeats.value), base=self.base)

    @property
    def request_count(self) -> int:
        """How many requests the sweep as written makes (0 when it is invalid)."""
        try:
            return len(self.plan().cells)
        except GSExploreError:
            return 0

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
            raise GSExploreError("the sweep is already running")
        sp = self.plan()
        grid, prompts, repeats, base = self.grid, self.prompt_list, int(self.repeats.value), self.base
        store = self.store.value.strip() or None
        self._done = 0
        self.progress.max = max(1, len(sp.cells))
        self.progress.value = 0
        self.progress.bar_style = "info"
        self.progress.description = f"0 / {len(sp.cells)}"
        self.run_button.disabled = True
        self.stop_button.disabled = False
        self.message.value = ""

        def work() -> None:
            from ..sweep import sweep

            try:
                df = sweep(self.backends, prompts, grid=grid or None, repeats=repeats, base=base, store=store,
                           progress=False, cancel=self._stop, on_result=lambda rows: self._tick())
            except BaseException as e:  # noqa: BLE001 - shown in the panel; run(wait=True) re-raises
                self.last_error = e
                self.message.value = error_html(f"{type(e).__name__}: {e}")
                self.progress.bar_style = "danger"
            else:
                interrupted = df.attrs.get("interrupted")
                self.progress.bar_style = "warning" if interrupted else "success"
                if interrupted:
                    self.message.value = error_html(
                        f"{t('stopped', self.lang)}: {len(df)} / {len(sp.cells)}")
                self._show(df)
                self.value = df
            finally:
                self.run_button.disabled = False
                self.stop_button.disabled = True

        return self._start(work, "gsexplore-sweep-builder", wait)

    def __repr__(self) -> str:
        return (f"SweepBuilder(backends={[getattr(b, 'name', '?') for b in self.backends]}, "
                f"grid={self._texts!r}, requests={self.request_count})")

    # --- internals ---------------------------------------------------------------------------------
    def _tick(self) -> None:
        with self._lock:
            self._done += 1
            done = self._done
        self.progress.value = min(done, self.progress.max)
        self.progress.description = f"{done} / {self.progress.max}"

    def _on_vary(self, change: dict[str, Any]) -> None:
        rows = []
        for name in change["new"]:
            spec = self._specs[name]
            if name not in self.value_inputs:
                w = W.Text(value=self._texts.get(name, _suggest(spec)), description=name, continuous_update=True,
                           tooltip=spec.help(self.lang), placeholder="0, 0.5, 1",
                           style={"description_width": "140px"}, layout=W.Layout(width="420px"))
                w.add_class(f"gs-sweep-values-{name}")
                w.observe(self._on_text(name), "value")
                self.value_inputs[name] = w
            rows.append(self.value_inputs[name])
        self.values_box.children = rows
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
                self.message.value = error_html(str(e))

    def _update(self, change: Any = None) -> None:
        try:
            sp = self.plan()
        except GSExploreError as e:
            self._error = str(e)
            self.count.value = ""
            self.message.value = error_html(self._error)
            self.run_button.disabled = True
            return
        self._error = None
        self.message.value = ""
        self.run_button.disabled = self.running
        n = len(sp.cells)
        es = self.lang == "es"
        self.count.value = (
            f'<b style="font-size:larger">{n} {t("requests", self.lang)}</b> = '
            f"{len(sp.settings)} " + ("combinaciones" if es else "settings")
            + f" × {len(sp.prompts)} prompts × {len(sp.backends)} backend(s) × {int(self.repeats.value)} "
            + ("repeticiones" if es else "repeats")
            + (f" · ≤ {sp.completion_tokens_max:,} tokens" if sp.completion_tokens_max else ""))

    def _click_run(self) -> None:
        try:
            self.run(wait=False)
        except GSExploreError as e:
            self.message.value = error_html(str(e))

    def _show(self, df: pd.DataFrame) -> None:
        from ..metrics import MEASURES, METRICS, varied_params

        varied = varied_params(df)
        cols = [c for c in ("backend", *varied, "prompt", "repeat", "content", "finish_reason",
                            "completion_tokens", "latency_s", "error_type") if c in df.columns]
        view = df[list(dict.fromkeys(cols))].head(200).copy()
        if "content" in view:
            view["content"] = view["content"].fillna("").astype(str).str.slice(0, 120)
        view = view.astype(object).where(view.notna(), "")
        self.table.value = ('<div style="max-height:320px;overflow:auto">'
                            + view.to_html(index=False, na_rep="", border=0, classes="gs-sweep-df",
                                           float_format=lambda x: f"{x:.3g}") + "</div>")
        metrics = {**METRICS, **MEASURES}
        self.y.options = [(m.label(self.lang), name) for name, m in metrics.items()]
        self.y.value = "distinct_2" if "distinct_2" in metrics else next(iter(metrics))
        xs = varied or [c for c in ("backend", "prompt") if c in df.columns]
        self.x.options = xs
        if xs:
            self.x.value = xs[0]
        self.hue.options = [("—", "")] + [(c, c) for c in [*varied, "backend", "prompt"] if c in df.columns]
        self.hue.value = varied[1] if len(varied) > 1 else ""
        self._redraw(df=df)

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
            self.plot_message.value = error_html(f"{type(e).__name__}: {e}")
            return
        self.plot_message.value = ""
        self.plot_image.value = figure_png(fig)
