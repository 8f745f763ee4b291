"""What the local backend cannot honour (``UnsupportedParam``) and the guided-decoding hook."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ... import tools as _tools
from ...errors import UnsupportedParam
from ...params import Params

if TYPE_CHECKING:
    from ..llama.model import LoadedModel
    from ..llama.sampler import Constraint

__all__ = ["BACKEND", "unsupported", "constraint_params", "constraint_for", "guided_engine_info"]

BACKEND = "local"


def guided_engine_info(params: Params) -> dict[str, Any]:
    """The guided engine and semantics a constrained request used (``Completion.info``)."""
    from ...guided import engine_info

    return engine_info(params)


def constraint_for(params: Params, model: LoadedModel) -> Constraint | None:
    """HOOK for guided decoding: compile params' guided_* / response_format into a Constraint.

    llguidance compiles it (``gsexplore.guided``; grammars cached per model and
    grammar); None when params ask for no constraint. Called once per choice (each
    choice needs a fresh constraint state).
    """
    from ... import guided

    return guided.local_constraint(params, model)


def constraint_params(p: Params) -> Params:
    """The params the constraint is compiled from: a forced tool choice becomes its JSON schema."""
    forced = _tools.forced_schema(p)
    return p if forced is None else p.replace(tools=None, tool_choice=None, guided_json=forced)


def unsupported(p: Params) -> None:
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
    from ... import guided

    guided.validate(constraint_params(p))
    if p.extra_body:
        no("extra_body", f"fields {sorted(p.extra_body)} are sent verbatim to a server and mean nothing locally")
