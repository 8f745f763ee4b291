"""Qwen3 reasoning: split ``<think>...</think>`` out of a model's output.

Shared by the local backend, the server and the remote backend. It follows vLLM's
``Qwen3ReasoningParser`` as of vLLM 0.33:

* a ``<think>`` tag in the output is dropped (newer templates put it in the prompt);
* text before ``</think>`` is the reasoning, text after it the content
  (``None`` when empty);
* **an unterminated think block is all reasoning** (the answer was cut, e.g. by
  ``max_tokens``). vLLM 0.11 put it in ``content`` instead; we follow 0.33;
* with thinking switched off (``chat_template_kwargs={"enable_thinking": False}``,
  whose template closes an empty think block in the prompt) the parser is off and
  everything is content.

The parser applies only to models whose vocabulary has ``<think>``/``</think>``;
for others, content is everything and reasoning is ``None``.

Not modelled: Qwen3.5's implicit end of reasoning at ``<tool_call>`` (gsexplore does
not do tool calls).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

__all__ = ["THINK_START", "THINK_END", "split_reasoning", "ReasoningSplitter",
           "reasoning_ended_in_prompt", "count_reasoning_tokens"]

THINK_START = "<think>"
THINK_END = "</think>"

Kind = Literal["reasoning", "content"]


def split_reasoning(text: str, *, thinking_enabled: bool = True,
                    start: str = THINK_START, end: str = THINK_END) -> tuple[str | None, str | None]:
    """(reasoning_content, content) of a whole output, as vLLM 0.33's Qwen3 parser.

    >>> split_reasoning("<think>\\nhmm</think>\\n\\nHola")
    ('\\nhmm', '\\n\\nHola')
    >>> split_reasoning("<think>cut sho")          # unterminated: all reasoning
    ('cut sho', None)
    >>> split_reasoning("Hola", thinking_enabled=False)
    (None, 'Hola')
    """
    before, tag, after = text.partition(start)
    text = after if tag else before
    if end in text:
        reasoning, _, content = text.partition(end)
        return reasoning, content or None
    if not thinking_enabled:
        return None, text
    return text, None


class ReasoningSplitter:
    """Streaming twin of :func:`split_reasoning`: feed text deltas, get typed pieces.

    The result does not depend on how the text is cut into deltas: a partial tag at
    the end of a delta ("</thi") is held back until the next delta settles it.
    With ``enabled=False`` every piece is content.

    >>> s = ReasoningSplitter()
    >>> s.feed("<think>a</th") + s.feed("ink>b") + s.finish()
    [('reasoning', 'a'), ('content', 'b')]
    """

    def __init__(self, enabled: bool = True, *, start: str = THINK_START, end: str = THINK_END) -> None:
        self.enabled = enabled
        self.start, self.end = start, end
        # 0: before anything (a leading <think> is dropped), 1: reasoning, 2: content
        self._stage = 0 if enabled else 2
        self._buf = ""
        self.reasoning = ""
        self.content = ""

    @property
    def in_reasoning(self) -> bool:
        """True until ``</think>`` has been seen (always False when disabled)."""
        return self._stage < 2

    def feed(self, text: str) -> list[tuple[Kind, str]]:
        """Split one delta; returns ``[(kind, text), ...]`` ready to emit."""
        if not text:
            return []
        if self._stage == 2:
            return self._out("content", text)
        buf = self._buf + text
        out: list[tuple[Kind, str]] = []
        if self._stage == 0:
            if buf.startswith(self.start):
                buf = buf[len(self.start):]
                self._stage = 1
            elif self.start.startswith(buf):
                self._buf = buf  # could still become <think>
                return []
            else:
                self._stage = 1
        i = buf.find(self.end)
        if i >= 0:
            out += self._out("reasoning", buf[:i])
            self._stage = 2
            self._buf = ""
            return out + self._out("content", buf[i + len(self.end):])
        keep = _partial_suffix(buf, self.end)
        self._buf = buf[len(buf) - keep:] if keep else ""
        return out + self._out("reasoning", buf[:len(buf) - keep])

    def finish(self) -> list[tuple[Kind, str]]:
        """Flush what was held back (a partial tag is plain text after all)."""
        buf, self._buf = self._buf, ""
        if self._stage == 0:
            self._stage = 1
        return self._out("reasoning" if self._stage == 1 else "content", buf)

    def _out(self, kind: Kind, text: str) -> list[tuple[Kind, str]]:
        if not text:
            return []
        if kind == "reasoning":
            self.reasoning += text
        else:
            self.content += text
        return [(kind, text)]

    def result(self) -> tuple[str | None, str | None]:
        """(reasoning_content, content) after :meth:`finish`, shaped as :func:`split_reasoning`."""
        if not self.enabled:
            return None, self.content
        return self.reasoning, self.content or None


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


def reasoning_ended_in_prompt(prompt_ids: Sequence[int], start_id: int | None, end_id: int) -> bool:
    """True when the prompt's last think tag is ``</think>`` (vLLM's prompt_is_reasoning_end).

    Qwen3's template with ``enable_thinking=False`` ends the prompt with an empty,
    closed think block: the answer is then all content. ``start_id`` None: a
    vocabulary without ``<think>``, where only ``</think>`` is looked for.
    """
    for tok in reversed(prompt_ids):
        if tok == start_id:
            return False
        if tok == end_id:
            return True
    return False


def count_reasoning_tokens(output_ids: Iterable[int], start_id: int, end_id: int,
                           exclude: Iterable[int] = ()) -> int:
    """Generated tokens inside the think block (the tags and ``exclude`` ids not counted).

    Without ``</think>`` every token counts (an unterminated block is all reasoning).
    """
    skip = {start_id, *exclude}
    n = 0
    for tok in output_ids:
        if tok == end_id:
            return n
        if tok not in skip:
            n += 1
    return n
