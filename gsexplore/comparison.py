"""``df.gs.compare``: did a setting change a metric? Each level against a baseline, using every repeat.

Which test, when, and why

====================  ===============================================  ==================================
metric type           within strata (default)                          ``pairing="none"`` (pooled)
====================  ===============================================  ==================================
rate (0/1 per row:    Cochran-Mantel-Haenszel over the strata's 2x2     Fisher's exact test; Newcombe's
exact_match,          tables, common odds ratio (``effect``); the       interval of the difference;
is_error, ...)        mean within-stratum difference with a             Cohen's h
                      stratified bootstrap interval
mean (n_words,        stratified permutation test (labels shuffled      Mann-Whitney U; BCa bootstrap
latency_s, ...)       within each stratum); mean within-stratum         interval; Cohen's d
                      difference, stratified bootstrap interval;
                      Cohen's d on the within-stratum SD
group (distinct_2,    the outputs shuffled between the settings         (one value per cell)
pairwise_similarity)  within each stratum and the metric recomputed
                      on each side; stratified bootstrap of outputs
``model="mixed"``     MixedLM with a random intercept and slope per stratum: "prompts like these"
====================  ==================================================================================

A stratum is what must match for two runs to be "the same situation": the
prompt, the backend and model, and the values of the other varied parameters.
Every repeat counts (two prompts with six repeats each can show a large effect
at p < 0.01); the ``inference`` column says what the answer is about: "these
prompts" (the strata tests: a conclusion about the prompts you ran) or "prompts
like these" (the mixed model: a claim about prompts drawn like these, which needs
several prompts). `gsexplore.stratified` has the tests and the reasons.

p-values are Holm-adjusted over the family the result shows (every level and
metric of the call; ``result.attrs["family"]`` states it, and the forest plot
draws the same rows with the same ``p_adj``). When a difference is not
significant, a note (``result.attrs["notes"]``, shown under the table in a
notebook) says how many repeats per setting in each stratum would detect it with
80% power.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import pandas as pd

from . import stats
from .i18n import msg
from .metric_specs import METRICS
from .metrics import GROUP_TEXT_METRICS, add_metrics, default_metrics, metric_kind, varied_params
from .stratified import stratified_set_test, stratified_test

__all__ = ["compare", "significant", "Comparison", "UnderpoweredWarning", "COLUMNS"]

#: The columns of a comparison, in order (then ``pairing``, ``inference``, ``n_strata`` and ``effect_name``).
COLUMNS = ["baseline", "metric", "n", "paired", "diff", "ci_low", "ci_high", "effect", "test", "p_value", "p_adj"]
TAIL = ["pairing", "inference", "n_strata", "effect_name"]
UNSET = "(not set)"


class UnderpoweredWarning(UserWarning):
    """A difference was not significant at this n (only with ``warn=True``; otherwise a note)."""


class Comparison(pd.DataFrame):
    """The table of `compare`; in a notebook its notes (family, power advice) show under it."""

    @property
    def _constructor(self) -> type[pd.DataFrame]:
        return pd.DataFrame  # a slice is a plain table

    def _notes_text(self) -> list[str]:
        return [self.attrs["family"], *self.attrs.get("notes", [])] if "family" in self.attrs else []

    def __repr__(self) -> str:
        return "\n".join([super().__repr__(), *self._notes_text()])

    def _repr_html_(self) -> str | None:
        import html

        body = super()._repr_html_() or ""
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self._notes_text())
        return body + (f'<ul class="gs-notes" style="color:#555;font-size:smaller">{notes}</ul>' if notes else "")


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
        return pd.Series([""] * len(df), index=df.index)
    return df[cols].astype(str).agg("\x1f".join, axis=1)


def _used(ctx: list[str], data: pd.DataFrame) -> list[str]:
    """The stratum columns that vary (backend and model only when they differ)."""
    return [c for c in ctx if data[c].astype(str).nunique() > 1 or c not in ("backend", "model")]


def compare(df: pd.DataFrame, by: str, metric: str | list[str] | None = None, baseline: Any = None, *,
            alpha: float = 0.05, power: float = 0.8, pairing: Literal["auto", "none"] = "auto",
            model: Literal["strata", "mixed"] = "strata", seed: int = 0, warn: bool = False) -> pd.DataFrame:
    """Each level of ``by`` against ``baseline`` (default: its first level), per metric, using every repeat.

    Returns a tidy `Comparison`: ``by``, baseline, metric, n (observations of the
    smaller setting), paired (tested within strata), diff (level minus baseline:
    the mean within-stratum difference), ci_low, ci_high (95%), effect (Cohen's d,
    the common odds ratio for rates, or Cohen's h unpooled), test, p_value, p_adj
    (Holm over every row), pairing (the stratum columns), inference ("these
    prompts" or "prompts like these"), n_strata, effect_name. ``model="mixed"``
    fits a mixed-effects model per comparison; ``pairing="none"`` pools the runs
    (unpaired tests). Notes (the family, the repeats a non-significant difference
    would need) are in ``attrs["notes"]`` and under the table; ``warn=True`` also
    issues them as `UnderpoweredWarning`.
    """
    if by not in df.columns:
        raise KeyError(f"column {by!r} not in the DataFrame")
    if model not in ("strata", "mixed"):
        raise ValueError(f"model must be 'strata' or 'mixed', not {model!r}")
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
    records = []
    for m in metrics:
        data = work
        by_outputs = (m in GROUP_TEXT_METRICS and "content" in work.columns and pairing != "none"
                      and model == "strata")
        if by_outputs:  # the group metric is recomputed on shuffled outputs: every repeat counts
            ok = work["content"].notna() & (work["error_type"].isna() if "error_type" in work.columns else True)
            data = work[ok]
        elif m in METRICS and METRICS[m].level == "group" and "cell_id" in work.columns:
            data = work.drop_duplicates("cell_id")
        data = data.assign(**{m: pd.to_numeric(data[m].astype("object"), errors="coerce").astype("float64")})
        kind = metric_kind(m, df[m] if m in df.columns else data[m])
        strata_cols = _used(ctx, data) if pairing != "none" else []
        data = data.assign(_stratum=_key(data, strata_cols))
        a = data[data["_level"] == base]
        for lv in levels:
            if lv == base:
                continue
            b = data[data["_level"] == lv]
            records.append({by: lv, "baseline": base, "metric": m, "_kind": kind,
                            **_one(a, b, m, kind, pairing, model, seed, strata_cols,
                                   GROUP_TEXT_METRICS[m] if by_outputs else None)})
    out = pd.DataFrame.from_records(records)
    if out.empty:
        return pd.DataFrame(columns=[by, *COLUMNS, *TAIL])
    out["p_adj"] = stats.holm(out["p_value"].to_numpy())
    notes = _power_notes(out, by, alpha, power)
    if model == "mixed" and pairing != "none" and (out["n_strata"] < 5).any():
        notes.append(msg("stats.mixed_few", k=int(out["n_strata"].min())))
    strata = {(r[by], r["metric"]): r.pop("_strata") for r in records}
    out = Comparison(out[[by, *COLUMNS, *TAIL]].reset_index(drop=True))
    out.attrs = {"alpha": alpha, "by": by, "baseline": base, "notes": notes, "strata": strata,
                 "family": msg("stats.family", n=len(out), metrics=", ".join(metrics), by=by,
                               baseline=base, levels=", ".join(str(v) for v in levels if v != base))}
    if warn and notes:
        warnings.warn("; ".join(notes), UnderpoweredWarning, stacklevel=2)
    return out


def _one(a: pd.DataFrame, b: pd.DataFrame, m: str, kind: str, pairing: str, model: str, seed: int,
         strata_cols: list[str], set_statistic: Any = None) -> dict[str, Any]:
    """One level against the baseline: the row of the table (and its per-stratum breakdown)."""
    if pairing == "none":
        r = stats.unpaired_test(a[m].dropna().to_numpy(), b[m].dropna().to_numpy(), kind,  # type: ignore[arg-type]
                                seed=seed)
        return {"n": r.n, "paired": False, "diff": r.diff, "ci_low": r.ci_low, "ci_high": r.ci_high,
                "effect": r.effect, "test": r.test, "p_value": r.p_value, "pairing": "",
                "inference": "these runs", "n_strata": 1, "effect_name": r.effect_name,
                "_power_effect": r.power_effect, "_strata": None}
    if set_statistic is not None:
        s = stratified_set_test(a["content"].tolist(), b["content"].tolist(), a["_stratum"].to_numpy(),
                                b["_stratum"].to_numpy(), set_statistic, seed=seed)
    else:
        s = stratified_test(a[m].to_numpy(), b[m].to_numpy(), a["_stratum"].to_numpy(), b["_stratum"].to_numpy(),
                            kind, model=model, seed=seed)  # type: ignore[arg-type]
    breakdown = s.strata
    if not breakdown.empty and strata_cols:
        parts = breakdown["stratum"].str.split("\x1f", expand=True)
        parts.columns = strata_cols
        breakdown = pd.concat([parts, breakdown.drop(columns="stratum")], axis=1)
    return {"n": min(s.n_a, s.n_b), "paired": True, "diff": s.diff, "ci_low": s.ci_low, "ci_high": s.ci_high,
            "effect": s.effect, "test": s.test, "p_value": s.p_value, "pairing": "+".join(strata_cols),
            "inference": s.inference, "n_strata": s.n_strata, "effect_name": s.effect_name,
            "_power_effect": s.power_effect, "_strata": breakdown}


def _power_notes(out: pd.DataFrame, by: str, alpha: float, power: float) -> list[str]:
    """What a non-significant difference would need, counted the way its test uses data."""
    notes = []
    for _, r in out.iterrows():
        if r["diff"] == 0 or math.isnan(r["diff"]) or r["p_adj"] < alpha:
            continue
        need = stats.n_to_detect(r["_power_effect"], r["_kind"], False, alpha=alpha, power=power)
        if need is None:
            continue
        k = max(int(r["n_strata"]), 1)
        notes.append(msg("stats.underpowered", by=by, level=r[by], baseline=r["baseline"], metric=r["metric"],
                         diff=f"{r['diff']:+.3g}", n=r["n"], p=f"{r['p_adj']:.2g}", per=math.ceil(need / k),
                         strata=k, total=need, power=f"{power:.0%}"))
    return notes


def significant(result: pd.DataFrame, alpha: float | None = None) -> pd.DataFrame:
    """The rows of a comparison whose Holm-adjusted p is below alpha."""
    a = result.attrs.get("alpha", 0.05) if alpha is None else alpha
    return result[result["p_adj"] < a]
