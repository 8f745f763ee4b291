"""Metrics on hand-made texts, with values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gsexplore.accessor  # noqa: F401 - registers df.gs
from gsexplore import metrics as M
from gsexplore.store import frame


def test_normalize_and_words():
    assert M.normalize("  ¡Santiago   de Chile! ") == "santiago de chile"
    assert M.normalize("Bogotá.") == "bogota"
    assert M.normalize("CIUDAD DE MÉXICO") == "ciudad de mexico"
    assert M.normalize(None) == ""
    assert M.words("Hola, hola; ¿qué tal?") == ["hola", "hola", "qué", "tal"]


def test_repetition_rate():
    # 3-grams of "a b c a b c": abc bca cab abc -> 4 total, 3 unique -> 1/4 repeated
    assert M.repetition_rate("a b c a b c") == pytest.approx(0.25)
    assert M.repetition_rate("uno dos tres cuatro") == 0.0
    assert M.repetition_rate("muy corto") == 0.0
    # "la la la la la": 3 trigrams, all (la, la, la) -> 1 unique -> 2/3
    assert M.repetition_rate("la la la la la") == pytest.approx(2 / 3)


def test_exact_match_and_contains():
    assert M.exact_match("Santiago.", "Santiago") is True
    assert M.exact_match("  santiago ", "SANTIAGO") is True
    assert M.exact_match("Bogota", "Bogotá") is True
    assert M.exact_match("La capital es Santiago.", "Santiago") is False
    assert M.contains("La capital es Santiago.", "Santiago") is True
    assert M.contains("Santiaguino", "Santiago") is False  # whole words only
    assert M.exact_match("La Paz", '["Sucre", "La Paz"]') is True  # a JSON list of acceptable answers
    assert M.contains("Es Sucre, la capital constitucional", ["Sucre", "La Paz"]) is True
    assert M.exact_match("x", None) is None and M.contains("x", float("nan")) is None


def test_distinct_n_and_similarity():
    texts = ["a b a", "a c"]
    # unigrams: a b a | a c -> 5 total, {a, b, c} 3 unique
    assert M.distinct_n(texts, 1) == pytest.approx(3 / 5)
    # bigrams: (a b) (b a) | (a c) -> 3 total, 3 unique (n-grams do not cross outputs)
    assert M.distinct_n(texts, 2) == pytest.approx(1.0)
    assert math.isnan(M.distinct_n(["", None], 1))
    # word sets {a, b}, {a, c}, {a, b}: J = 1/3, 1, 1/3 -> mean 5/9
    assert M.pairwise_similarity(["a b", "a c", "b a"]) == pytest.approx(5 / 9)
    assert math.isnan(M.pairwise_similarity(["solo"]))
    assert M.pairwise_similarity(["hola mundo", "Hola, mundo!"]) == 1.0


def test_mean_ci_by_metric_type():
    from gsexplore import stats

    n, m, s, lo, hi = M.mean_ci([1, 2, 3, 7], "n_words")
    assert (n, m) == (4, 3.25) and (lo, hi) == stats.bootstrap_ci([1, 2, 3, 7])
    n, m, s, lo, hi = M.mean_ci([1, 0, 0], "is_error")
    assert (lo, hi) == stats.wilson(1, 3)
    n, m, s, lo, hi = M.mean_ci([5.0, np.nan])
    assert n == 1 and m == 5.0 and math.isnan(lo)
    assert M.metric_kind("exact_match") == "rate" and M.metric_kind("distinct_2") == "mean"
    assert M.metric_kind("my_flag", [True, False]) == "rate" and M.metric_kind("x", [0.5, 1]) == "mean"


def _rows():
    base = {"backend": "local", "model": "m", "prompt_id": "p", "prompt": "q", "messages": "[]",
            "max_tokens": 8, "choice": 0}
    rows = [
        # cell A (temperature 0): two identical outputs
        {**base, "cell_id": "A", "repeat": 0, "seed": 1, "temperature": 0.0, "content": "Santiago de Chile",
         "expected": "Santiago", "completion_tokens": 4},
        {**base, "cell_id": "A", "repeat": 1, "seed": 2, "temperature": 0.0, "content": "Santiago de Chile",
         "expected": "Santiago", "completion_tokens": 4},
        # cell B (temperature 1): different outputs and one error
        {**base, "cell_id": "B", "repeat": 0, "seed": 1, "temperature": 1.0, "content": "Santiago",
         "expected": "Santiago", "completion_tokens": 2},
        {**base, "cell_id": "B", "repeat": 1, "seed": 2, "temperature": 1.0, "content": "Lima es bonita",
         "expected": "Santiago", "completion_tokens": 5},
        {**base, "cell_id": "B", "repeat": 2, "seed": 3, "temperature": 1.0, "content": None,
         "expected": "Santiago", "error_type": "RateLimitError", "error_message": "429"},
    ]
    return frame(rows)


def test_add_metrics_rows_and_groups():
    df = M.add_metrics(_rows())
    assert list(df["n_words"].iloc[:4]) == [3, 3, 1, 3]
    assert list(df["n_chars"].iloc[:4]) == [17, 17, 8, 14]
    assert list(df["n_tokens"].iloc[:4]) == [4, 4, 2, 5]
    assert list(df["exact_match"].iloc[:4]) == [0, 0, 1, 0]
    assert list(df["contains_expected"].iloc[:4]) == [1, 1, 1, 0]
    assert np.isnan(df["n_words"].iloc[4]) and np.isnan(df["exact_match"].iloc[4])
    assert list(df["is_error"]) == [0, 0, 0, 0, 1]
    a, b = df.iloc[0], df.iloc[2]
    # A: "santiago de chile" x2 -> unigrams 6 total 3 unique; bigrams 4 total 2 unique; J = 1
    assert a["distinct_1"] == pytest.approx(0.5) and a["distinct_2"] == pytest.approx(0.5)
    assert a["pairwise_similarity"] == 1.0 and a["n_outputs"] == 2
    # B (error row left out): "santiago" | "lima es bonita" -> 4 unigrams all unique; bigrams 2, unique 2
    assert b["distinct_1"] == 1.0 and b["distinct_2"] == 1.0
    assert b["pairwise_similarity"] == 0.0 and b["n_outputs"] == 2
    assert df.iloc[4]["distinct_1"] == 1.0  # broadcast to every row of the group
    assert np.isnan(a["validity_rate"])


def test_summary_is_tidy_with_wilson_for_rates_and_bootstrap_for_means():
    from gsexplore import stats

    df = _rows()
    s = df.gs.summary(by="temperature", metrics=["n_words", "distinct_1", "is_error"])
    assert list(s.columns) == ["temperature", "metric", "n", "mean", "std", "ci_low", "ci_high", "interval"]
    r = s[(s.temperature == 1.0) & (s.metric == "n_words")].iloc[0]
    # values 1 and 3 (the error row is NaN): mean 2, BCa bootstrap of the mean
    assert r["n"] == 2 and r["mean"] == 2.0 and r["interval"] == "bca"
    assert (r["ci_low"], r["ci_high"]) == stats.bootstrap_ci([1.0, 3.0])
    g = s[(s.metric == "distinct_1")]
    assert list(g["n"]) == [1, 1]  # a group metric counts once per cell
    assert list(g["mean"]) == [0.5, 1.0]
    e = s[(s.temperature == 1.0) & (s.metric == "is_error")].iloc[0]
    assert e["mean"] == pytest.approx(1 / 3) and e["interval"] == "wilson"
    assert (e["ci_low"], e["ci_high"]) == pytest.approx(stats.wilson(1, 3))  # inside [0, 1], unlike t
    cp = df.gs.summary(by="temperature", metrics="is_error", rate_method="clopper-pearson")
    assert cp.iloc[1]["interval"] == "clopper-pearson" and cp.iloc[1]["ci_high"] == pytest.approx(
        stats.clopper_pearson(1, 3)[1])


def test_summary_defaults_use_varied_params():
    df = _rows()
    assert df.gs.varied == ["temperature"]
    s = df.gs.summary()
    assert "temperature" in s.columns
    assert {"distinct_2", "exact_match", "is_error"} <= set(s["metric"])
