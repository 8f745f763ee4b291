"""`LocalBackend`: the public face of the local engine (see the package docstring for the semantics).

It loads (``loading``), prepares (``prompt``, ``policy``), submits to the engine
and hands back a ``LocalRequest``; the Completion is built by ``output``.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...completion import Completion
from ...errors import EngineError, ParamsError
from ...params import Params
from ..base import Backend, Delta, MessagesLike, _finished, is_done, merge_params
from ..bridge import aiter_from_thread
from ..llama.engine import Engine
from ..llama.hardware import ExtraBuffers, default_threads
from ..llama.memory import DEFAULT_N_CTX, batch_invariance
from ..llama.plan import SEED_MOD, Plan, make_plan
from ..llama.sampler import TokenSampler
from ..llama.sequence import EngineRequest
from . import prompt as _prompt
from .loading import load
from .output import build_completion
from .policy import BACKEND, constraint_for, constraint_params, unsupported
from .request import LocalRequest

__all__ = ["LocalBackend", "DEMO_SYSTEM_PROMPT", "MODEL_DEFAULT"]


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
    each with a KV stream of ``n_ctx`` tokens. Left None, both come from memory
    (``llama/memory.py``): the KV cache gets a share of the RAM this process can use
    (or of the GPU's free memory when layers are offloaded) less the weights and a
    margin; ``n_ctx`` is what the caller needs (``prepare``, which ``gs.sweep`` calls
    with its largest prompt + max_tokens and its number of requests; a request's own
    prompt + max_tokens; else 4096), and slots are as many as fit, at most the
    requests wanted (``prepare``'s ``concurrency``; 16 when no caller said,
    ``memory.PLAIN_SLOTS``) and where batched decode stops gaining on this kind of device
    (``info()["slots_reason"]`` shows the arithmetic, ``info()["memory"]`` the
    numbers). The engine is made at first use (``prepare``, a request, ``slots``,
    ``info()``) and made again, larger, while idle, when a need does not fit it.

    ``kv_cache_type``: "f16" (default), "q8_0" or "q4_0" (0.53 and 0.28 of f16's
    memory; the model's head size must be a multiple of 32). ``kv_layout``:
    "streams" (default: each slot its own ``n_ctx`` cells) or "unified" (one pool of
    ``slots x n_ctx`` cells, so one request may hold more than ``n_ctx``; not batch
    invariant). ``info()["batch_invariant"]`` says whether a seeded request gives
    the same tokens alone and batched with these choices.

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
                 n_ctx: int | None = None, n_threads: int | None = None, seed: int | None = None,
                 verbose: bool = False, shared: bool = True,
                 system_prompt: str | None | _ModelDefault = MODEL_DEFAULT,
                 n_threads_batch: int | None = None,
                 extra_buffers: ExtraBuffers | bool | None = "auto", slots: int | None = None,
                 kv_cache_type: str = "f16", kv_layout: str = "streams") -> None:
        from ...models import ALIASES, resolve

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
        self._loaded = load(self.path, n_gpu_layers=self.n_gpu_layers, n_ctx=n_ctx, n_threads=threads,
                            n_threads_batch=threads_batch, extra_buffers=extra_buffers, slots=slots,
                            verbose=verbose, kv_cache_type=kv_cache_type, kv_layout=kv_layout, shared=shared)
        self._lm = self._loaded.model
        self.kv_cache_type, self.kv_layout = kv_cache_type, kv_layout

    @property
    def _engine(self) -> Engine:
        return self._loaded.engine

    @property
    def slots(self) -> int:  # type: ignore[override]
        """Sequences generated at once (the engine is sized now if nothing sized it yet)."""
        return self._engine.n_slots

    @property
    def n_ctx(self) -> int:  # type: ignore[override]
        """Tokens one request may hold (the engine is sized now if nothing sized it yet)."""
        return self._engine.n_ctx

    def prepare(self, *, max_request_tokens: int | None = None, concurrency: int | None = None) -> None:
        """Size the engine for what is coming: requests of up to ``max_request_tokens`` (prompt +
        max_tokens; None: 4096 or the training context) and ``concurrency`` of them at once.

        Before first use it decides the engine's size; later it makes an idle engine again, sized
        for these needs, when they do not fit it. ``n_ctx=`` and ``slots=`` given at creation stay.
        """
        self._check_open()
        self._loaded.ensure(max_request_tokens, concurrency)

    def _request_ctx(self, n_prompt: int, max_tokens: int | None) -> int:
        """The engine's context for a request of this size (the engine sized or grown for it if it can be)."""
        train = self._lm.n_ctx_train or None
        need = n_prompt + max_tokens if max_tokens else max(min(DEFAULT_N_CTX, train or DEFAULT_N_CTX), n_prompt + 1)
        # beyond the training context a request is refused by name (max_tokens), as vLLM's max_model_len
        return self._loaded.ensure(min(need, train) if train else need).n_ctx

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
        size = f"n_ctx={self.n_ctx}" if self._loaded.sized else "engine not sized yet"
        return f"LocalBackend({self.source!r}, file={self.model!r}, {size})"

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
            **self._memory_info(offloaded > 0),
        }

    def _memory_info(self, on_gpu: bool) -> dict[str, Any]:
        """The engine's size, KV type and layout, the policy's arithmetic and whether batching changes outputs.

        Before the engine is made (it is made at first use) this is what the policy would make without
        other needs, and nothing is allocated to say it.
        """
        loaded = self._loaded
        if loaded.sized:
            eng = loaded.engine
            plan = loaded.slot_plan
            assert plan is not None
            n_ctx, cells = eng.n_ctx, eng.n_cells
            out = {f"engine_{k}" if k not in ("slots", "kv_cache") else k: v
                   for k, v in eng.info().items() if k != "n_ctx"}
            reason = plan.reason
        else:
            plan = loaded.plan()
            cells = plan.n_ctx * plan.slots
            n_ctx = cells if self.kv_layout == "unified" else plan.n_ctx
            out = {"slots": plan.slots, "kv_cache": "not made yet: the engine is made at first use (prepare(), "
                                                    "a request), for what that use needs"}
            reason = "not made yet; without other needs: " + plan.reason
        invariant, why = batch_invariance(self.kv_cache_type, self.kv_layout, n_ctx, on_gpu)
        return {
            "n_ctx": n_ctx,
            **out,
            "kv_cache_type": self.kv_cache_type,
            "kv_layout": self.kv_layout,
            "slots_reason": reason,
            "memory": dict(plan.numbers),
            "kv_cache_mib": round(plan.numbers["kv_bytes_per_token"] * cells / 2**20, 1),
            "batch_invariant": invariant,
            "batch_invariant_reason": why,
        }

    def effective_sampling(self, params: Params | None = None, **overrides: Any) -> dict[str, Any]:
        """The sampling settings a request would really use (defaults filled in) and the chain."""
        plan = self._plan(merge_params(params, overrides), 1)
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
        return _prompt.render(self._lm, self.model, _prompt.with_system(messages, self.system_prompt),
                              merge_params(params, overrides))

    def prompt_token_ids(self, messages: MessagesLike, params: Params | None = None, **overrides: Any) -> list[int]:
        """The prompt's token ids (add_special_tokens and truncate_prompt_tokens applied)."""
        self._check_open()
        p = merge_params(params, overrides)
        text = _prompt.render(self._lm, self.model, _prompt.with_system(messages, self.system_prompt), p)
        return _prompt.tokenize_prompt(self._lm, text, p, self._ctx_bound()).tolist()

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

    def _prepare(self, messages: MessagesLike | None, p: Params, prompt: str | None = None) -> _prompt.Prepared:
        self._check_open()
        unsupported(p)
        self._check_model(p)
        return _prompt.prepare(self._lm, p, model_name=self.model, system_prompt=self.system_prompt,
                               n_ctx=self._ctx_bound(), default_seed=self.default_seed, messages=messages,
                               prompt=prompt, fit=lambda n: self._request_ctx(n, p.max_tokens))

    def _ctx_bound(self) -> int:
        """The most tokens a request could be given before its size is known (truncate_prompt_tokens' check)."""
        o = self._loaded.options
        if o.n_ctx is not None or o.kv_layout == "unified":
            return self.n_ctx
        return max(self._lm.n_ctx_train or DEFAULT_N_CTX, self.n_ctx if self._loaded.sized else 0)

    def _check_open(self) -> None:
        if self._loaded.closed:
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
        return make_plan(self._lm, p, n_prompt, self.n_ctx, self.default_seed)

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
        return self._submit(messages, merge_params(params, overrides), on_event, prompt)

    def _submit(self, messages: MessagesLike | None, p: Params, on_event: Callable[[Any], None] | None,
                prompt: str | None = None) -> LocalRequest:
        with self._loaded.lock:  # sized for this request and submitted before anyone remakes the engine
            prep = self._prepare(messages, p, prompt=prompt)
            handle = LocalRequest(self, prep, on_event)
            plan = prep.plan
            lm = self._lm
            cparams = constraint_params(prep.params)
            er = EngineRequest(prompt_ids=prep.prompt_ids, plan=plan, parser_on=prep.parser_on,
                               make_constraint=lambda: constraint_for(cparams, lm), sink=handle._sink,
                               priority=int(prep.params.priority or 0), sender=prep.params.user or "")
            handle.engine_request = er
            self._engine.submit(er, plan.n, plan.base_seed)
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

    def chat(self, messages: MessagesLike, params: Params | None = None, **overrides: Any) -> Completion:
        """`Backend.chat`; unstreamed, no per-token Delta is queued for this thread (only the end is waited for)."""
        p = merge_params(params, overrides)
        if p.stream:
            return super().chat(messages, p)
        handle = self._submit(messages, p, _drop)
        return _finished(Delta("done", index=0, completion=handle.result()), p)

    async def achat(self, messages: MessagesLike, params: Params | None = None, **overrides: Any) -> Completion:
        """`Backend.achat`; unstreamed, only the end crosses to the event loop: a sweep's many requests do
        not wake the loop at every token of every sequence (the engine's thread keeps the GIL for its step)."""
        p = merge_params(params, overrides)
        if p.stream:
            return await super().achat(messages, p)
        loop = asyncio.get_running_loop()
        end: asyncio.Future[Any] = loop.create_future()

        def on_event(ev: Any) -> None:
            if isinstance(ev, BaseException) or is_done(ev):
                try:
                    loop.call_soon_threadsafe(_settle, end, ev)
                except RuntimeError:  # the loop has closed: nobody is waiting any more
                    pass

        handle = self._submit(messages, p, on_event)
        try:
            ev = await end
        except BaseException:
            handle.cancel()
            raise
        if isinstance(ev, BaseException):
            raise ev
        return _finished(ev, p)

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
        return self._engine.info()

    def prompt_token_count(self, messages: MessagesLike, params: Params | None = None) -> int:
        """The prompt's tokens (chat template, add_special_tokens and truncate_prompt_tokens applied)."""
        return len(self.prompt_token_ids(messages, params))

    def _completion(self, prep: _prompt.Prepared, er: EngineRequest) -> Completion:
        """The Completion of a finished engine request (see ``output.build_completion``)."""
        return build_completion(self._lm, self.model, prep, er)

    def clear_cache(self) -> None:
        """Empty the KV cache of idle slots: the next prompt is evaluated from scratch."""
        self._check_open()
        self._engine.clear_cache()

    # --- first-token tools (the explorer and the statistical tests) ------------------
    def next_token_logits(self, messages: MessagesLike, params: Params | None = None,
                          **overrides: Any) -> np.ndarray:
        """The model's raw logits for the first answer token (a float32 copy)."""
        with self._loaded.lock:
            prep = self._prepare(messages, merge_params(params, overrides))
            handle = LocalRequest(self, prep, None)
            er = EngineRequest(prompt_ids=prep.prompt_ids, plan=prep.plan, parser_on=prep.parser_on,
                               make_constraint=lambda: None, sink=handle._sink, logits_only=True)
            handle.engine_request = er
            self._engine.submit(er, 1, prep.plan.base_seed)
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
        lm = self._lm
        plan = self._plan(merge_params(params, overrides), 1)
        x = np.array(logits, dtype=np.float32, copy=True)
        if x.shape != (lm.n_vocab,):
            raise ValueError(f"logits must have shape ({lm.n_vocab},), got {x.shape}")
        s = TokenSampler(lm, plan, seed % SEED_MOD, prompt_ids)
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
            self._loaded.close()


def _drop(ev: Any) -> None:
    """An on_event that keeps nothing: the handle records the end (``result()``)."""


def _settle(fut: asyncio.Future[Any], ev: Any) -> None:
    if not fut.done():
        fut.set_result(ev)
