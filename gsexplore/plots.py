"""Matplotlib figures of sweep DataFrames.

``y`` is a column of the DataFrame or a metric name of `gsexplore.metrics.METRICS`
(computed on demand with `add_metrics`). Group metrics (distinct_2, ...) count
once per cell; row metrics once per row. Bands are 95% intervals chosen by the
metric's type (`gsexplore.metrics.mean_ci`): Wilson for rates (0/1 metrics),
a seeded BCa bootstrap of the mean otherwise. ``kind="compare"`` draws each level's
difference from a baseline with its interval (a forest plot of `df.gs.compare`).

Each function returns the Axes it drew on (a Figure when it draws facets), with a
title, axis labels and, when there is a hue, a legend. ``lang="es"`` labels in Spanish.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .metrics import MEASURES, METRICS, mean_ci, with_metric

__all__ = ["plot", "line", "distribution", "heatmap", "forest", "plot_backends", "save"]

Kind = Literal["line", "box", "violin", "strip", "heatmap", "compare", "agreement", "transfer"]

_WORDS = {
    "vs": {"en": "vs", "es": "según"},
    "by": {"en": "by", "es": "por"},
    "unset": {"en": "(not set)", "es": "(sin fijar)"},
    "backend": {"en": "backend", "es": "backend"},
    "mean": {"en": "mean", "es": "media"},
    "diff": {"en": "difference from", "es": "diferencia con"},
}


def _w(word: str, lang: str) -> str:
    return _WORDS[word].get(lang, _WORDS[word]["en"])


#: Spanish labels of the columns most plotted (parameters keep their API names in English).
_ES = {"temperature": "temperatura", "repetition_penalty": "penalización por repetición",
       "presence_penalty": "penalización por presencia", "frequency_penalty": "penalización por frecuencia",
       "max_tokens": "máx. de tokens", "min_tokens": "mín. de tokens", "prompt_id": "prompt", "seed": "semilla",
       "repeat": "repetición", "model": "modelo"}


def label(name: str, lang: str = "en") -> str:
    """A readable axis label for a metric, a measure or a parameter."""
    m = METRICS.get(name) or MEASURES.get(name)
    if m:
        return m.label(lang)
    return _ES.get(name, name) if lang == "es" else name


def _fmt(v: Any, lang: str = "en") -> str:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return _w("unset", lang)
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


def _prepare(df: pd.DataFrame, y: str, needs: Sequence[str | None]) -> pd.DataFrame:
    """df with y available (metrics added on demand); one row per cell for group metrics."""
    for c in needs:
        if c is not None and c not in df.columns:
            raise KeyError(f"column {c!r} not in the DataFrame")
    return with_metric(df, y)


def _levels(s: pd.Series) -> list[Any]:
    vals = list(pd.unique(s))
    notna = [v for v in vals if not (not isinstance(v, str) and pd.isna(v))]
    has_na = len(notna) < len(vals)
    try:
        notna = sorted(notna)
    except TypeError:
        notna = sorted(notna, key=str)
    return notna + ([None] if has_na else [])


def _select(df: pd.DataFrame, col: str, v: Any) -> pd.DataFrame:
    return df[df[col].isna()] if v is None else df[df[col] == v]


def _numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _title(ax: Axes, y: str, x: str, hue: str | None, lang: str, title: str | None) -> None:
    if title is None:
        title = f"{label(y, lang)} {_w('vs', lang)} {label(x, lang)}"
        if hue:
            title += f" {_w('by', lang)} {label(hue, lang)}"
    ax.set_title(title)


def line(df: pd.DataFrame, x: str, y: str, hue: str | None = None, ax: Axes | None = None, *,
         lang: str = "en", title: str | None = None, band: bool = True) -> Axes:
    """Mean of y against x (one line per hue level) with a 95% interval band."""
    df = _prepare(df, y, [x, hue])
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.2))
    numeric_x = _numeric(df[x]) and df[x].notna().any()
    xlevels = _levels(df[x])
    pos = {v: (float(v) if numeric_x and v is not None else i) for i, v in enumerate(xlevels)}
    hue_levels = _levels(df[hue]) if hue else [None]
    for h in hue_levels:
        d = _select(df, hue, h) if hue else df
        xs, means, lo, hi = [], [], [], []
        for v in xlevels:
            if v is None and numeric_x:
                continue  # an unset numeric x has no place on the axis
            vals = pd.to_numeric(_select(d, x, v)[y], errors="coerce")
            n, m, _, a, b = mean_ci(vals, y)
            if n == 0:
                continue
            xs.append(pos[v])
            means.append(m)
            lo.append(a)
            hi.append(b)
        name = _fmt(h, lang) if hue else label(y, lang)
        (ln,) = ax.plot(xs, means, marker="o", label=name)
        if band and len(xs):
            ax.fill_between(xs, np.asarray(lo, float), np.asarray(hi, float), color=ln.get_color(),
                            alpha=0.2, linewidth=0)
    if not numeric_x:
        ax.set_xticks([pos[v] for v in xlevels], [_fmt(v, lang) for v in xlevels])
    ax.set_xlabel(label(x, lang))
    ax.set_ylabel(f"{label(y, lang)} ({_w('mean', lang)}, IC 95%)" if lang == "es"
                  else f"{label(y, lang)} (mean, 95% CI)")
    if hue:
        ax.legend(title=label(hue, lang))
    _title(ax, y, x, hue, lang, title)
    ax.grid(alpha=0.3)
    return ax


def distribution(df: pd.DataFrame, x: str, y: str, hue: str | None = None, kind: str = "box",
                 ax: Axes | None = None, *, lang: str = "en", title: str | None = None) -> Axes:
    """Box, violin or strip plot of y for each value of x (and hue, side by side)."""
    if kind not in ("box", "violin", "strip"):
        raise ValueError(f"kind must be 'box', 'violin' or 'strip', not {kind!r}")
    df = _prepare(df, y, [x, hue])
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.2))
    xlevels = _levels(df[x])
    hue_levels = _levels(df[hue]) if hue else [None]
    k = len(hue_levels)
    width = 0.8 / k
    colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    rng = np.random.default_rng(0)
    handles = []
    for j, h in enumerate(hue_levels):
        color = colors[j % len(colors)]
        d = _select(df, hue, h) if hue else df
        positions, data = [], []
        for i, v in enumerate(xlevels):
            vals = pd.to_numeric(_select(d, x, v)[y], errors="coerce").dropna().to_numpy(float)
            if len(vals):
                positions.append(i + (j - (k - 1) / 2) * width)
                data.append(vals)
        if not data:
            continue
        if kind == "box":
            bp = ax.boxplot(data, positions=positions, widths=width * 0.85, patch_artist=True,
                            manage_ticks=False, medianprops={"color": "black", "gid": "median"})
            for b in bp["boxes"]:
                b.set_facecolor(color)
                b.set_alpha(0.6)
        elif kind == "violin":
            spread = [(p, v) for p, v in zip(positions, data) if np.ptp(v) > 0]
            if spread:
                vp = ax.violinplot([v for _, v in spread], positions=[p for p, _ in spread],
                                   widths=width * 0.9, showmeans=True)
                for b in vp["bodies"]:
                    b.set_facecolor(color)
                    b.set_alpha(0.5)
            flat = [(p, v) for p, v in zip(positions, data) if np.ptp(v) == 0]
            for p, v in flat:  # no spread: a violin would be a line; draw the points
                ax.scatter([p] * len(v), v, color=color, marker="_", s=200)
        else:
            for p, v in zip(positions, data):
                jitter = rng.uniform(-width * 0.3, width * 0.3, size=len(v))
                ax.scatter(p + jitter, v, color=color, alpha=0.7, s=14)
        handles.append(Patch(color=color, alpha=0.6, label=_fmt(h, lang)))
    ax.set_xticks(range(len(xlevels)), [_fmt(v, lang) for v in xlevels])
    ax.set_xlim(-0.6, len(xlevels) - 0.4)
    ax.set_xlabel(label(x, lang))
    ax.set_ylabel(label(y, lang))
    if hue:
        ax.legend(handles=handles, title=label(hue, lang))
    _title(ax, y, x, hue, lang, title)
    ax.grid(alpha=0.3, axis="y")
    return ax


def heatmap(df: pd.DataFrame, x: str, y: str, value: str, ax: Axes | None = None, *,
            lang: str = "en", title: str | None = None, annotate: bool = True) -> Axes:
    """Mean of `value` over two parameters: x across, y down (the image array is the pivot table)."""
    df = _prepare(df, value, [x, y])
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.8))
    xlevels, ylevels = _levels(df[x]), _levels(df[y])
    grid = np.full((len(ylevels), len(xlevels)), np.nan)
    for i, yv in enumerate(ylevels):
        dy = _select(df, y, yv)
        for j, xv in enumerate(xlevels):
            vals = pd.to_numeric(_select(dy, x, xv)[value], errors="coerce").dropna()
            if len(vals):
                grid[i, j] = vals.mean()
    im = ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis")
    ax.set_xticks(range(len(xlevels)), [_fmt(v, lang) for v in xlevels])
    ax.set_yticks(range(len(ylevels)), [_fmt(v, lang) for v in ylevels])
    ax.set_xlabel(label(x, lang))
    ax.set_ylabel(label(y, lang))
    cb = ax.figure.colorbar(im, ax=ax)
    cb.set_label(label(value, lang))
    if annotate and grid.size <= 150:
        finite = grid[np.isfinite(grid)]
        mid = (finite.min() + finite.max()) / 2 if finite.size else 0
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8,
                            color="white" if grid[i, j] < mid else "black")
    if title is None:
        title = f"{label(value, lang)}: {label(x, lang)} x {label(y, lang)}"
    ax.set_title(title)
    return ax


def forest(df: pd.DataFrame, x: str | None = None, y: str | list[str] | None = None, baseline: Any = None,
           ax: Axes | None = None, *, lang: str = "en", title: str | None = None, **compare_kw: Any) -> Axes:
    """Forest plot of `df.gs.compare(by=x, metric=y)`: each level's difference from the baseline, 95% CI.

    ``df`` is a sweep, or a comparison already made (then every row of it is drawn,
    with its own Holm-adjusted p: the plot shows the table's family, and the title
    says which). The comparison is kept on the Axes as ``ax.gs_compare``; filled
    markers are significant after Holm's adjustment, hollow ones are not.
    """
    from .comparison import compare

    if "p_adj" in df.columns and "family" in df.attrs:
        out, x = df, df.attrs["by"]
    else:
        if x is None:
            raise ValueError("give x (the parameter to compare), or a comparison made by df.gs.compare")
        out = compare(df, x, metric=y, baseline=baseline, **compare_kw)
    several = out["metric"].nunique() > 1
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 0.6 * len(out) + 1.8))
    alpha = out.attrs.get("alpha", 0.05)
    ys = np.arange(len(out))[::-1]
    diff = out["diff"].to_numpy(float)
    err = np.vstack([diff - out["ci_low"].to_numpy(float), out["ci_high"].to_numpy(float) - diff])
    ax.errorbar(diff, ys, xerr=err, fmt="none", ecolor="C0", capsize=4)
    sig = (out["p_adj"] < alpha).to_numpy()
    ax.scatter(diff[sig], ys[sig], color="C0", zorder=3, label=f"p_adj < {alpha:g}")
    ax.scatter(diff[~sig], ys[~sig], facecolors="white", edgecolors="C0", zorder=3, label=f"p_adj ≥ {alpha:g}")
    ax.axvline(0, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(ys, [f"{label(x, lang)} = {_fmt(v, lang)}" + (f" · {label(m, lang)}" if several else "")
                       for v, m in zip(out[x], out["metric"])])
    for yy, (_, r) in zip(ys, out.iterrows()):
        ax.annotate(f"p_adj={r['p_adj']:.2g} ({r['test'].split(' ')[0]})", (r["ci_high"], yy),
                    xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
    base = _fmt(out.attrs.get("baseline"), lang)
    what = ", ".join(label(m, lang) for m in pd.unique(out["metric"]))
    ax.set_xlabel(f"{what}: {_w('diff', lang)} {label(x, lang)} = {base} "
                  + ("(IC 95 %)" if lang == "es" else "(95% CI)"))
    if title is None:
        from .i18n import msg

        family = msg("stats.family", lang, n=len(out), metrics=what, by=x, baseline=base,
                     levels=", ".join(_fmt(v, lang) for v in pd.unique(out[x])))
        title = f"{what} {_w('vs', lang)} {label(x, lang)} = {base}\n{family}"
    ax.set_title(title, fontsize=9)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    ax.gs_compare = out  # type: ignore[attr-defined]
    return ax


def plot(df: pd.DataFrame, x: str | None = None, y: str | None = None, hue: str | None = None,
         col: str | None = None, kind: Kind = "line", ax: Axes | None = None, *, lang: str = "en", title: str | None = None,
         **kw: Any) -> Axes | Figure:
    """A metric (or column) y against a parameter x; kind line | box | violin | strip | heatmap.

    ``hue`` splits by a second parameter or by "backend"; ``col`` draws one panel per
    value (and returns the Figure). For ``kind="heatmap"`` the second parameter is
    ``hue`` (rows) and y is the value shown: ``plot(df, "temperature", "distinct_2",
    hue="top_k", kind="heatmap")``. ``kind="compare"`` is a forest plot of each
    level of x against ``baseline=`` (default: the first level), see `forest`; given a
    comparison (``gs.plot(df.gs.compare(...), kind="compare")``) it draws that table.
    ``kind="agreement"`` draws a `gsexplore.agreement.agreement` table (KL along the
    text, the tokens under it); ``kind="transfer"`` an `agreement_sweep` table.
    """
    if kind in ("agreement", "transfer"):
        from . import plots_agreement

        draw = plots_agreement.agreement_line if kind == "agreement" else plots_agreement.transfer_forest
        return draw(df, ax=ax, lang=lang, title=title, **kw)
    if kind == "compare" and x is None and "family" in df.attrs:
        return forest(df, ax=ax, lang=lang, title=title, **kw)
    if x is None or y is None:
        raise ValueError(f"kind={kind!r} needs x and y (a parameter and a metric)")
    if col is not None:
        if ax is not None:
            raise ValueError("col draws its own figure: leave ax out")
        df = _prepare(df, y, [x, hue, col])
        levels = _levels(df[col])
        fig, axes = plt.subplots(1, len(levels), figsize=(5.2 * len(levels), 4.2), sharey=True,
                                 squeeze=False, layout="constrained")
        for i, (a, v) in enumerate(zip(axes[0], levels)):
            plot(_select(df, col, v), x, y, hue=hue, kind=kind, ax=a, lang=lang,
                 title=f"{label(col, lang)} = {_fmt(v, lang)}", **kw)
            if i and kind != "heatmap":
                a.set_ylabel("")
            if i < len(levels) - 1 and a.get_legend() is not None:
                a.get_legend().remove()  # one legend, on the last panel
        if title is None:
            title = f"{label(y, lang)} {_w('vs', lang)} {label(x, lang)}"
            if hue:
                title += f" {_w('by', lang)} {label(hue, lang)}"
        fig.suptitle(title)
        return fig
    if kind == "line":
        return line(df, x, y, hue, ax, lang=lang, title=title, **kw)
    if kind in ("box", "violin", "strip"):
        return distribution(df, x, y, hue, kind, ax, lang=lang, title=title)
    if kind == "heatmap":
        if hue is None:
            raise ValueError("a heatmap needs two parameters: x and hue (rows)")
        return heatmap(df, x, hue, y, ax, lang=lang, title=title, **kw)
    if kind == "compare":
        if hue is not None:
            raise ValueError("kind='compare' compares the levels of x: use col= to split, not hue")
        return forest(df, x, y, ax=ax, lang=lang, title=title, **kw)
    raise ValueError(f"kind must be line, box, violin, strip, heatmap, compare, agreement or transfer, not {kind!r}")


def plot_backends(df: pd.DataFrame, x: str, y: str, hue: str | None = None, kind: Kind = "line", *,
                  lang: str = "en", title: str | None = None) -> Figure:
    """The same plot for each backend side by side (shared y axis): local vs remote."""
    if "backend" not in df.columns:
        raise KeyError("the DataFrame has no 'backend' column")
    return plot(df, x, y, hue=hue, col="backend", kind=kind, lang=lang, title=title)


def save(obj: Axes | Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save the figure of an Axes or Figure as PNG, SVG or PDF (by the file's extension)."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg", "pdf"):
        raise ValueError(f"save to .png, .svg or .pdf, not {path.name!r}")
    fig = obj if isinstance(obj, Figure) else obj.get_figure()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt, dpi=dpi, bbox_inches="tight")
    return path
