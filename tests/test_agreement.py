"""gs.agreement on real models (tiny Qwen3 f16, its Q8_0, other weights; a backend through `gsexplore serve`),
the clear error for a server without prompt_logprobs, and gs.agreement_sweep on planted data."""

from __future__ import annotations

import json
import math

import httpx
import numpy as np
import pandas as pd
import pytest

import gsexplore as gs
from gsexplore import models
from gsexplore.agreement import position_divergence
from gsexplore.backends.local import LocalBackend
from gsexplore.backends.remote import RemoteBackend
from gsexplore.errors import UnsupportedParam
from gsexplore.serve import ServerThread, create_app

TEXTS = ["El cielo es azul porque la atmósfera dispersa más la luz de onda corta.",
         [{"role": "system", "content": "Respondé en una línea."},
          {"role": "user", "content": "¿Qué es un número primo?"},
          {"role": "assistant", "content": "Un entero mayor que 1 cuyos únicos divisores son 1 y él mismo."}]]


# --- the divergence of one position, by hand


def test_position_divergence_by_hand():
    a = {"x": math.log(0.5), "y": math.log(0.3)}  # rest 0.2
    b = {"x": math.log(0.4), "y": math.log(0.4)}  # rest 0.2
    kl, tv, rest_a, rest_b = position_divergence(a, b)
    assert kl == pytest.approx(0.5 * math.log(0.5 / 0.4) + 0.3 * math.log(0.3 / 0.4))
    assert tv == pytest.approx(0.1) and rest_a == pytest.approx(0.2) and rest_b == pytest.approx(0.2)
    # "z" is listed by b only: a gets its smallest listed probability (0.3) taken out of its rest (0.2)
    kl, tv, rest_a, _ = position_divergence(a, {**b, "z": math.log(0.1)})
    assert rest_a == pytest.approx(0.0) and kl > 0
    assert position_divergence(a, a)[:2] == (0.0, 0.0)


# --- real models


@pytest.fixture(scope="module")
def q8_backend():
    b = LocalBackend(str(models.tiny_qwen3(quant="Q8_0")))
    yield b
    b.close()


@pytest.fixture(scope="module")
def q8_table(tiny_backend, q8_backend):
    return gs.agreement(tiny_backend, q8_backend, TEXTS)


def test_a_backend_through_gsexplore_serve_agrees_with_itself_exactly(tiny_backend):
    app = create_app([tiny_backend], api_keys=set(), served_model_names=["tiny-qwen3"])
    with ServerThread(app) as srv:
        remote = RemoteBackend(srv.url, api_key="unused", model="tiny-qwen3")
        df = gs.agreement(remote, remote, TEXTS, top=5)
        mixed = gs.agreement(tiny_backend, remote, TEXTS[:1], top=5)  # local and served: the same engine
        remote.close()
    assert len(df) > 30 and (df["kl"] == 0).all() and (df["tv"] == 0).all() and df["top1_agree"].all()
    s = df.attrs["summary"]
    assert s.loc["kl", "mean"] == 0 and s.loc["kl", "mean_high"] == 0 and s.loc["top1_agree", "mean"] == 1
    assert mixed["top1_agree"].all() and mixed["kl"].max() < 1e-6


def test_q8_0_is_close_to_f16_but_not_identical(q8_table):
    df, s = q8_table, q8_table.attrs["summary"]
    assert list(df.columns)[:6] == ["text", "position", "token", "kl", "tv", "top1_agree"]
    assert set(df["text"]) == {0, 1} and len(df) > 40
    assert 0 < s.loc["kl", "mean"] < 1e-6 and df["logprob_diff"].abs().max() > 0
    for m in ("kl", "tv", "abs_logprob_diff"):
        assert 0 <= s.loc[m, "mean_low"] <= s.loc[m, "mean"] <= s.loc[m, "mean_high"]
        assert s.loc[m, "p95_low"] <= s.loc[m, "p95"] <= s.loc[m, "p95_high"]
    assert s.loc["top1_agree", "mean"] >= 0.95
    assert set(df.attrs["seconds"]) == {"a", "b"} and df.attrs["positions"] == len(df) and "top-20" in df.attrs["rest"]


