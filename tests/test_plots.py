"""Plots render to files and draw the data they are given (checked on the artists)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import gsexplore.accessor  # noqa: E402,F401
from gsexplore import plots, stats  # noqa: E402
from gsexplore.store import frame  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _df():
    """temperature x top_k x backend, 3 repeats; n_words = 10*t + k/10 + repeat (hand-checkable)."""
    rows = []
    for backend in ("local", "remote"):
        for t in (0.0, 0.5, 1.0):
            for k in (5, 50):
                for r in range(3):
                    n = int(10 * t + k / 10 + r) + (1 if backend == "remote" else 0)
                    rows.append({"backend": backend, "model": "m", "cell_id": f"{backend}-{t}-{k}",
                                 "repeat": r, "seed": r, "choice": 0, "prompt_id": "p", "temperature": t,
                                 "top_k": k, "content": " ".join(["w"] * n), "completion_tokens": n,
                                 "latency_s": 0.1 * (r + 1)})
    df = frame(rows)
    df.attrs["varied"] = ["temperature", "top_k"]
    return df


def test_line_plots_means_bands_and_legend(tmp_path):
    df = _df()
    local = df[df.backend == "local"]
    ax = plots.plot(local, x="temperature", y="n_words", hue="top_k")
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["5", "50"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["5", "50"]
    assert ax.get_legend().get_title().get_text() == "top_k"
    np.testing.assert_allclose(lines[0].get_xdata(), [0.0, 0.5, 1.0])
    # top_k=5: n = int(10t + 0.5 + r) for r = 0, 1, 2 -> t=0: 0,1,2; t=0.5: 5,6,7; t=1: 10,11,12
    np.testing.assert_allclose(lines[0].get_ydata(), [1.0, 6.0, 11.0])
    np.testing.assert_allclose(lines[1].get_ydata(), [6.0, 11.0, 16.0])  # top_k=50: +5
    # the band is the BCa bootstrap interval of each mean (n_words is not a rate)
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].max() == pytest.approx(stats.bootstrap_ci([10.0, 11.0, 12.0])[1])
    assert ax.get_xlabel() == "temperature" and "words" in ax.get_ylabel()
    assert ax.get_title() == "words vs temperature by top_k"
    out = plots.save(ax, tmp_path / "line.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plots.save(ax, tmp_path / "line.svg")
    assert b"<svg" in (tmp_path / "line.svg").read_bytes()[:500]


def test_group_metric_counts_once_per_cell_and_spanish_labels():
    df = _df()
    ax = df[df.backend == "local"].gs.plot(x="temperature", y="distinct_1", hue="top_k", lang="es")
    # every output of a cell is "w w ...": distinct_1 = 1 / total words of the cell's outputs
    # t=0, k=5: words 0 + 1 + 2 = 3 -> 1/3
    assert ax.get_lines()[0].get_ydata()[0] == pytest.approx(1 / 3)
    assert ax.get_title().startswith("distinct-1") and "según temperatura" in ax.get_title()
    assert "IC 95%" in ax.get_ylabel()


def test_heatmap_array_is_the_pivot():
    df = _df()
    ax = plots.plot(df[df.backend == "local"], x="temperature", y="n_words", hue="top_k", kind="heatmap")
    arr = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(arr, [[1, 6, 11], [6, 11, 16]])  # rows: top_k 5, 50; columns: temperature
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.5", "1"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["5", "50"]
    assert ax.get_xlabel() == "temperature" and ax.get_ylabel() == "top_k"


@pytest.mark.parametrize("kind", ["box", "violin", "strip"])
def test_distributions(kind, tmp_path):
    df = _df()
    ax = plots.plot(df[df.backend == "local"], x="temperature", y="n_words", hue="top_k", kind=kind)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.5", "1"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["5", "50"]
    if kind == "box":
        assert len(ax.patches) == 6  # 3 temperatures x 2 top_k
    if kind == "violin":
        assert len(ax.collections) >= 6  # a body per temperature and top_k (each has spread)
    if kind == "strip":
        ys = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections])
        assert sorted(ys) == sorted(df[df.backend == "local"]["completion_tokens"].astype(float))
    plots.save(ax, tmp_path / f"{kind}.png")


def test_box_medians():
    df = _df()
    ax = plots.distribution(df[df.backend == "local"], x="temperature", y="n_words", kind="box")
    # one box per temperature over both top_k: t=0: 0,1,2,5,6,7 -> median 3.5
    med = [ln for ln in ax.get_lines() if ln.get_gid() == "median"]
    values = sorted({float(np.mean(ln.get_ydata())) for ln in med})
    assert values == [3.5, 8.5, 13.5]


def test_facets_and_backends_side_by_side(tmp_path):
    df = _df()
    fig = plots.plot_backends(df, x="temperature", y="n_words", hue="top_k")
    axes = fig.axes
    assert [a.get_title() for a in axes] == ["backend = local", "backend = remote"]
    np.testing.assert_allclose(axes[1].get_lines()[0].get_ydata(), [2.0, 7.0, 12.0])  # remote is +1
    assert axes[0].get_legend() is None and axes[1].get_legend() is not None
    assert fig._suptitle.get_text() == "words vs temperature by top_k"
    plots.save(fig, tmp_path / "facets.png")
    assert (tmp_path / "facets.png").stat().st_size > 1000


def test_errors_are_clear():
    df = _df()
    with pytest.raises(KeyError, match="neither a column nor a metric"):
        plots.plot(df, x="temperature", y="nope")
    with pytest.raises(ValueError, match="heatmap needs two parameters"):
        plots.plot(df, x="temperature", y="n_words", kind="heatmap")
    with pytest.raises(ValueError, match=".png, .svg"):
        plots.save(plots.plot(df, x="temperature", y="n_words"), "x.jpg")


def test_rate_bands_are_wilson():
    df = _df()
    local = df[df.backend == "local"].copy()
    # a 0/1 column: the first repeat of each cell "errs" -> 1 of 3 per cell; 2 cells per temperature -> 2/6
    local["flag"] = (local["repeat"] == 0).astype(float)
    ax = plots.plot(local, x="temperature", y="flag")
    band = ax.collections[0].get_paths()[0].vertices
    lo, hi = stats.wilson(2, 6)
    assert band[:, 1].max() == pytest.approx(hi) and band[:, 1].min() == pytest.approx(lo)
    assert band[:, 1].min() > 0  # a t band of 2/6 at n = 6 would reach below 0.0 ... Wilson does not


def test_compare_is_a_forest_of_the_comparison(tmp_path):
    df = _df()
    local = df[df.backend == "local"]
    ax = plots.plot(local, x="temperature", y="n_words", kind="compare", baseline=0.0, warn=False)
    out = ax.gs_compare
    assert list(out["temperature"]) == [0.5, 1.0] and set(out["baseline"]) == {0.0}
    # n_words = 10t + k/10 + r: +5 and +10 words over temperature 0, the same for every pair
    np.testing.assert_allclose(out["diff"], [5.0, 10.0])
    (bars,) = [c for c in ax.containers]
    segs = bars.lines[2][0].get_segments()
    np.testing.assert_allclose([s[0][0] for s in segs], out["ci_low"])
    np.testing.assert_allclose([s[1][0] for s in segs], out["ci_high"])
    assert [s[0][1] for s in segs] == [1, 0]  # the first level on top
    ticks = {t.get_position()[1]: t.get_text() for t in ax.get_yticklabels()}
    assert ticks == {1: "temperature = 0.5", 0: "temperature = 1"}
    assert "difference from temperature = 0" in ax.get_xlabel()
    assert any(list(ln.get_xdata()) == [0, 0] for ln in ax.lines)  # the no-difference line
    plots.save(ax, tmp_path / "forest.png")
    with pytest.raises(ValueError, match="use col="):
        plots.plot(local, x="temperature", y="n_words", hue="top_k", kind="compare")


def test_the_forest_of_a_comparison_shows_its_family_and_its_p_adj():
    df = _df()
    local = df[df.backend == "local"]
    table = local.gs.compare(by="temperature", metric=["n_words", "n_chars"], baseline=0.0)
    ax = plots.plot(table, kind="compare")
    assert ax.gs_compare is table and len(ax.get_yticklabels()) == len(table) == 4
    notes = [t.get_text() for t in ax.texts]
    assert notes == [f"p_adj={p:.2g} ({t.split(' ')[0]})" for p, t in zip(table["p_adj"], table["test"])]
    assert "Holm family: 4 comparisons" in ax.get_title()
    assert "Familia de Holm: 4 comparaciones" in plots.plot(table, kind="compare", lang="es").get_title()
