"""llama.cpp vocabulary -> llguidance tokenizer, built once per model file (see the package doc)."""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GSExploreError
from .grammar import _llg

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
        self._special = frozenset(special)
        self._llama = weakref.ref(llama) if llama is not None else (lambda: None)
        self.fallback: Any = None

    def __call__(self, s: bytes) -> list[int]:
        llama = self._llama()
        if llama is not None and getattr(llama, "_model", None) is not None:
            try:
                ids = list(llama.tokenize(bytes(s), add_bos=False, special=False))
            except Exception:  # a closed model
                ids = None
            # llama.cpp matches user-defined tokens (Qwen3's <tool_call>) even with special=False;
            # llguidance marks them special, so text that spells one must stay plain bytes
            if ids is not None and not self._special.intersection(ids):
                return ids
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
    get_attr = getattr(llama_cpp, "llama_vocab_get_attr", None) or llama_cpp.llama_token_get_attr
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
