"""Tests within strata: every repeat of every prompt counts, and prompts are not mixed up.

A sweep's runs come in strata (a prompt, on one backend and model, with the other
varied parameters fixed). Averaging the repeats of each prompt and testing the
prompt means throws the repeats away: with two prompts no test can reach 5%. These
tests compare two settings inside each stratum and combine the strata.

====================  ==============================================  =====================
question              means                                           rates (0/1)
====================  ==============================================  =====================
"these prompts"       stratified permutation test (the setting's      Cochran-Mantel-Haenszel
(``model="strata"``)  labels shuffled within each stratum); effect    (statsmodels
                      = mean within-stratum difference, stratified    StratifiedTable), common
                      percentile bootstrap interval; Cohen's d on     odds ratio; the same
                      the pooled within-stratum SD                    difference and interval
"prompts like these"  mixed-effects model with a random intercept     the same linear model
(``model="mixed"``)   and slope per stratum (statsmodels MixedLM):    on the 0/1 outcome
                      the effect generalises to prompts drawn like
                      these
====================  ==============================================  =====================

Why: the permutation test is exact in spirit at any n (its only assumption is
that, without an effect, the labels inside a prompt are exchangeable) and needs no
normality from skewed text metrics; CMH is the classic test of a common effect
over 2x2 tables. Both answer for the prompts at hand; only the mixed model speaks
for prompts like these, and it needs several prompts to say anything.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import numpy as np
import pandas as pd

__all__ = ["StratifiedResult", "stratified_test", "stratified_set_test", "INFERENCE", "N_PERMUTATIONS"]

#: Resamples of the permutation test (p can go down to 1/10000).
N_PERMUTATIONS = 9999
#: The question each model answers.
INFERENCE = {"strata": "these prompts", "mixed": "prompts like these"}


@dataclass(frozen=True)
class StratifiedResult:
    """b against a within strata: the combined difference, its interval, the test and the per-stratum breakdown."""

    n_a: int
    n_b: int
    n_strata: int
    diff: float
    ci_low: float
    ci_high: float
    effect: float
    effect_name: str
    test: str
    p_value: float
    inference: str
    power_effect: float  # Cohen's d (within strata) or h: what power analysis uses
    strata: pd.DataFrame = field(repr=False, compare=False)


def _groups(a: Sequence[float], b: Sequence[float], strata_a: Sequence[Any], strata_b: Sequence[Any]
            ) -> list[tuple[Any, np.ndarray, np.ndarray]]:
    """(stratum, values a, values b) for the strata where both settings have values."""
    fa = pd.DataFrame({"s": list(strata_a), "v": np.asarray(a, float)}).dropna()
    fb = pd.DataFrame({"s": list(strata_b), "v": np.asarray(b, float)}).dropna()
    ga, gb = dict(tuple(fa.groupby("s", sort=True))), dict(tuple(fb.groupby("s", sort=True)))
    return [(s, ga[s]["v"].to_numpy(), gb[s]["v"].to_numpy()) for s in ga if s in gb]


def _combined(groups: list[tuple[Any, np.ndarray, np.ndarray]]) -> float:
    return float(np.mean([vb.mean() - va.mean() for _, va, vb in groups]))


def _permutation_p(groups: list[tuple[Any, np.ndarray, np.ndarray]], rng: np.random.Generator,
                   n_resamples: int) -> float:
    """Two-sided p of the mean within-stratum difference, labels shuffled within each stratum."""
    observed = _combined(groups)
    total = np.zeros(n_resamples)
    for _, va, vb in groups:
        v = np.concatenate([va, vb])
        idx = rng.permuted(np.tile(np.arange(len(v)), (n_resamples, 1)), axis=1)
        total += v[idx[:, len(va):]].mean(axis=1) - v[idx[:, :len(va)]].mean(axis=1)
    total /= len(groups)
    tol = 1e-12 * max(1.0, abs(observed))  # ties with the observed value count as extreme
    return float((1 + np.sum(np.abs(total) >= abs(observed) - tol)) / (n_resamples + 1))


def _bootstrap_ci(groups: list[tuple[Any, np.ndarray, np.ndarray]], rng: np.random.Generator,
                  confidence: float, n_resamples: int) -> tuple[float, float]:
    """Stratified percentile bootstrap: each setting resampled within each stratum."""
    total = np.zeros(n_resamples)
    for _, va, vb in groups:
        total += (vb[rng.integers(0, len(vb), (n_resamples, len(vb)))].mean(axis=1)
                  - va[rng.integers(0, len(va), (n_resamples, len(va)))].mean(axis=1))
    total /= len(groups)
    q = (1 - confidence) / 2
    return float(np.quantile(total, q)), float(np.quantile(total, 1 - q))


def _within_sd(groups: list[tuple[Any, np.ndarray, np.ndarray]]) -> float:
    ss = sum(float(((v - v.mean()) ** 2).sum()) for _, va, vb in groups for v in (va, vb))
    dof = sum(len(va) + len(vb) - 2 for _, va, vb in groups)
    return math.sqrt(ss / dof) if dof > 0 else float("nan")


def _standardised(diff: float, sd: float) -> float:
    if sd and sd > 0 and math.isfinite(sd):
        return diff / sd
    return 0.0 if diff == 0 else math.copysign(math.inf, diff)


def _breakdown(groups: list[tuple[Any, np.ndarray, np.ndarray]], kind: str) -> pd.DataFrame:
    rows = []
    for s, va, vb in groups:
        r = {"stratum": s, "n_a": len(va), "n_b": len(vb), "mean_a": float(va.mean()), "mean_b": float(vb.mean()),
             "diff": float(vb.mean() - va.mean())}
        if kind == "rate":
            ka, kb = va.sum(), vb.sum()
            # Haldane's 0.5 keeps a stratum's odds ratio finite when a cell is empty
            r["odds_ratio"] = float(((kb + .5) * (len(va) - ka + .5)) / ((len(vb) - kb + .5) * (ka + .5)))
        rows.append(r)
    return pd.DataFrame(rows)


def _cmh(groups: list[tuple[Any, np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """(p, common odds ratio) of Cochran-Mantel-Haenszel over the strata's 2x2 tables (b first)."""
    from statsmodels.stats.contingency_tables import StratifiedTable

    tables = [np.array([[vb.sum(), len(vb) - vb.sum()], [va.sum(), len(va) - va.sum()]], float)
              for _, va, vb in groups]
    informative = [t for t in tables if 0 < t[:, 0].sum() < t.sum()]  # a stratum of all 0s or all 1s says nothing
    if not informative:
        return 1.0, float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty cells: the pooled odds ratio is then 0 or inf, which is right
        st = StratifiedTable([t.copy() for t in informative])
        p = float(st.test_null_odds(correction=True).pvalue)
        odds = float(st.oddsratio_pooled)
    return (1.0 if math.isnan(p) else p), odds


