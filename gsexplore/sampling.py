"""vLLM's sampling semantics (V1 engine, 0.10-0.11) as pure NumPy over one logits vector.

This is the reference the local backend is tested against and the picture the
NextTokenExplorer draws. The pipeline, in vLLM's order:

1. allowed_token_ids whitelist, min_tokens (stop ids to -inf), logit_bias
2. repetition penalty (prompt + output tokens), frequency and presence penalties (output only)
3. temperature (t == 0 -> greedy: one-hot at the argmax of the step-2 logits)
4. min_p (probabilities at the chosen temperature)
5. top_k (keeps every token tied with the k-th largest logit)
6. top_p (on the distribution renormalised after top_k)

Every transform returns a new float64 array and marks removed tokens with -inf.
Nothing here imports the rest of gsexplore.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "SAMPLING_EPS", "MIN_TEMPERATURE", "LOGIT_BIAS_LIMIT", "STAGE_NAMES", "Stage",
    "softmax", "apply_logit_bias", "apply_allowed_token_ids", "apply_min_tokens",
    "apply_penalties", "apply_temperature", "apply_min_p", "apply_top_k", "apply_top_p",
    "next_token_distribution", "stages", "sample", "total_variation", "tv_bound",
    "chi_square_pvalue",
]

SAMPLING_EPS = 1e-5       # vLLM: temperature below this is greedy
MIN_TEMPERATURE = 1e-2    # vLLM SamplingParams raises 0 < t < 0.01 to 0.01
LOGIT_BIAS_LIMIT = 100.0  # vLLM clamps each bias to [-100, 100] (OpenAI spec)
STAGE_NAMES = ("raw", "penalties", "temperature", "min_p", "top_k", "top_p")

_NEG_INF = -np.inf


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline: the logits after it and their softmax."""

    name: str
    logits: np.ndarray
    probs: np.ndarray


def _as_logits(logits) -> np.ndarray:
    # Always a fresh float64 copy: callers' arrays are never written to.
    x = np.array(logits, dtype=np.float64, copy=True)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"logits must be a non-empty 1-D vector, got shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError("logits contain NaN")
    if np.isposinf(x).any():
        raise ValueError("logits contain +inf")
    return x


