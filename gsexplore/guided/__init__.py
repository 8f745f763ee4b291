"""Guided decoding (structured outputs): vLLM's meaning, llguidance's speed, validity checks.

Three things live here:

* **Compiling** a request's guided constraint (``guided_json``, ``guided_regex``,
  ``guided_choice``, ``guided_grammar`` or ``response_format``) into an llguidance
  grammar, the way vLLM's ``guidance`` backend does it
  (``vllm/v1/structured_output/backend_guidance.py``). :func:`validate` checks it
  without any model, so a bad constraint is a :class:`~gsexplore.ParamsError`
  before anything is generated.
* A token-level :class:`Constraint` for the local backend: a mask over the whole
  llama.cpp vocabulary per step, ``consume(token_id)`` after each draw. Made with
  :func:`compile_constraint` from the :class:`GuidedTokenizer` that
  :func:`tokenizer_for` builds once per model file.
* :func:`check` / :func:`check_text`: whether an output of *either* backend
  satisfies the constraint it asked for (a :class:`Validity`), so sweeps can plot
  validity rates for the remote server and the local model alike.

The meaning follows vLLM 0.10-0.11, whose default backend ("auto") compiles with
xgrammar and falls back to guidance (llguidance) for what xgrammar rejects:

* ``guided_decoding_backend`` unset, "auto" or "xgrammar": **xgrammar's language**
  (module ``xgrammar``): regex ``\\d`` = ``[0-9]``, ``\\w`` = ``[a-zA-Z0-9_]``,
  ``\\s`` = ``[ \\t\\n\\r\\f\\v\\u00a0]``, ``.`` also matches a newline,
  ``^``/``$`` match anywhere, ``\\A``/``\\Z`` are letters; JSON schemas in strict
  mode (an object with ``properties`` is closed unless ``additionalProperties``
  opens it; ``prefixItems`` closes the array); flexible whitespace
  (vLLM's ``any_whitespace``). llguidance stays the engine: the constraint is
  translated. A construct xgrammar rejects (a regex flag or look-around, a
  ``{,n}``, ``uniqueItems``, ``multipleOf``, ``patternProperties``, an unknown
  string ``format``, ...) falls back to guidance under "auto"
  (``Completion.info["guided_fallback"]`` says why) and is a ParamsError under
  "xgrammar" (vLLM answers 400). Lark grammars are llguidance's own Lark.
* "guidance": **llguidance's language**, as vLLM's guidance backend: Unicode
  ``\\d``/``\\w``/``\\s``, ``.`` without newline, open JSON objects.
* "outlines", "lm-format-enforcer": UnsupportedParam (their languages are
  not reproduced).
* Known differences left (xgrammar 0.2.8 checked): xgrammar rejects the integer
  ``-0`` and accepts ``\\/`` and ``\\u00e9`` escapes in JSON strings, compares a
  ``const`` object without whitespace, counts an escape as two characters in
  ``maxLength``, ignores ``minimum`` inside ``allOf``; llguidance does the opposite.

``Completion.info`` of a constrained local output has ``guided_engine``
("llguidance") and ``guided_semantics`` ("xgrammar" or "guidance"); sweeps
have a ``guided_semantics`` column. :func:`accepts` is the local engine's own
judgement of any text. Further:

* ``response_format={"type": "json_schema", ...}`` is ``guided_json`` with that
  schema; ``{"type": "json_object"}`` is any JSON object; ``{"type": "text"}`` is
  no constraint.
* ``guided_whitespace_pattern`` replaces the flexible JSON whitespace
  (vLLM's V1 engine ignores that field; gsexplore honours it locally).
* ``guided_choice`` is exactly one of the options; ``guided_grammar`` is llama.cpp
  GBNF (what vLLM's xgrammar backend takes) or Lark (llguidance's syntax); a
  grammar with a ``name ::= ...`` rule is GBNF, anything else Lark.
* ``guided_regex`` uses Python syntax (Params checks it with :mod:`re`). Under
  guidance the few spellings Rust's regex engine writes differently are
  translated (``\\Z``, ``{,n}``, ``[`` and ``&&``/``--``/``~~`` inside classes,
  ``\\N{name}``). Look-arounds, ``\\b`` and back-references do not exist in a
  token-level regex engine: they are a ParamsError.
* With a reasoning model (a vocabulary that has ``<think>``/``</think>``) the
  constraint applies only after ``</think>``, as vLLM with a reasoning parser does
  (``StructuredOutputManager.should_advance``: the ``</think>`` token itself is not
  fed to the grammar; the next token is the first constrained one). When the
  prompt already closed the think block (``enable_thinking: false`` makes the
  Qwen3 template append ``<think>\\n\\n</think>\\n\\n``) it applies from the first
  token.

Modules: ``grammar`` (Params -> llguidance grammar, :func:`validate`),
``tokenizer`` (:func:`tokenizer_for`: llama.cpp vocabulary -> llguidance, cached
in memory per model file; llguidance cannot serialise a tokenizer, so nothing is
cached on disk), ``constraint`` (:class:`Constraint`, :func:`compile_constraint`,
compiled grammars in an LRU per tokenizer and grammar), ``validity``
(:func:`check`, :class:`Validity`).

Speed (``bench/guided_overhead.py``): llguidance's mask, setting ``-inf`` in the
logits and ``consume`` cost about 0.1-0.25 ms per token on Qwen3's 152k
vocabulary, against tens of ms for llama-cpp-python's own GBNF grammar.

Example::

    from gsexplore import guided
    tok = guided.tokenizer_for(llama)                   # once per model (~1 s on 152k tokens)
    c = guided.compile_constraint(params, tok)          # None when there is no constraint
    c.apply(logits)                                      # -inf where the grammar forbids
    c.consume(token_id)
    guided.check(completion)                             # Validity(kind, valid, reason, is_prefix, cut)
"""

from __future__ import annotations

from .constraint import _MATCHER_LOCK, _MATCHERS, Constraint, compile_constraint, is_reasoning_end, local_constraint
from .grammar import (BACKENDS, ENGINE, KINDS, GrammarSpec, GuidedWarning, engine_info, grammar_format,
                      grammar_spec, python_regex_to_rust, requested_backend, validate)
from .tokenizer import _TOK_LOCK, _TOKENIZERS, GuidedTokenizer, byte_tokenizer, tokenizer_for
from .validity import Validity, accepts, check, check_row, check_text

__all__ = [
    "BACKENDS",
    "ENGINE",
    "KINDS",
    "Constraint",
    "GrammarSpec",
    "GuidedTokenizer",
    "GuidedWarning",
    "Validity",
    "accepts",
    "byte_tokenizer",
    "check",
    "check_row",
    "check_text",
    "clear_caches",
    "compile_constraint",
    "engine_info",
    "grammar_format",
    "grammar_spec",
    "is_reasoning_end",
    "local_constraint",
    "python_regex_to_rust",
    "requested_backend",
    "tokenizer_for",
    "validate",
]


def clear_caches() -> None:
    """Forget cached tokenizers and compiled grammars (tests, or after replacing a model file)."""
    with _TOK_LOCK:
        _TOKENIZERS.clear()
    with _MATCHER_LOCK:
        _MATCHERS.clear()