def _mixed(groups: list[tuple[Any, np.ndarray, np.ndarray]], confidence: float) -> tuple[float, float, float, float, str]:
    """(diff, ci_low, ci_high, p, test) from MixedLM: random intercept and slope per stratum."""
    import statsmodels.formula.api as smf

    data = pd.DataFrame([{"y": float(v), "level": lv, "stratum": str(s)}
                         for s, va, vb in groups for lv, vals in ((0, va), (1, vb)) for v in vals])
    nan = float("nan")
    for re_formula, name in (("~level", "mixedlm (random intercept+slope)"), ("~1", "mixedlm (random intercept)")):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence chatter; a failed fit falls back below
                fit = smf.mixedlm("y ~ level", data, groups=data["stratum"], re_formula=re_formula).fit(reml=True)
            p = float(fit.pvalues["level"])
            lo, hi = (float(x) for x in fit.conf_int(alpha=1 - confidence).loc["level"])
            if math.isfinite(p):
                return float(fit.params["level"]), lo, hi, p, name
        except (ValueError, np.linalg.LinAlgError):
            continue
    return nan, nan, nan, nan, "mixedlm (did not converge)"


def stratified_test(a: Sequence[float], b: Sequence[float], strata_a: Sequence[Any], strata_b: Sequence[Any],
                    kind: Literal["rate", "mean"], *, model: Literal["strata", "mixed"] = "strata", seed: int = 0,
                    confidence: float = 0.95, n_resamples: int = N_PERMUTATIONS) -> StratifiedResult:
    """b against a within strata, using every value: see the module docstring for which test answers what.

    ``strata_a`` / ``strata_b`` name the stratum of each value (a prompt, or a
    tuple of prompt, backend, model, ...); strata missing one of the settings are
    left out. The result is seeded: the same data give the same p and interval.
    """
    if model not in INFERENCE:
        raise ValueError(f"model must be 'strata' or 'mixed', not {model!r}")
    groups = _groups(a, b, strata_a, strata_b)
    n_a, n_b = sum(len(g[1]) for g in groups), sum(len(g[2]) for g in groups)
    nan = float("nan")
    if not groups:
        return StratifiedResult(0, 0, 0, nan, nan, nan, nan, "", "none (no stratum has both settings)", nan,
                                INFERENCE[model], nan, pd.DataFrame())
    rng = np.random.default_rng(seed)
    diff = _combined(groups)
    lo, hi = _bootstrap_ci(groups, rng, confidence, 4000)
    pooled_a = np.concatenate([g[1] for g in groups])
    pooled_b = np.concatenate([g[2] for g in groups])
    if kind == "rate":
        from .stats import _cohen_h

        power_effect = _cohen_h(float(pooled_b.mean()), float(pooled_a.mean()))
    else:
        power_effect = _standardised(diff, _within_sd(groups))
    if model == "mixed":
        d, lo, hi, p, test = _mixed(groups, confidence)
        effect, effect_name = (power_effect, "cohen_h") if kind == "rate" else (
            _standardised(d, _within_sd(groups)), "cohen_d")
        return StratifiedResult(n_a, n_b, len(groups), d, lo, hi, effect, effect_name, test, p, INFERENCE[model],
                                power_effect, _breakdown(groups, kind))
    if kind == "rate":
        p, odds = _cmh(groups)
        return StratifiedResult(n_a, n_b, len(groups), diff, lo, hi, odds, "odds_ratio_mh",
                                "cochran-mantel-haenszel", p, INFERENCE[model], power_effect, _breakdown(groups, kind))
    if np.ptp(np.concatenate([pooled_a, pooled_b])) == 0:
        p = 1.0
    else:
        p = _permutation_p(groups, rng, n_resamples)
    return StratifiedResult(n_a, n_b, len(groups), diff, lo, hi, power_effect, "cohen_d",
                            "permutation (within strata)", p, INFERENCE[model], power_effect, _breakdown(groups, kind))


