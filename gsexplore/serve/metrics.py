"""Prometheus metrics of `gsexplore serve`, named as vLLM's (``vllm/v1/metrics/loggers.py``) where they exist.

One registry per app, so several servers in one process (tests) do not share counters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE

__all__ = ["ServerMetrics", "CONTENT_TYPE"]

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)


class ServerMetrics:
    """Counters, gauges and histograms of one server; ``render()`` is the /metrics text."""

    def __init__(self, model_name: str, running: Callable[[], float], waiting: Callable[[], float]) -> None:
        self.registry = r = CollectorRegistry()
        lab = ["model_name"]
        self.model = model_name
        g_run = Gauge("vllm:num_requests_running", "Requests generating now.", lab, registry=r)
        g_wait = Gauge("vllm:num_requests_waiting", "Requests waiting for a free slot.", lab, registry=r)
        g_run.labels(model_name).set_function(running)
        g_wait.labels(model_name).set_function(waiting)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Prompt tokens processed.", lab, registry=r)
        self.generation_tokens = Counter("vllm:generation_tokens", "Tokens generated.", lab, registry=r)
        self.success = Counter("vllm:request_success", "Requests finished, by finish reason.",
                               [*lab, "finished_reason"], registry=r)
        self.errors = Counter("gsexplore:request_errors", "Requests answered with an HTTP error, by status.",
                              [*lab, "status"], registry=r)
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Time to the first token of a stream.",
                              lab, buckets=_LATENCY_BUCKETS, registry=r)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "End-to-end request latency.",
                             lab, buckets=_LATENCY_BUCKETS, registry=r)
        for m in (self.prompt_tokens, self.generation_tokens):
            m.labels(model_name)
        # per student, by label (never a key): a classroom has tens of them, a bounded cardinality
        self.student_requests = Counter("gsexplore:student_requests", "Requests finished, by student.",
                                        [*lab, "student"], registry=r)
        self.student_tokens = Counter("gsexplore:student_tokens", "Prompt and completion tokens, by student.",
                                      [*lab, "student"], registry=r)
        self.student_errors = Counter("gsexplore:student_errors",
                                      "Requests of a student that ended in an error or were refused by a limit.",
                                      [*lab, "student"], registry=r)

    def finished(self, completion: Any, latency_s: float, ttft_s: float | None = None) -> None:
        """Count a finished generation (its usage, finish reasons and latencies)."""
        m = self.model
        u = completion.usage
        self.prompt_tokens.labels(m).inc(u.prompt_tokens or 0)
        self.generation_tokens.labels(m).inc(u.completion_tokens or 0)
        for ch in completion.choices:
            self.success.labels(m, str(ch.finish_reason)).inc()
        self.e2e.labels(m).observe(latency_s)
        if ttft_s is not None:
            self.ttft.labels(m).observe(ttft_s)

    def student_finished(self, student: str, completion: Any) -> None:
        """Count a finished request of ``student`` (a label) and its tokens."""
        u = completion.usage
        self.student_requests.labels(self.model, student).inc()
        self.student_tokens.labels(self.model, student).inc((u.prompt_tokens or 0) + (u.completion_tokens or 0))

    def student_error(self, student: str) -> None:
        self.student_errors.labels(self.model, student).inc()

    def error(self, status: int) -> None:
        self.errors.labels(self.model, str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
