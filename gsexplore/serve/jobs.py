"""From an HTTP body to a validated job: the JSON within limits, the request model, `Params`, and what
the backend is asked to generate (chat messages, or a raw prompt through the RawPrompt capability).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ValidationError

from ..backends.base import Backend, Delta
from ..backends.capabilities import RawPrompt, Tokenizer
from ..completion import Completion
from ..errors import GSExploreError, ParamsError
from ..params import Params
from .errors import Reject, require, validation_reject
from .protocol import (MAX_JSON_DEPTH, UNHONOURED, ChatCompletionRequest, CompletionRequest, json_depth,
                       params_data, to_template_messages)
from .responses import Chunks, chat_response, text_response

__all__ = ["Job", "Reader"]

log = logging.getLogger(__name__)

RAW_PROMPT = "complete a raw prompt"


@dataclass
class Job:
    """A validated generation request: what the backend generates and how the answer is shaped.

    ``prompt`` set: /v1/completions (a raw prompt, backends with `RawPrompt`); else chat ``messages``.
    """

    model: str  # the name the answer carries
    params: Params  # what the backend gets (model and stream unset)
    stream: bool
    include_usage: bool
    messages: list[dict[str, Any]] = field(default_factory=list)
    prompt: str | None = None
    echo: str | None = None

    def prompt_tokens(self, b: Backend) -> int | None:
        """The prompt's tokens by ``b``'s tokenizer (None when it has none). Blocking."""
        if self.prompt is None:
            return b.prompt_token_count(self.messages, self.params)
        if not isinstance(b, Tokenizer):
            return None
        return len(b.tokenize(self.prompt, bool(self.params.add_special_tokens)))

    def events(self, b: Backend, p: Params) -> AsyncIterator[Delta]:
        """The streamed answer: Deltas, then "done" (closing the iterator cancels the request)."""
        if self.prompt is None:
            return b.astream(self.messages, p)
        raw = require(b, RawPrompt, RAW_PROMPT)
        return raw.aprompt_events(self.prompt, p.replace(stream=True), streaming=True)

    async def complete(self, b: Backend, p: Params, on_delta: Callable[[], None] | None = None) -> Completion:
        """The whole answer (``on_delta`` is called at each Delta the backend sends before it: the class view
        sees the first token of a non-streamed request)."""
        if self.prompt is None:
            events = b.aevents(self.messages, p, streaming=False)  # what Backend.achat runs
        else:
            events = require(b, RawPrompt, RAW_PROMPT).aprompt_events(self.prompt, p, streaming=False)
        last = None
        try:
            async for last in events:
                if on_delta is not None and last.kind != "done":
                    on_delta()
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
        if last is None or last.completion is None:
            raise GSExploreError("the model produced nothing")
        c = last.completion
        if self.prompt is None and not p.stream:  # as Backend.achat: a first token means nothing unstreamed
            for ch in c.choices:
                ch.ttft_s = None
        return c

    def response(self, c: Completion) -> dict[str, Any]:
        """vLLM's non-streaming body for ``c``."""
        return text_response(c, self.model, self.echo) if self.prompt is not None else chat_response(c, self.model)

    def chunks(self) -> Chunks:
        """The streaming chunks of this request."""
        return Chunks(self.model, self.params.n or 1, self.include_usage, text=self.prompt is not None,
                      echo=self.echo)


