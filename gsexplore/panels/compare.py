"""Compare: pick cells of a sweep and read their outputs side by side.

A cell is one setting on one prompt on one backend (its repeats share a
``cell_id``). Each column of the comparison has one dropdown per thing the sweep
varied (backend, prompt, each varied parameter), or a cell_id dropdown.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Sequence
from typing import Any

import ipywidgets as W
import numpy as np
import pandas as pd
import traitlets

from ..errors import ParamsError
from ._util import Panel, esc, msg, panel_root
from ._i18n import explain_row

__all__ = ["Compare"]

_ANY = "__any__"


def _key_columns(df: pd.DataFrame) -> list[str]:
    from ..metrics import varied_params

    keys = [c for c in ("backend", "model", "prompt") if c in df.columns and df[c].astype(str).nunique() > 1]
    return keys + [c for c in varied_params(df) if c not in keys]


def _label(v: Any, lang: str = "es") -> str:
    """A setting as people write it: 0.7, 3, sí/no, the text itself; never a quoted number."""
    if v is None or (isinstance(v, float) and v != v) or v is pd.NA:
        return msg("ui.unset_value", lang)
    if isinstance(v, (bool, np.bool_)):
        return msg("ui.yes" if v else "ui.no", lang)
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        return f"{float(v):g}"
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)


def _sort_key(v: Any) -> tuple:
    """Numbers in numeric order, then texts, unset last."""
    if v is None or (isinstance(v, float) and v != v) or v is pd.NA:
        return (2, 0, "")
    if isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)):
        return (0, float(v), "")
    return (1, 0, str(v))


class Compare(Panel):
    """Side-by-side outputs of `n` cells of a sweep DataFrame; `value` is the list of chosen cell ids."""

    value = traitlets.List()

    def __init__(self, df: pd.DataFrame, n: int = 2, by: Sequence[str] | None = None, lang: str = "es",
                 max_rows: int = 10) -> None:
        super().__init__(value=[])
        if "content" not in df.columns:
            raise ParamsError("Compare needs a sweep DataFrame (with a 'content' column)", field="df")
        self.df = df.reset_index(drop=True)
        self.lang = lang
        self.max_rows = max_rows
        if "cell_id" not in self.df.columns:
            self.df["cell_id"] = self.df.groupby(list(by or _key_columns(self.df)) or ["content"],
                                                 dropna=False, sort=False).ngroup().astype(str)
        self.keys = list(by) if by is not None else _key_columns(self.df)
        self.mode = W.ToggleButtons(options=[(msg("ui.by_values", lang), "values"), (msg("ui.by_cell", lang), "cell_id")],
                                    value="values")
        self.slots: list[dict[str, W.Dropdown]] = []
        columns = []
        cells = list(dict.fromkeys(self.df["cell_id"]))
        for i in range(n):
            dds: dict[str, W.Dropdown] = {}
            for k in self.keys:
                values = sorted(dict.fromkeys(self.df[k].tolist()), key=_sort_key)
                opts = [(_label(v, lang)[:60], j) for j, v in enumerate(values)]
                dd = W.Dropdown(options=opts, value=min(i, len(opts) - 1) if k == self.keys[-1] else 0,
                                description=k, style={"description_width": "120px"}, layout=W.Layout(width="auto"))
                dd._gs_values = values  # index -> value, so any value type works as an option
                dd.observe(self._update, "value")
                dds[k] = dd
            cid = W.Dropdown(options=[(self._cell_label(c), c) for c in cells],
                             value=cells[min(i, len(cells) - 1)], description="cell_id",
                             style={"description_width": "120px"}, layout=W.Layout(width="auto"))
            cid.observe(self._update, "value")
            dds["cell_id"] = cid
            self.slots.append(dds)
            columns.append(W.VBox([W.HTML(f"<b>{esc(msg('ui.cell', lang))} {chr(65 + i)}</b>"), *dds.values()],
                                  layout=W.Layout(flex="1 1 0", min_width="220px")))
        self.pickers = W.HBox(columns, layout=W.Layout(flex_flow="row wrap"))
        self.output = W.HTML("")
        self.output.add_class("gs-compare")
        self.widget = panel_root("gs-compare-panel", [self.mode, self.pickers, self.output], width="auto")
        self.mode.observe(self._on_mode, "value")
        self._on_mode({"new": self.mode.value})

    # --- public surface ----------------------------------------------------------------------
    def select(self, slot: int, **values: Any) -> None:
        """Choose the cell of column `slot` by values (compare.select(1, temperature=1.2)) or cell_id=..."""
        dds = self.slots[slot]
        if "cell_id" in values:
            self.mode.value = "cell_id"
            dds["cell_id"].value = values.pop("cell_id")
        for k, v in values.items():
            if k not in self.keys:
                raise KeyError(f"{k!r} is not a column to choose by; choose by: {', '.join(self.keys)}")
            self.mode.value = "values"
            vals = dds[k]._gs_values
            match = [j for j, x in enumerate(vals) if x == v or _label(x) == _label(v)]
            if not match:
                raise KeyError(f"{k}={_label(v)} is not in the sweep; values: {', '.join(_label(x) for x in vals)}")
            dds[k].value = match[0]

    def rows(self, slot: int) -> pd.DataFrame:
        """The rows of the cell chosen in column `slot`."""
        return self._rows(self.slots[slot])

    def __repr__(self) -> str:
        return f"Compare(cells={self.value!r}, by={self.keys!r})"

    # --- internals -------------------------------------------------------------------------------
    def _cell_label(self, cid: str) -> str:
        row = self.df.loc[self.df["cell_id"] == cid].iloc[0]
        parts = [f"{k}={_label(row[k], self.lang)}" for k in self.keys]
        return (", ".join(parts) if parts else cid)[:90]  # the settings people chose, not a hash

    def _rows(self, dds: dict[str, W.Dropdown]) -> pd.DataFrame:
        df = self.df
        if self.mode.value == "cell_id":
            return self._by_repeat(df[df["cell_id"] == dds["cell_id"].value])
        return self._by_repeat(self._rows_values(dds))

    @staticmethod
    def _by_repeat(rows: pd.DataFrame) -> pd.DataFrame:
        return rows.sort_values("repeat", kind="stable") if "repeat" in rows.columns else rows

    def _on_mode(self, change: dict[str, Any]) -> None:
        by_id = change["new"] == "cell_id"
        old = change.get("old")
        if old is not None and old != change["new"]:
            self._carry_over(by_id)
        for dds in self.slots:
            for k, dd in dds.items():
                dd.layout.display = ("" if by_id else "none") if k == "cell_id" else ("none" if by_id else "")
        self._update()

    def _carry_over(self, to_cell: bool) -> None:
        """Keep each column's choice when the mode changes: same cell, other way of choosing it."""
        for dds in self.slots:
            if to_cell:
                rows = self._rows_values(dds)
                if len(rows):
                    dds["cell_id"].value = rows["cell_id"].iloc[0]
            else:
                row = self.df.loc[self.df["cell_id"] == dds["cell_id"].value]
                if not len(row):
                    continue
                first = row.iloc[0]
                for k in self.keys:
                    vals = dds[k]._gs_values
                    match = [j for j, x in enumerate(vals) if _label(x) == _label(first[k])]
                    if match:
                        dds[k].value = match[0]

    def _rows_values(self, dds: dict[str, W.Dropdown]) -> pd.DataFrame:
        df = self.df
        mask = pd.Series(True, index=df.index)
        for k in self.keys:
            v = dds[k]._gs_values[dds[k].value]
            col = df[k]
            mask &= col.isna() if v is None or (isinstance(v, float) and v != v) else (col == v)
        return df[mask]

    def _update(self, change: Any = None) -> None:
        chosen = [self._rows(d) for d in self.slots]
        self.value = [sorted(set(r["cell_id"])) for r in chosen]
        head = []
        for i, r in enumerate(chosen):
            if len(r):
                first = r.iloc[0]
                desc = ", ".join(f"{k}={_label(first[k], self.lang)}" for k in self.keys) or str(first["cell_id"])
            else:
                desc = "—"
            head.append(f"<th style='text-align:left;vertical-align:top'>{esc(msg('ui.cell', self.lang))} "
                        f"{chr(65 + i)}<br><span style='font-weight:normal;font-size:smaller'>{esc(desc)}</span></th>")
        n = max((len(r) for r in chosen), default=0)
        body = []
        for j in range(min(n, self.max_rows)):
            cells = []
            for r in chosen:
                if j >= len(r):
                    cells.append("<td></td>")
                    continue
                row = r.iloc[j]
                cells.append("<td style='vertical-align:top;border-top:1px solid #ddd;padding:4px'>"
                             + self._render(row) + "</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        if not n:
            body.append(f"<tr><td colspan='{len(chosen)}'><i>" + esc(msg("ui.no_rows", self.lang)) + "</i></td></tr>")
        self.output.value = ("<table style='width:100%;table-layout:fixed;border-collapse:collapse'>"
                             "<tr>" + "".join(head) + "</tr>" + "".join(body) + "</table>")

    def _render(self, row: pd.Series) -> str:
        parts = []
        meta = []
        if "repeat" in row.index and _present(row["repeat"]):
            meta.append(f"{msg('ui.repeat', self.lang)} {int(row['repeat']) + 1}")  # 1..n, as people count
        for c in ("finish_reason", "completion_tokens", "seed"):
            if c in row.index and _present(row[c]):
                meta.append(f"{c}: {row[c]}")
        if "error_type" in row.index and _present(row["error_type"]):
            parts.append(f"<div style='color:#c62828'>"
                         f"{esc(explain_row(row['error_type'], row.get('error_message'), self.lang))}</div>")
        reasoning = row.get("reasoning_content")
        if _present(reasoning) and reasoning:
            parts.append(f"<details><summary>{esc(msg('ui.reasoning', self.lang))}</summary>"
                         f"<div style='white-space:pre-wrap;color:#555'>{esc(str(reasoning))}</div></details>")
        content = row.get("content")
        if not _present(content) or content == "":
            shown = "<i>" + esc(msg("ui.empty", self.lang)) + "</i>"
        elif not str(content).strip():  # only spaces and newlines: make them visible
            shown = ("<i style='color:#888'>" + esc(json.dumps(str(content))[1:-1][:200]) + "</i>")
        else:
            shown = esc(str(content))
        parts.append("<div style='white-space:pre-wrap;max-height:24em;overflow:auto'>" + shown + "</div>")
        return (f"<div style='color:#888;font-size:smaller'>{esc(' · '.join(meta))}</div>" + "".join(parts))


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and v != v) and v is not pd.NA
