"""Token views, token statistics and branching, on hand-made logprobs and on the offline models."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import gsexplore as gs  # noqa: E402
from gsexplore.branch import branch, branch_request  # noqa: E402
from gsexplore.chat_template import CHATML_TEMPLATE, TemplateError, render_chat_template  # noqa: E402
from gsexplore.tokens import Tokens
from gsexplore.row import completion_row

LP = dict(logprobs=True, top_logprobs=5, temperature=0, seed=1, max_tokens=10)


def _entry(tok, p, alts):
    return {"token": tok, "logprob": math.log(p), "bytes": list(tok.encode()),
            "top_logprobs": [{"token": a, "logprob": math.log(q), "bytes": []} for a, q in alts]}


def _hand_made():
    lps = [_entry("<think>", 1.0, [("<think>", 1.0)]),
           _entry("</think>", 0.5, [("</think>", 0.5), ("hm", 0.5)]),
           _entry("Sí", 0.25, [("No", 0.5), ("Sí", 0.25), ("Quizás", 0.25)]),
           _entry("!", 0.1, [(".", 0.6), (",", 0.3)])]
    return gs.Completion(content="Sí!", reasoning_content="", logprobs=lps,
                         messages=[{"role": "user", "content": "¿Sí?"}])


def test_tokens_by_hand():
    t = Tokens(_hand_made())
    assert [x.part for x in t] == ["reasoning", "reasoning", "content", "content"]
    assert [x.rank for x in t] == [1, 1, 2, None]  # "!" is not among its alternatives
    assert t[2].prob == pytest.approx(0.25) and t[2].top[0] == ("No", pytest.approx(math.log(0.5)))
    # H = -Σ p log p over the alternatives: 0.5, 0.25, 0.25 -> 1.5 log 2
    assert t[2].entropy == pytest.approx(1.5 * math.log(2))
    # perplexity: exp(-mean logprob) = (1 * 0.5 * 0.25 * 0.1) ** (-1/4)
    assert t.perplexity == pytest.approx((0.5 * 0.25 * 0.1) ** -0.25)
    # "!": 0.6, 0.3 and the rest 0.1 counted as one more candidate
    ents = [0.0, math.log(2), 1.5 * math.log(2), -(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1))]
    assert t.mean_entropy == pytest.approx(np.mean(ents))
    assert t.prefix(3) == "Sí"
    row = completion_row(_hand_made())
    assert row["perplexity"] == pytest.approx(t.perplexity) and row["mean_entropy"] == pytest.approx(t.mean_entropy)
    html = t._repr_html_()
    assert 'class="gs-part gs-reasoning"' in html and 'class="gs-part gs-content"' in html
    assert "&#x27;No&#x27;: 0.500" in html and "rank &gt; 2" in html  # alternatives in the hover text
    assert "hsl(30," in html  # p = 0.25 of "Sí": an orange background (hue 120·p = 30)
    assert "hsl(" in t.to_html("entropy")


def test_exact_entropy_wins_over_top_k():
    c = _hand_made()
    c.logprobs[2]["entropy"] = 2.0
    assert Tokens(c)[2].entropy == 2.0


def test_continue_final_message_renders_like_transformers():
    msgs = [{"role": "user", "content": "hola"}, {"role": "assistant", "content": "Buen "}]
    out = render_chat_template(CHATML_TEMPLATE, msgs, add_generation_prompt=False, continue_final_message=True)
    assert out.endswith("<|im_start|>assistant\nBuen ")  # no <|im_end|>: the model goes on from there
    with pytest.raises(TemplateError, match="cannot both"):
        render_chat_template(CHATML_TEMPLATE, msgs, continue_final_message=True)


def test_local_honours_add_generation_prompt_and_continue(tiny_backend):
    msgs = [{"role": "user", "content": "hola"}, {"role": "assistant", "content": "Buen"}]
    cont = tiny_backend.render_prompt(msgs, continue_final_message=True, add_generation_prompt=False)
    assert cont.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\nBuen")
    plain = tiny_backend.render_prompt(msgs[:1], add_generation_prompt=False)
    assert plain.endswith("hola<|im_end|>\n") and tiny_backend.render_prompt(msgs[:1]).endswith("assistant\n")


def test_tokens_of_a_local_completion_and_a_branch(demo_backend):
    c = demo_backend.chat("¿Cuál es la capital de Francia?", gs.Params(**LP))
    t = Tokens(c)
    assert len(t) == c.usage.completion_tokens and "".join(x.text for x in t) == c.content
    assert all(x.rank == 1 for x in t)  # greedy: the chosen token is always the most likely
    alt = t[1].top[1][0]
    messages, p = branch_request(c, 1, alt)
    assert messages[-1] == {"role": "assistant", "content": t[0].text + alt}
    assert p.continue_final_message and p.add_generation_prompt is False
    b = branch(demo_backend, c, 1, alt)
    assert b.text.startswith(t[0].text + alt) and b.text != c.content
    assert Tokens(b.completion)[0].text == b.continuation[:len(Tokens(b.completion)[0].text)]
    with pytest.raises(IndexError):
        branch_request(c, 99, "x")


def test_sweep_token_statistics_are_plottable(demo_backend):
    df = gs.sweep(demo_backend, ["Decí un color."], grid={"temperature": [0.0, 1.0]}, repeats=2,
                  base=gs.Params(max_tokens=6, logprobs=True, top_logprobs=5), progress=False)
    assert df["perplexity"].notna().all() and (df["perplexity"] >= 1).all()
    assert df["mean_entropy"].notna().all()
    ax = gs.plot(df, x="temperature", y="perplexity")
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), df.groupby("temperature")["perplexity"].mean())
    assert ax.get_ylabel().startswith("perplexity")
    assert "mean_entropy" in set(df.gs.summary()["metric"])


def test_token_view_branches_on_request(demo_backend):
    import time

    c = demo_backend.chat("¿Cuál es la capital de Francia?", gs.Params(**LP))
    view = gs.panels.TokenView(c, demo_backend)
    assert [t["text"] for t in view.tokens] == [t.text for t in Tokens(c)] and view.branchable
    assert view.tokens[0]["top"][0][1] == pytest.approx(Tokens(c)[0].prob)
    alt = view.tokens[2]["top"][1][0]
    view.request = {"index": 2, "token": alt, "n": 1}  # what a click in the browser sends
    t0 = time.monotonic()
    while not view.branches and time.monotonic() - t0 < 60:
        time.sleep(0.1)
    (b,) = view.branches
    assert b["prefix"] == Tokens(c).prefix(2) and b["token"] == alt and view.status == ""
    assert view.results[0].text.startswith(Tokens(c).prefix(2) + alt)
    with pytest.raises(ValueError, match="no logprobs"):
        gs.panels.TokenView(demo_backend.chat("hola", max_tokens=2))
