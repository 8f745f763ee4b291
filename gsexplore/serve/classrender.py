"""The teacher's view as HTML: the table of students and the room's totals, and the plot of the class record.

Rendered on the server, in the language asked for, so the /class page and the
notebook panel (`gs.panels.Classroom`) show the same thing from ``/class/data``.
Labels only: nothing here ever sees a key.
"""

from __future__ import annotations

import html
import io
from typing import Any

from ..i18n import msg, number
from ..metrics import METRICS, MEASURES

__all__ = ["table_html", "plot_svg", "metric_label"]

_COLUMNS = ("waiting", "running", "finished", "tokens", "last_latency_s", "last_ttft_s", "errors")


def _fmt(v: Any, lang: str, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return number(v, lang, digits=digits)
    return number(v, lang)


def metric_label(metric: str, lang: str) -> str:
    """The metric's name in ``lang`` (the metrics catalogue's)."""
    m = METRICS.get(metric) or MEASURES.get(metric)
    return m.label(lang) if m is not None else metric


def table_html(snap: dict[str, Any], lang: str) -> str:
    """The students' table (one row per label) and a totals row."""
    head = "".join(f"<th>{html.escape(msg('class.col.' + c, lang))}</th>" for c in ("student", *_COLUMNS))
    rows = []
    for s in snap["students"]:
        s = {**s, "tokens": s["prompt_tokens"] + s["completion_tokens"]}
        busy = " class='busy'" if s["waiting"] else ""
        cells = "".join(f"<td>{_fmt(s[c], lang)}</td>" for c in _COLUMNS)
        rows.append(f"<tr{busy}><th scope='row'>{html.escape(s['student'])}</th>{cells}</tr>")
    t = {**snap["totals"], "tokens": snap["totals"]["prompt_tokens"] + snap["totals"]["completion_tokens"]}
    total = "".join(f"<td>{_fmt(t.get(c), lang) if c in t else ''}</td>" for c in _COLUMNS)
    label = html.escape(msg("class.totals", lang, students=t["students"]))
    if not rows:
        rows.append(f"<tr><td colspan='{len(_COLUMNS) + 1}'>{html.escape(msg('class.empty', lang))}</td></tr>")
    return (f"<table class='gs-class'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody>"
            f"<tfoot><tr><th scope='row'>{label}</th>{total}</tr></tfoot></table>")


def plot_svg(points: list[dict[str, Any]], x: str | None, metric: str, lang: str) -> str:
    """What the class tried (``x``) against ``metric`` of what came back, one dot per answer, as SVG."""
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.4), dpi=100)
    ax = fig.add_subplot()
    if points and x:
        students = sorted({p["student"] for p in points})
        cmap = matplotlib.colormaps["tab10"]
        for i, who in enumerate(students):
            mine = [p for p in points if p["student"] == who]
            color = cmap(i % 10)
            ax.scatter([p["x"] for p in mine], [p["y"] for p in mine], s=22, alpha=0.75, color=color,
                       label=who if len(students) <= 12 else None)
        if len(students) <= 12:
            ax.legend(fontsize=7, loc="best", frameon=False)
        ax.set_xlabel(x)
    else:
        ax.text(0.5, 0.5, msg("class.plot.empty", lang), ha="center", va="center", transform=ax.transAxes,
                color="#666")
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_ylabel(metric_label(metric, lang))
    ax.set_title(msg("class.plot.title", lang, x=x or "–", metric=metric_label(metric, lang)), fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text as text: readable, searchable, smaller
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    return svg[svg.find("<svg"):]  # no XML prolog: it goes inside an HTML page
