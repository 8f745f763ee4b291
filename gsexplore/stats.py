"""Intervals, tests and power for sweep results, computed by statsmodels and scipy.

This module chooses and names the method; the libraries compute it (no
hand-written statistics here).

Intervals (95% unless ``confidence`` says otherwise)
    rates (booleans and 0/1 metrics): Wilson score interval (``wilson``), or
        Clopper-Pearson ("exact", ``method="clopper-pearson"``) on request;
        ``statsmodels.stats.proportion.proportion_confint``. Both stay inside [0, 1]
        and behave at n = 5, where a t-interval of a rate runs outside [0, 1].
    means (everything else): bias-corrected and accelerated bootstrap (BCa,
        ``scipy.stats.bootstrap``), seeded so the same data give the same interval.

Tests, effect sizes and power: `paired_test` / `unpaired_test` below,
``multipletests(method="holm")`` and `repeats_needed` (``statsmodels.stats.power``);
the tests within strata (every repeat of every prompt) are in `gsexplore.stratified`,
and `gsexplore.comparison.compare` chooses among them for a sweep.

This module works on arrays and reads the metric declarations
(`gsexplore.metric_specs`) for a metric's kind; it imports no DataFrame verbs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Sequence

import numpy as np

__all__ = ["wilson", "clopper_pearson", "rate_ci", "bootstrap_ci", "interval", "Interval", "is_binary",
           "TestResult", "paired_test", "unpaired_test", "holm", "repeats_needed", "n_to_detect", "metric_kind"]

RateMethod = Literal["wilson", "clopper-pearson"]
_SM_METHOD = {"wilson": "wilson", "clopper-pearson": "beta"}

#: Resamples of every bootstrap (BCa needs a few thousand for stable 2.5% tails).
N_RESAMPLES = 4000


def _clean(values: Iterable[Any]) -> np.ndarray:
    """The non-missing values as floats (None, NaN and pd.NA dropped)."""
    import pandas as pd

    return np.asarray([float(v) for v in values if not pd.isna(v)], dtype=float)


def metric_kind(metric: str, values: Iterable[Any] | None = None) -> str:
    """"rate" for booleans and 0/1 metrics (Wilson, McNemar, CMH), else "mean" (bootstrap, permutation)."""
    from .metric_specs import spec

    m = spec(metric)
    if m is not None:
        return "rate" if m.binary else "mean"
    if values is None:
        return "mean"
    import pandas as pd

    s = values if isinstance(values, pd.Series) else pd.Series(list(values))
    if pd.api.types.is_bool_dtype(s):
        return "rate"
    return "rate" if is_binary(pd.to_numeric(s, errors="coerce")) else "mean"


def _column_values(data: Any, metric: str) -> np.ndarray:
    """A metric column of a sweep as floats, once per cell for a group metric."""
    import pandas as pd

    from .metric_specs import spec

    if metric not in data.columns:
        raise KeyError(f"{metric!r} is not a column of data: add the metrics first (df.gs.add_metrics())")
    m = spec(metric)
    if m is not None and m.level == "group" and "cell_id" in data.columns:
        data = data.drop_duplicates("cell_id")
    return pd.to_numeric(data[metric].astype("object"), errors="coerce").to_numpy(float)


def is_binary(values: Iterable[Any]) -> bool:
    """Whether every (non-missing) value is 0 or 1: a rate, summarised with Wilson."""
    a = _clean(values)
    return len(a) > 0 and bool(np.isin(a, (0.0, 1.0)).all())


# --------------------------------------------------------------------------
# intervals


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials: (low, high)."""
    return rate_ci(k, n, "wilson", confidence)


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson ("exact", from the beta distribution) interval of k in n: (low, high)."""
    return rate_ci(k, n, "clopper-pearson", confidence)


def rate_ci(k: int, n: int, method: RateMethod = "wilson", confidence: float = 0.95) -> tuple[float, float]:
    """Interval of a proportion k/n by statsmodels' proportion_confint; NaN when n = 0."""
    if method not in _SM_METHOD:
        raise ValueError(f"method must be 'wilson' or 'clopper-pearson', not {method!r}")
    if n <= 0:
        return float("nan"), float("nan")
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(int(k), int(n), alpha=1 - confidence, method=_SM_METHOD[method])
    return float(lo), float(hi)


