"""What one engine step does, as a value (vLLM's ``SchedulerOutput``).

``Engine.schedule()`` returns a ``StepPlan``; ``execute(plan)`` follows it (KV
copies and cuts, one ``llama_batch``, one ``llama_decode``) and ``update(plan)``
samples every row it names. Tests and logs read plans; fair share and preemption
are lines in them (``preemptions``, admissions with a ``restore``), not branches
in the step.

Decode rows are the first rows of the batch, in order: ``decode[i]`` is batch row
``i``, so a step allocates no object per running sequence.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .sequence import Sequence

__all__ = ["Admission", "PrefillChunk", "Preemption", "SavedCells", "StepPlan"]


@dataclass(eq=False, slots=True)
class SavedCells:
    """A preempted sequence's KV cells in host memory (``llama_state_seq_get_data``), until restored.

    ``tokens``: what its slot held, position by position (the prompt and the tokens
    drawn so far, less the one not yet decoded). ``data``: the bytes, filled in when
    the plan that preempts it is executed; ``nbytes`` their size.
    """

    tokens: list[int]
    data: Any = field(default=None, repr=False)
    nbytes: int = 0


class Admission(NamedTuple):
    """A waiting sequence placed in a slot, its first ``reused`` prompt tokens already in the cache.

    ``copied_from``: the slot whose KV cells were copied (None: the slot's own cells,
    cut to ``reused``). ``cached``: the whole prompt was there with its next-token
    logits saved, so the sequence is sampled from those in ``update`` and evaluates
    nothing.
    """

    seq: Sequence
    slot: int
    reused: int
    copied_from: int | None
    cached: bool
    #: a preempted sequence coming back: its saved cells go into ``slot`` and it decodes on
    restore: SavedCells | None = None


class PrefillChunk(NamedTuple):
    """Prompt tokens ``start .. start + n`` of ``seq``, at batch rows ``offset .. offset + n``.

    ``logits``: the output row (``llama_get_logits``) of its first row with logits, -1
    when it has none (a chunk that neither ends the prompt nor records prompt_logprobs).
    """

    seq: Sequence
    start: int
    n: int
    offset: int
    logits: int


class Preemption(NamedTuple):
    """A running sequence sent back to waiting, its ``slot``'s cells saved to host memory first.

    Executed before the step's admissions (which may reuse or cut that slot);
    ``saved.nbytes`` is known once executed. The sequence keeps its sampler, its
    constraint and its text; an ``Admission`` with ``restore`` brings it back.
    """

    seq: Sequence
    slot: int
    saved: SavedCells

    @property
    def tokens(self) -> int:
        return len(self.saved.tokens)


@dataclass(frozen=True, slots=True)
class StepPlan:
    """One step: who leaves which slot, who enters which slot, which rows decode, which prompt chunks are evaluated."""

    admissions: tuple[Admission, ...] = ()
    decode: tuple[Sequence, ...] = ()         # decode[i] is batch row i
    prefill: tuple[PrefillChunk, ...] = ()
    preemptions: tuple[Preemption, ...] = ()
    n_tokens: int = 0                          # rows of the batch (0: no llama_decode)

    @property
    def copies(self) -> tuple[tuple[int, int, int], ...]:
        """Prefix copies, in order: (from slot, to slot, tokens)."""
        return tuple((a.copied_from, a.slot, a.reused) for a in self.admissions if a.copied_from is not None)

    @property
    def decode_rows(self) -> tuple[tuple[Sequence, int], ...]:
        """(sequence, batch row) of every decoding sequence."""
        return tuple((s, i) for i, s in enumerate(self.decode))

    @property
    def restores(self) -> tuple[Admission, ...]:
        return tuple(a for a in self.admissions if a.restore is not None)

    @property
    def empty(self) -> bool:
        return not (self.admissions or self.n_tokens or self.preemptions)
