"""The result side of SweepBuilder: the table (with each failure's cause next to its answer) and the plot.

A plot is drawn from the rows that succeeded; when none did there is no plot,
only a line that says so.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as W
import pandas as pd

from ._i18n import column, explain, explain_row, msg
from ._style import error_html, esc
from ._table import new_table
from ._util import figure_png
from .sweep_outcome import failed_mask

__all__ = ["SweepResults", "table_frame"]

_PLOT_KINDS = ("line", "box", "violin", "strip", "heatmap")
_TABLE_COLUMNS = ("backend", "prompt", "repeat", "content", "error", "finish_reason", "completion_tokens",
                  "latency_s")


def _cut(texts: pd.Series, n: int) -> pd.Series:
    one = texts.fillna("").astype(str).str.replace("\n", " ", regex=False)
    return one.where(one.str.len() <= n, one.str.slice(0, n - 1) + "…")


def table_frame(df: pd.DataFrame, lang: str) -> pd.DataFrame:
    """The results as the table shows them: headers in ``lang``, long texts cut, each error said next to the answer."""
    from ..metrics import varied_params

    df = df.copy()
    if "error_type" in df.columns:
        df["error"] = [explain_row(t, m, lang) if isinstance(t, str) and t else ""
                       for t, m in zip(df["error_type"], df.get("error_message", pd.Series([None] * len(df))))]
    varied = varied_params(df)
    cols = [c for c in dict.fromkeys(("backend", *varied, *_TABLE_COLUMNS)) if c in df.columns]
    if "backend" in cols and df["backend"].nunique() < 2:
        cols.remove("backend")
    if "error" in cols and not (df["error"] != "").any():
        cols.remove("error")  # no failure: no empty column
    view = df[cols].copy()
    for c, n in (("content", 80), ("prompt", 40), ("error", 60)):
        if c in view:
            view[c] = _cut(view[c], n)
    if "repeat" in view:
        view["repeat"] = pd.to_numeric(view["repeat"], errors="coerce") + 1  # repetition 1..n, as people count
    if "latency_s" in view:
        view["latency_s"] = pd.to_numeric(view["latency_s"], errors="coerce").round(2)
    view = view.astype(object).where(view.notna(), "")
    return view.rename(columns={c: column(c, lang) for c in view.columns})


class SweepResults:
    """Table, selected row's full text, and the plot (metric, x, colour, kind) of one sweep's DataFrame."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.df: pd.DataFrame | None = None
        self._quiet = False
        self.placeholder = W.HTML(f'<i style="color:#666">{esc(msg("ui.no_data", lang))}</i>')
        self.table = new_table(lang)
        self.table.add_class("gs-sweep-table")
        self.row_detail = W.HTML("")
        self.row_detail.add_class("gs-sweep-row-detail")
        self.table.observe(self._on_select, "selected_rows")
        style = {"description_width": "initial"}
        self.y = W.Dropdown(description=msg("ui.metric", lang), options=[], layout=W.Layout(width="auto"), style=style)
        self.x = W.Dropdown(description=msg("ui.x", lang), options=[], layout=W.Layout(width="auto"), style=style)
        self.hue = W.Dropdown(description=msg("ui.hue", lang), options=[], layout=W.Layout(width="auto"), style=style)
        self.kind = W.Dropdown(description=msg("ui.kind", lang),
                               options=[(msg(f"ui.plot.{k}", lang), k) for k in _PLOT_KINDS], value="line",
                               layout=W.Layout(width="auto"), style=style)
        self.plot_image = W.Image(format="png", layout=W.Layout(max_width="100%", height="auto"))
        self.plot_image.layout.display = "none"  # an Image without data is a broken-image icon
        self.plot_message = W.HTML("")
        self.plot_message.add_class("gs-sweep-plot-message")
        self.plot_controls = W.HBox([self.y, self.x, self.hue, self.kind],
                                    layout=W.Layout(flex_flow="row wrap", width="auto"))
        self.box = W.VBox([self.table, self.row_detail, self.plot_controls, self.plot_message, self.plot_image],
                          layout=W.Layout(width="auto"))
        self.box.layout.display = "none"  # nothing to show before the first result
        for w in (self.y, self.x, self.hue, self.kind):
            w.observe(lambda _c: self.redraw(), "value")

    def show(self, df: pd.DataFrame) -> None:
        """Show ``df``: every row in the table; the plot from the rows that succeeded."""
        from ..metrics import MEASURES, METRICS, varied_params

        self.df = df.reset_index(drop=True)
        self.table.df = table_frame(self.df, self.lang)
        self.row_detail.value = ""
        self.placeholder.layout.display = "none"
        self.box.layout.display = ""
        ok = self.df[~failed_mask(self.df)]
        if not len(ok):  # nothing to plot: say so, draw nothing
            self.plot_controls.layout.display = "none"
            self.plot_image.layout.display = "none"
            self.plot_image.value = b""
            self.plot_message.value = f'<i style="color:#666">{esc(msg("sweep.no_plot", self.lang))}</i>'
            return
        self.plot_controls.layout.display = ""
        varied = varied_params(df)
        options, seen = [], set()
        for name, m in {**METRICS, **MEASURES}.items():
            label = m.label(self.lang)
            if label in seen or (name in MEASURES and name not in df.columns):  # n_tokens is completion_tokens
                continue
            seen.add(label)
            options.append((label, name))
        self._quiet = True  # one drawing at the end, not one per dropdown set
        try:
            self.y.options = options
            self.y.value = "distinct_2" if any(v == "distinct_2" for _, v in options) else options[0][1]
            xs = varied or [c for c in ("backend", "prompt") if c in df.columns]
            self.x.options = xs
            if xs:
                self.x.value = xs[0]
            self.hue.options = [("—", "")] + [(c, c) for c in [*varied, "backend", "prompt"] if c in df.columns]
            self.hue.value = varied[1] if len(varied) > 1 else ""
        finally:
            self._quiet = False
        self.redraw()

    def redraw(self) -> None:
        """Draw the plot chosen by the dropdowns, from the rows that succeeded."""
        df = self.df
        if self._quiet or df is None or not len(df) or not self.x.value or not self.y.value:
            return
        ok = df[~failed_mask(df)]
        if not len(ok):
            return
        from matplotlib.figure import Figure

        from ..plots import plot

        fig = Figure(figsize=(6.4, 4.0), layout="constrained")
        ax = fig.add_subplot()
        try:
            plot(ok, x=self.x.value, y=self.y.value, hue=self.hue.value or None, kind=self.kind.value,
                 ax=ax, lang=self.lang)
        except Exception as e:  # a plot that cannot be drawn says why, the table stays
            self.plot_message.value = error_html(explain(e, self.lang))
            return
        self.plot_message.value = ""
        self.plot_image.value = figure_png(fig)
        self.plot_image.layout.display = ""

    def _on_select(self, change: dict[str, Any]) -> None:
        rows = change["new"] or []
        df = self.df
        if df is None or not rows:
            self.row_detail.value = ""
            return
        r = df.iloc[int(rows[0])]
        parts = [f"<b>{esc(column('prompt', self.lang))}:</b> {esc(str(r.get('prompt', '')))}",
                 f"<b>{esc(column('content', self.lang))}:</b>"
                 f"<div style='white-space:pre-wrap;border-left:3px solid #1976d2;padding:4px 8px'>"
                 f"{esc(str(r.get('content', '') or ''))}</div>"]
        if isinstance(r.get("error_type"), str) and r.get("error_type"):
            parts.append(error_html(explain_row(r["error_type"], r.get("error_message"), self.lang)))
        self.row_detail.value = "<div>" + "<br>".join(parts) + "</div>"