def _token_ids(ids: Iterable[int], vocab_size: int, what: str) -> np.ndarray:
    arr = np.asarray(list(ids), dtype=np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        raise ValueError(f"{what} contains token ids outside [0, {vocab_size})")
    return arr


def softmax(logits) -> np.ndarray:
    """Numerically stable softmax in float64; -inf entries get probability 0."""
    x = _as_logits(logits)
    m = x.max()
    if not np.isfinite(m):
        raise ValueError("every logit is -inf: no token can be sampled")
    e = np.exp(x - m)
    return e / e.sum()


def apply_logit_bias(logits, logit_bias: Mapping[int, float] | None) -> np.ndarray:
    """Add a per-token bias, each value clamped to [-100, 100] as vLLM does."""
    x = _as_logits(logits)
    if not logit_bias:
        return x
    ids = _token_ids(logit_bias.keys(), x.size, "logit_bias")
    bias = np.clip(np.asarray([float(v) for v in logit_bias.values()]),
                   -LOGIT_BIAS_LIMIT, LOGIT_BIAS_LIMIT)
    np.add.at(x, ids, bias)
    return x


def apply_allowed_token_ids(logits, ids: Iterable[int] | None) -> np.ndarray:
    """Set every token outside the whitelist to -inf (None: no whitelist)."""
    x = _as_logits(logits)
    if ids is None:
        return x
    allowed = _token_ids(ids, x.size, "allowed_token_ids")
    if allowed.size == 0:
        raise ValueError("allowed_token_ids must not be empty")
    keep = np.zeros(x.size, dtype=bool)
    keep[allowed] = True
    x[~keep] = _NEG_INF
    return x


def apply_min_tokens(logits, n_generated: int, min_tokens: int | None,
                     eos_ids: Iterable[int]) -> np.ndarray:
    """Forbid EOS/stop tokens (-inf) while fewer than min_tokens have been generated."""
    x = _as_logits(logits)
    if min_tokens is not None and min_tokens < 0:
        raise ValueError(f"min_tokens must be >= 0, got {min_tokens}")
    if min_tokens and n_generated < min_tokens:
        x[_token_ids(eos_ids, x.size, "eos_ids")] = _NEG_INF
    return x


def apply_penalties(logits, prompt_ids: Iterable[int], output_ids: Iterable[int],
                    repetition_penalty: float = 1.0, presence_penalty: float = 0.0,
                    frequency_penalty: float = 0.0) -> np.ndarray:
    """vLLM penalties: repetition over prompt+output tokens, presence/frequency over output."""
    x = _as_logits(logits)
    if not repetition_penalty > 0:
        raise ValueError(f"repetition_penalty must be > 0, got {repetition_penalty}")
    prompt = _token_ids(prompt_ids, x.size, "prompt_ids")
    output = _token_ids(output_ids, x.size, "output_ids")
    counts = np.bincount(output, minlength=x.size).astype(np.float64)
    if repetition_penalty != 1.0:
        seen = counts > 0
        seen[prompt] = True
        # A token seen once or many times is penalised once; logit 0 stays 0.
        scale = np.where(x > 0, 1.0 / repetition_penalty, repetition_penalty)
        x = np.where(seen, x * scale, x)
    x -= frequency_penalty * counts
    x -= presence_penalty * (counts > 0)
    return x


def _effective_temperature(t: float) -> float:
    if not t >= 0 or not math.isfinite(t):
        raise ValueError(f"temperature must be a finite number >= 0, got {t}")
    # vLLM's SamplingParams lifts tiny positive temperatures, so only 0 is greedy.
    return MIN_TEMPERATURE if 0 < t < MIN_TEMPERATURE else float(t)


def _greedy(x: np.ndarray) -> np.ndarray:
    # argmax returns the first maximum, as torch.argmax does.
    out = np.full_like(x, _NEG_INF)
    i = int(np.argmax(x))
    out[i] = x[i]
    return out


def apply_temperature(logits, t: float) -> np.ndarray:
    """Divide by the temperature; t == 0 (greedy) keeps only the argmax (others -inf)."""
    x = _as_logits(logits)
    t = _effective_temperature(t)
    if t < SAMPLING_EPS:
        return _greedy(x)
    return x / t


def apply_min_p(logits, min_p: float | None) -> np.ndarray:
    """Drop tokens whose probability is below min_p times the top probability."""
    x = _as_logits(logits)
    if min_p is None or min_p == 0:
        return x
    if not 0 <= min_p <= 1:
        raise ValueError(f"min_p must be in [0, 1], got {min_p}")
    p = softmax(x)
    x[p < min_p * p.max()] = _NEG_INF
    return x


def apply_top_k(logits, k: int | None) -> np.ndarray:
    """Keep tokens whose logit is >= the k-th largest (ties kept); 0, -1 or None is off."""
    x = _as_logits(logits)
    if k is None or k in (0, -1):
        return x
    if isinstance(k, bool) or int(k) != k or k < -1:
        raise ValueError(f"top_k must be an integer >= -1, got {k}")
    k = int(k)
    if k >= x.size:
        return x
    kth = np.partition(x, x.size - k)[x.size - k]
    x[x < kth] = _NEG_INF
    return x


def apply_top_p(logits, p: float | None) -> np.ndarray:
    """Drop the low tail whose cumulative probability is <= 1 - p, always keeping the top token."""
    x = _as_logits(logits)
    if p is None or p == 1:
        return x
    if not 0 < p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    probs = softmax(x)
    # Rank from most to least likely; equal logits rank by lower token id first,
    # matching argmax, so ties at the boundary drop the higher ids (torch's order
    # there is unspecified).
    order = np.argsort(-x, kind="stable")
    # vLLM sums in ascending order; reversing twice gives the same partial sums.
    tail_mass = np.cumsum(probs[order][::-1])[::-1]
    drop = tail_mass <= 1.0 - p
    drop[0] = False
    x[order[drop]] = _NEG_INF
    return x


def _stage(name: str, x: np.ndarray) -> Stage:
    x = x.copy()
    x.setflags(write=False)
    p = softmax(x)
    p.setflags(write=False)
    return Stage(name, x, p)


def stages(logits, *, temperature: float | None = 1.0, top_k: int | None = None,
           top_p: float | None = None, min_p: float | None = None,
           repetition_penalty: float | None = None, presence_penalty: float | None = None,
           frequency_penalty: float | None = None,
           logit_bias: Mapping[int, float] | None = None,
           allowed_token_ids: Sequence[int] | None = None, min_tokens: int | None = None,
           eos_ids: Iterable[int] = (), prompt_ids: Iterable[int] = (),
           output_ids: Iterable[int] = ()) -> list[Stage]:
    """Logits and probabilities after each step, raw to top_p (see STAGE_NAMES)."""
    output_ids = list(output_ids)
    raw = _as_logits(logits)
    t = _effective_temperature(1.0 if temperature is None else temperature)
    for name, v, ok in (("top_p", top_p, top_p is None or 0 < top_p <= 1),
                        ("min_p", min_p, min_p is None or 0 <= min_p <= 1),
                        ("top_k", top_k, top_k is None or top_k >= -1)):
        if not ok:
            raise ValueError(f"{name} out of range: {v}")

    # vLLM order: whitelist, min_tokens, logit_bias, then the penalties.
    x = apply_allowed_token_ids(raw, allowed_token_ids)
    x = apply_min_tokens(x, len(output_ids), min_tokens, eos_ids)
    x = apply_logit_bias(x, logit_bias)
    x = apply_penalties(x, prompt_ids, output_ids,
                        1.0 if repetition_penalty is None else repetition_penalty,
                        presence_penalty or 0.0, frequency_penalty or 0.0)
    out = [_stage("raw", raw), _stage("penalties", x)]

    x = apply_temperature(x, t)
    out.append(_stage("temperature", x))
    if t < SAMPLING_EPS:
        # Greedy requests ignore min_p/top_k/top_p (vLLM resets them).
        top_k = top_p = min_p = None
    for name, fn, arg in (("min_p", apply_min_p, min_p), ("top_k", apply_top_k, top_k),
                          ("top_p", apply_top_p, top_p)):
        x = fn(x, arg)
        out.append(_stage(name, x))
    return out


def next_token_distribution(logits, *, temperature: float | None = 1.0,
                            top_k: int | None = None, top_p: float | None = None,
                            min_p: float | None = None,
                            repetition_penalty: float | None = None,
                            presence_penalty: float | None = None,
                            frequency_penalty: float | None = None,
                            logit_bias: Mapping[int, float] | None = None,
                            allowed_token_ids: Sequence[int] | None = None,
                            min_tokens: int | None = None, eos_ids: Iterable[int] = (),
                            prompt_ids: Iterable[int] = (),
                            output_ids: Iterable[int] = ()) -> np.ndarray:
    """The distribution vLLM samples the next token from (None means neutral)."""
    final = stages(logits, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                   repetition_penalty=repetition_penalty, presence_penalty=presence_penalty,
                   frequency_penalty=frequency_penalty, logit_bias=logit_bias,
                   allowed_token_ids=allowed_token_ids, min_tokens=min_tokens,
                   eos_ids=eos_ids, prompt_ids=prompt_ids, output_ids=output_ids)[-1]
    return final.probs.copy()


def sample(probs, rng: np.random.Generator) -> int:
    """Draw one token id from a probability vector with the given generator."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("probs must be a non-empty 1-D vector of finite non-negative numbers")
    total = p.sum()
    if not abs(total - 1.0) < 1e-6:
        raise ValueError(f"probs must sum to 1, got {total}")
    cdf = np.cumsum(p)
    i = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    # Rounding can push the draw past the end; fall back on the last possible token.
    return min(i, int(np.flatnonzero(p)[-1]))


def total_variation(p, q) -> float:
    """Total variation distance: half the L1 distance between two distributions."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"shapes differ: {p.shape} vs {q.shape}")
    return float(0.5 * np.abs(p - q).sum())


def tv_bound(n_samples: int, support_size: int, alpha: float = 0.001) -> float:
    """TV distance an n-sample empirical distribution exceeds with probability <= alpha."""
    if n_samples < 1 or support_size < 1 or not 0 < alpha < 1:
        raise ValueError("need n_samples >= 1, support_size >= 1 and 0 < alpha < 1")
    # Bretagnolle-Huber-Carol: P(||p_hat - p||_1 >= eps) <= 2^k exp(-n eps^2 / 2).
    l1 = math.sqrt(2.0 * (support_size * math.log(2.0) + math.log(1.0 / alpha)) / n_samples)
    return 0.5 * l1


def _gamma_q(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x) (Numerical Recipes' split)."""
    if x <= 0:
        return 1.0
    log_prefactor = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        # Series for P(a, x).
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefactor))
    # Continued fraction for Q(a, x), modified Lentz.
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return min(1.0, math.exp(log_prefactor) * h)


def chi_square_pvalue(counts, probs) -> float:
    """Pearson goodness-of-fit p-value of observed counts against expected probabilities."""
    counts = np.asarray(counts, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    if counts.shape != probs.shape or counts.ndim != 1:
        raise ValueError("counts and probs must be 1-D vectors of the same length")
    if (counts < 0).any() or (probs < 0).any():
        raise ValueError("counts and probs must be non-negative")
    n = counts.sum()
    if n <= 0:
        raise ValueError("counts must not all be zero")
    possible = probs > 0
    if counts[~possible].any():
        return 0.0  # an outcome that cannot happen did happen
    p = probs[possible] / probs[possible].sum()
    df = p.size - 1
    if df == 0:
        return 1.0
    expected = n * p
    stat = float(((counts[possible] - expected) ** 2 / expected).sum())
    return _gamma_q(df / 2.0, stat / 2.0)