@dataclass
class Reader:
    """Reads request bodies within this server's limits, each a 400 naming its flag."""

    names: list[str]  # the served model names (another is a 404)
    max_body_bytes: int
    max_tokens_cap: int
    max_n: int

    async def read_json(self, request: Request) -> dict[str, Any]:
        """The body as a JSON object, within --max-body-bytes and `MAX_JSON_DEPTH`."""
        too_large = (f"the request body is larger than this server's limit of {self.max_body_bytes} bytes "
                     "(--max-body-bytes raises it)")
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_body_bytes:
            raise Reject(400, too_large, param="body")
        chunks, size = [], 0
        async for part in request.stream():
            size += len(part)
            if size > self.max_body_bytes:
                raise Reject(400, too_large, param="body")
            chunks.append(part)
        deep = (f"the request body nests lists and objects more than {MAX_JSON_DEPTH} levels deep "
                "(this server's limit)")
        try:
            body = json.loads(b"".join(chunks))
        except RecursionError:
            raise Reject(400, deep, param="body") from None
        except ValueError as e:
            raise Reject(400, f"malformed JSON in the request body: {e}", param="body") from None
        if not isinstance(body, dict):
            raise Reject(400, "the request body must be a JSON object", param="body")
        if json_depth(body) > MAX_JSON_DEPTH:
            raise Reject(400, deep, param="body")
        return body

    def validate(self, model: type[BaseModel], body: dict[str, Any]) -> Any:
        """``body`` as ``model``: a served model name, no field that would change the output unhonoured."""
        try:
            req = model.model_validate(body)
        except ValidationError as e:
            raise validation_reject(e) from None
        except RecursionError:
            raise Reject(400, "the request is nested too deeply to validate", param="body") from None
        name = body.get("model")
        if name is not None and name not in self.names:
            raise Reject(404, f"The model `{name}` does not exist. This server serves: {', '.join(self.names)}",
                         "NotFoundError", param="model")
        extra = dict(req.model_extra or {})
        so = getattr(req, "stream_options", None)  # the request models differ; Tokenize has none
        if so is not None and so.continuous_usage_stats:
            extra["continuous_usage_stats"] = True
        for k, v in extra.items():
            if k in UNHONOURED and v not in (None, False, 0, "", [], {}):
                raise Reject(400, f"{k} is not supported by gsexplore serve: {UNHONOURED[k]}", param=k)
        ignored = sorted(k for k in extra if k not in UNHONOURED)
        if ignored:
            log.warning("The following fields were present in the request but ignored: %s", ignored)
        return req

    def to_params(self, req: Any, **defaults: Any) -> Params:
        """The request's Params, within --max-tokens-cap and --max-n."""
        data = {**defaults, **params_data(req)}
        try:
            p = Params.from_request(data)
        except ParamsError as e:
            raise Reject(400, str(e), param=e.field) from None
        if p.max_tokens is not None and p.max_tokens > self.max_tokens_cap:
            raise Reject(400, f"max_tokens={p.max_tokens} is more than this server allows "
                              f"({self.max_tokens_cap}; --max-tokens-cap raises it)", param="max_tokens")
        if (p.n or 1) > self.max_n:
            raise Reject(400, f"n={p.n} is more than this server allows ({self.max_n}; --max-n raises it)",
                         param="n")
        return p

    def _job(self, req: Any, p: Params, **kw: Any) -> Job:
        so = req.stream_options
        return Job(req.model or self.names[0], p.replace(model=None, stream=None), bool(p.stream),
                   bool(so and so.include_usage), **kw)

    def chat_job(self, body: dict[str, Any]) -> Job:
        """A /v1/chat/completions body as a job."""
        req = self.validate(ChatCompletionRequest, body)
        return self._job(req, self.to_params(req), messages=to_template_messages(req.messages))

    def text_job(self, body: dict[str, Any], backend: Backend) -> Job:
        """A /v1/completions body as a job (one raw prompt, for a ``backend`` with `RawPrompt`)."""
        req = self.validate(CompletionRequest, body)
        require(backend, RawPrompt, RAW_PROMPT)
        if req.logprobs is not None and req.echo:
            raise Reject(400, "echo with logprobs needs the prompt's logprobs, which gsexplore serve does not "
                              "return on /v1/completions; use prompt_logprobs on /v1/chat/completions",
                         param="echo")
        prompt = req.prompt[0] if isinstance(req.prompt, list) and len(req.prompt) == 1 else req.prompt
        if not isinstance(prompt, str):
            raise Reject(400, "prompt must be one string (lists of prompts or of token ids are not "
                              "supported by gsexplore serve)", param="prompt")
        p = self.to_params(req, add_special_tokens=True)  # vLLM's default for completions
        return self._job(req, p, prompt=prompt, echo=prompt if req.echo else None)
