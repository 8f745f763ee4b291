"""The flat row of a Completion: its columns, stated once, and the one function that fills them.

The playground's table (`Completion.to_row`) and every sweep row (`gsexplore.sweep`)
take their outcome columns from `outcome`; the store orders its columns by
`ROW_COLUMNS`. The token statistics of a row (mean entropy, perplexity) are computed
here from the record's logprobs; `gsexplore.tokens` shows them token by token.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Sequence

from .params import Params

if TYPE_CHECKING:
    from .completion import Completion

__all__ = ["HEAD", "OUTCOME", "TAIL", "ROW_COLUMNS", "outcome", "completion_row", "token_entropy", "token_stats"]

#: Columns of a sweep row before the parameters (Params.to_row()).
HEAD = ["sweep_id", "cell_id", "repeat", "choice", "backend", "model",
        "prompt_id", "prompt", "expected", "messages"]
#: What one choice said, how it ended, its tokens and timings (playground and sweep rows alike).
OUTCOME = ["content", "reasoning_content", "finish_reason", "stop_reason",
           "prompt_tokens", "completion_tokens", "reasoning_tokens", "total_tokens",
           "latency_s", "ttft_s", "tokens_per_s", "mean_entropy", "perplexity", "guided_semantics"]
#: Columns after the parameters.
TAIL = [*OUTCOME[:-1], "guided_valid", OUTCOME[-1],
        "error_type", "error_message",
        "timestamp", "run_id", "row_id"]
#: Every column of a sweep row, in order (parameters in Params declaration order).
#: (the parameter ``model`` shares the ``model`` column: the model asked for, else the backend's)
ROW_COLUMNS = HEAD + [n for n in Params.names() if n not in HEAD] + TAIL


def token_entropy(entry: dict[str, Any]) -> float | None:
    """Entropy (nats) of one position: exact when the entry says, else over its top_logprobs."""
    if entry.get("entropy") is not None:
        return float(entry["entropy"])
    top = entry.get("top_logprobs") or []
    if not top:
        return None
    ps = [math.exp(t["logprob"]) for t in top if t["logprob"] > -math.inf]
    rest = max(0.0, 1.0 - sum(ps))
    return float(-sum(p * math.log(p) for p in ps if p > 0) - (rest * math.log(rest) if rest > 0 else 0.0))


def token_stats(logprobs: Sequence[dict[str, Any]] | None) -> tuple[float | None, float | None]:
    """(mean entropy, perplexity) of a completion's logprobs; None where they say nothing."""
    if not logprobs:
        return None, None
    lps = [float(e["logprob"]) for e in logprobs if e.get("logprob") is not None]
    ents = [h for h in (token_entropy(e) for e in logprobs) if h is not None]
    ppl = math.exp(-sum(lps) / len(lps)) if lps else None
    return (sum(ents) / len(ents) if ents else None), ppl


def outcome(c: Completion) -> dict[str, Any]:
    """The `OUTCOME` columns of one choice."""
    u = c.usage
    entropy, perplexity = token_stats(c.logprobs)
    return {
        "content": c.content,
        "reasoning_content": c.reasoning_content,
        "finish_reason": c.finish_reason,
        "stop_reason": None if c.stop_reason is None else str(c.stop_reason),
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "reasoning_tokens": u.reasoning_tokens,
        "total_tokens": u.total_tokens,
        "latency_s": c.latency_s,
        "ttft_s": c.ttft_s,
        "tokens_per_s": c.tokens_per_s,
        "mean_entropy": entropy,
        "perplexity": perplexity,
        # the language the local engine used ("xgrammar" / "guidance"); None remotely
        "guided_semantics": c.info.get("guided_semantics"),
    }


def completion_row(c: Completion) -> dict[str, Any]:
    """A flat dict of one Completion: who answered, to what, the outcome, then one column per parameter."""
    row: dict[str, Any] = {
        "backend": c.backend,
        "model": c.model,
        "prompt": c.prompt,
        "messages": json.dumps(c.messages, ensure_ascii=False),
        "choice": c.index,
        **outcome(c),
    }
    # `model` is the model that answered; Params.model (the one asked for) must not blank it
    row.update({k: v for k, v in c.params.to_row().items() if k not in row})
    return row
