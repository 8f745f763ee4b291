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
  by llama.cpp (vLLM keeps every tied token). top_p without top_k is found by
  ``llama/nucleus.py`` (a histogram of the log-probabilities, no sort of the
  vocabulary: ~1 ms instead of 8-9 ms per flat 152k-token row) and llama.cpp's
  ``dist`` draws from the kept tokens in id order.
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

Guided decoding (guided_*, JSON response_format) goes through the ``constraint_for``
hook (``policy.py``) to ``gsexplore.guided`` (llguidance): a token mask applied with the masks
above, only after ``</think>`` for a reasoning model.

Rejected with `UnsupportedParam` (see ``policy.unsupported``): use_beam_search, a
length_penalty other than 1 (it only matters with beam search), logits_processors
(names of server-side processors) and extra_body fields.

The package, one job per module: ``backend`` (LocalBackend, its public and
capability methods), ``loading`` (the model, its engine, the shared registry),
``prompt`` (chat template, token ids, the Plan), ``policy`` (what is refused, the
guided hook), ``output`` (Completion building, logprob shapes, tools), ``request``
(the handle: events, result, cancel).
"""
from __future__ import annotations

from ..llama.model import gguf_sampling as _gguf_sampling  # the name the tests and older code use
from ..llama.sequence import ChoiceOutput
from .backend import DEMO_SYSTEM_PROMPT, MODEL_DEFAULT, LocalBackend
from .loading import loaded_models, unload_all
from .request import LocalRequest

__all__ = ["LocalBackend", "LocalRequest", "ChoiceOutput", "loaded_models", "unload_all", "DEMO_SYSTEM_PROMPT",
           "MODEL_DEFAULT"]
