"""The sort-free top_p (llama/nucleus.py) keeps the tokens vLLM's definition keeps.

The reference is ``gsexplore.sampling`` (vLLM's sampler in NumPy, float64, a full
sort). Float rounding of the cumulative sum may swap two tokens of equal probability
at the boundary; anything else is a bug.
"""
from __future__ import annotations

import numpy as np
import pytest

from gsexplore import sampling
from gsexplore.backends.llama.nucleus import nucleus


def _rows(seed: int, vocab: int = 20_000):
    rng = np.random.default_rng(seed)
    flat = rng.standard_normal(vocab).astype(np.float32)              # a random-weight model
    wide = (3 * rng.standard_normal(vocab)).astype(np.float32)
    peaked = rng.standard_normal(vocab).astype(np.float32)
    peaked[rng.integers(0, vocab, 12)] += 11                           # a trained model's few candidates
    masked = flat.copy()
    masked[rng.random(vocab) < 0.5] = -np.inf                          # guided decoding's mask
    return {"flat": flat, "wide": wide, "peaked": peaked, "masked": masked}


@pytest.mark.parametrize("temperature, min_p, top_p", [
    (1.0, 0.0, 0.9), (0.8, 0.0, 0.95), (1.5, 0.0, 0.5), (0.3, 0.0, 0.99), (1.0, 0.0, 0.01),
    (1.2, 0.05, 0.9), (0.7, 0.3, 0.6), (1.0, 0.1, 1.0),
])
def test_the_kept_set_is_vllms(temperature, min_p, top_p):
    for seed in range(3):
        for name, x in _rows(seed).items():
            ids, z = nucleus(x.copy(), temperature, min_p, top_p)
            ref = sampling.next_token_distribution(x, temperature=temperature, min_p=min_p, top_p=top_p)
            want = np.flatnonzero(ref)
            assert np.all(np.diff(ids) > 0), "ids ascending"
            np.testing.assert_allclose(z, x[ids] / np.float32(temperature), rtol=1e-6)
            odd = np.setxor1d(ids, want)
            # at most a swap at the boundary, between tokens of (nearly) equal probability
            assert odd.size <= 2 and len(ids) == len(want), (name, seed, len(ids), len(want))
            if odd.size:
                p = np.exp(x[odd] / temperature - x.max() / temperature)
                assert abs(p[0] - p[1]) <= 1e-6 * p.max(), (name, seed)


def test_it_keeps_the_top_token_and_never_a_masked_one():
    x = np.full(1000, -np.inf, dtype=np.float32)
    x[[3, 700]] = [2.0, 1.0]
    ids, _ = nucleus(x, 1.0, 0.0, 1e-6)
    assert ids.tolist() == [3]
    ids, _ = nucleus(x, 1.0, 0.0, 0.999999)
    assert ids.tolist() == [3, 700]