def test_other_weights_are_far_from_f16(tiny_backend, q8_table):
    other = LocalBackend(str(models.tiny_qwen3(seed=7)))
    try:
        df = gs.agreement(tiny_backend, other, TEXTS)
    finally:
        other.close()
    s, q8 = df.attrs["summary"], q8_table.attrs["summary"]
    assert s.loc["kl", "mean_low"] > 100 * q8.loc["kl", "mean_high"]
    assert s.loc["abs_logprob_diff", "mean_low"] > 20 * q8.loc["abs_logprob_diff", "mean_high"]
    assert s.loc["top1_agree", "mean"] < q8.loc["top1_agree", "mean"]


def test_the_agreement_plot_draws_kl_along_the_text(q8_table, tmp_path):
    ax = gs.plot(q8_table, kind="agreement")
    first = q8_table[q8_table["text"] == 0]
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_ydata(), first["kl"])
    assert len(ax.get_xticklabels()) == len(first) and "KL" in ax.get_ylabel()
    gs.plots.save(ax, tmp_path / "agreement.png")


def test_bad_top_is_refused(tiny_backend):
    with pytest.raises(ValueError, match="top must be an int from 1 to 20"):
        gs.agreement(tiny_backend, tiny_backend, "hola", top=50)


# --- a server that ignores prompt_logprobs (llama-server, OpenAI)


def test_a_server_without_prompt_logprobs_gets_a_clear_error():
    seen = []

    def llama_server(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hola"},
                         "finish_reason": "length"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})

    b = RemoteBackend("http://llama-server.test/v1", api_key="k", transport=httpx.MockTransport(llama_server))
    with pytest.raises(UnsupportedParam, match="prompt_logprobs") as e:
        gs.agreement(b, b, "hola")
    assert e.value.param == "prompt_logprobs" and "LocalBackend" in str(e.value)
    assert seen[0]["prompt_logprobs"] == 20  # it was asked, and ignored


def test_a_server_that_refuses_prompt_logprobs_gets_the_same_error():
    def openai_like(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "Unrecognized request argument supplied: "
                                                              "prompt_logprobs", "type": "invalid_request_error"}})

    b = RemoteBackend("http://openai-like.test/v1", api_key="k", transport=httpx.MockTransport(openai_like))
    with pytest.raises(UnsupportedParam, match="prompt_logprobs") as e:
        gs.agreement(b, b, "hola")
    assert e.value.param == "prompt_logprobs"


# --- does a sweep's conclusion transfer?


def _grid(seed: int, *, slope_a: float, slope_b: float, repeats: int = 8) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The same grid (2 prompts x temperature 0, 1) on two backends; y rises with temperature by slope."""
    rng = np.random.default_rng(seed)
    frames = []
    for name, slope in (("a", slope_a), ("b", slope_b)):
        rows = [{"backend": name, "prompt_id": f"p{p}", "cell_id": f"{t}-{p}", "repeat": r, "temperature": t,
                 "error_type": None, "y": 1.0 + p + slope * t + rng.normal(0, 0.3)}
                for p in range(2) for t in (0.0, 1.0) for r in range(repeats)]
        df = pd.DataFrame(rows)
        df.attrs["varied"] = ["temperature"]
        frames.append(df)
    return frames[0], frames[1]


def test_agreement_sweep_finds_a_planted_interaction():
    a, b = _grid(0, slope_a=1.0, slope_b=0.0)
    out = gs.agreement_sweep(a, b, metric="y")
    cells, inter = out[out["cell"] == "cell"], out[out["cell"] == "interaction"].iloc[0]
    assert len(cells) == 4 and inter["p_value"] < 0.001
    hot = cells[cells["temperature"] == 1.0]
    assert (hot["diff"] < -0.5).all() and (hot["p_adj"] < 0.05).all()
    assert list(out["p_adj"][:4]) == pytest.approx(list(gs.stats.holm(cells["p_value"])))
    ax = gs.plot(out, kind="transfer")
    assert len(ax.get_yticklabels()) == 4 and "p = " in ax.get_title()


def test_agreement_sweep_raises_few_false_alarms():
    alarms = 0
    for seed in range(20):
        a, b = _grid(100 + seed, slope_a=1.0, slope_b=1.0)
        alarms += gs.agreement_sweep(a, b, metric="y").iloc[-1]["p_value"] < 0.05
    assert alarms <= 1


def test_agreement_sweep_of_one_prompt_and_identical_backends_finds_nothing():
    a, _ = _grid(3, slope_a=1.0, slope_b=1.0)
    a = a[a["prompt_id"] == "p0"]
    out = gs.agreement_sweep(a, a.assign(backend="b"), metric="y")
    assert len(out) == 3 and (out["p_adj"] >= 0.05).all() and out.iloc[-1]["p_value"] == pytest.approx(1.0)