def stratified_set_test(a: Sequence[Any], b: Sequence[Any], strata_a: Sequence[Any], strata_b: Sequence[Any],
                        statistic: Callable[[list[Any]], float], *, seed: int = 0, confidence: float = 0.95,
                        n_resamples: int = 1999) -> StratifiedResult:
    """b against a for a statistic of a whole set of outputs (distinct-2 of a cell's texts), within strata.

    The outputs themselves are shuffled between the settings within each stratum
    and the statistic recomputed (a permutation test that uses every repeat, where
    a per-cell value would leave one number per setting and prompt). The interval is
    a delete-one jackknife (normal) over the outputs of each stratum and setting: a
    bootstrap would repeat outputs, and repeats lower distinct-n by themselves.
    ``effect`` is the observed difference in units of the permutation
    distribution's SD (a z-like size).
    """
    fa = pd.DataFrame({"s": list(strata_a), "v": list(a)})
    fb = pd.DataFrame({"s": list(strata_b), "v": list(b)})
    ga = {k: list(g["v"]) for k, g in fa.groupby("s", sort=True)}
    gb = {k: list(g["v"]) for k, g in fb.groupby("s", sort=True)}
    groups = [(k, ga[k], gb[k]) for k in ga if k in gb]
    nan = float("nan")
    if not groups:
        return StratifiedResult(0, 0, 0, nan, nan, nan, nan, "", "none (no stratum has both settings)", nan,
                                INFERENCE["strata"], nan, pd.DataFrame())
    rng = np.random.default_rng(seed)

    def combined(pairs: list[tuple[list[Any], list[Any]]]) -> float:
        return float(np.mean([statistic(y) - statistic(x) for x, y in pairs]))

    observed = combined([(x, y) for _, x, y in groups])
    null = np.empty(n_resamples)
    for r in range(n_resamples):
        pairs = []
        for _, x, y in groups:
            pool = x + y
            idx = rng.permutation(len(pool))
            pairs.append(([pool[i] for i in idx[:len(x)]], [pool[i] for i in idx[len(x):]]))
        null[r] = combined(pairs)
    tol = 1e-12 * max(1.0, abs(observed))
    p = float((1 + np.sum(np.abs(null) >= abs(observed) - tol)) / (n_resamples + 1))
    lo, hi = _jackknife_ci(groups, combined, observed, confidence)
    sd = float(null.std())
    z = observed / sd if sd > 0 else (0.0 if observed == 0 else math.copysign(math.inf, observed))
    breakdown = pd.DataFrame([{"stratum": k, "n_a": len(x), "n_b": len(y), "mean_a": statistic(x),
                               "mean_b": statistic(y), "diff": statistic(y) - statistic(x)} for k, x, y in groups])
    return StratifiedResult(sum(len(g[1]) for g in groups), sum(len(g[2]) for g in groups), len(groups), observed,
                            lo, hi, z, "z_permutation",
                            "permutation of outputs (within strata)", p, INFERENCE["strata"], nan, breakdown)


def _jackknife_ci(groups: list[tuple[Any, list[Any], list[Any]]],
                  combined: Callable[[list[tuple[list[Any], list[Any]]]], float], observed: float,
                  confidence: float) -> tuple[float, float]:
    """Normal interval from the delete-one jackknife variance; the strata and settings are independent parts."""
    from scipy.stats import norm

    var = 0.0
    for j, (_, x, y) in enumerate(groups):
        for side in (0, 1):
            items = (x, y)[side]
            n = len(items)
            if n < 2:
                return float("nan"), float("nan")
            reps = []
            for i in range(n):
                rest = items[:i] + items[i + 1:]
                pairs = [(gx, gy) for _, gx, gy in groups]
                pairs[j] = (rest, y) if side == 0 else (x, rest)
                reps.append(combined(pairs))
            r = np.asarray(reps)
            var += (n - 1) / n * float(((r - r.mean()) ** 2).sum())
    half = float(norm.ppf(0.5 + confidence / 2)) * math.sqrt(var)
    return observed - half, observed + half
