"""What a backend can do beyond the contract, declared as protocols the server and panels ask for.

A backend offers a capability by having its methods (structural typing: no
registration). Callers ask ``isinstance(backend, Tokenizer)`` instead of asking
which class the backend is, so a new backend that tokenizes gets ``/tokenize``
without touching the server.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..completion import MessagesLike
from ..params import Params
from .base import Delta

__all__ = ["EngineStats", "NextTokenLogits", "RawPrompt", "Tokenizer"]


@runtime_checkable
class Tokenizer(Protocol):
    """Turns text into the model's token ids and back (``/tokenize``, ``/detokenize``, token views)."""

    def tokenize(self, text: str, add_special_tokens: bool = False) -> list[int]: ...
    def detokenize(self, token_ids: Sequence[int]) -> str: ...
    def token_text(self, token_id: int) -> str:
        """One token's text, special tokens rendered."""
        ...
    def prompt_token_ids(self, messages: MessagesLike, params: Params | None = None,
                         **overrides: Any) -> list[int]:
        """The token ids of a chat request's prompt, as the chat template renders it."""
        ...


@runtime_checkable
class RawPrompt(Protocol):
    """Generates from a prompt text used as it is, no chat template (``/v1/completions``)."""

    def prompt_events(self, prompt: str, params: Params, *, streaming: bool) -> Iterator[Delta]: ...
    def aprompt_events(self, prompt: str, params: Params, *, streaming: bool) -> AsyncIterator[Delta]: ...


@runtime_checkable
class NextTokenLogits(Protocol):
    """The raw next-token distribution after a prompt, and draws from it as generation does."""

    def next_token_logits(self, messages: MessagesLike, params: Params | None = None,
                          **overrides: Any) -> np.ndarray: ...
    def sample_from_logits(self, logits: np.ndarray, params: Params | None = None, *, seed: int,
                           prompt_ids: Sequence[int] = (), output_ids: Sequence[int] = (),
                           **overrides: Any) -> int: ...
    def prompt_token_ids(self, messages: MessagesLike, params: Params | None = None,
                         **overrides: Any) -> list[int]: ...


@runtime_checkable
class EngineStats(Protocol):
    """Counters of a batching engine (steps, tokens decoded, running and waiting sequences)."""

    def engine_stats(self) -> dict[str, Any]: ...
