"""How far apart are two backends? Token by token (`agreement`) and conclusion by conclusion (`agreement_sweep`).

`agreement(a, b, texts)` has both backends score the same conversations with
``prompt_logprobs`` (teacher forcing: the text is given, nothing is sampled). At
every position both give their next-token distribution (top-``top`` tokens plus
the actual one); per position it reports

* ``kl``: KL(a || b) in nats and ``tv``: total variation, over the union of both
  top-``top`` lists plus one bucket ("rest") holding all the mass outside them. A
  token only one side lists gets, on the other side, that side's smallest listed
  probability (an upper bound: the true value is below it). With the same lists
  on both sides this is exactly the KL of the coarsened distributions, a lower
  bound of the full-vocabulary KL;
* ``top1_agree``: whether both put the same token first;
* ``logprob_diff``: log p_b - log p_a of the token that actually comes next.

`agreement_sweep(df_a, df_b, metric=...)` asks whether a sweep's conclusion
transfers: the same grid run on two backends, compared per cell (`gsexplore.stats`'
unpaired test, Holm over the cells), plus the interaction: does the effect of the
varied parameter differ between the backends (an OLS model with the prompt as a
stratum; statsmodels' type II ANOVA F test of ``backend x parameter``)?
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import stats
from .completion import to_messages
from .errors import BadRequestError, UnsupportedParam
from .i18n import msg
from .params import Params

__all__ = ["agreement", "agreement_sweep", "position_divergence", "COLUMNS"]

#: The columns of `agreement`, one row per scored position.
COLUMNS = ["text", "position", "token", "kl", "tv", "top1_agree", "top1_a", "top1_b",
           "logprob_a", "logprob_b", "logprob_diff", "rest_a", "rest_b"]
_TINY = 1e-300  # a probability that rounds to zero still has a finite log


def _name(backend: Any) -> str:
    info = getattr(backend, "info", None)
    try:
        d = info() if callable(info) else {}
    except Exception:  # noqa: BLE001 - a name is only decoration
        d = {}
    return str(d.get("backend") or getattr(backend, "name", None) or type(backend).__name__)


def _score(backend: Any, messages: list[dict[str, Any]], top: int) -> list[dict[str, Any] | None]:
    """The backend's prompt_logprobs for ``messages`` (one generated token, greedy)."""
    why = msg("agreement.no_prompt_logprobs", "en", backend=_name(backend))
    try:
        c = backend.chat(messages, Params(prompt_logprobs=top, max_tokens=1, temperature=0.0))
    except BadRequestError as e:  # a server that refuses the field (OpenAI) rather than ignoring it
        if "prompt_logprobs" in str(e):
            raise UnsupportedParam("prompt_logprobs", _name(backend), why) from e
        raise
    entries = c.prompt_logprobs
    if not entries or all(e is None for e in entries):  # a server that ignores it (llama-server)
        raise UnsupportedParam("prompt_logprobs", _name(backend), why)
    return entries


def _dist(entry: dict[str, Any]) -> tuple[str, dict[str, float], str]:
    """(actual token id, {token id: logprob}, the rank-1 token id) of one vLLM prompt_logprobs entry."""
    ids = list(entry)
    lps = {k: float(v["logprob"]) for k, v in entry.items()}
    first = min(entry, key=lambda k: (entry[k].get("rank") or math.inf, -lps[k]))
    return ids[0], lps, first  # vLLM and the local engine put the actual token first


def _filled(lp: dict[str, float], union: list[str]) -> np.ndarray:
    """Probabilities over ``union`` + rest; an unlisted token gets this side's smallest listed probability."""
    listed = np.exp(np.array(list(lp.values())))
    floor = float(listed.min()) if len(listed) else 0.0
    p = np.array([math.exp(lp[t]) if t in lp else floor for t in union])
    missing = np.array([t not in lp for t in union])
    room = max(0.0, 1.0 - float(listed.sum()))  # what is not listed: the imputed tokens come out of it
    if missing.any() and p[missing].sum() > room:
        p[missing] *= room / p[missing].sum()
    return np.append(p, max(0.0, 1.0 - float(p.sum())))


def position_divergence(a: dict[str, float], b: dict[str, float]) -> tuple[float, float, float, float]:
    """(KL(a||b), TV, rest_a, rest_b) over the union of both lists plus one "rest" bucket.

    ``a`` and ``b`` map token ids to log-probabilities (each side's top list). A
    token only one side lists gets, on the other side, that side's smallest listed
    probability (an upper bound of its true value, capped by the unlisted mass).
    """
    union = sorted(set(a) | set(b))
    p, q = _filled(a, union), _filled(b, union)
    mask = p > 0
    kl = float(np.sum(p[mask] * (np.log(p[mask]) - np.log(np.maximum(q[mask], _TINY)))))
    tv = 0.5 * float(np.abs(p - q).sum())
    return max(kl, 0.0), tv, float(p[-1]), float(q[-1])


