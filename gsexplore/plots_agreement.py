"""Drawings of `gsexplore.agreement`: KL along the text, and the forest plot of whether a conclusion transfers.

Reached through ``gs.plot(df, kind="agreement")`` and ``gs.plot(result, kind="transfer")``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from .i18n import msg

__all__ = ["agreement_line", "transfer_forest"]


def agreement_line(df: pd.DataFrame, ax: Axes | None = None, *, text: int | None = None, lang: str = "en",
                   title: str | None = None, max_labels: int = 80) -> Axes:
    """KL(a || b) at each position of one text (default: the first), the tokens written under the axis.

    Positions where the two backends put different tokens first are marked in red.
    """
    if "kl" not in df.columns or "position" not in df.columns:
        raise ValueError("kind='agreement' draws the table of gs.agreement(a, b, texts)")
    text = int(df["text"].min()) if text is None else text
    d = df[df["text"] == text]
    if d.empty:
        raise ValueError(f"text {text} is not in the table: {sorted(df['text'].unique())}")
    if ax is None:
        _, ax = plt.subplots(figsize=(min(2 + 0.18 * len(d), 16), 3.6), layout="constrained")
    x = np.arange(len(d))
    ax.plot(x, d["kl"].to_numpy(float), color="C0", marker=".", linewidth=1)
    off = ~d["top1_agree"].to_numpy(bool)
    ax.scatter(x[off], d["kl"].to_numpy(float)[off], color="C3", zorder=3,
               label="top-1 differs" if lang == "en" else "top-1 distinto")
    step = max(1, len(d) // max_labels)
    ax.set_xticks(x[::step], [repr(t)[1:-1] for t in d["token"].astype(str)][::step], rotation=90, fontsize=7)
    ax.set_ylabel("KL (nats)")
    ax.grid(alpha=0.3, axis="y")
    if off.any():
        ax.legend(loc="best", fontsize=8)
    a, b = df.attrs.get("a", "a"), df.attrs.get("b", "b")
    ax.set_title(title if title is not None else msg("agreement.summary_title", lang, a=a, b=b, n=len(d)),
                 fontsize=10)
    return ax


def transfer_forest(result: pd.DataFrame, ax: Axes | None = None, *, lang: str = "en",
                    title: str | None = None) -> Axes:
    """Forest plot of `agreement_sweep`: b minus a per cell with its 95% CI; the interaction's p in the title."""
    if "cell" not in result.columns or "by" not in result.attrs:
        raise ValueError("kind='transfer' draws the table of gs.agreement_sweep(df_a, df_b, metric=...)")
    cells = result[result["cell"] == "cell"]
    inter = result[result["cell"] == "interaction"].iloc[0]
    cols = result.attrs["cells"]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 0.45 * len(cells) + 2.0), layout="constrained")
    ys = np.arange(len(cells))[::-1]
    diff = cells["diff"].to_numpy(float)
    err = np.vstack([diff - cells["ci_low"].to_numpy(float), cells["ci_high"].to_numpy(float) - diff])
    ax.errorbar(diff, ys, xerr=err, fmt="none", ecolor="C0", capsize=3)
    alpha = result.attrs.get("alpha", 0.05)
    sig = (cells["p_adj"] < alpha).to_numpy()
    ax.scatter(diff[sig], ys[sig], color="C0", zorder=3, label=f"p_adj < {alpha:g}")
    ax.scatter(diff[~sig], ys[~sig], facecolors="white", edgecolors="C0", zorder=3, label=f"p_adj ≥ {alpha:g}")
    ax.axvline(0, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(ys, [", ".join(f"{c}={r[c]}" for c in cols) for _, r in cells.iterrows()], fontsize=8)
    ax.set_xlabel(f"{result.attrs['metric']}: b - a (95% CI)" if lang == "en"
                  else f"{result.attrs['metric']}: b - a (IC 95 %)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    if title is None:
        meta = result.attrs
        title = (msg("agreement.sweep_title", lang, metric=meta["metric"], a="a", b="b", n=len(cells)) + "\n"
                 + msg("agreement.interaction", lang, by=meta["by"], metric=meta["metric"],
                       p=f"{inter['p_value']:.2g}"))
    ax.set_title(title, fontsize=9)
    ax.gs_transfer = result  # type: ignore[attr-defined]
    return ax
