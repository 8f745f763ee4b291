"""The ``df.gs`` pandas accessor: sweep verbs on plain DataFrames.

Importing this module (``import gsexplore`` does) registers it::

    df.gs.summary(by=["temperature"])      # tidy: metric, n, mean, std, ci_low, ci_high, interval
    df.gs.compare(by="top_k", metric="distinct_2", baseline=50)   # each level vs the baseline, tested
    df.gs.plot(x="temperature", y="distinct_2", hue="top_k")
    df.gs.add_metrics(); df.gs.varied; df.gs.errors; df.gs.ok
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from . import metrics as _metrics


@pd.api.extensions.register_dataframe_accessor("gs")
class GSAccessor:
    """Sweep verbs for a DataFrame returned by `gsexplore.sweep` or `gsexplore.store.load`."""

    def __init__(self, df: pd.DataFrame) -> None:
        self._df = df

    def summary(self, by: str | list[str] | None = None, metrics: str | list[str] | None = None,
                **kw: Any) -> pd.DataFrame:
        """Mean and 95% interval (Wilson for rates, BCa bootstrap for means) per group and metric."""
        return _metrics.summarize(self._df, by=by, metrics=metrics, **kw)

    def compare(self, by: str, metric: str | list[str] | None = None, baseline: Any = None,
                **kw: Any) -> pd.DataFrame:
        """Each level of ``by`` against ``baseline``: diff, 95% CI, effect, test, Holm p (gsexplore.comparison)."""
        from .comparison import compare

        return compare(self._df, by, metric=metric, baseline=baseline, **kw)

    def add_metrics(self) -> pd.DataFrame:
        """A copy with the row and group metrics added (see gsexplore.metrics)."""
        return _metrics.add_metrics(self._df)

    def plot(self, x: str, y: str, hue: str | None = None, col: str | None = None, kind: str = "line",
             **kw: Any) -> Any:
        """gsexplore.plots.plot on this DataFrame."""
        from .plots import plot

        return plot(self._df, x, y, hue=hue, col=col, kind=kind, **kw)  # type: ignore[arg-type]

    @property
    def varied(self) -> list[str]:
        """The parameters the sweep varied."""
        return _metrics.varied_params(self._df)

    @property
    def errors(self) -> pd.DataFrame:
        """The rows whose request failed."""
        return self._df[self._df["error_type"].notna()]

    @property
    def ok(self) -> pd.DataFrame:
        """The rows whose request succeeded."""
        return self._df[self._df["error_type"].isna()]
