"""``df.gs.compare``: did a setting change a metric? Each level against a baseline, with a test.

Which test, when, and why

====================  ======================================  ===========================================
metric type           paired (the sweep pairs the runs)       unpaired
====================  ======================================  ===========================================
rate (0/1 per row:    McNemar (exact binomial under 25        Fisher's exact test; Newcombe's hybrid
exact_match,          discordant pairs, else chi-square);     score interval of the difference;
is_error,             BCa bootstrap interval of the mean      Cohen's h
guided_valid, ...)    paired difference; Cohen's h
mean (n_words,        Wilcoxon signed-rank (or a paired       Mann-Whitney U; BCa bootstrap interval
distinct_2,           permutation test, ``means_test=         of the difference of means; Cohen's d
latency_s, ...)       "permutation"``); BCa bootstrap of the  (pooled SD)
                      mean difference; Cohen's d_z
====================  ======================================  ===========================================

Why: rates at n = 5 or 20 are far from normal, so the tests are exact or
rank-based and the intervals never leave [0, 1]; text metrics (word counts,
distinct-n) are skewed and tied, so means get rank tests and bootstrap intervals
rather than t. Pairing removes the variation between prompts (and, with a fixed
seed, between random streams), so a paired test sees smaller effects.

Pairing: two runs are a pair when they share the prompt, the backend and model,
the values of the other varied parameters, the repeat index and the choice (for
group metrics such as distinct_2, one value per cell: pairs are cells that share
all of that but the repeat). When the paired runs also share their seed (a seed
fixed by the user), the pairing says so. A level whose runs do not pair one to one
with the baseline's is compared unpaired. ``pairing="none"`` forces unpaired tests.

p-values are Holm-adjusted across every level and metric of the call (``p_adj``).
When a difference is not significant at ``alpha``, an `UnderpoweredWarning` says
how many observations per level would detect the observed effect with 80% power
(`gsexplore.stats.n_to_detect`).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import pandas as pd

from . import stats
from .metrics import METRICS, add_metrics, default_metrics, metric_kind, varied_params

__all__ = ["compare", "UnderpoweredWarning", "COLUMNS"]

#: The columns of a comparison, in order (then ``pairing`` and ``effect_name``).
COLUMNS = ["baseline", "metric", "n", "paired", "diff", "ci_low", "ci_high", "effect", "test", "p_value", "p_adj"]
UNSET = "(not set)"


class UnderpoweredWarning(UserWarning):
    """A difference was not significant at this n; the message says what n would detect it."""


def _context(df: pd.DataFrame, by: str) -> list[str]:
    """Columns that must match for two runs to be "the same situation" (all but ``by``)."""
    cols = [c for c in ("backend", "model") if c in df.columns]
    for c in ("prompt_id", "messages", "prompt"):
        if c in df.columns and df[c].notna().all():
            cols.append(c)
            break
    cols += [v for v in varied_params(df) if v != by and v in df.columns]
    return cols


def _level_column(s: pd.Series) -> pd.Series:
    return s.astype(object).where(s.notna(), UNSET)


def _levels(s: pd.Series) -> list[Any]:
    vals = [v for v in pd.unique(s) if v != UNSET]
    try:
        vals = sorted(vals)
    except TypeError:
        vals = sorted(vals, key=str)
    return vals + ([UNSET] if (s == UNSET).any() else [])


def _key(df: pd.DataFrame, cols: list[str]) -> pd.Series:
    if not cols:
        return pd.Series(range(len(df)), index=df.index).astype(str)
    return df[cols].astype(str).agg("\x1f".join, axis=1)


def _pairs(a: pd.DataFrame, b: pd.DataFrame, unit: list[str], metric: str) -> pd.DataFrame | None:
    """Baseline and level values side by side, matched on ``unit``; None when they do not pair 1:1."""
    if not unit:
        return None
    ka, kb = _key(a, unit), _key(b, unit)
    if ka.duplicated().any() or kb.duplicated().any():
        return None
    left = pd.DataFrame({"k": ka.values, "a": a[metric].values, "seed_a": a["seed"].values if "seed" in a else None})
    right = pd.DataFrame({"k": kb.values, "b": b[metric].values, "seed_b": b["seed"].values if "seed" in b else None})
    m = left.merge(right, on="k", how="inner")
    if len(m) < 2 or len(m) < 0.5 * max(len(a), len(b)):
        return None
    return m.dropna(subset=["a", "b"])


def compare(df: pd.DataFrame, by: str, metric: str | list[str] | None = None, baseline: Any = None, *,
            alpha: float = 0.05, power: float = 0.8, pairing: Literal["auto", "none"] = "auto",
            means_test: Literal["wilcoxon", "permutation"] = "wilcoxon", seed: int = 0,
            warn: bool = True) -> pd.DataFrame:
    """Each level of ``by`` against ``baseline`` (default: its first level), per metric.

    Returns a tidy DataFrame: ``by``, baseline, metric, n (pairs, or the smaller
    group), paired, diff (level minus baseline), ci_low, ci_high (95%), effect
    (Cohen's h for rates, d_z paired / d unpaired for means), test, p_value, p_adj
    (Holm over all rows), then pairing (which columns paired the runs) and
    effect_name. The test follows the metric's type and the pairing; see the
    module docstring for the table and the reasons.
    """
    if by not in df.columns:
        raise KeyError(f"column {by!r} not in the DataFrame")
    metrics = default_metrics(df) if metric is None else ([metric] if isinstance(metric, str) else list(metric))
    if any(m not in df.columns for m in metrics):
        unknown = [m for m in metrics if m not in df.columns and m not in METRICS]
        if unknown:
            raise KeyError(f"unknown metric or column {unknown}; metrics: {', '.join(METRICS)}")
        df = add_metrics(df)
    work = df.assign(_level=_level_column(df[by]))
    levels = _levels(work["_level"])
    base = UNSET if baseline is None and not levels else (levels[0] if baseline is None else baseline)
    if base not in levels:
        raise ValueError(f"baseline {baseline!r} is not a value of {by!r}: {levels}")
    if len(levels) < 2:
        raise ValueError(f"{by!r} has a single value ({levels}): nothing to compare")
    ctx = _context(work, by)
    records, notes = [], []
    for m in metrics:
        data = work
        group = m in METRICS and METRICS[m].level == "group"
        if group and "cell_id" in work.columns:
            data = work.drop_duplicates("cell_id")
        data = data.assign(**{m: pd.to_numeric(data[m].astype("object"), errors="coerce").astype("float64")})
        kind = metric_kind(m, df[m] if m in df.columns else data[m])
        unit = ctx if group else ctx + [c for c in ("repeat", "choice") if c in data.columns]
        a = data[data["_level"] == base]
        for lv in levels:
            if lv == base:
                continue
            b = data[data["_level"] == lv]
            pairs = None if pairing == "none" else _pairs(a, b, unit, m)
            if pairs is not None:
                r = stats.paired_test(pairs["a"].to_numpy(), pairs["b"].to_numpy(), kind,  # type: ignore[arg-type]
                                      means_test=means_test, seed=seed)
                same_seed = "seed" in data.columns and pairs["seed_a"].notna().all() and \
                    (pairs["seed_a"].astype(str) == pairs["seed_b"].astype(str)).all()
                how = "+".join(unit) + ("+seed" if same_seed else "")
            else:
                r = stats.unpaired_test(a[m].dropna().to_numpy(), b[m].dropna().to_numpy(), kind,  # type: ignore[arg-type]
                                        seed=seed)
                how = ""
            records.append({by: lv, "baseline": base, "metric": m, "n": r.n, "paired": r.paired,
                            "diff": r.diff, "ci_low": r.ci_low, "ci_high": r.ci_high, "effect": r.effect,
                            "test": r.test, "p_value": r.p_value, "pairing": how, "effect_name": r.effect_name,
                            "_power_effect": r.power_effect, "_kind": kind})
    out = pd.DataFrame.from_records(records)
    if out.empty:
        return pd.DataFrame(columns=[by, *COLUMNS, "pairing", "effect_name"])
    out["p_adj"] = stats.holm(out["p_value"].to_numpy())
    for _, r in out.iterrows():
        if r["diff"] != 0 and not math.isnan(r["diff"]) and not (r["p_adj"] < alpha):
            need = stats.n_to_detect(r["_power_effect"], r["_kind"], bool(r["paired"]), alpha=alpha, power=power)
            if need is not None:
                unit_word = "pairs" if r["paired"] else "per level"
                notes.append(f"{by}={r[by]} vs {r['baseline']}, {r['metric']}: diff {r['diff']:+.3g} is not "
                             f"significant at n={r['n']} (p_adj={r['p_adj']:.2g}); about n={need} {unit_word} "
                             f"would detect it with {power:.0%} power")
    out = out[[by, *COLUMNS, "pairing", "effect_name"]]
    out.attrs = {"alpha": alpha, "by": by, "baseline": base}
    if warn and notes:
        warnings.warn("; ".join(notes), UnderpoweredWarning, stacklevel=2)
    return out.reset_index(drop=True)


def significant(result: pd.DataFrame, alpha: float | None = None) -> pd.DataFrame:
    """The rows of a comparison whose Holm-adjusted p is below alpha."""
    a = result.attrs.get("alpha", 0.05) if alpha is None else alpha
    return result[result["p_adj"] < a]

