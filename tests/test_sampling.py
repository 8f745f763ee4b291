"""Hand-checked cases for gsexplore.sampling (vLLM V1 0.10-0.11 semantics).

Expected values are written from closed forms (e = math.e), never by calling the
code under test. Running example: logits L = [2, 1, 0, -1], whose softmax is
[e^2, e, 1, 1/e] / Z with Z = e^2 + e + 1 + 1/e = 11.4752
                    = [0.643914, 0.236883, 0.087144, 0.032059].
"""
import math

import numpy as np
import pytest

from gsexplore import sampling as S

E = math.e
INF = math.inf
L = [2.0, 1.0, 0.0, -1.0]
TOP2 = [E / (E + 1), 1 / (E + 1), 0.0, 0.0]             # [0.731059, 0.268941, 0, 0]
TOP3 = [E**2 / (E**2 + E + 1), E / (E**2 + E + 1), 1 / (E**2 + E + 1), 0.0]
ONLY0 = [1.0, 0.0, 0.0, 0.0]


def close(a, b, tol=1e-12):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                               rtol=0, atol=tol)


def assert_logits(a, b):
    """Equal logits, -inf in the same places."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert (np.isneginf(a) == np.isneginf(b)).all(), (a, b)
    fin = np.isfinite(b)
    close(a[fin], b[fin])


# --------------------------------------------------------------------------- softmax

def test_softmax_running_example():
    z = E**2 + E + 1 + 1 / E
    p = S.softmax(L)
    assert p.dtype == np.float64
    close(p, [E**2 / z, E / z, 1 / z, (1 / E) / z])
    close(p, [0.643914, 0.236883, 0.087144, 0.032059], tol=1e-6)


def test_softmax_is_stable_and_handles_minus_inf():
    close(S.softmax([1000.0, 1000.0]), [0.5, 0.5])
    close(S.softmax([-INF, 0.0, 0.0]), [0.0, 0.5, 0.5])
    with pytest.raises(ValueError):
        S.softmax([-INF, -INF])


# --------------------------------------------------------------------------- single transforms

def test_temperature_half():
    # L / 0.5 = [4, 2, 0, -2]; softmax = [e^4, e^2, 1, e^-2] / 63.1225
    #                                  = [0.864955, 0.117059, 0.015842, 0.002144]
    assert_logits(S.apply_temperature(L, 0.5), [4.0, 2.0, 0.0, -2.0])
    z = E**4 + E**2 + 1 + E**-2
    close(S.next_token_distribution(L, temperature=0.5),
          [E**4 / z, E**2 / z, 1 / z, E**-2 / z])
    close(S.next_token_distribution(L, temperature=0.5),
          [0.864955, 0.117059, 0.015842, 0.002144], tol=1e-6)


def test_tiny_temperature_is_raised_to_001_like_vllm():
    # vLLM's SamplingParams lifts 0 < t < 0.01 to 0.01: [0, 0.01] / 0.01 = [0, 1].
    close(S.next_token_distribution([0.0, 0.01], temperature=0.001),
          [1 / (1 + E), E / (1 + E)])


def test_top_k_2():
    assert_logits(S.apply_top_k(L, 2), [2.0, 1.0, -INF, -INF])
    close(S.next_token_distribution(L, top_k=2), TOP2)
    close(S.next_token_distribution(L, top_k=2), [0.731059, 0.268941, 0, 0], tol=1e-6)


def test_top_k_off_values_and_ties():
    for off in (None, 0, -1, 4, 99):
        assert_logits(S.apply_top_k(L, off), L)
    # vLLM masks logits < the k-th largest, so every token tied with it survives.
    close(S.next_token_distribution([1.0, 1.0, 1.0, 0.0], top_k=2), [1 / 3, 1 / 3, 1 / 3, 0])
    with pytest.raises(ValueError):
        S.apply_top_k(L, -2)


def test_top_p_half_keeps_only_top_token():
    # Ascending probs 0.032, 0.087, 0.237, 0.644: cumsum 0.032, 0.119, 0.356, 1.
    # 1 - p = 0.5: the first three cumsums are <= 0.5 and go.
    assert_logits(S.apply_top_p(L, 0.5), [2.0, -INF, -INF, -INF])
    close(S.next_token_distribution(L, top_p=0.5), ONLY0)


def test_top_p_07_and_09():
    # 1 - 0.7 = 0.3: cumsums 0.032 and 0.119 go -> two tokens remain.
    close(S.next_token_distribution(L, top_p=0.7), TOP2)
    # 1 - 0.9 = 0.1: only 0.032 goes (0.119 > 0.1) -> three tokens remain.
    close(S.next_token_distribution(L, top_p=0.9), TOP3)
    close(S.next_token_distribution(L, top_p=0.9), [0.665241, 0.244728, 0.090031, 0], tol=1e-6)


def test_top_p_boundary_is_inclusive_and_top_token_always_kept():
    u = [0.0, 0.0, 0.0, 0.0]           # probs 0.25 each, exact in binary
    # cumsum 0.25, 0.5 are <= 1 - 0.5 = 0.5 -> two go; ties drop the higher ids first.
    close(S.next_token_distribution(u, top_p=0.5), [0.5, 0.5, 0, 0])
    # cumsum 0.25 <= 1 - 0.75 = 0.25 -> one goes.
    close(S.next_token_distribution(u, top_p=0.75), [1 / 3, 1 / 3, 1 / 3, 0])
    close(S.next_token_distribution(L, top_p=1e-9), ONLY0)
    assert_logits(S.apply_top_p(L, 1.0), L)
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError):
            S.apply_top_p(L, bad)


def test_min_p():
    # p_i / p_max = e^(l_i - 2) = 1, 0.368, 0.135, 0.050.
    assert_logits(S.apply_min_p(L, 0.3), [2.0, 1.0, -INF, -INF])
    close(S.next_token_distribution(L, min_p=0.3), TOP2)
    close(S.next_token_distribution(L, min_p=0.1), TOP3)
    # min_p = 1 keeps exactly the tokens tied with the maximum.
    close(S.next_token_distribution([3.0, 3.0, 1.0], min_p=1.0), [0.5, 0.5, 0])
    assert_logits(S.apply_min_p(L, 0.0), L)


def test_min_p_uses_probabilities_after_temperature():
    # T = 0.5: ratios become e^(2(l_i - 2)) = 1, 0.135, ... -> min_p 0.3 keeps one token.
    close(S.next_token_distribution(L, temperature=0.5, min_p=0.3), ONLY0)
    # T = 2: ratios e^-0.5 = 0.607, e^-1 = 0.368, e^-1.5 = 0.223 -> keeps three.
    z = E + E**0.5 + 1
    close(S.next_token_distribution(L, temperature=2.0, min_p=0.3),
          [E / z, E**0.5 / z, 1 / z, 0])


def test_repetition_penalty_positive_negative_zero_and_prompt():
    logits = [2.0, -1.0, 0.0, 3.0, 0.5]
    # token 0 only in the prompt: 2 / 2 = 1; token 1 in the output (twice: penalised once):
    # -1 * 2 = -2; token 2 in the prompt with logit 0 stays 0; tokens 3, 4 unseen.
    out = S.apply_penalties(logits, prompt_ids=[0, 2], output_ids=[1, 1],
                            repetition_penalty=2.0)
    assert_logits(out, [1.0, -2.0, 0.0, 3.0, 0.5])
    # repetition_penalty < 1 rewards instead: 2 / 0.5 = 4, -1 * 0.5 = -0.5.
    out = S.apply_penalties(logits, [0], [1], repetition_penalty=0.5)
    assert_logits(out, [4.0, -0.5, 0.0, 3.0, 0.5])
    with pytest.raises(ValueError):
        S.apply_penalties(logits, [], [], repetition_penalty=0.0)


def test_presence_and_frequency_count_only_output_tokens():
    ones = [1.0, 1.0, 1.0, 1.0]
    # prompt [0, 0, 3] is ignored; output counts: token 1 x2, token 2 x1.
    # token 1: 1 - 0.25*2 - 0.5 = 0; token 2: 1 - 0.25 - 0.5 = 0.25.
    out = S.apply_penalties(ones, prompt_ids=[0, 0, 3], output_ids=[1, 1, 2],
                            presence_penalty=0.5, frequency_penalty=0.25)
    assert_logits(out, [1.0, 0.0, 0.25, 1.0])
    # With repetition 2 first (prompt and output): all four halve to 0.5, then
    # token 1: 0.5 - 1.0 = -0.5, token 2: 0.5 - 0.75 = -0.25.
    out = S.apply_penalties(ones, [0, 0, 3], [1, 1, 2], repetition_penalty=2.0,
                            presence_penalty=0.5, frequency_penalty=0.25)
    assert_logits(out, [0.5, -0.5, -0.25, 0.5])
    # Negative presence encourages: 1 + 1 = 2.
    assert_logits(S.apply_penalties(ones, [], [3], presence_penalty=-1.0), [1, 1, 1, 2])


def test_min_tokens_masks_eos_until_reached():
    logits = [1.0, 2.0, 3.0]
    assert_logits(S.apply_min_tokens(logits, 1, 2, eos_ids=[2]), [1.0, 2.0, -INF])
    assert_logits(S.apply_min_tokens(logits, 2, 2, eos_ids=[2]), logits)
    assert_logits(S.apply_min_tokens(logits, 0, 0, eos_ids=[2]), logits)
    assert_logits(S.apply_min_tokens(logits, 0, None, eos_ids=[2]), logits)
    # Through the pipeline, n_generated is len(output_ids): 1 < 2 -> EOS (2) and stop id 1 banned.
    close(S.next_token_distribution(logits, min_tokens=2, eos_ids=[2, 1], output_ids=[0]),
          [1, 0, 0])
    e1, e2, e3 = E, E**2, E**3
    close(S.next_token_distribution(logits, min_tokens=2, eos_ids=[2], output_ids=[0, 0]),
          [e1 / (e1 + e2 + e3), e2 / (e1 + e2 + e3), e3 / (e1 + e2 + e3)])


def test_allowed_token_ids():
    assert_logits(S.apply_allowed_token_ids([1.0, 2.0, 3.0, 4.0], [1, 3]), [-INF, 2.0, -INF, 4.0])
    close(S.next_token_distribution([1.0, 2.0, 3.0, 4.0], allowed_token_ids=[1, 3]),
          [0, 1 / (1 + E**2), 0, E**2 / (1 + E**2)])
    assert_logits(S.apply_allowed_token_ids(L, None), L)
    with pytest.raises(ValueError):
        S.apply_allowed_token_ids(L, [])
    with pytest.raises(ValueError):
        S.apply_allowed_token_ids(L, [4])


def test_logit_bias_is_clamped_to_100():
    out = S.apply_logit_bias([0.0, 0.0, 0.0, 0.0], {0: 150.0, 1: -150.0, 2: 5.0})
    assert_logits(out, [100.0, -100.0, 5.0, 0.0])
    assert_logits(S.apply_logit_bias(L, None), L)
    with pytest.raises(ValueError):
        S.apply_logit_bias(L, {7: 1.0})


def test_logit_bias_comes_before_repetition_penalty():
    # vLLM adds the bias, then penalises: (1 + 1) / 2 = 1 vs 2 for the other token.
    close(S.next_token_distribution([1.0, 2.0], logit_bias={0: 1.0}, repetition_penalty=2.0,
                                    output_ids=[0]),
          [1 / (1 + E), E / (1 + E)])


def test_greedy():
    close(S.next_token_distribution([1.0, 3.0, 2.0], temperature=0.0), [0, 1, 0])
    # Greedy ignores top_k/top_p/min_p, as vLLM resets them.
    close(S.next_token_distribution([1.0, 3.0, 2.0], temperature=0.0, top_p=0.1, top_k=3,
                                    min_p=0.9), [0, 1, 0])
    # Ties: the first maximum, like torch.argmax.
    close(S.next_token_distribution([2.0, 2.0, 1.0], temperature=0.0), [1, 0, 0])
    # Argmax is taken after penalties: 3 / 1.2 = 2.5 < 2.9.
    close(S.next_token_distribution([3.0, 2.9], temperature=0.0, repetition_penalty=1.2,
                                    output_ids=[0]), [0, 1])
    assert_logits(S.apply_temperature([1.0, 3.0, 2.0], 0.0), [-INF, 3.0, -INF])
    with pytest.raises(ValueError):
        S.apply_temperature(L, -0.1)


# --------------------------------------------------------------------------- order and stages

def test_top_k_then_top_p_renormalises_so_order_matters():
    # top_k=3 first: renormalised [0.665, 0.245, 0.090]; ascending cumsum 0.090 <= 0.1 -> drop
    # token 2 as well -> two tokens.
    close(S.next_token_distribution(L, top_k=3, top_p=0.9), TOP2)
    # The other order (top_p on the un-renormalised distribution) keeps three tokens.
    other = S.apply_top_k(S.apply_top_p(L, 0.9), 3)
    close(S.softmax(other), TOP3)


def test_temperature_before_min_p_order_matters():
    # min_p on the raw logits keeps two tokens; vLLM's order (after T=0.5) keeps one.
    close(S.softmax(S.apply_temperature(S.apply_min_p(L, 0.3), 0.5)),
          [E**4 / (E**4 + E**2), E**2 / (E**4 + E**2), 0, 0])
    close(S.next_token_distribution(L, temperature=0.5, min_p=0.3), ONLY0)


def _vllm_top_k_top_p_oracle(logits, k, p):
    # vLLM's native path restated: sort ascending, mask below the k-th largest, then
    # mask ascending cumulative probabilities <= 1 - p except the last (top) one.
    x = np.asarray(logits, dtype=float)
    idx = np.argsort(x)
    xs = x[idx].copy()
    if k:
        xs[xs < xs[xs.size - k]] = -INF
    if p is not None:
        ps = np.exp(xs - xs.max())
        ps /= ps.sum()
        mask = np.cumsum(ps) <= 1 - p
        mask[-1] = False
        xs[mask] = -INF
    out = np.empty_like(x)
    out[idx] = xs
    return out


def test_top_k_top_p_agree_with_vllm_sort_formulation_on_random_logits():
    rng = np.random.default_rng(7)
    for _ in range(300):
        x = rng.normal(0, 3, size=int(rng.integers(2, 60)))   # continuous: no ties
        x[rng.random(x.size) < 0.1] = -INF
        if np.isneginf(x).all():
            continue
        k = int(rng.integers(0, x.size + 1))
        p = float(rng.uniform(0.05, 1.0))
        ours = S.apply_top_p(S.apply_top_k(x, k), p)
        assert_logits(ours, _vllm_top_k_top_p_oracle(x, k, p))


def test_stages_names_and_final_agree():
    kw = dict(temperature=0.5, top_k=3, top_p=0.95, min_p=0.01, repetition_penalty=1.3,
              presence_penalty=0.2, frequency_penalty=0.1, logit_bias={3: 2.0},
              prompt_ids=[0], output_ids=[1, 1])
    st = S.stages(L, **kw)
    assert [s.name for s in st] == ["raw", "penalties", "temperature", "min_p", "top_k", "top_p"]
    assert list(S.STAGE_NAMES) == [s.name for s in st]
    close(st[-1].probs, S.next_token_distribution(L, **kw))
    for s in st:
        close(s.probs, S.softmax(s.logits))
        assert s.logits.dtype == np.float64 and s.probs.dtype == np.float64
    assert_logits(st[0].logits, L)
    # penalties: token 0 (prompt) 2/1.3; token 1: 1/1.3 - 0.1*2 - 0.2; token 3: -1 + 2 = 1.
    assert_logits(st[1].logits, [2 / 1.3, 1 / 1.3 - 0.4, 0.0, 1.0])
    assert_logits(st[2].logits, [4 / 1.3, 2 / 1.3 - 0.8, 0.0, 2.0])
    with pytest.raises(Exception):
        st[0].name = "x"


def test_stages_without_knobs_are_all_the_raw_softmax():
    for s in S.stages(L):
        close(s.probs, S.softmax(L))


def test_stages_greedy():
    st = S.stages([1.0, 3.0, 2.0], temperature=0.0, top_k=1)
    close(st[1].probs, S.softmax([1.0, 3.0, 2.0]))
    for s in st[2:]:
        close(s.probs, [0, 1, 0])


# --------------------------------------------------------------------------- purity

def test_inputs_are_not_mutated_and_outputs_are_new_float64():
    calls = [
        lambda x: S.softmax(x),
        lambda x: S.apply_logit_bias(x, {0: 1.0}),
        lambda x: S.apply_allowed_token_ids(x, [0, 1]),
        lambda x: S.apply_min_tokens(x, 0, 3, [1]),
        lambda x: S.apply_penalties(x, [0], [1, 2], 1.5, 0.5, 0.5),
        lambda x: S.apply_temperature(x, 0.7),
        lambda x: S.apply_temperature(x, 0.0),
        lambda x: S.apply_min_p(x, 0.2),
        lambda x: S.apply_top_k(x, 2),
        lambda x: S.apply_top_k(x, 0),
        lambda x: S.apply_top_p(x, 0.6),
        lambda x: S.apply_top_p(x, None),
        lambda x: S.next_token_distribution(x, temperature=0.7, top_k=3, top_p=0.9, min_p=0.05,
                                            repetition_penalty=1.2, output_ids=[1]),
    ]
    for dtype in (np.float64, np.float32):
        for call in calls:
            x = np.array(L, dtype=dtype)
            before = x.copy()
            out = call(x)
            assert out is not x and not np.shares_memory(out, x)
            assert out.dtype == np.float64
            np.testing.assert_array_equal(x, before)
            out[:] = 0.0  # the result is the caller's to write
            np.testing.assert_array_equal(x, before)


def test_lists_are_accepted():
    assert_logits(S.apply_top_k([2, 1, 0, -1], 2), [2.0, 1.0, -INF, -INF])


# --------------------------------------------------------------------------- statistics

def test_total_variation():
    assert S.total_variation([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]) == 0.5
    assert S.total_variation([1, 0], [1, 0]) == 0.0


def test_tv_bound_closed_form():
    # 0.5 * sqrt(2 * (2 ln 2 + ln 1000) / 1000) = 0.5 * sqrt(0.0165881) = 0.0643974
    assert S.tv_bound(1000, 2, 0.001) == pytest.approx(0.0643974, abs=1e-7)
    assert S.tv_bound(4000, 2, 0.001) == pytest.approx(0.0321987, abs=1e-7)
    with pytest.raises(ValueError):
        S.tv_bound(0, 2)


def test_chi_square_pvalue_closed_forms():
    # df = 1: Q(1/2, x/2) = erfc(sqrt(x/2)); counts 60/40 vs 50/50 -> x = 4 -> erfc(sqrt 2).
    assert S.chi_square_pvalue([60, 40], [0.5, 0.5]) == pytest.approx(math.erfc(math.sqrt(2)),
                                                                      rel=1e-10)
    assert S.chi_square_pvalue([60, 40], [0.5, 0.5]) == pytest.approx(0.0455003, abs=1e-7)
    # df = 2: Q(1, x/2) = exp(-x/2). 30/30/40 vs 100/3 each -> x = 2 -> e^-1 (series branch).
    assert S.chi_square_pvalue([30, 30, 40], [1 / 3] * 3) == pytest.approx(math.exp(-1),
                                                                           rel=1e-10)
    # 20/20/60 -> x = (13.33^2 * 2 + 26.67^2) / 33.33 = 32 -> e^-16 (continued-fraction branch).
    assert S.chi_square_pvalue([20, 20, 60], [1 / 3] * 3) == pytest.approx(math.exp(-16),
                                                                           rel=1e-9)
    # df = 3: Q(3/2, y) = erfc(sqrt y) + 2 sqrt(y/pi) e^-y.
    def q32(y):
        return math.erfc(math.sqrt(y)) + 2 * math.sqrt(y / math.pi) * math.exp(-y)
    # 25,25,25,45 vs 30 each: x = (25 * 3 + 225) / 30 = 10, y = 5 (continued fraction).
    assert S.chi_square_pvalue([25, 25, 25, 45], [0.25] * 4) == pytest.approx(q32(5), rel=1e-9)
    # 28,30,30,32 vs 30 each: x = 8 / 30, y = 2 / 15 (series).
    assert S.chi_square_pvalue([28, 30, 30, 32], [0.25] * 4) == pytest.approx(q32(2 / 15),
                                                                              rel=1e-9)
    # df = 4: Q(2, y) = e^-y (1 + y). Counts 10,20,20,20,30 vs 20 each: x = 10, y = 5.
    assert S.chi_square_pvalue([10, 20, 20, 20, 30], [0.2] * 5) == pytest.approx(
        math.exp(-5) * 6, rel=1e-9)
    assert S.chi_square_pvalue([10, 10], [0.5, 0.5]) == pytest.approx(1.0)
    # Impossible outcomes: ignored when unseen, fatal when seen.
    assert S.chi_square_pvalue([60, 40, 0], [0.5, 0.5, 0]) == pytest.approx(0.0455003, abs=1e-7)
    assert S.chi_square_pvalue([60, 40, 1], [0.5, 0.5, 0]) == 0.0


def test_sample_matches_distribution():
    rng = np.random.default_rng(1234)
    probs = S.next_token_distribution(L, top_k=3)          # TOP3, token 3 impossible
    n = 20_000
    draws = np.array([S.sample(probs, rng) for _ in range(n)])
    counts = np.bincount(draws, minlength=4)
    assert counts[3] == 0
    assert S.total_variation(counts / n, probs) <= S.tv_bound(n, 3, 0.001)
    assert S.chi_square_pvalue(counts, probs) > 0.001


def test_sample_one_hot_and_validation():
    rng = np.random.default_rng(0)
    assert all(S.sample([0.0, 0.0, 1.0, 0.0], rng) == 2 for _ in range(100))
    with pytest.raises(ValueError):
        S.sample([0.5, 0.6], rng)
    with pytest.raises(ValueError):
        S.sample([1.5, -0.5], rng)
