"""Token-level views of a completion: probability, rank, entropy and alternatives of each token.

Works on anything with ``logprobs`` (OpenAI/vLLM shape: ``{"token", "logprob",
"bytes", "top_logprobs": [...]}`` per generated token), local or remote.

Entropy per token (nats): the entry's own ``"entropy"`` when the backend gives the
exact value, else a lower bound from the ``top_logprobs`` alternatives:
``-Σ p log p`` over them, plus the rest of the probability (1 - their sum) counted
as one more candidate (spread over many tokens, as it really is, it has more).
Perplexity: ``exp(-mean logprob)`` of the chosen tokens.

Reasoning and content: a Qwen3 answer's tokens up to ``</think>`` are reasoning
(``part == "reasoning"``), the rest content.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Literal, Sequence

from .row import token_entropy, token_stats

if TYPE_CHECKING:
    from .completion import Completion

__all__ = ["Token", "Tokens", "tokens", "token_entropy", "token_stats"]

ColorBy = Literal["prob", "entropy"]


@dataclass(frozen=True)
class Token:
    """One generated token with its probability, rank among the alternatives, and the alternatives."""

    index: int
    text: str
    logprob: float
    rank: int | None  # 1 = the most likely; None when it is not among the top alternatives given
    entropy: float | None  # nats; exact or the top-k lower bound (see the module docstring)
    top: tuple[tuple[str, float], ...]  # (token, logprob), most likely first
    part: str  # "reasoning" or "content"

    @property
    def prob(self) -> float:
        """The chosen token's probability."""
        return math.exp(self.logprob)


def _rank(entry: dict[str, Any]) -> int | None:
    top = entry.get("top_logprobs") or []
    if not any(t["token"] == entry["token"] for t in top):
        return None
    return 1 + sum(1 for t in top if t["logprob"] > entry["logprob"])


def _parts(entries: Sequence[dict[str, Any]], has_reasoning: bool) -> list[str]:
    if not has_reasoning:
        return ["content"] * len(entries)
    for i, e in enumerate(entries):
        if "</think>" in e["token"]:
            return ["reasoning"] * (i + 1) + ["content"] * (len(entries) - i - 1)
    return ["reasoning"] * len(entries)  # thinking never ended (cut by max_tokens)


class Tokens(Sequence[Token]):
    """The tokens of a completion (``completion.tokens()``); shows itself coloured in notebooks."""

    def __init__(self, completion: Completion) -> None:
        self.completion = completion
        entries = completion.logprobs or []
        has_reasoning = bool(completion.reasoning_content) or any("</think>" in e["token"] for e in entries)
        parts = _parts(entries, has_reasoning)
        self._tokens = [
            Token(i, e["token"], float(e["logprob"]), _rank(e), token_entropy(e),
                  tuple((t["token"], float(t["logprob"])) for t in sorted(
                      e.get("top_logprobs") or [], key=lambda t: -t["logprob"])), parts[i])
            for i, e in enumerate(entries)]

    def __getitem__(self, i: Any) -> Any:
        return self._tokens[i]

    def __len__(self) -> int:
        return len(self._tokens)

    def __iter__(self) -> Iterator[Token]:
        return iter(self._tokens)

    @property
    def mean_entropy(self) -> float | None:
        """Mean entropy per token (nats)."""
        return token_stats(self.completion.logprobs)[0]

    @property
    def perplexity(self) -> float | None:
        """exp(-mean logprob) of the chosen tokens."""
        return token_stats(self.completion.logprobs)[1]

    def prefix(self, index: int) -> str:
        """The content text before token ``index`` (what a branch at that token keeps)."""
        return "".join(t.text for t in self._tokens[:index] if t.part == "content")

    def to_frame(self) -> Any:
        """One row per token: index, part, text, prob, logprob, rank, entropy, top (as text)."""
        import pandas as pd

        return pd.DataFrame([{"index": t.index, "part": t.part, "text": t.text, "prob": t.prob,
                              "logprob": t.logprob, "rank": t.rank, "entropy": t.entropy,
                              "top": ", ".join(f"{a!r} {math.exp(lp):.2f}" for a, lp in t.top)}
                             for t in self._tokens])

    def __repr__(self) -> str:
        ppl = self.perplexity
        return f"Tokens({len(self)} tokens, perplexity={'None' if ppl is None else f'{ppl:.2f}'})"

    def to_html(self, color_by: ColorBy = "prob") -> str:
        """Coloured spans (title = the alternatives) for notebooks and Voilà; no JavaScript needed."""
        return render_html(self, color_by)

    def _repr_html_(self) -> str:
        return self.to_html()


def color(t: Token, color_by: ColorBy = "prob", max_entropy: float = 3.0) -> str:
    """Background colour: red (unlikely / uncertain) through yellow to green (likely / certain)."""
    if color_by == "entropy":
        x = 1.0 - min((t.entropy or 0.0) / max_entropy, 1.0)
    else:
        x = t.prob
    hue = int(120 * x)  # 0 = red, 120 = green
    return f"hsl({hue}, 75%, 82%)"


def tooltip(t: Token) -> str:
    """The hover text of a token: probability, rank, entropy and the alternatives."""
    rank = f"rank {t.rank}" if t.rank else f"rank > {len(t.top)}"
    ent = "" if t.entropy is None else f", H={t.entropy:.2f}"
    alts = "\n".join(f"{a!r}: {math.exp(lp):.3f}" for a, lp in t.top)
    return f"{t.text!r}: p={t.prob:.3f}, {rank}{ent}\n{alts}"


def render_html(toks: Tokens, color_by: ColorBy = "prob") -> str:
    """The HTML of a token list: reasoning and content in separate blocks."""
    esc = html.escape
    blocks = []
    for part, title in (("reasoning", "razonamiento / reasoning"), ("content", "respuesta / content")):
        spans = [f'<span class="gs-tok" data-i="{t.index}" title="{esc(tooltip(t))}" '
                 f'style="background:{color(t, color_by)};border-radius:3px;white-space:pre-wrap">'
                 f'{esc(t.text)}</span>' for t in toks if t.part == part]
        if spans:
            style = "color:#555;font-style:italic" if part == "reasoning" else ""
            blocks.append(f'<div class="gs-part gs-{part}" style="{style}"><small><b>{title}</b></small>'
                          f'<div style="font-family:monospace;line-height:1.7">{"".join(spans)}</div></div>')
    legend = ("color: p of the chosen token (red low, green high)" if color_by == "prob"
              else "color: entropy (red uncertain, green certain)")
    if not blocks:
        return '<div class="gs-tokens"><i>no logprobs: ask with logprobs=True, top_logprobs=5</i></div>'
    return (f'<div class="gs-tokens" style="font-family:sans-serif">{"".join(blocks)}'
            f'<div style="color:#666;font-size:smaller">{legend} · hover a token for its alternatives</div></div>')


def tokens(completion: Completion) -> Tokens:
    """The token view of a completion."""
    return Tokens(completion)