def agreement(a: Any, b: Any, texts_or_messages: str | Sequence[Any], *, top: int = 20) -> pd.DataFrame:
    """Per-position agreement of backends ``a`` and ``b`` on the same conversations (teacher forcing).

    ``texts_or_messages``: a text, a list of texts, or a list of conversations (lists
    of {"role", "content"}). Both backends must use the same tokenizer. Returns one
    row per scored position (`COLUMNS`); ``df.attrs["summary"]`` has the mean,
    median and 95th percentile of kl, tv, top1_agree and |logprob_diff| with 95%
    bootstrap intervals (`gsexplore.stats`), ``df.attrs["seconds"]`` the time each
    backend took. ``gs.plot(df, kind="agreement")`` draws KL along the text.

    Raises:
        UnsupportedParam: a backend returned no ``prompt_logprobs`` (llama-server, OpenAI).
        ValueError: ``top`` is outside 1..20, or the two backends tokenised a text differently.
    """
    if not isinstance(top, int) or not 1 <= top <= 20:
        raise ValueError(f"top must be an int from 1 to 20 (vLLM's prompt_logprobs range), not {top!r}")
    items = [texts_or_messages] if isinstance(texts_or_messages, str) or (
        isinstance(texts_or_messages, list) and texts_or_messages and isinstance(texts_or_messages[0], dict)) \
        else list(texts_or_messages)
    rows, seconds = [], {"a": 0.0, "b": 0.0}
    for i, item in enumerate(items):
        messages = to_messages(item)
        t0 = time.perf_counter()
        ea = _score(a, messages, top)
        t1 = time.perf_counter()
        eb = _score(b, messages, top)
        seconds["a"] += t1 - t0
        seconds["b"] += time.perf_counter() - t1
        if len(ea) != len(eb):
            raise ValueError(f"text {i}: the backends tokenised it differently ({len(ea)} vs {len(eb)} tokens); "
                             "agreement needs the same tokenizer on both sides")
        for pos, (x, y) in enumerate(zip(ea, eb)):
            if x is None or y is None:
                continue
            ta, lpa, first_a = _dist(x)
            tb, lpb, first_b = _dist(y)
            if ta != tb:
                raise ValueError(f"text {i}, position {pos}: token {ta} on one side, {tb} on the other; "
                                 "agreement needs the same tokenizer on both sides")
            # the actual token is reported whatever its rank; the divergence uses the top lists only
            top_a = {k: v for k, v in lpa.items() if (x[k].get("rank") or 0) <= top}
            top_b = {k: v for k, v in lpb.items() if (y[k].get("rank") or 0) <= top}
            kl, tv, rest_a, rest_b = position_divergence(top_a, top_b)
            rows.append({"text": i, "position": pos, "token": x[ta].get("decoded_token"), "kl": kl, "tv": tv,
                         "top1_agree": first_a == first_b, "top1_a": x[first_a].get("decoded_token"),
                         "top1_b": y[first_b].get("decoded_token"), "logprob_a": lpa[ta], "logprob_b": lpb[tb],
                         "logprob_diff": lpb[tb] - lpa[ta], "rest_a": rest_a, "rest_b": rest_b})
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.attrs = {"a": _name(a), "b": _name(b), "top": top, "seconds": seconds, "positions": len(df),
                "rest": msg("agreement.rest_bucket", top=top), "summary": summarize_agreement(df)}
    return df