def bootstrap_ci(values: Iterable[Any] | Sequence[Iterable[Any]], statistic: Any = None, *,
                 confidence: float = 0.95, seed: int = 0, n_resamples: int = N_RESAMPLES,
                 paired: bool = False) -> tuple[float, float]:
    """BCa bootstrap interval (scipy.stats.bootstrap) of the mean, or of ``statistic``.

    ``values`` is one sample, or a tuple of samples with a statistic of several
    arguments (``paired=True`` resamples them together); the statistic takes an
    ``axis`` keyword (scipy's vectorised form, as np.mean does). Constant data give the
    degenerate interval (value, value); fewer than 2 values give NaN.
    """
    from scipy.stats import bootstrap

    samples = tuple(_clean(v) for v in values) if _is_multi(values) else (_clean(values),)
    if statistic is None:
        if len(samples) != 1:
            raise ValueError("give a statistic for several samples")
        statistic = np.mean
    if any(len(s) < 2 for s in samples):
        return float("nan"), float("nan")
    if all(np.ptp(s) == 0 for s in samples):
        v = float(statistic(*samples, axis=-1))
        return v, v
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BCa warns on near-degenerate resamples; NaN handled below
        res = bootstrap(samples, statistic, confidence_level=confidence, method="BCa", paired=paired,
                        n_resamples=n_resamples, rng=np.random.default_rng(seed), vectorized=True)
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if math.isnan(lo) or math.isnan(hi):  # BCa undefined (all resamples equal on one side): percentile
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = bootstrap(samples, statistic, confidence_level=confidence, method="percentile",
                            paired=paired, n_resamples=n_resamples, rng=np.random.default_rng(seed),
                            vectorized=True)
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return lo, hi


def _is_multi(values: Any) -> bool:
    return isinstance(values, tuple) and len(values) > 0 and all(
        isinstance(v, (list, tuple, np.ndarray)) or hasattr(v, "to_numpy") for v in values)


@dataclass(frozen=True)
class Interval:
    """A summary of one sample: n, mean, std, the interval and the method that made it."""

    n: int
    mean: float
    std: float
    low: float
    high: float
    method: str  # "wilson", "clopper-pearson", "bca" or "" (too few values)


def interval(values: Iterable[Any], kind: Literal["rate", "mean", "auto"] = "auto", *,
             rate_method: RateMethod = "wilson", confidence: float = 0.95, seed: int = 0,
             bounds: tuple[float, float] | None = None) -> Interval:
    """The interval a summary shows: Wilson (or Clopper-Pearson) for rates, BCa bootstrap for means.

    ``kind="auto"`` treats 0/1 data as a rate. ``bounds`` clips a mean's interval to
    the metric's range (a bootstrap interval of a share stays within [0, 1] anyway).
    """
    a = _clean(values)
    n = len(a)
    nan = float("nan")
    if n == 0:
        return Interval(0, nan, nan, nan, nan, "")
    m = float(a.mean())
    s = float(a.std(ddof=1)) if n > 1 else nan
    if kind == "auto":
        kind = "rate" if is_binary(a) else "mean"
    if kind == "rate":
        lo, hi = rate_ci(int(a.sum()), n, rate_method, confidence)
        return Interval(n, m, s, lo, hi, rate_method)
    lo, hi = bootstrap_ci(a, confidence=confidence, seed=seed)
    if bounds is not None and not math.isnan(lo):
        lo, hi = min(max(lo, bounds[0]), bounds[1]), min(max(hi, bounds[0]), bounds[1])
    return Interval(n, m, s, lo, hi, "bca" if n > 1 else "")


# --------------------------------------------------------------------------
# tests


@dataclass(frozen=True)
class TestResult:
    """One comparison: diff = mean(b) - mean(a), its interval, an effect size, the test and its p."""

    n: int
    diff: float
    ci_low: float
    ci_high: float
    effect: float
    effect_name: str
    test: str
    p_value: float
    paired: bool
    power_effect: float  # the standardised effect power analysis uses (Cohen's h or d)

    __test__ = False  # not a pytest class


