"""What each metric is (level, labels, range, whether a 0/1 rate): declarations only.

`gsexplore.metrics` computes the metrics; `gsexplore.stats` reads these declarations
to pick an interval or a test by the metric's kind, without depending on the
computations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Metric", "METRICS", "MEASURES", "spec"]


@dataclass(frozen=True)
class Metric:
    """A metric's level ("row" or "group") and its labels."""

    level: str
    en: str
    es: str
    bounds: tuple[float, float] | None = None  # the metric's range: intervals are clipped to it
    binary: bool = False  # a 0/1 outcome per row: summarised as a rate (Wilson)

    def label(self, lang: str = "en") -> str:
        return self.es if lang == "es" else self.en


METRICS: dict[str, Metric] = {
    "n_chars": Metric("row", "characters", "caracteres"),
    "n_words": Metric("row", "words", "palabras"),
    "n_tokens": Metric("row", "completion tokens", "tokens generados"),
    "repetition_rate": Metric("row", "repetition rate (3-grams)", "tasa de repetición (3-gramas)", (0.0, 1.0)),
    "exact_match": Metric("row", "exact match", "coincidencia exacta", (0.0, 1.0), binary=True),
    "contains_expected": Metric("row", "contains the expected answer", "contiene la respuesta esperada", (0.0, 1.0), binary=True),
    "is_error": Metric("row", "error rate", "tasa de errores", (0.0, 1.0), binary=True),
    "distinct_1": Metric("group", "distinct-1", "distinct-1 (palabras únicas)", (0.0, 1.0)),
    "distinct_2": Metric("group", "distinct-2", "distinct-2 (bigramas únicos)", (0.0, 1.0)),
    "pairwise_similarity": Metric("group", "pairwise similarity (Jaccard)", "similitud entre respuestas (Jaccard)", (0.0, 1.0)),
    "validity_rate": Metric("group", "validity rate", "tasa de validez", (0.0, 1.0)),
    "n_outputs": Metric("group", "outputs per cell", "respuestas por celda"),
}
#: Columns of a sweep that summaries and plots treat like metrics (they are per row already).
MEASURES: dict[str, Metric] = {
    "latency_s": Metric("row", "latency (s)", "latencia (s)"),
    "tokens_per_s": Metric("row", "tokens per second", "tokens por segundo"),
    "completion_tokens": Metric("row", "completion tokens", "tokens generados"),
    "prompt_tokens": Metric("row", "prompt tokens", "tokens del prompt"),
    "reasoning_tokens": Metric("row", "reasoning tokens", "tokens de razonamiento"),
    "guided_valid": Metric("row", "valid output", "salida válida", (0.0, 1.0), binary=True),
    "mean_entropy": Metric("row", "mean token entropy (nats)", "entropía media por token (nats)", (0.0, math.inf)),
    "perplexity": Metric("row", "perplexity", "perplejidad", (1.0, math.inf)),
}


def spec(name: str) -> Metric | None:
    """The declaration of a metric or measure column; None for other columns."""
    return METRICS.get(name) or MEASURES.get(name)