def summarize_agreement(df: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """Mean, median and 95th percentile of kl, tv, top1_agree and |logprob_diff|, each with a 95% bootstrap CI."""
    stats_ = {"mean": np.mean, "median": np.median, "p95": _p95}
    out = []
    for col, values in (("kl", df["kl"]), ("tv", df["tv"]), ("top1_agree", df["top1_agree"].astype(float)),
                        ("abs_logprob_diff", df["logprob_diff"].abs())):
        v = values.to_numpy(float)
        rec: dict[str, Any] = {"measure": col, "n": len(v)}
        for name, f in stats_.items():
            rec[name] = float(f(v, axis=-1)) if len(v) else float("nan")
            rec[f"{name}_low"], rec[f"{name}_high"] = stats.bootstrap_ci(v, f, seed=seed)
        out.append(rec)
    return pd.DataFrame(out).set_index("measure")


def _p95(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.quantile(x, 0.95, axis=axis)


# --------------------------------------------------------------------------
# does a sweep's conclusion transfer?


def agreement_sweep(df_a: pd.DataFrame, df_b: pd.DataFrame, metric: str, *, by: str | None = None,
                    alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """The same grid on two backends: each cell compared (unpaired, Holm), and the interaction tested.

    Rows: one per cell (the prompt and the value of ``by``, the varied parameter;
    default the first one the sweeps varied) with n_a, n_b, mean_a, mean_b, diff
    (b minus a), ci_low, ci_high, test, p_value, p_adj (Holm over the cells); then
    one row ``cell="interaction"``: the F test of backend x ``by`` (p_adj is its p,
    a family of its own). ``attrs["notes"]`` states the families;
    ``gs.plot(result, kind="transfer")`` draws it as a forest plot.
    """
    from .metrics import metric_kind, metric_values, varied_params, with_metric

    if by is None:
        varied = varied_params(df_a) or varied_params(df_b)
        if not varied:
            raise ValueError("the sweeps vary no parameter: name it with by=")
        by = varied[0]
    for name, d in (("df_a", df_a), ("df_b", df_b)):
        if by not in d.columns:
            raise KeyError(f"{name} has no column {by!r}")
    frames = []
    for side, d in (("a", df_a), ("b", df_b)):
        d = with_metric(d, metric)
        d = d.assign(_y=metric_values(d, metric).to_numpy(), _side=side)
        if "error_type" in d.columns:
            d = d[d["error_type"].isna()]
        frames.append(d)
    both = pd.concat(frames, ignore_index=True)
    kind = metric_kind(metric, both["_y"])
    cell_cols = [c for c in ("prompt_id",) if c in both.columns and both[c].notna().all()] + [by]
    rows = []
    for key, g in both.groupby(cell_cols, sort=True, dropna=False):
        ya = g.loc[g["_side"] == "a", "_y"].dropna().to_numpy()
        yb = g.loc[g["_side"] == "b", "_y"].dropna().to_numpy()
        r = stats.unpaired_test(ya, yb, kind, seed=seed)  # type: ignore[arg-type]
        rows.append({**dict(zip(cell_cols, key if isinstance(key, tuple) else (key,))), "cell": "cell",
                     "metric": metric, "n_a": len(ya), "n_b": len(yb),
                     "mean_a": float(ya.mean()) if len(ya) else math.nan,
                     "mean_b": float(yb.mean()) if len(yb) else math.nan, "diff": r.diff, "ci_low": r.ci_low,
                     "ci_high": r.ci_high, "test": r.test, "p_value": r.p_value})
    out = pd.DataFrame(rows)
    out["p_adj"] = stats.holm(out["p_value"].to_numpy())
    p_int, f_int = _interaction(both, by, cell_cols[:-1])
    inter = {c: None for c in cell_cols} | {"cell": "interaction", "metric": metric, "n_a": int((both["_side"] == "a").sum()),
                                              "n_b": int((both["_side"] == "b").sum()), "mean_a": math.nan,
                                              "mean_b": math.nan, "diff": math.nan, "ci_low": math.nan,
                                              "ci_high": math.nan, "test": f"ols anova type II (F={f_int:.3g})",
                                              "p_value": p_int, "p_adj": p_int}
    out = pd.concat([out, pd.DataFrame([inter])], ignore_index=True)
    out.attrs = {"by": by, "metric": metric, "alpha": alpha, "cells": cell_cols,
                 "notes": [msg("stats.family", n=len(rows), metrics=metric, by=by, baseline="a",
                               levels="b"),
                           msg("agreement.interaction", by=by, metric=metric, p=f"{p_int:.2g}")],
                 "title": msg("agreement.sweep_title", metric=metric, a="a", b="b", n=len(rows))}
    return out


def _interaction(both: pd.DataFrame, by: str, strata: list[str]) -> tuple[float, float]:
    """(p, F) of the backend x ``by`` interaction: OLS with the prompt as a stratum, type II ANOVA."""
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    data = pd.DataFrame({"y": both["_y"].astype(float), "side": both["_side"], "level": both[by].astype(str)})
    formula = "y ~ C(side) * C(level)"
    for i, s in enumerate(strata):
        if both[s].nunique() > 1:  # a single prompt is no stratum (and has no column to test)
            data[f"s{i}"] = both[s].astype(str).to_numpy()
            formula += f" + C(s{i})"
    data = data.dropna()
    if data["level"].nunique() < 2 or data["y"].nunique() < 2:
        return 1.0, 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a perfect fit makes F undefined; handled below
        table = anova_lm(smf.ols(formula, data).fit(), typ=2)
    row = table.loc["C(side):C(level)"]
    p = float(row["PR(>F)"])
    return (1.0 if math.isnan(p) else p), float(row["F"])