def _cohen_h(p1: float, p2: float) -> float:
    from statsmodels.stats.proportion import proportion_effectsize

    return float(proportion_effectsize(p1, p2))


def paired_test(a: Sequence[float], b: Sequence[float], kind: Literal["rate", "mean"], *,
                means_test: Literal["wilcoxon", "permutation"] = "wilcoxon", seed: int = 0,
                confidence: float = 0.95) -> TestResult:
    """b against a, pair by pair: McNemar for rates, Wilcoxon signed-rank (or permutation) for means.

    The interval is the BCa bootstrap of the mean paired difference; the effect is
    Cohen's h for rates and Cohen's d_z (mean difference / its SD) for means.
    """
    from scipy import stats as st

    x, y = np.asarray(a, float), np.asarray(b, float)
    d = y - x
    n = len(d)
    diff = float(d.mean()) if n else float("nan")
    lo, hi = bootstrap_ci(d, confidence=confidence, seed=seed)
    sd = float(d.std(ddof=1)) if n > 1 else float("nan")
    dz = diff / sd if sd and sd > 0 else (0.0 if diff == 0 else float("inf") * np.sign(diff))
    if kind == "rate":
        from statsmodels.stats.contingency_tables import mcnemar

        table = [[int(((x == 1) & (y == 1)).sum()), int(((x == 1) & (y == 0)).sum())],
                 [int(((x == 0) & (y == 1)).sum()), int(((x == 0) & (y == 0)).sum())]]
        discordant = table[0][1] + table[1][0]
        exact = discordant < 25  # the binomial test when the chi-square approximation is poor
        p = 1.0 if discordant == 0 else float(mcnemar(table, exact=exact, correction=True).pvalue)
        return TestResult(n, diff, lo, hi, _cohen_h(float(y.mean()), float(x.mean())), "cohen_h",
                          "mcnemar (exact)" if exact else "mcnemar (chi2)", p, True, dz)
    if not np.any(d != 0):
        p = 1.0
        name = "wilcoxon" if means_test == "wilcoxon" else "permutation (paired)"
    elif means_test == "wilcoxon":
        p, name = float(st.wilcoxon(x, y, zero_method="wilcox").pvalue), "wilcoxon"
    elif means_test == "permutation":
        res = st.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=9999,
                                  rng=np.random.default_rng(seed), vectorized=False)
        p, name = float(res.pvalue), "permutation (paired)"
    else:
        raise ValueError(f"means_test must be 'wilcoxon' or 'permutation', not {means_test!r}")
    return TestResult(n, diff, lo, hi, dz, "cohen_dz", name, p, True, dz)


def unpaired_test(a: Sequence[float], b: Sequence[float], kind: Literal["rate", "mean"], *,
                  seed: int = 0, confidence: float = 0.95) -> TestResult:
    """b against a as independent samples: Fisher + Newcombe for rates, Mann-Whitney + bootstrap for means.

    Effect: Cohen's h for rates, Cohen's d (pooled SD) for means.
    """
    from scipy import stats as st

    x, y = np.asarray(a, float), np.asarray(b, float)
    n = min(len(x), len(y))
    if len(x) == 0 or len(y) == 0:
        nan = float("nan")
        return TestResult(n, nan, nan, nan, nan, "", "none", nan, False, nan)
    diff = float(y.mean() - x.mean())
    if kind == "rate":
        from statsmodels.stats.proportion import confint_proportions_2indep

        ky, kx = int(y.sum()), int(x.sum())
        lo, hi = confint_proportions_2indep(ky, len(y), kx, len(x), method="newcomb", compare="diff",
                                            alpha=1 - confidence)
        p = float(st.fisher_exact([[ky, len(y) - ky], [kx, len(x) - kx]]).pvalue)
        h = _cohen_h(float(y.mean()), float(x.mean()))
        return TestResult(n, diff, float(lo), float(hi), h, "cohen_h", "fisher (newcombe ci)", p, False, h)
    lo, hi = bootstrap_ci((x, y), _diff_of_means, confidence=confidence, seed=seed)
    pooled = math.sqrt(((len(x) - 1) * x.var(ddof=1) + (len(y) - 1) * y.var(ddof=1)) / (len(x) + len(y) - 2)) \
        if len(x) + len(y) > 2 else float("nan")
    d = diff / pooled if pooled and pooled > 0 else (0.0 if diff == 0 else float("inf") * np.sign(diff))
    if np.ptp(np.concatenate([x, y])) == 0:
        p = 1.0
    else:
        p = float(st.mannwhitneyu(y, x, alternative="two-sided").pvalue)
    return TestResult(n, diff, lo, hi, d, "cohen_d", "mann-whitney (bootstrap ci)", p, False, d)


