"""`LocalBackend`: a GGUF model through llama-cpp-python, with vLLM's meaning for every parameter.

What is honoured, and how (vLLM V1 semantics; see ``gsexplore.sampling`` for the reference):

* Prompt: the GGUF's own chat template (``tokenizer.chat_template``) rendered with
  Jinja2 and ``chat_template_kwargs`` as template variables (Qwen3's
  ``enable_thinking``), tokenised with special tokens parsed; ``add_special_tokens``
  (default False, as vLLM's chat endpoint) adds what the tokenizer adds (BOS when
  the GGUF says ``add_bos_token``); ``truncate_prompt_tokens`` keeps the last N.
* Sampling, per token, in vLLM's order: allowed_token_ids (and the guided-decoding
  mask hook) -> min_tokens (EOS/stop ids blocked) -> logit_bias (clamped to +-100)
  -> repetition penalty over the prompt and output token *set*, frequency/presence
  penalties over output counts -> temperature (0 = greedy argmax) -> min_p -> top_k
  -> top_p -> draw. The first group touches only the affected ids, in place on
  llama.cpp's logits buffer, with NumPy; the rest is llama.cpp's sampler chain at C
  speed (its min_p, top_k and top_p match vLLM's definitions; a stage that is off
  is left out of the chain; top_k runs first, which gives the same distribution:
  see ``Plan.chain_stages``). Exact logit ties at the top_k boundary are broken
  by llama.cpp (vLLM keeps every tied token).
* Defaults: the GGUF's ``general.sampling.*`` keys when present, else vLLM's neutral
  values (temperature 1, top_p 1, top_k off, min_p 0, no penalties). Never
  llama-cpp-python's own.
* Seeds: the same seed and request give the same output; an unseeded request (seed
  None or -1) is random, as on vLLM (the seed used is in ``Completion.info``).
  ``n > 1`` evaluates the prompt once and gives choice i the seed ``seed + i``.
* Stopping: EOS (every end-of-generation token of the vocabulary unless
  ``ignore_eos``; stop_reason None for the model's EOS, the token id for the other
  end-of-generation tokens, as vLLM reports generation-config EOS ids),
  ``stop_token_ids`` (stop_reason = the id), ``stop`` strings (stop_reason = the
  string, text cut before it unless ``include_stop_str_in_output``; found across
  token boundaries and held back while streaming), ``max_tokens`` (finish
  "length"; unset = context minus prompt), ``min_tokens``.
* Text: incremental, UTF-8 safe detokenisation; ``skip_special_tokens`` leaves
  control tokens out; ``spaces_between_special_tokens`` behaves as vLLM's fast
  (tokenizers) detokenizer, which never inserts spaces, so for the byte-level BPE
  vocabularies of Qwen3 and SmolLM2 both values give the same text, as on the
  server.
* Qwen3 reasoning (``gsexplore.reasoning``), logprobs / top_logprobs of the raw
  distribution (recorded in our loop, never ``logits_all``), prompt_logprobs (the
  prompt re-evaluated with logits for every position, in chunks),
  return_tokens_as_token_ids.
* Batching (``gsexplore.backends.llama.engine``): one llama.cpp context per loaded
  model with ``slots`` sequences decoded together in one batch per step; each
  sequence keeps its own sampler, seed, penalties and constraint, so a request's
  output does not depend on what runs beside it (on CPU its logits are
  bit-identical alone or batched). ``n > 1`` choices, sweep cells and server
  requests run side by side; ``priority`` orders the waiting queue (lower first,
  as vLLM). Prefix reuse: a prompt already in the KV cache (a running or a
  recently finished sequence) is shared, not evaluated again.

Guided decoding (guided_*, JSON response_format) goes through the ``_constraint_for``
hook to ``gsexplore.guided`` (llguidance): a token mask applied with the masks
above, only after ``</think>`` for a reasoning model.

Rejected with `UnsupportedParam` (see ``_unsupported``): use_beam_search, a
length_penalty other than 1 (it only matters with beam search), logits_processors
(names of server-side processors) and extra_body fields.
"""
from __future__ import annotations

import queue
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import reasoning as _reasoning
from .. import tools as _tools
from .. import wire
from ..chat_template import render_chat_template
from ..completion import Completion, Messages, Usage
from ..errors import EngineError, GSExploreError, ParamsError, UnsupportedParam
from ..params import Params
from .base import Backend, Delta, MessagesLike, is_done, merge_params, to_messages
from .bridge import aiter_from_thread
from .llama.hardware import ExtraBuffers, default_threads
from .llama.loading import llama_cpp_module
from .llama.model import NEUTRAL_DEFAULTS, LoadedModel, gguf_sampling, load_model, loaded_models, unload_all
from .llama.sampler import Constraint, Plan, TokenSampler
from .llama.sequence import ChoiceOutput, EngineRequest

