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

The meaning follows vLLM:

* ``response_format={"type": "json_schema", ...}`` is ``guided_json`` with that
  schema; ``{"type": "json_object"}`` is any JSON object; ``{"type": "text"}`` is
  no constraint.
* JSON allows flexible whitespace between tokens (vLLM's default,
  ``disable_any_whitespace=False``); ``guided_whitespace_pattern`` replaces it.
  (vLLM's V1 engine ignores that field; gsexplore honours it locally.)
* ``guided_choice`` is exactly one of the options; ``guided_grammar`` is llama.cpp
  GBNF (what vLLM's xgrammar backend takes) or Lark (llguidance's syntax); a
  grammar with a ``name ::= ...`` rule is GBNF, anything else Lark.
* ``guided_regex`` uses Python syntax (Params checks it with :mod:`re`); the few
  spellings Rust's regex engine writes differently are translated
  (``\\Z``, ``{,n}``, ``[`` and ``&&``/``--``/``~~`` inside classes,
  ``\\N{name}``). Look-arounds, ``\\b`` and back-references do not exist in a
  token-level regex engine: they are a ParamsError.
* With a reasoning model (a vocabulary that has ``<think>``/``</think>``) the
  constraint applies only after ``</think>``, as vLLM with a reasoning parser does
  (``StructuredOutputManager.should_advance``: the ``</think>`` token itself is not
  fed to the grammar; the next token is the first constrained one). When the
  prompt already closed the think block (``enable_thinking: false`` makes the
  Qwen3 template append ``<think>\\n\\n</think>\\n\\n``) it applies from the first
  token.

Example::

    from gsexplore import guided
    tok = guided.tokenizer_for(llama)                   # once per model (~1 s on 152k tokens)
    c = guided.compile_constraint(params, tok)          # None when there is no constraint
    c.apply(logits)                                      # -inf where the grammar forbids
    c.consume(token_id)
    guided.check(completion)                             # Validity(kind, valid, reason, is_prefix, cut)
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import GSExploreError, ParamsError, UnsupportedParam
from .params import GUIDED_KINDS, Params, schema_of

if TYPE_CHECKING:  # pragma: no cover
    import llguidance

    from .completion import Completion

__all__ = [
    "ENGINE",
    "Constraint",
    "GrammarSpec",
    "GuidedTokenizer",
    "Validity",
    "check",
    "check_row",
    "check_text",
    "clear_caches",
    "compile_constraint",
    "grammar_spec",
    "is_reasoning_end",
    "local_constraint",
    "python_regex_to_rust",
    "tokenizer_for",
    "validate",
]

#: The engine the local backend uses; reported as ``Completion.info["guided_engine"]``.
ENGINE = "llguidance"

#: Kinds a constraint can have (``Params.guided_kind``).
KINDS = (*GUIDED_KINDS, "json_object")

_LOG_LEVEL = int(os.environ.get("GSEXPLORE_LLGUIDANCE_LOG_LEVEL", "0"))


def _llg() -> Any:
    import llguidance

    return llguidance


# ============================================================================
# Params -> llguidance grammar (no model needed)


@dataclass(frozen=True)
class GrammarSpec:
    """One request's constraint, compiled to llguidance's grammar format.

    kind: ``guided_json`` (also a json_schema response_format), ``json_object``,
    ``guided_regex``, ``guided_choice`` or ``guided_grammar``.
    field: the Params field that carries it (``response_format`` for the
    response_format kinds), named in errors.
    grammar: the llguidance grammar (JSON text) for ``LLMatcher``.
    """

    kind: str
    field: str
    grammar: str
    source: str  # the constraint as given, as text (schema JSON, regex, choices JSON, grammar)


def grammar_spec(params: Params) -> GrammarSpec | None:
    """The llguidance grammar of the constraint in ``params`` (None when there is none).

    Raises ParamsError when the constraint cannot be translated (a GBNF grammar
    that does not parse, a regex construct Rust's engine lacks); the grammar is
    not checked further here: :func:`validate` does that.
    Raises UnsupportedParam for ``guided_whitespace_pattern`` without a JSON
    constraint (nothing it could apply to).
    """
    kind = params.guided_kind
    ws = params.guided_whitespace_pattern
    if ws is not None and kind not in ("guided_json", "json_object"):
        raise UnsupportedParam(
            "guided_whitespace_pattern", "local",
            "it only applies to JSON constraints (guided_json or a json response_format)")
    if kind is None:
        return None
    if kind == "guided_json":
        field_ = "guided_json" if params.guided_json is not None else "response_format"
        schema = schema_of(params)
        # key order matters: llguidance emits properties in the order the schema lists them
        text = json.dumps(schema, ensure_ascii=False)
        return GrammarSpec(kind, field_, _json_grammar(text, ws), text)
    if kind == "json_object":
        text = '{"type": "object"}'
        return GrammarSpec(kind, "response_format", _json_grammar(text, ws), text)
    if kind == "guided_regex":
        rx = params.guided_regex or ""
        return GrammarSpec(kind, kind, _regex_grammar(rx), rx)
    if kind == "guided_choice":
        choices = list(params.guided_choice or [])
        if not choices:
            raise ParamsError("guided_choice=[] is not allowed: needs at least one option",
                              field="guided_choice", value=choices)
        text = json.dumps(choices, ensure_ascii=False)
        return GrammarSpec(kind, kind, _choice_grammar(text), text)
    if kind == "guided_grammar":
        g = params.guided_grammar or ""
        return GrammarSpec(kind, kind, _cfg_grammar(g), g)
    raise ParamsError(f"unknown guided kind {kind!r}")  # pragma: no cover


@lru_cache(maxsize=256)
def _json_grammar(schema_text: str, whitespace_pattern: str | None) -> str:
    llg = _llg()
    defaults = {"whitespace_flexible": True}
    overrides = {"whitespace_pattern": whitespace_pattern} if whitespace_pattern is not None else None
    return llg.LLMatcher.grammar_from_json_schema(schema_text, defaults=defaults, overrides=overrides)


@lru_cache(maxsize=256)
def _regex_grammar(regex: str) -> str:
    rust = python_regex_to_rust(regex)
    return _llg().LLMatcher.grammar_from_regex(rust)


def _lark_string(s: str) -> str:
    """A Lark string literal for ``s`` (JSON escaping: quotes, backslashes, control characters)."""
    return json.dumps(s, ensure_ascii=False)


@lru_cache(maxsize=256)
def _choice_grammar(choices_json: str) -> str:
    choices = json.loads(choices_json)
    lark = "start: " + " | ".join(_lark_string(c) for c in choices) + "\n"
    return _llg().LLMatcher.grammar_from_lark(lark)


_GBNF_RULE = re.compile(r"^\s*[A-Za-z0-9_-]+\s*::=", re.M)


def grammar_format(text: str) -> str:
    """``"gbnf"`` when the grammar has a ``name ::= ...`` rule (llama.cpp / vLLM xgrammar), else ``"lark"``."""
    if re.search(r"^\s*%llguidance\b", text, re.M):
        return "lark"
    return "gbnf" if _GBNF_RULE.search(text) else "lark"


@lru_cache(maxsize=256)
def _cfg_grammar(text: str) -> str:
    llg = _llg()
    if grammar_format(text) == "gbnf":
        from llguidance.gbnf_to_lark import gbnf_to_lark

        try:
            lark = gbnf_to_lark(text)
        except Exception as e:  # GbnfToLarkError (with position) or a plain Exception
            raise ParamsError(f"guided_grammar is not a valid GBNF grammar: {e}",
                              field="guided_grammar", value=text) from None
        return llg.LLMatcher.grammar_from_lark(lark)
    return llg.LLMatcher.grammar_from_lark(text)


# --- Python regex -> Rust regex (llguidance) ------------------------------

_QUANT = re.compile(r"\{(\d*)(,?)(\d*)\}")


def python_regex_to_rust(rx: str) -> str:
    """Translate the Python ``re`` spellings Rust's regex crate writes differently.

    ``\\Z`` -> ``\\z``; ``{,n}`` -> ``{0,n}``; a ``{`` that is no quantifier is
    escaped (Python reads it literally); inside ``[...]``: a bare ``[`` is
    escaped and ``&&``, ``--``, ``~~`` (set operations in Rust) are made
    literal; ``\\N{NAME}`` becomes the character. Everything else is the same
    in both (and what is not, such as look-arounds, llguidance rejects).
    """
    out: list[str] = []
    i, n = 0, len(rx)
    in_class = False
    class_pos = 0  # index of the first char after "[" or "[^"
    while i < n:
        c = rx[i]
        if c == "\\" and i + 1 < n:
            nxt = rx[i + 1]
            if nxt == "Z" and not in_class:
                out.append(r"\z")
                i += 2
                continue
            if nxt == "N" and i + 2 < n and rx[i + 2] == "{":
                end = rx.find("}", i + 3)
                if end > 0:
                    try:
                        ch = unicodedata.lookup(rx[i + 3:end])
                        out.append(f"\\x{{{ord(ch):x}}}")
                        i = end + 1
                        continue
                    except KeyError:
                        pass
            out.append(rx[i:i + 2])
            i += 2
            continue
        if in_class:
            if c == "]" and i != class_pos:
                in_class = False
                out.append(c)
            elif c == "[":
                out.append(r"\[")
            elif c in "&-~" and i + 1 < n and rx[i + 1] == c:
                out.append(c + "\\" + c)
                i += 2
                continue
            else:
                out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            if i < n and rx[i] == "^":
                out.append("^")
                i += 1
            class_pos = i
            continue
        if c == "{":
            m = _QUANT.match(rx, i)
            if m and (m.group(1) or m.group(3)) and (m.group(1) or m.group(2)):
                lo, comma, hi = m.groups()
                out.append("{" + (lo or "0") + comma + hi + "}")
                i = m.end()
                continue
            out.append(r"\{")
            i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


# --- validation ---------------------------------------------------------------

_AT_LINE_COL = re.compile(r"^at (\d+)\((\d+)\): ")


@lru_cache(maxsize=512)
def _grammar_error(grammar: str) -> str:
    """llguidance's error for a grammar ('' when it is fine); needs no tokenizer."""
    return _llg().LLMatcher.validate_grammar(grammar)


def _format_error(spec: GrammarSpec, err: str) -> str:
    err = err.strip()
    m = _AT_LINE_COL.match(err)
    if m:
        err = f"line {m.group(1)}, column {m.group(2)}: " + err[m.end():]
    what = {
        "guided_json": "the JSON schema cannot be enforced",
        "json_object": "the JSON object constraint cannot be built",
        "guided_regex": "the regex does not compile in llguidance (Rust regex syntax, no look-arounds, "
                        "no \\b, no back-references)",
        "guided_choice": "the choices do not compile",
        "guided_grammar": "the grammar does not compile",
    }[spec.kind]
    if spec.kind == "guided_grammar" and grammar_format(spec.source) == "gbnf":
        what += " (positions are in its Lark translation)"
    if spec.kind == "guided_regex":
        # llguidance shows the regex inside a one-line Lark grammar; keep its own message
        err = err.replace("(in regex): ", "")
    return f"{spec.field}: {what}: {err}"


def validate(params: Params) -> GrammarSpec | None:
    """Check that llguidance can enforce the constraint in ``params``; returns its GrammarSpec.

    No model is needed. Params already checks JSON-schema validity and that the
    regex compiles in Python; this adds what llguidance itself refuses: JSON
    schema keywords it does not implement (``uniqueItems``, ``not``, ``if``, ...),
    unsatisfiable schemas, regex constructs without a token-level equivalent,
    grammar syntax errors (with line and column), an empty choice list.

    Raises:
        ParamsError: naming the field, the problem and where it is.
        UnsupportedParam: guided_whitespace_pattern without a JSON constraint, or
            an llguidance too old for whitespace patterns.
    """
    spec = grammar_spec(params)
    if spec is None:
        return None
    err = _grammar_error(spec.grammar)
    if err:
        if params.guided_whitespace_pattern is not None and "whitespace_pattern" in err:
            raise UnsupportedParam("guided_whitespace_pattern", "local",
                                   f"this llguidance cannot use it: {err}")
        raise ParamsError(_format_error(spec, err), field=spec.field, value=getattr(params, spec.field))
    return spec


# ============================================================================
# Tokenizer: llama.cpp vocabulary -> llguidance


@dataclass(eq=False)
class GuidedTokenizer:
    """llguidance's view of one model's vocabulary (build it with :func:`tokenizer_for`).

    ``n_vocab`` is llama.cpp's vocabulary size (the logits' length); tokens
    llama.cpp renders as nothing (padding, unused) are special tokens to
    llguidance, so no grammar ever allows them.
    """

    ll: Any  # llguidance.LLTokenizer
    n_vocab: int
    eos_ids: tuple[int, ...]
    think_start: int | None = None
    think_end: int | None = None
    key: str = ""
    _all_true: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self._all_true is None:
            a = np.ones(self.n_vocab, dtype=bool)
            a.setflags(write=False)
            self._all_true = a

    @property
    def has_reasoning(self) -> bool:
        """True when the vocabulary has single ``<think>`` and ``</think>`` tokens."""
        return self.think_start is not None and self.think_end is not None

    @property
    def mask_words(self) -> int:
        """int32 words of a packed mask covering both llama.cpp's and llguidance's vocabulary."""
        return (max(self.n_vocab, self.ll.vocab_size) + 31) // 32


class _LlamaVocab:
    """What llguidance's TokenizerWrapper needs, read from a llama.cpp vocabulary.

    Tokenising goes through the Llama object while it lives (llguidance uses it
    for a few lexemes when building a matcher) and through llguidance's greedy
    tokenizer afterwards, so a cached tokenizer never points into a freed model.
    """

    def __init__(self, tokens: list[bytes], eos: list[int], bos: int | None, special: list[int], llama: Any):
        import weakref

        self.tokens = tokens
        self.eos_token_id = eos[0]
        self.bos_token_id = bos
        self.special_token_ids = special
        self._llama = weakref.ref(llama) if llama is not None else (lambda: None)
        self.fallback: Any = None

    def __call__(self, s: bytes) -> list[int]:
        llama = self._llama()
        if llama is not None and getattr(llama, "_model", None) is not None:
            try:
                return list(llama.tokenize(bytes(s), add_bos=False, special=False))
            except Exception:  # a closed model
                pass
        if self.fallback is not None:
            return list(self.fallback.greedy_tokenize(bytes(s).decode("utf-8", "replace")))
        return []


_TOKENIZERS: dict[str, GuidedTokenizer] = {}
_TOK_LOCK = threading.Lock()


def _model_key(llama: Any) -> str:
    path = getattr(llama, "model_path", None) or getattr(getattr(llama, "_model", None), "path_model", None)
    if not path:
        return f"llama@{id(llama)}"
    p = Path(path)
    try:
        st = p.stat()
        return f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return str(p)


def tokenizer_for(llama: Any, *, key: str | None = None) -> GuidedTokenizer:
    """The llguidance tokenizer of a ``llama_cpp.Llama``, built once per model file and cached.

    Building reads every token's bytes from llama.cpp (as
    ``llguidance.llamacpp.lltokenizer_from_vocab`` does: control tokens and
    ``<...>`` user-defined tokens are special) and takes about 1 s for Qwen3's
    151,936 tokens. The cache is in memory, keyed by the model file's path,
    size and mtime (``key`` overrides); llguidance cannot serialise a tokenizer,
    and reading the vocabulary is the cheap half, so nothing goes to disk.
    """
    key = key or _model_key(llama)
    with _TOK_LOCK:
        tok = _TOKENIZERS.get(key)
        if tok is None:
            tok = _build_tokenizer(llama, key)
            _TOKENIZERS[key] = tok
        return tok


def _build_tokenizer(llama: Any, key: str) -> GuidedTokenizer:
    import llama_cpp

    llg = _llg()
    vocab = llama._model.vocab
    n = int(llama_cpp.llama_vocab_n_tokens(vocab))
    size = 16 * 1024
    buf = ctypes.create_string_buffer(size + 1)
    to_piece = llama_cpp.llama_token_to_piece
    get_attr = llama_cpp.llama_token_get_attr
    control = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
    user = llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
    tokens: list[bytes] = []
    special: list[int] = []
    think_start = think_end = None
    for i in range(n):
        k = to_piece(vocab, i, buf, size, 0, True)
        if k < 0:
            raise GSExploreError(f"token {i} is longer than {size} bytes")
        tok = buf.raw[:k]
        attr = get_attr(vocab, i)
        if not tok:
            tok = b"\xff[gsexplore-empty-%d]" % i  # padding / unused: never allowed
            special.append(i)
        elif attr & control or (attr & user and tok.startswith(b"<") and tok.endswith(b">")):
            if tok == b"<think>":
                think_start = i
            elif tok == b"</think>":
                think_end = i
            tok = b"\xff" + tok
            special.append(i)
        tokens.append(tok)
    eos = [int(llama_cpp.llama_vocab_eos(vocab))]
    eot = int(llama_cpp.llama_vocab_eot(vocab))
    if eot >= 0 and eot not in eos:
        eos.append(eot)
    eos = [e for e in eos if 0 <= e < n]
    if not eos:
        raise GSExploreError("the model has no end-of-sequence token; guided decoding needs one")
    bos = int(llama_cpp.llama_vocab_bos(vocab))
    src = _LlamaVocab(tokens, eos, bos if bos >= 0 else None, special, llama)
    ll = llg.LLTokenizer(llg.TokenizerWrapper(src), eos_token=eos if len(eos) > 1 else eos[0])
    src.fallback = ll
    return GuidedTokenizer(ll=ll, n_vocab=int(llama.n_vocab()), eos_ids=tuple(eos),
                           think_start=think_start, think_end=think_end, key=key)


def byte_tokenizer() -> GuidedTokenizer:
    """A model-free tokenizer: one token per byte plus an EOS (used by :func:`check`)."""
    return _byte_tokenizer()


@lru_cache(maxsize=1)
def _byte_tokenizer() -> GuidedTokenizer:
    llg = _llg()

    class _Bytes:
        def __init__(self) -> None:
            # 0xFF never occurs in UTF-8 and marks special tokens for llguidance
            self.tokens = [bytes([b]) for b in range(255)] + [b"\xff[byte-ff]", b"\xff<eos>"]
            self.eos_token_id = 256
            self.bos_token_id = None
            self.special_token_ids = [255, 256]

        def __call__(self, s: bytes) -> list[int]:
            return list(bytes(s))

    ll = llg.LLTokenizer(llg.TokenizerWrapper(_Bytes()))
    return GuidedTokenizer(ll=ll, n_vocab=257, eos_ids=(256,), key="bytes")


def clear_caches() -> None:
    """Forget cached tokenizers and compiled grammars (tests, or after replacing a model file)."""
    with _TOK_LOCK:
        _TOKENIZERS.clear()
    with _MATCHER_LOCK:
        _MATCHERS.clear()


# ============================================================================
# Compiled grammars (LRU per tokenizer and grammar) and the Constraint

_MATCHERS: OrderedDict[tuple[int, str], Any] = OrderedDict()
_MATCHER_LOCK = threading.Lock()
_MATCHER_CACHE_SIZE = 64


def _new_matcher(tokenizer: GuidedTokenizer, spec: GrammarSpec, params: Params | None = None) -> Any:
    """A fresh LLMatcher for ``spec``: compiled once per (tokenizer, grammar), then deep-copied."""
    llg = _llg()
    key = (id(tokenizer), spec.grammar)
    with _MATCHER_LOCK:
        tmpl = _MATCHERS.get(key)
        if tmpl is not None:
            _MATCHERS.move_to_end(key)
            return tmpl.deep_copy()
    tmpl = llg.LLMatcher(tokenizer.ll, spec.grammar, log_level=_LOG_LEVEL)
    if tmpl.is_error():
        value = getattr(params, spec.field) if params is not None else spec.source
        raise ParamsError(_format_error(spec, tmpl.get_error()), field=spec.field, value=value)
    with _MATCHER_LOCK:
        _MATCHERS[key] = tmpl
        while len(_MATCHERS) > _MATCHER_CACHE_SIZE:
            _MATCHERS.popitem(last=False)
    return tmpl.deep_copy()


_BITS32 = np.arange(32, dtype=np.int64)
# byte value -> its 8 bits (little-endian) as additive float32 biases: 0 allowed, -inf forbidden
_BYTE_BIAS = np.where(
    np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little").astype(bool),
    np.float32(0), np.float32(-np.inf)).astype(np.float32)


class Constraint:
    """The token-level constraint of one generated sequence (one per choice of ``n``).

    Per step: ``mask()`` (bool over the full llama.cpp vocabulary) or, faster,
    ``apply(logits)`` (sets ``-inf`` in place where the grammar forbids), then
    ``consume(token_id)`` with the token drawn. ``is_stopped()`` means only EOS
    may follow (the grammar is complete and cannot grow), ``is_accepting()`` that
    the output so far satisfies the constraint in full, ``eos_allowed`` that the
    grammar allows EOS now.

    Speed: llguidance writes its packed bit mask straight into a preallocated
    int32 buffer (``unsafe_compute_mask_ptr``); the mask is computed at most once
    per step whichever of ``mask()``, ``apply()``, ``allowed_ids()`` you call.
    ``mask()`` unpacks it with ``np.unpackbits`` (one new 152 kB bool array per
    step, ~15 us on 152k tokens). ``apply()`` allocates nothing vocabulary-sized
    when few tokens are allowed (it scatters the allowed logits back over an
    ``-inf`` fill) and adds a table-made 0/``-inf`` bias (preallocated) when many
    are; it is the fastest way to use the constraint.

    ``starts_after_token``: until that token (``</think>``) is consumed the
    constraint is inactive: everything is allowed, nothing is fed to the grammar.
    """

    def __init__(self, matcher: Any, tokenizer: GuidedTokenizer, spec: GrammarSpec, *,
                 starts_after_token: int | None = None) -> None:
        self._m = matcher
        self.tokenizer = tokenizer
        self.spec = spec
        self.kind = spec.kind
        self.engine = ENGINE
        self.starts_after_token = starts_after_token
        self.active = starts_after_token is None
        self.n_vocab = tokenizer.n_vocab
        self._buf = np.zeros(tokenizer.mask_words, dtype=np.int32)
        self._bias: np.ndarray | None = None  # (words*4, 8) float32, made on first dense apply()
        # llguidance writes its own vocabulary's words; the rest stays 0 (= forbidden)
        self._ll_bytes = ((tokenizer.ll.vocab_size + 31) // 32) * 4
        self._fresh = False
        self.finished = False
        self.n_consumed = 0

    # --- the mask -------------------------------------------------------------
    def _compute(self) -> None:
        if not self._fresh:
            self._m.unsafe_compute_mask_ptr(self._buf.ctypes.data, self._ll_bytes)
            if self._m.is_error():
                self._raise()
            self._fresh = True

    def mask(self) -> np.ndarray:
        """Bool array of length ``n_vocab``: True where the next token may be drawn.

        While inactive (before ``</think>``) a shared read-only all-True array.
        """
        if not self.active:
            return self.tokenizer._all_true
        self._compute()
        return np.unpackbits(self._buf.view(np.uint8), count=self.n_vocab, bitorder="little").view(bool)

    def packed_mask(self) -> np.ndarray:
        """The packed mask (int32 words, bit ``i % 32`` of word ``i // 32`` is token ``i``); do not modify."""
        if not self.active:
            return np.full(self.tokenizer.mask_words, -1, dtype=np.int32)
        self._compute()
        return self._buf

    def allowed_ids(self) -> np.ndarray:
        """The token ids allowed next (int64, ascending); every id while inactive."""
        if not self.active:
            return np.arange(self.n_vocab)
        self._compute()
        nz = np.flatnonzero(self._buf)
        if len(nz) * 32 > self.n_vocab // 16:
            return np.flatnonzero(self.mask())
        bits = np.unpackbits(self._buf[nz].view(np.uint8), bitorder="little").view(bool).reshape(-1, 32)
        ids = (nz[:, None] * 32 + _BITS32)[bits]
        return ids[ids < self.n_vocab]

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """Set ``logits`` to ``-inf`` in place where the grammar forbids; returns ``logits``.

        ``logits`` is 1-D float of length ``n_vocab`` (a longer one has its tail
        forbidden too). No-op while inactive. Few allowed tokens: gather them,
        fill ``-inf``, scatter back. Otherwise: a 256-entry table turns each mask
        byte into eight float32 biases (0 or ``-inf``) in a preallocated buffer,
        added in one pass; unlike boolean indexing or ``copyto(where=)`` its cost
        does not depend on the pattern of the mask (~70 us on 152k tokens).
        """
        if not self.active:
            return logits
        self._compute()
        n = min(len(logits), len(self._buf) * 32)
        nz = np.flatnonzero(self._buf)
        if len(nz) * 32 <= len(logits) // 64:  # few allowed: gather, fill, scatter
            bits = np.unpackbits(self._buf[nz].view(np.uint8), bitorder="little").view(bool).reshape(-1, 32)
            ids = (nz[:, None] * 32 + _BITS32)[bits]
            ids = ids[ids < n]
            keep = logits[ids]
            logits.fill(-np.inf)
            logits[ids] = keep
            return logits
        if self._bias is None:
            self._bias = np.empty((len(self._buf) * 4, 8), dtype=np.float32)
        np.take(_BYTE_BIAS, self._buf.view(np.uint8), axis=0, out=self._bias)
        logits[:n] += self._bias.reshape(-1)[:n]
        if len(logits) > n:
            logits[n:] = -np.inf
        return logits

    # --- advancing ------------------------------------------------------------
    def consume(self, token_id: int) -> None:
        """Advance with the token drawn. Raises GSExploreError if the grammar rejects it."""
        token_id = int(token_id)
        self._fresh = False
        if not self.active:
            if token_id == self.starts_after_token:
                self.active = True  # the next token is the first constrained one (vLLM)
            return
        self.n_consumed += 1
        if token_id in self.tokenizer.eos_ids and (self._m.is_stopped() or self._m.is_accepting()):
            self.finished = True
            if not self._m.is_stopped():
                self._m.consume_token(token_id)
            return
        if not self._m.consume_token(token_id):
            self._raise(token_id)

    def consume_tokens(self, token_ids: Iterable[int]) -> None:
        """consume() each token in turn."""
        for t in token_ids:
            self.consume(t)

    def _raise(self, token_id: int | None = None) -> None:
        err = self._m.get_error() or f"token {token_id} is not allowed here"
        err = err.split("\n<state>")[0].strip()
        raise GSExploreError(f"guided decoding ({self.kind}, {ENGINE}) failed: {err}")

    def is_accepting(self) -> bool:
        """The output so far satisfies the constraint in full (EOS may end it now)."""
        return self.finished or bool(self._m.is_accepting())

    def is_stopped(self) -> bool:
        """Nothing but EOS can follow (the constraint is complete); False while inactive."""
        return self.active and (self.finished or bool(self._m.is_stopped()))

    @property
    def eos_allowed(self) -> bool:
        """Whether the grammar allows EOS as the next token (always while inactive)."""
        return not self.active or self.finished or bool(self._m.is_accepting())

    @property
    def error(self) -> str:
        """llguidance's error message, '' when none."""
        return self._m.get_error()

    def fork(self) -> Constraint:
        """An independent copy in the same state (e.g. for another choice of ``n``)."""
        c = Constraint(self._m.deep_copy(), self.tokenizer, self.spec,
                       starts_after_token=self.starts_after_token)
        c.active, c.finished, c.n_consumed = self.active, self.finished, self.n_consumed
        return c

    def __repr__(self) -> str:
        state = "inactive" if not self.active else ("stopped" if self.is_stopped() else "active")
        return f"Constraint({self.kind}, {ENGINE}, {state}, consumed={self.n_consumed})"


def is_reasoning_end(token_ids: Sequence[int], think_start: int | None, think_end: int | None) -> bool:
    """vLLM's ``is_reasoning_end``: the last think token in ``token_ids`` is ``</think>``."""
    if think_end is None:
        return True
    for t in reversed(token_ids):
        if t == think_start:
            return False
        if t == think_end:
            return True
    return False


def compile_constraint(params: Params, tokenizer: GuidedTokenizer, *,
                       prompt_tokens: Sequence[int] | None = None,
                       reasoning: bool | None = None) -> Constraint | None:
    """The Constraint for ``params`` on this model, or None when params ask for none.

    Validates first (ParamsError before any generation). Whether the constraint
    waits for ``</think>`` (``reasoning``): None decides as vLLM with a reasoning
    parser does: only with a reasoning vocabulary; then, with ``prompt_tokens``,
    unless the prompt's last think token is ``</think>`` (vLLM's
    ``is_reasoning_end``); without them, unless ``enable_thinking`` is False.
    False: constrained from the first token (a caller that gates the reasoning
    block itself, like LocalBackend's loop); True: wait for ``</think>``.
    Compiled grammars are cached per (tokenizer, grammar); each call returns a
    new Constraint in its initial state (cheap: a deep copy).
    """
    spec = validate(params)
    if spec is None:
        return None
    matcher = _new_matcher(tokenizer, spec, params)
    if reasoning is None:
        reasoning = False
        if tokenizer.has_reasoning:
            if prompt_tokens is not None:
                reasoning = not is_reasoning_end(prompt_tokens, tokenizer.think_start, tokenizer.think_end)
            else:
                reasoning = params.enable_thinking is not False
    if reasoning and tokenizer.think_end is None:
        raise ParamsError("this model has no </think> token, so a constraint cannot wait for the "
                          "end of its reasoning", field="chat_template_kwargs")
    return Constraint(matcher, tokenizer, spec, starts_after_token=tokenizer.think_end if reasoning else None)


def local_constraint(params: Params, model: Any) -> Constraint | None:
    """The Constraint LocalBackend's token loop uses for one choice (its ``_constraint_for`` hook).

    ``model`` is the backend's loaded model (anything with ``.llm``, the
    ``llama_cpp.Llama``). The loop gates the reasoning block itself (no mask and
    no consume until ``</think>``), so the constraint starts at once here.
    """
    spec = validate(params)
    if spec is None:
        return None
    return compile_constraint(params, tokenizer_for(model.llm), reasoning=False)


# ============================================================================
# Validity of outputs (either backend)


@dataclass(frozen=True)
class Validity:
    """Whether one output satisfies the constraint it asked for.

    kind: the constraint (``guided_json``, ``json_object``, ``guided_regex``,
    ``guided_choice``, ``guided_grammar``) or None when there was none.
    valid: the output satisfies it in full (None when there is no constraint).
    reason: why not (or what was checked).
    is_prefix: the output can still be extended into a valid one (a valid
    prefix); what a cut output must be.
    cut: generation stopped before the constraint could end (finish_reason
    "length", a stop string, an abort).
    ``ok`` is what a sweep should count: ``valid``, or ``is_prefix`` for a cut output.
    """

    kind: str | None
    valid: bool | None
    reason: str
    is_prefix: bool
    cut: bool = False

    @property
    def ok(self) -> bool | None:
        """valid, or for a cut output a valid prefix; None when there is no constraint."""
        if self.valid is None:
            return None
        return self.valid or (self.cut and self.is_prefix)

    def to_row(self) -> dict[str, Any]:
        """Columns for a DataFrame: guided_kind, guided_valid, guided_prefix, guided_cut, guided_ok, guided_reason."""
        return {"guided_kind": self.kind, "guided_valid": self.valid, "guided_prefix": self.is_prefix,
                "guided_cut": self.cut, "guided_ok": self.ok, "guided_reason": self.reason}


def check(output: Completion | str | None, params: Params | None = None, *,
          finish_reason: str | None = None) -> Validity:
    """Whether an output (a Completion of either backend, or a text) satisfies its constraint.

    A Completion brings its own content, params, finish_reason and stop_reason
    (``params`` overrides); a text needs ``params`` and is taken as finished
    (``finish_reason="stop"``) unless told otherwise. Only the content is
    checked (not the reasoning). The check is semantic where a semantic checker
    exists: ``jsonschema`` for guided_json / json_schema, ``json.loads`` to an
    object for json_object, Python ``re.fullmatch`` for guided_regex, exact
    membership for guided_choice; a grammar is parsed with llguidance over bytes
    (no tokenizer). Prefixes (for cut outputs) are checked with llguidance over
    bytes for every kind (JSON allowing surrounding whitespace).
    """
    stop_reason = None
    if output is not None and not isinstance(output, str):
        text = output.content
        params = params if params is not None else output.params
        finish_reason = finish_reason if finish_reason is not None else output.finish_reason
        stop_reason = output.stop_reason
    else:
        text = output
    if params is None:
        raise ParamsError("check() of a text needs the params it was generated with", field="params")
    return check_text(text, params, finish_reason=finish_reason or "stop", stop_reason=stop_reason)


def check_row(row: Mapping[str, Any]) -> Validity:
    """check() of one sweep row (``Completion.to_row()`` columns; lists and dicts as JSON text).

    ``df.apply(guided.check_row, axis=1)`` gives one Validity per row.
    """
    data: dict[str, Any] = {}
    for name in (*GUIDED_KINDS, "response_format", "guided_whitespace_pattern"):
        v = row.get(name)
        if v is None or (isinstance(v, float) and v != v):  # None / NaN
            continue
        if name in ("guided_choice", "response_format") and isinstance(v, str):
            v = json.loads(v)
        data[name] = v
    content = row.get("content")
    if isinstance(content, float):  # NaN
        content = None
    stop_reason = row.get("stop_reason")
    if isinstance(stop_reason, float):
        stop_reason = None
    return check_text(content, Params(**data), finish_reason=row.get("finish_reason") or "stop",
                      stop_reason=stop_reason)


def _is_cut(finish_reason: str | None, stop_reason: Any) -> bool:
    if finish_reason == "stop":
        # a stop string (str) cuts the output; EOS (None) or a stop token id (int, e.g.
        # <|im_end|> listed in stop_token_ids) ends it
        return isinstance(stop_reason, str)
    return finish_reason in ("length", "abort", "cancelled", "timeout")


def check_text(text: str | None, params: Params, finish_reason: str = "stop",
               stop_reason: Any = None) -> Validity:
    """Whether ``text`` satisfies the constraint of ``params`` (see :func:`check`).

    ``finish_reason`` "length" (or a stop string as ``stop_reason``) marks a
    cut output: it is reported as ``cut`` and judged as a prefix (``ok`` when
    ``is_prefix``).
    """
    kind = params.guided_kind
    cut = _is_cut(finish_reason, stop_reason)
    if kind is None:
        return Validity(None, None, "no constraint", True, cut)
    text = text or ""
    try:
        spec = grammar_spec(params.replace(guided_whitespace_pattern=None))
    except UnsupportedParam:  # pragma: no cover - removed above
        spec = None
    assert spec is not None
    valid, reason = _full_check(kind, text, params, spec)
    if valid:
        is_prefix, preason = True, ""
    else:
        is_prefix, preason = _prefix_check(kind, text, params, spec)
    if not valid and cut:
        reason = (f"cut ({finish_reason}) " + ("as a valid prefix" if is_prefix else "and not a valid prefix")
                  + (f": {preason}" if preason else f"; not complete: {reason}"))
    elif not valid and is_prefix:
        reason = f"incomplete (a valid prefix, but finished): {reason}"
    return Validity(kind, valid, reason or "ok", is_prefix, cut)


def _full_check(kind: str, text: str, params: Params, spec: GrammarSpec) -> tuple[bool, str]:
    if kind in ("guided_json", "json_object"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            return False, f"not JSON: {e}"
        if kind == "json_object":
            return (True, "a JSON object") if isinstance(value, dict) else \
                (False, f"JSON {type(value).__name__}, not an object")
        import jsonschema

        schema = schema_of(params)
        cls = jsonschema.validators.validator_for(schema)
        validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
        err = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if err is not None:
            where = "/".join(str(x) for x in err.absolute_path) or "(root)"
            return False, f"schema violation at {where}: {err.message}"
        return True, "valid against the JSON schema"
    if kind == "guided_regex":
        ok = re.fullmatch(params.guided_regex or "", text) is not None
        return ok, ("matches the regex" if ok else "does not match the regex in full")
    if kind == "guided_choice":
        choices = params.guided_choice or []
        return (True, "one of the choices") if text in choices else (False, "not one of the choices")
    # guided_grammar
    ok, accepting, err = _byte_parse(spec, text)
    if ok and accepting:
        return True, "parses with the grammar"
    return False, (err if not ok else "the grammar is not complete at the end of the text")


def _prefix_check(kind: str, text: str, params: Params, spec: GrammarSpec) -> tuple[bool, str]:
    if kind == "guided_choice":
        ok = any(c.startswith(text) for c in params.guided_choice or [])
        return ok, ("" if ok else "no choice starts with it")
    if kind in ("guided_json", "json_object"):
        text = text.lstrip(" \t\r\n")
    ok, _, err = _byte_parse(spec, text)
    return ok, err


def _byte_parse(spec: GrammarSpec, text: str) -> tuple[bool, bool, str]:
    """Feed ``text``'s UTF-8 bytes to a byte-level matcher: (all consumed, accepting, error)."""
    m = _new_matcher(_byte_tokenizer(), spec)
    data = text.encode("utf-8")
    n = m.try_consume_tokens(list(data))
    if n < len(data):
        at = len(data[:n].decode("utf-8", "replace"))
        return False, False, f"fails at character {at} ({text[at:at + 20]!r})"
    return True, bool(m.is_accepting()), ""
