"""Metrics of sweep outputs: per row, per group (a cell across its repeats), and summaries.

Words are ``\\w+`` runs of the casefolded text (accents kept, punctuation dropped).

Per row
    n_chars, n_words, n_tokens (= completion_tokens),
    repetition_rate: 1 - unique/total over the row's word 3-grams, i.e. the share of
        3-grams that repeat an earlier one (0 with fewer than 3 words),
    exact_match: normalised content == normalised expected (casefold, accents and
        punctuation stripped, spaces collapsed); any of them when expected is a list,
    contains_expected: the normalised expected appears in the normalised content as
        whole words,
    is_error: 1 for a failed request.
Per group (all successful outputs of one ``cell_id``: its repeats and choices)
    distinct_1 / distinct_2: unique word n-grams over all word n-grams of the
        group's outputs (n-grams do not cross outputs; 1 = nothing repeats),
    pairwise_similarity: mean Jaccard similarity of the word sets of every pair of
        outputs (1 = all the same words, 0 = nothing shared; NaN with one output),
    validity_rate: share of guided outputs that satisfy their constraint,
    n_outputs.
Text metrics are NaN on error rows.

`summarize` (also ``df.gs.summary``) gives the mean and a 95% interval per group,
chosen by the metric's type (`metric_kind`): rates (booleans and 0/1 metrics such
as exact_match, is_error, guided_valid) get the Wilson score interval; every other
metric gets a seeded BCa bootstrap interval of the mean (`gsexplore.stats`), kept
inside the metric's range. The ``interval`` column names the method. Group metrics
count once per cell, row metrics once per row.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from itertools import combinations
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .metric_specs import MEASURES, METRICS
from .stats import metric_kind

__all__ = ["METRICS", "GROUP_TEXT_METRICS", "normalize", "words", "ngrams", "repetition_rate", "exact_match", "contains",
           "distinct_n", "pairwise_similarity", "row_metrics", "group_metrics", "add_metrics",
           "mean_ci", "metric_kind", "metric_values", "summarize", "varied_params", "with_metric"]

_WORD = re.compile(r"\w+", re.UNICODE)


# --------------------------------------------------------------------------
# text helpers


def normalize(text: str | None) -> str:
    """Casefold, strip accents and punctuation, collapse whitespace ("¡Santiago!" -> "santiago")."""
    if not text:
        return ""
    t = unicodedata.normalize("NFKD", text.casefold())
    t = "".join(ch for ch in t if not unicodedata.combining(ch))
    t = "".join(" " if unicodedata.category(ch)[0] in "PSZC" else ch for ch in t)
    return " ".join(t.split())


def words(text: str | None) -> list[str]:
    """The casefolded words of a text."""
    return _WORD.findall(text.casefold()) if text else []


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """The n-grams of a token list."""
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def repetition_rate(text: str | None, n: int = 3) -> float:
    """Share of the word n-grams that repeat an earlier one (1 - unique/total); 0 when too short."""
    grams = ngrams(words(text), n)
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def _expected_list(expected: Any) -> list[str] | None:
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        return None
    if isinstance(expected, (list, tuple)):
        return [str(e) for e in expected]
    s = str(expected)
    if s.startswith("["):
        try:
            v = json.loads(s)
            if isinstance(v, list):
                return [str(e) for e in v]
        except json.JSONDecodeError:
            pass
    return [s]


def exact_match(content: str | None, expected: Any) -> bool | None:
    """Normalised equality with the expected answer (any of a list); None without one."""
    exp = _expected_list(expected)
    if exp is None:
        return None
    c = normalize(content)
    return any(c == normalize(e) for e in exp)


def contains(content: str | None, expected: Any) -> bool | None:
    """Whether the normalised expected answer appears as whole words in the content; None without one."""
    exp = _expected_list(expected)
    if exp is None:
        return None
    c = f" {normalize(content)} "
    return any(normalize(e) and f" {normalize(e)} " in c for e in exp)


def distinct_n(texts: Iterable[str | None], n: int) -> float:
    """Unique word n-grams over all word n-grams across texts (NaN when there are none)."""
    total = 0
    seen: set[tuple[str, ...]] = set()
    for t in texts:
        g = ngrams(words(t), n)
        total += len(g)
        seen.update(g)
    return len(seen) / total if total else float("nan")


def jaccard(a: set[str], b: set[str]) -> float:
    """|a ∩ b| / |a ∪ b| (1 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def pairwise_similarity(texts: Sequence[str | None]) -> float:
    """Mean Jaccard similarity of the word sets over every pair of texts (NaN with fewer than 2)."""
    sets = [set(words(t)) for t in texts]
    pairs = list(combinations(sets, 2))
    if not pairs:
        return float("nan")
    return float(np.mean([jaccard(a, b) for a, b in pairs]))


#: The group metrics that are a function of a group's texts: what a permutation test recomputes.
GROUP_TEXT_METRICS: dict[str, Any] = {
    "distinct_1": lambda texts: distinct_n(texts, 1),
    "distinct_2": lambda texts: distinct_n(texts, 2),
    "pairwise_similarity": pairwise_similarity,
}


# --------------------------------------------------------------------------
# DataFrames


def _ok(df: pd.DataFrame) -> pd.Series:
    if "error_type" in df.columns:
        return df["error_type"].isna()
    return pd.Series(True, index=df.index)


def row_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """The per-row metrics of a sweep DataFrame (same index)."""
    content = df["content"] if "content" in df.columns else pd.Series(None, index=df.index, dtype=object)
    ok = _ok(df) & content.notna()
    expected = df["expected"] if "expected" in df.columns else pd.Series(None, index=df.index, dtype=object)
    out = pd.DataFrame(index=df.index)

    def per_row(f: Any) -> list[Any]:
        return [f(c) if o else np.nan for c, o in zip(content, ok)]

    out["n_chars"] = pd.array(per_row(len), dtype="float64")
    out["n_words"] = pd.array(per_row(lambda c: len(words(c))), dtype="float64")
    if "completion_tokens" in df.columns:
        out["n_tokens"] = pd.to_numeric(df["completion_tokens"], errors="coerce").astype("float64")
    else:
        out["n_tokens"] = np.nan
    out["repetition_rate"] = pd.array(per_row(repetition_rate), dtype="float64")
    em, ct = [], []
    for c, e, o in zip(content, expected, ok):
        m = exact_match(c, e) if o else None
        em.append(np.nan if m is None else float(m))
        m = contains(c, e) if o else None
        ct.append(np.nan if m is None else float(m))
    out["exact_match"] = pd.array(em, dtype="float64")
    out["contains_expected"] = pd.array(ct, dtype="float64")
    out["is_error"] = (~_ok(df)).astype("float64")
    return out


def group_metrics(df: pd.DataFrame, by: str | list[str] = "cell_id") -> pd.DataFrame:
    """One row per group (default: per cell) with distinct_1/2, pairwise_similarity, validity_rate, n_outputs."""
    keys = [by] if isinstance(by, str) else list(by)
    if df.empty:
        return pd.DataFrame(columns=keys + [k for k, m in METRICS.items() if m.level == "group"])
    work = df.assign(_ok=_ok(df) & df["content"].notna())
    records = []
    for key, g in work.groupby(keys, sort=False, dropna=False):
        texts = list(g.loc[g["_ok"], "content"])
        valid = g["guided_valid"].dropna() if "guided_valid" in g.columns else pd.Series([], dtype=object)
        rec = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        rec.update({
            "distinct_1": distinct_n(texts, 1),
            "distinct_2": distinct_n(texts, 2),
            "pairwise_similarity": pairwise_similarity(texts),
            "validity_rate": float(valid.astype(float).mean()) if len(valid) else np.nan,
            "n_outputs": float(len(texts)),
        })
        records.append(rec)
    return pd.DataFrame.from_records(records)




def add_metrics(df: pd.DataFrame, by: str | list[str] = "cell_id") -> pd.DataFrame:
    """A copy of df with the row metrics and the group metrics (broadcast to each row of the group)."""
    rows = row_metrics(df)
    out = df.drop(columns=[c for c in METRICS if c in df.columns]).join(rows)
    keys = [by] if isinstance(by, str) else list(by)
    if all(k in df.columns for k in keys) and len(df):
        groups = group_metrics(df, keys)
        out = out.merge(groups, on=keys, how="left", sort=False)
        out.index = df.index
    else:
        for k, m in METRICS.items():
            if m.level == "group":
                out[k] = np.nan
    out.attrs = dict(df.attrs)
    return out


# --------------------------------------------------------------------------
# intervals and summaries

def with_metric(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``df`` with the column ``metric`` (metrics added on demand), one row per cell for a group metric.

    Raises:
        KeyError: ``metric`` is neither a column of ``df`` nor a metric.
    """
    if metric not in df.columns:
        if metric not in METRICS:
            raise KeyError(f"unknown metric or column {metric!r}: neither a column nor a metric "
                           f"({', '.join(METRICS)})")
        df = add_metrics(df)
    if metric in METRICS and METRICS[metric].level == "group" and "cell_id" in df.columns:
        df = df.drop_duplicates("cell_id")
    return df


def metric_values(df: pd.DataFrame, metric: str) -> pd.Series:
    """The metric's values as floats: metrics added on demand, one per cell for group metrics."""
    values = with_metric(df, metric)[metric]
    return pd.to_numeric(values.astype("object"), errors="coerce").astype("float64")


def mean_ci(values: Iterable[float], metric: str | None = None, seed: int = 0) -> tuple[int, float, float, float, float]:
    """(n, mean, std, ci_low, ci_high): Wilson for a rate, BCa bootstrap for a mean (see `summarize`)."""
    from .stats import interval

    vals = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype="object")
    kind = metric_kind(metric, vals) if metric is not None else metric_kind("", vals)
    m = (METRICS.get(metric) or MEASURES.get(metric)) if metric else None
    iv = interval(vals, kind, seed=seed, bounds=m.bounds if m else None)  # type: ignore[arg-type]
    return iv.n, iv.mean, iv.std, iv.low, iv.high


def varied_params(df: pd.DataFrame) -> list[str]:
    """The parameters a sweep varied (df.attrs["varied"], else the parameter columns with >1 value)."""
    v = df.attrs.get("varied")
    if v:
        return [c for c in v if c in df.columns]
    from .params import Params

    out = []
    for name in Params.names():
        if name == "seed" or name not in df.columns:
            continue
        if df[name].astype(str).nunique(dropna=False) > 1:
            out.append(name)
    return out


def default_metrics(df: pd.DataFrame) -> list[str]:
    """The metrics worth summarising for this sweep (exact match only with expected answers, ...)."""
    ms = ["n_words", "n_tokens", "repetition_rate", "distinct_1", "distinct_2", "pairwise_similarity"]
    if "expected" in df.columns and df["expected"].notna().any():
        ms += ["exact_match", "contains_expected"]
    if "guided_valid" in df.columns and df["guided_valid"].notna().any():
        ms.append("validity_rate")
    if "error_type" in df.columns and df["error_type"].notna().any():
        ms.append("is_error")
    ms += [c for c in ("latency_s", "tokens_per_s") if c in df.columns]
    ms += [c for c in ("mean_entropy", "perplexity") if c in df.columns and df[c].notna().any()]
    return ms


def default_by(df: pd.DataFrame) -> list[str]:
    """Backend (when several) and the varied parameters."""
    by = []
    if "backend" in df.columns and df["backend"].nunique() > 1:
        by.append("backend")
    if "model" in df.columns and df["model"].nunique() > 1:
        by.append("model")
    by += varied_params(df)
    return by or (["backend"] if "backend" in df.columns else [])


def summarize(df: pd.DataFrame, by: str | list[str] | None = None, metrics: str | list[str] | None = None,
              *, rate_method: str = "wilson", seed: int = 0) -> pd.DataFrame:
    """Tidy summary: one row per group and metric with n, mean, std, ci_low, ci_high, interval.

    Rates get Wilson (``rate_method="clopper-pearson"`` for the exact interval), other
    metrics a seeded BCa bootstrap interval of the mean (`gsexplore.stats.interval`).
    """
    from .stats import interval

    by = default_by(df) if by is None else ([by] if isinstance(by, str) else list(by))
    metrics = default_metrics(df) if metrics is None else ([metrics] if isinstance(metrics, str) else list(metrics))
    missing = [m for m in metrics if m not in df.columns]
    if any(m in METRICS for m in missing):
        df = add_metrics(df)
    unknown = [m for m in metrics if m not in df.columns]
    if unknown:
        raise KeyError(f"unknown metric or column {unknown}; metrics: {', '.join(METRICS)}")
    records = []
    for metric in metrics:
        data = df
        spec = METRICS.get(metric) or MEASURES.get(metric)
        if spec is not None and spec.level == "group" and "cell_id" in df.columns:
            data = df.drop_duplicates("cell_id")  # a group metric counts once per cell
        kind = metric_kind(metric, data[metric])
        groups = data.groupby(by, sort=True, dropna=False) if by else [((), data)]
        for key, g in groups:
            vals = pd.to_numeric(g[metric].astype("object"), errors="coerce")
            iv = interval(vals, kind, rate_method=rate_method, seed=seed,  # type: ignore[arg-type]
                          bounds=spec.bounds if spec else None)
            rec = dict(zip(by, key if isinstance(key, tuple) else (key,)))
            rec.update({"metric": metric, "n": iv.n, "mean": iv.mean, "std": iv.std, "ci_low": iv.low,
                        "ci_high": iv.high, "interval": iv.method})
            records.append(rec)
    out = pd.DataFrame.from_records(records, columns=by + ["metric", "n", "mean", "std", "ci_low", "ci_high",
                                                          "interval"])
    out.attrs = {}
    return out