__all__ = ["LocalBackend", "LocalRequest", "ChoiceOutput", "loaded_models", "unload_all"]

BACKEND = "local"
SAMPLING_EPS = 1e-5        # vLLM: temperature below this is greedy
MIN_TEMPERATURE = 1e-2     # vLLM lifts 0 < t < 0.01 to 0.01
LOGIT_BIAS_LIMIT = 100.0
_SEED_MOD = 0xFFFFFFFF     # llama.cpp reads seed 0xFFFFFFFF as "random": stay below it
_gguf_sampling = gguf_sampling  # the name the tests and older code use


# ---------------------------------------------------------------------------
# the guided-decoding hook


def guided_engine_info(params: Params) -> dict[str, Any]:
    """The guided engine and semantics a constrained request used (``Completion.info``)."""
    from ..guided import engine_info

    return engine_info(params)


def _constraint_for(params: Params, model: LoadedModel) -> Constraint | None:
    """HOOK for guided decoding: compile params' guided_* / response_format into a Constraint.

    llguidance compiles it (``gsexplore.guided``; grammars cached per model and
    grammar); None when params ask for no constraint. Called once per choice (each
    choice needs a fresh constraint state).
    """
    from .. import guided

    return guided.local_constraint(params, model)


def _constraint_params(p: Params) -> Params:
    """The params the constraint is compiled from: a forced tool choice becomes its JSON schema."""
    forced = _tools.forced_schema(p)
    return p if forced is None else p.replace(tools=None, tool_choice=None, guided_json=forced)


_GUIDED_FIELDS = ("guided_json", "guided_regex", "guided_choice", "guided_grammar")


def _unsupported(p: Params) -> None:
    """Raise UnsupportedParam for every parameter the local backend cannot honour."""
    def no(name: str, why: str) -> None:
        raise UnsupportedParam(name, BACKEND, why)

    if p.use_beam_search:
        no("use_beam_search", "beam search is not implemented locally; draw several answers with n instead")
    if p.length_penalty is not None and p.length_penalty != 1.0:
        no("length_penalty", "it only has an effect with beam search, which the local backend does not implement")
    if p.logits_processors:
        no("logits_processors", "server-side logits processors (given by name) do not exist locally")
    # Guided decoding (gsexplore.guided): every guided kind and guided_whitespace_pattern
    # (JSON only) are enforced by llguidance; a constraint it cannot enforce is a
    # ParamsError here, before any generation. guided_decoding_backend stays in the
    # params (the remote server gets it); the engine used is Completion.info["guided_engine"].
    from .. import guided

    guided.validate(_constraint_params(p))
    if p.extra_body:
        no("extra_body", f"fields {sorted(p.extra_body)} are sent verbatim to a server and mean nothing locally")


# ---------------------------------------------------------------------------
# the backend


#: The system message the demo model gets when a request has none.
DEMO_SYSTEM_PROMPT = "You are a helpful assistant."


class _ModelDefault:
    """Marker: the system prompt the model spec implies (see LocalBackend)."""

    def __repr__(self) -> str:
        return "MODEL_DEFAULT"


MODEL_DEFAULT = _ModelDefault()