def _diff_of_means(u: np.ndarray, v: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(v, axis=axis) - np.mean(u, axis=axis)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels' multipletests); NaN stays NaN."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, float)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


# --------------------------------------------------------------------------
# power


def repeats_needed(metric: str, delta: float, *, baseline: float | None = None, sd: float | None = None,
                   data: Any = None, paired: bool = False, alpha: float = 0.05, power: float = 0.8,
                   kind: Literal["rate", "mean", "auto"] = "auto") -> int:
    """Observations per level to detect a difference ``delta`` in ``metric`` (statsmodels.stats.power).

    Rates (0/1 metrics): the effect is Cohen's h between ``baseline`` (default 0.5,
    the worst case) and ``baseline + delta``, solved with NormalIndPower. Means: the
    effect is delta / sd (``sd`` given, or estimated from the metric in ``data``, a
    sweep DataFrame with the metric as a column, e.g. after ``df.gs.add_metrics()``),
    solved with TTestIndPower, or TTestPower on paired differences
    when ``paired`` (then ``sd`` is the SD of the differences). Two-sided.
    """
    from statsmodels.stats.power import NormalIndPower, TTestIndPower, TTestPower

    if delta == 0:
        raise ValueError("delta must not be 0: no number of repeats detects no difference")
    values = None if data is None else _column_values(data, metric)
    if kind == "auto":
        kind = metric_kind(metric, values)  # type: ignore[assignment]
    if kind == "rate":
        p0 = baseline if baseline is not None else (float(np.nanmean(values)) if values is not None else 0.5)
        p1 = p0 + delta
        if not 0 <= p1 <= 1:
            raise ValueError(f"baseline {p0:g} + delta {delta:g} is outside [0, 1]")
        effect = abs(_cohen_h(p1, p0))
        solver: Any = NormalIndPower()
    else:
        if sd is None:
            if values is None:
                raise ValueError(f"{metric!r} is a mean: give sd= (or data= to estimate it)")
            sd = float(np.nanstd(np.asarray(values, float), ddof=1))
        if not sd or sd <= 0 or math.isnan(sd):
            raise ValueError(f"the standard deviation of {metric!r} is {sd}: power needs spread")
        effect = abs(delta) / sd
        solver = TTestPower() if paired else TTestIndPower()
    return _solve(solver, effect, alpha, power)


def n_to_detect(effect: float, kind: Literal["rate", "mean"], paired: bool, *, alpha: float = 0.05,
                power: float = 0.8) -> int | None:
    """Observations (pairs when paired) per level that detect a standardised effect; None when undefined.

    ``effect`` is Cohen's h (unpaired rates) or d (unpaired means), or d_z of the
    paired differences (paired, rates and means alike: TTestPower on the differences).
    """
    from statsmodels.stats.power import NormalIndPower, TTestIndPower, TTestPower

    if not effect or not math.isfinite(effect):
        return None
    solver: Any = TTestPower() if paired else (NormalIndPower() if kind == "rate" else TTestIndPower())
    try:
        return _solve(solver, abs(effect), alpha, power)
    except (ValueError, RuntimeError):
        return None


def _solve(solver: Any, effect: float, alpha: float, power: float) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' convergence chatter; the result is checked below
        n = solver.solve_power(effect_size=effect, alpha=alpha, power=power, alternative="two-sided")
    n = float(np.asarray(n).item())
    if not math.isfinite(n):
        raise ValueError(f"power analysis found no n for effect {effect:g}")
    return int(math.ceil(n))