class LocalBackend(Backend):
    """A GGUF chat model run in-process by llama.cpp, with vLLM's parameter semantics.

    >>> local = LocalBackend.demo()                        # doctest: +SKIP
    >>> local.chat("What is the capital of France?", temperature=0).content  # doctest: +SKIP
    'The capital of France is Paris.'

    ``model``: a ``.gguf`` path, ``"demo"`` (SmolLM2-135M-Instruct), ``"tiny-qwen3"``
    (the random-weight test model) or a Hugging Face repo id with ``filename`` a
    glob (e.g. ``"Qwen/Qwen3-1.7B-GGUF", "*Q8_0.gguf"``). ``n_gpu_layers=-1``
    offloads every layer when llama.cpp was built with GPU support (a no-op on a CPU
    build: see ``info()``). ``seed`` is the default seed of requests that set none
    (None: fresh randomness per request). Creating a backend again with the same
    file and load options reuses the loaded model (``shared=False`` loads a private
    copy). ``n_ctx``: the tokens one request may hold (prompt + max_tokens; vLLM's
    max_model_len). ``slots``: sequences generated at once, in one batch per step,
    each with a KV stream of ``n_ctx`` tokens; default: as many as fit 2 GiB of KV
    cache, at most 16 (``info()["slots"]`` and ``["slots_reason"]`` say how many).

    ``n_threads`` / ``n_threads_batch``: CPU threads for generation and for prompt
    evaluation; default the physical cores this process may use (affinity and cgroup
    quota respected, hyperthread siblings counted once), as llama.cpp's own tools.
    ``extra_buffers``: llama.cpp's repacked weight buffer types; ``"auto"`` leaves
    them out when the build has AMX, whose buffer type crashes on some Xeons
    (llama.cpp#20824), ``"all"`` opts back in, ``"none"`` never uses them. ``info()``
    says what was chosen, why, and which buffer types hold the weights.

    ``system_prompt``: the system message sent when a request has none; it is part of
    the messages recorded in every Completion. None: the chat template decides (some,
    SmolLM2's among them, then add a persona of their own). The default is None except
    for ``"demo"``, which gets ``DEMO_SYSTEM_PROMPT``: under the "SmolLM, trained by
    Hugging Face" persona of its template this 135M model rambles (greedy "What is the
    capital of France?" answers "L'Étoile, la Cité, ..."), with it it answers "The
    capital of France is Paris."
    """

    name = BACKEND

    def __init__(self, model: str | Path, filename: str | None = None, n_gpu_layers: int = -1,
                 n_ctx: int = 4096, n_threads: int | None = None, seed: int | None = None,
                 verbose: bool = False, shared: bool = True,
                 system_prompt: str | None | _ModelDefault = MODEL_DEFAULT,
                 n_threads_batch: int | None = None,
                 extra_buffers: ExtraBuffers | bool | None = "auto", slots: int | None = None) -> None:
        from ..models import ALIASES, resolve

        path = resolve(str(model), filename)
        self.path = Path(path)
        self.source = ALIASES.get(str(model), str(model))
        self.model = self.path.name
        self.n_gpu_layers = int(n_gpu_layers)
        self.default_seed = None if seed is None or seed == -1 else int(seed)
        if isinstance(system_prompt, _ModelDefault):
            system_prompt = DEMO_SYSTEM_PROMPT if self.source == "demo" else None
        self.system_prompt = system_prompt
        threads = int(n_threads) if n_threads else default_threads()
        threads_batch = int(n_threads_batch) if n_threads_batch else threads
        if slots is not None and int(slots) < 1:
            raise ParamsError(f"slots must be at least 1, got {slots}", field="slots", value=slots)
        self._shared = bool(shared)
        self._lm = load_model(self.path, n_gpu_layers=self.n_gpu_layers, n_ctx=int(n_ctx), n_threads=threads,
                              n_threads_batch=threads_batch, extra_buffers=extra_buffers, slots=slots,
                              verbose=verbose, shared=shared)
        self.slots = self._lm.engine.n_slots
        self.n_ctx = self._lm.n_ctx

    @classmethod
    def demo(cls, **kw: Any) -> LocalBackend:
        """The offline demo model, SmolLM2-135M-Instruct (CPU friendly, real answers).

        Requests without a system message get ``DEMO_SYSTEM_PROMPT`` (see the class
        docstring); ``system_prompt=None`` keeps the template's own persona.
        """
        return cls("demo", **kw)

    @classmethod
    def tiny(cls, **kw: Any) -> LocalBackend:
        """The tiny Qwen3-architecture test model (random weights: its output is noise)."""
        return cls("tiny-qwen3", **kw)

    @property
    def llama(self) -> Any:
        """The `llama_cpp.Llama` holding the weights and tokenizer (its own small context is for
        direct use, under ``lock``; generation runs in the engine's context). Decoding with it
        from another thread makes a second OpenMP team and slows the engine (see
        ``gsexplore.backends.llama.driver``): run such work with ``driver.call(fn)``."""
        return self._lm.llm

    @property
    def lock(self) -> threading.Lock:
        return self._lm.lock

    def __repr__(self) -> str:
        return f"LocalBackend({self.source!r}, file={self.model!r}, n_ctx={self.n_ctx})"

    # --- description -----------------------------------------------------------

    def info(self) -> dict[str, Any]:
        lm = self._lm
        supported = bool(lm.lc.llama_supports_gpu_offload())
        requested = self.n_gpu_layers
        offloaded = (lm.n_layer if requested < 0 else min(requested, lm.n_layer)) if supported else 0
        return {
            "backend": BACKEND,
            "model": self.model,
            "file": str(self.path),
            "architecture": lm.meta.get("general.architecture"),
            "name": lm.meta.get("general.name"),
            "vocab_size": lm.n_vocab,
            "n_ctx": lm.n_ctx,
            "n_ctx_train": lm.n_ctx_train,
            "n_layer": lm.n_layer,
            "n_threads": lm.load_report.n_threads,
            "n_threads_batch": lm.load_report.n_threads_batch,
            "extra_buffers": lm.load_report.buffers.requested,
            "extra_buffer_types_used": lm.load_report.buffers.use_extra_bufts,
            "extra_buffers_reason": lm.load_report.buffers.reason,
            "buffer_types": dict(lm.load_report.buffer_sizes_mib),
            "gpu_offload_supported": supported,
            "n_gpu_layers": requested,
            "layers_offloaded": offloaded,
            "chat_template": "gguf" if lm.has_template else "chatml (the GGUF has none)",
            "system_prompt": self.system_prompt,
            "reasoning_parser": "qwen3" if lm.has_reasoning else None,
            "sampling_defaults": dict(lm.gguf_sampling),
            "effective_defaults": dict(lm.defaults),
            **{f"engine_{k}" if k not in ("slots", "kv_cache") else k: v
               for k, v in lm.engine.info().items() if k != "n_ctx"},
            "slots_reason": lm.slots_reason,
            "kv_cache_mib": round(lm.kv_bytes_per_token * lm.n_ctx * lm.engine.n_slots / 2**20, 1),
            "batch_invariant": ("yes: on this CPU build a sequence's logits are bit-identical alone or batched, "
                                "so a seeded request gives the same tokens either way" if not supported else
                                "not guaranteed: GPU kernels may round differently with the batch size, so a "
                                "seeded request can differ alone and batched"),
        }

    def effective_sampling(self, params: Params | None = None, **overrides: Any) -> dict[str, Any]:
        """The sampling settings a request would really use (defaults filled in) and the chain."""
        p = merge_params(params, overrides)
        plan = self._plan(p, 1)
        return {
            "temperature": plan.temperature, "top_k": plan.top_k, "top_p": plan.top_p,
            "min_p": plan.min_p, "repetition_penalty": plan.repetition_penalty,
            "presence_penalty": plan.presence_penalty, "frequency_penalty": plan.frequency_penalty,
            "greedy": plan.greedy,
            "chain": [name if v == -1 else f"{name}({v:g})" for name, v in plan.chain_stages()],
        }

    # --- prompt --------------------------------------------------------------
    def render_prompt(self, messages: MessagesLike, params: Params | None = None, **overrides: Any) -> str:
        """The prompt text the chat template makes of ``messages`` (with chat_template_kwargs,
        add_generation_prompt and continue_final_message, as vLLM applies them)."""
        p = merge_params(params, overrides)
        lm = self._lm
        kwargs = dict(p.chat_template_kwargs or {})
        if p.tools:
            if "tools" not in lm.template:
                raise ParamsError(f"tools: the chat template of {self.model} does not render tools, so this "
                                  "model cannot be offered any", field="tools", value=p.tools)
            kwargs["tools"] = list(p.tools)  # the tool dicts, as vLLM passes them
        return render_chat_template(lm.template, self._messages(messages),
                                    add_generation_prompt=p.add_generation_prompt is not False,
                                    continue_final_message=bool(p.continue_final_message),
                                    bos_token=lm.bos_text, eos_token=lm.eos_text, **kwargs)

    def _messages(self, messages: MessagesLike) -> Messages:
        """The request's messages, with ``system_prompt`` first when they have no system message."""
        msgs = to_messages(messages)
        if self.system_prompt is not None and not any(m.get("role") == "system" for m in msgs):
            msgs = [{"role": "system", "content": self.system_prompt}, *msgs]
        return msgs

    def prompt_token_ids(self, messages: MessagesLike, params: Params | None = None, **overrides: Any) -> list[int]:
        """The prompt's token ids (add_special_tokens and truncate_prompt_tokens applied)."""
        self._check_open()
        p = merge_params(params, overrides)
        return self._tokenize_prompt(self.render_prompt(messages, p), p).tolist()

    def tokenize(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text`` (special tokens parsed; BOS added with ``add_special_tokens``)."""
        return list(self._lm.tokenize(text, add_special=add_special_tokens))

    def detokenize(self, token_ids: Sequence[int]) -> str:
        """The text of ``token_ids`` (special tokens rendered); ParamsError for ids outside the vocabulary."""
        bad = [i for i in token_ids if not 0 <= int(i) < self._lm.n_vocab]
        if bad:
            raise ParamsError(f"tokens has ids outside the vocabulary (0..{self._lm.n_vocab - 1}): {bad[:10]}",
                              field="tokens", value=bad[:10])
        return b"".join(self._lm.piece(int(i))[0] for i in token_ids).decode("utf-8", errors="replace")

    def token_text(self, token_id: int) -> str:
        """One token's text (special tokens rendered)."""
        return self.detokenize([token_id])

    def _tokenize_prompt(self, text: str, p: Params) -> np.ndarray:
        toks = self._lm.tokenize(text, add_special=bool(p.add_special_tokens))
        if p.truncate_prompt_tokens is not None:
            if p.truncate_prompt_tokens > self.n_ctx:
                raise ParamsError(f"truncate_prompt_tokens={p.truncate_prompt_tokens} is larger than the "
                                  f"context ({self.n_ctx} tokens)", field="truncate_prompt_tokens",
                                  value=p.truncate_prompt_tokens)
            toks = toks[-p.truncate_prompt_tokens:]
        return np.asarray(toks, dtype=np.intc)

    def _prepare(self, messages: MessagesLike | None, p: Params, prompt: str | None = None) -> _Prepared:
        self._check_open()
        _unsupported(p)
        self._check_model(p)
        lm = self._lm
        if prompt is None:
            msgs = self._messages(messages if messages is not None else [])
            text = self.render_prompt(msgs, p)
        else:  # a raw prompt (/v1/completions): no template, no reasoning parser, no tools
            if p.tools:
                raise ParamsError("tools need a chat template: send them with messages", field="tools")
            msgs, text = [], prompt
        toks = self._tokenize_prompt(text, p)
        if len(toks) == 0:
            raise ParamsError("the prompt is empty after tokenisation", field="prompt" if prompt else "messages")
        plan = self._plan(p, len(toks))
        parser_on = prompt is None and lm.has_reasoning and p.enable_thinking is not False and not (
            _reasoning.reasoning_ended_in_prompt(toks.tolist(), lm.think_start, lm.think_end))
        return _Prepared(p, msgs, text, toks, plan, parser_on)

    def _check_open(self) -> None:
        if getattr(self._lm, "_closed", False):
            raise EngineError(f"the model {self.model} was closed (LocalBackend.close()): create a new "
                              "LocalBackend to use it again")

    def _check_model(self, p: Params) -> None:
        if p.model is None:
            return
        names = {self.model, self.path.stem, str(self.path), self.source}
        if p.model not in names:
            raise ParamsError(f"model={p.model!r} is not the model this backend has loaded "
                              f"({self.model}); create another LocalBackend for it",
                              field="model", value=p.model)

    def _plan(self, p: Params, n_prompt: int) -> Plan:
        lm = self._lm
        d = lm.defaults

        def pick(name: str) -> Any:
            v = getattr(p, name)
            return d[name] if v is None else v

        t = float(pick("temperature"))
        if 0 < t < MIN_TEMPERATURE:
            t = MIN_TEMPERATURE
        top_k = int(pick("top_k"))
        if top_k in (0, -1) or top_k >= lm.n_vocab:
            top_k = -1
        room = lm.n_ctx - n_prompt
        if room <= 0:
            raise ParamsError(f"the prompt has {n_prompt} tokens and each slot of this model holds "
                              f"{lm.n_ctx}: nothing can be generated (shorten it, use truncate_prompt_tokens, "
                              "or load the model with a larger n_ctx)", field="messages")
        max_tokens = room if p.max_tokens is None else p.max_tokens
        if max_tokens > room:
            raise ParamsError(f"max_tokens={max_tokens} is too large: each slot holds {lm.n_ctx} tokens "
                              f"and the prompt has {n_prompt} ({max_tokens} > {room}); load the model "
                              "with a larger n_ctx",
                              field="max_tokens", value=max_tokens)
        min_tokens = p.min_tokens or 0
        for name in ("allowed_token_ids", "stop_token_ids"):
            ids = getattr(p, name) or []
            bad = [i for i in ids if not 0 <= i < lm.n_vocab]
            if bad:
                raise ParamsError(f"{name} has ids outside the vocabulary (0..{lm.n_vocab - 1}): {bad}",
                                  field=name, value=ids)
        allowed = None
        if p.allowed_token_ids is not None:
            allowed = np.unique(np.asarray(p.allowed_token_ids, dtype=np.int64))
        bias_ids = bias_vals = None
        if p.logit_bias:
            bad = [i for i in p.logit_bias if not 0 <= int(i) < lm.n_vocab]
            if bad:
                raise ParamsError(f"logit_bias has ids outside the vocabulary (0..{lm.n_vocab - 1}): {bad}",
                                  field="logit_bias", value=p.logit_bias)
            bias_ids = np.asarray([int(i) for i in p.logit_bias], dtype=np.int64)
            bias_vals = np.clip(np.asarray(list(p.logit_bias.values()), dtype=np.float32),
                                -LOGIT_BIAS_LIMIT, LOGIT_BIAS_LIMIT)
        stop_ids = frozenset(p.stop_token_ids or ())
        eos_ids = frozenset() if p.ignore_eos else frozenset(lm.eog_ids)
        # vLLM blocks every stop id during min_tokens, the model's EOS ids even with ignore_eos
        min_block = np.asarray(sorted(frozenset(lm.eog_ids) | stop_ids), dtype=np.int64)
        stop = (p.stop,) if isinstance(p.stop, str) else tuple(p.stop or ())
        seed = p.seed if p.seed is not None and p.seed != -1 else self.default_seed
        seeded = seed is not None
        if seed is None:
            seed = secrets.randbits(32)
        return Plan(
            temperature=t, top_k=top_k, top_p=float(pick("top_p")), min_p=float(pick("min_p")),
            repetition_penalty=float(pick("repetition_penalty")),
            presence_penalty=float(pick("presence_penalty")),
            frequency_penalty=float(pick("frequency_penalty")),
            greedy=t < SAMPLING_EPS, max_tokens=int(max_tokens), min_tokens=int(min_tokens),
            eos_ids=eos_ids, stop_token_ids=stop_ids, stop=stop,
            include_stop=bool(p.include_stop_str_in_output),
            skip_special=p.skip_special_tokens is not False,
            allowed=allowed, bias_ids=bias_ids, bias_vals=bias_vals, min_block=min_block,
            logprobs=bool(p.logprobs), top_logprobs=int(p.top_logprobs or 0),
            as_token_ids=bool(p.return_tokens_as_token_ids), n=int(p.n or 1),
            base_seed=int(seed), seeded=seeded)

    # --- generation (chat, achat, stream, astream: see Backend) -------------------
    def submit(self, messages: MessagesLike | None, params: Params | None = None, *,
               on_event: Callable[[Any], None] | None = None, prompt: str | None = None,
               **overrides: Any) -> LocalRequest:
        """Queue a request in the engine and return its handle at once (``.result()``, ``.cancel()``).

        ``prompt``: a raw prompt text used as it is (no chat template; ``messages`` None),
        as vLLM's /v1/completions does.

        ``on_event(event)`` is called from the engine's thread with every Delta and,
        at the end, the "done" Delta or an exception; without it the events are
        kept for ``events()`` / ``result()``. Validation errors raise here.
        """
        prep = self._prepare(messages, merge_params(params, overrides), prompt=prompt)
        handle = LocalRequest(self, prep, on_event)
        plan = prep.plan
        lm = self._lm
        cparams = _constraint_params(prep.params)
        er = EngineRequest(prompt_ids=prep.prompt_ids, plan=plan, params=prep.params, parser_on=prep.parser_on,
                           make_constraint=lambda: _constraint_for(cparams, lm), sink=handle._sink,
                           priority=int(prep.params.priority or 0))
        handle.engine_request = er
        lm.engine.submit(er, plan.n, plan.base_seed)
        return handle

    def events(self, messages: MessagesLike | None, params: Params, *, streaming: bool,
               prompt: str | None = None) -> Iterator[Delta]:
        """The request's Deltas as the engine makes them, then "done"; see the module doc for semantics.

        ``prompt``: a raw prompt instead of messages (see `submit`). Closing the iterator
        early (``break``, garbage collection) cancels the request: its slots are freed
        at the engine's next step. The engine generates the same way whether or not
        the caller streams.
        """
        return self.submit(messages, params, prompt=prompt).events()

    def aevents(self, messages: MessagesLike | None, params: Params, *, streaming: bool,
                prompt: str | None = None) -> AsyncIterator[Delta]:
        """Async twin of `events`: Deltas arrive on the event loop from the engine's thread (no thread per call)."""
        def start(emit: Callable[[Any], None]) -> Callable[[], None]:
            return self.submit(messages, params, prompt=prompt, on_event=emit).cancel

        return aiter_from_thread(start, is_done)

    def prompt_events(self, prompt: str, params: Params, *, streaming: bool) -> Iterator[Delta]:
        """`events` for a raw prompt text (no chat template), as vLLM's /v1/completions."""
        return self.events(None, params, streaming=streaming, prompt=prompt)

    def aprompt_events(self, prompt: str, params: Params, *, streaming: bool) -> AsyncIterator[Delta]:
        """Async twin of `prompt_events`."""
        return self.aevents(None, params, streaming=streaming, prompt=prompt)

    def engine_stats(self) -> dict[str, Any]:
        """The engine's counters: steps, tokens decoded, running and waiting sequences, slots."""
        return self._lm.engine.info()

    def prompt_token_count(self, messages: MessagesLike, params: Params | None = None) -> int:
        """The prompt's tokens (chat template, add_special_tokens and truncate_prompt_tokens applied)."""
        return len(self.prompt_token_ids(messages, params))

    def _completion(self, prep: _Prepared, er: EngineRequest) -> Completion:
        """The Completion of a finished engine request (vLLM's tool handling applied to each choice)."""
        lm = self._lm
        plan = prep.plan
        p = prep.params
        outs = [o for o in er.outs if o is not None]
        latency = time.perf_counter() - er.t0
        ttft = None if er.first_token_t is None else er.first_token_t - er.t0
        n_prompt = len(prep.prompt_ids)
        completion_tokens = sum(o.completion_tokens for o in outs)
        id_ = wire.new_id()
        prompt_ids = prep.prompt_ids.tolist()
        guided = None  # the same for every choice: computed once
        choices = []
        for o in outs:
            content, calls, finish = _tools.tool_message(p, o.content, o.finish_reason)
            info: dict[str, Any] = {
                "sampling_defaults": dict(lm.defaults), "seed": o.seed, "seeded": plan.seeded,
                "prompt_text": prep.prompt_text, "token_ids": o.token_ids,
                "prompt_token_ids": list(prompt_ids),
                "prompt_tokens_evaluated": er.prompt_tokens_evaluated}
            if o.constraint_accepting is not None:
                guided = guided if guided is not None else guided_engine_info(_constraint_params(p))
                info["constraint_accepting"] = o.constraint_accepting
                info.update(guided)
            choices.append(Completion(
                content=content, reasoning_content=o.reasoning_content, finish_reason=finish,
                stop_reason=o.stop_reason, tool_calls=calls, logprobs=o.logprobs,
                usage=Usage(n_prompt, completion_tokens, n_prompt + completion_tokens, o.reasoning_tokens),
                prompt_logprobs=er.prompt_logprobs, latency_s=latency, ttft_s=ttft, backend=BACKEND,
                model=self.model, params=p, messages=list(prep.messages), index=o.index, id=id_, info=info))
        if not choices:  # nothing generated (cancelled before any choice started)
            choices.append(Completion(content=None, usage=Usage(n_prompt, 0, n_prompt), latency_s=latency,
                                      backend=BACKEND, model=self.model, params=p,
                                      messages=list(prep.messages), id=id_))
        for c in choices:
            c.choices = choices
        return choices[0]

    def clear_cache(self) -> None:
        """Empty the KV cache of idle slots: the next prompt is evaluated from scratch."""
        self._check_open()
        self._lm.engine.clear_cache()

    # --- first-token tools (the explorer and the statistical tests) ------------------
    def next_token_logits(self, messages: MessagesLike, params: Params | None = None,
                          **overrides: Any) -> np.ndarray:
        """The model's raw logits for the first answer token (a float32 copy)."""
        prep = self._prepare(messages, merge_params(params, overrides))
        handle = LocalRequest(self, prep, None)
        er = EngineRequest(prompt_ids=prep.prompt_ids, plan=prep.plan, params=prep.params,
                           parser_on=prep.parser_on, make_constraint=lambda: None, sink=handle._sink,
                           logits_only=True)
        handle.engine_request = er
        self._lm.engine.submit(er, 1, prep.plan.base_seed)
        handle.result()
        assert er.logits is not None
        return er.logits

    def sample_from_logits(self, logits: np.ndarray, params: Params | None = None, *, seed: int,
                           prompt_ids: Sequence[int] = (), output_ids: Sequence[int] = (),
                           **overrides: Any) -> int:
        """Draw one token from ``logits`` exactly as generation does (same code, same chain).

        ``prompt_ids``/``output_ids`` feed the penalties and min_tokens; ``logits`` is not modified.
        """
        self._check_open()
        p = merge_params(params, overrides)
        lm = self._lm
        plan = self._plan(p, 1)
        x = np.array(logits, dtype=np.float32, copy=True)
        if x.shape != (lm.n_vocab,):
            raise ValueError(f"logits must have shape ({lm.n_vocab},), got {x.shape}")
        s = TokenSampler(lm, plan, seed % _SEED_MOD, prompt_ids)
        try:
            for t in output_ids:
                s.accept(int(t))
            return s.pick(x)
        finally:
            s.close()

    def close(self) -> None:
        """Free a private model (``shared=False``): its engine, KV cache and weights. Shared models
        stay loaded for the other backends on them (see `unload_all`)."""
        if not self._shared:
            self._lm.close()


class _Prepared:
    """A validated request: params, messages, prompt and plan."""

    __slots__ = ("params", "messages", "prompt_text", "prompt_ids", "plan", "parser_on")

    def __init__(self, params: Params, messages: Messages, prompt_text: str, prompt_ids: np.ndarray,
                 plan: Plan, parser_on: bool) -> None:
        self.params, self.messages, self.prompt_text = params, messages, prompt_text
        self.prompt_ids, self.plan, self.parser_on = prompt_ids, plan, parser_on


class LocalRequest:
    """A request in the engine: wait for it, iterate its Deltas, or cancel it."""

    def __init__(self, backend: LocalBackend, prep: _Prepared, on_event: Callable[[Any], None] | None) -> None:
        self.backend = backend
        self.prep = prep
        self.engine_request: EngineRequest | None = None
        self._on_event = on_event
        self._q: queue.SimpleQueue[Any] | None = None if on_event is not None else queue.SimpleQueue()
        self._done = threading.Event()
        self.completion: Completion | None = None
        self.error: BaseException | None = None
        self._tools = _tools.mode(prep.params) not in (None, "none")
        self._filters: dict[int, _tools.StreamFilter] = {}

    # called from the engine's thread
    def _sink(self, kind: str, value: Any, index: Any) -> None:
        if self._done.is_set():
            return
        if kind == "finished":
            try:
                self.completion = self.backend._completion(self.prep, value)
                for ch in self.completion.choices:  # content held back by the tool filter and still owed
                    owed = self._filters.pop(ch.index).flush(bool(ch.tool_calls)) if ch.index in self._filters else ""
                    if owed:
                        self._emit(Delta("content", owed, ch.index))
                ev: Any = Delta("done", index=0, completion=self.completion)
            except Exception as exc:  # noqa: BLE001 - handed to the waiting caller
                self.error = ev = exc
            self._done.set()
        elif kind == "error":
            self.error = ev = _user_error(value)
            self._done.set()
        elif kind == "content" and self._tools:
            # as vLLM's tool parser streams: text that is a tool call is not content
            f = self._filters.get(index)
            if f is None:
                f = self._filters[index] = _tools.StreamFilter(self.prep.params)
            text = f.feed(value)
            if not text:
                return
            ev = Delta(kind, text, index)
        else:
            ev = Delta(kind, value, index)
        self._emit(ev)

    def _emit(self, ev: Any) -> None:
        if self._on_event is not None:
            self._on_event(ev)
        else:
            assert self._q is not None
            self._q.put(ev)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        """Stop generating: the choices end with finish_reason "abort" at the engine's next step."""
        er = self.engine_request
        if er is not None and not self._done.is_set():
            er.cancel()
            self.backend._lm.engine.wake()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the request has finished (or failed); False on timeout."""
        return self._done.wait(timeout)

    def result(self, timeout: float | None = None) -> Completion:
        """The Completion, once finished (raises what generation raised; cancels on Ctrl-C)."""
        try:
            while not self._done.wait(0.1 if timeout is None else timeout):
                if timeout is not None:
                    raise TimeoutError("the local request did not finish in time")
        except BaseException:
            self.cancel()
            raise
        if self.error is not None:
            raise self.error
        assert self.completion is not None
        return self.completion

    def events(self) -> Iterator[Delta]:
        """The Deltas as they come, then the "done" Delta; closing the iterator cancels."""
        if self._q is None:
            raise RuntimeError("events() needs a request submitted without on_event")
        try:
            while True:
                try:
                    ev = self._q.get(timeout=0.1)
                except queue.Empty:
                    continue
                if isinstance(ev, BaseException):
                    raise ev
                yield ev
                if ev.kind == "done":
                    return
        finally:
            self.cancel()


def _user_error(exc: BaseException) -> BaseException:
    if isinstance(exc, (GSExploreError, ValueError)):
        return exc
    return EngineError(f"local generation failed: {exc}")
