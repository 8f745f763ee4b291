"""`gsexplore serve`: a GradienteSur-compatible Chat Completions server over local models.

For a classroom (one machine with a GPU serving the room) and for end-to-end tests.
It speaks vLLM's dialect: the request fields `Params` knows, vLLM's response and
error shapes, SSE streaming ending in ``data: [DONE]``.

    app = create_app("demo", api_keys={"clave-de-clase"})
    with ServerThread(app) as srv:              # uvicorn on a free 127.0.0.1 port
        gs.RemoteBackend(srv.url, api_key="clave-de-clase").chat("Hola")

Generation runs in the batched engine of the loaded model: ``slots`` requests
(``--parallel``) decode together, one llama.cpp batch per step. Every admitted
request goes to the engine at once and waits in its queue, ordered by
``priority`` (lower first) and then arrival, as vLLM's; the server only counts,
and beyond ``max_queue`` waiting requests (``--max-queue``) answers 429 with
Retry-After. A request that does not name one of the served model names gets
vLLM's 404. Unset ``max_tokens`` is capped at ``max_tokens_cap``. In a stream,
logprobs arrive all at once in each choice's last chunk, and tool calls in one
delta before it (the assembled answer is the same as vLLM's).

The contract is vLLM's: bodies validated by the models of `protocol` (built from
`Params`), unknown fields logged and ignored, every error
``{"error": {"message", "type", "param", "code"}}``, limits named with their
flag. Endpoints: /v1/chat/completions, /v1/completions, /v1/models (also under
/functions/v1), /tokenize, /detokenize, /health, /version, /metrics
(Prometheus), /openapi.json and /docs. What a backend cannot do (tokenize, a raw
prompt) is asked of its declared capabilities (`gsexplore.backends.capabilities`)
and answered with a 400 naming it.

A classroom: keys carry students' labels (``KEY ana``; `make_keys` writes them with
a printable sheet); the sender of each request (the key's label, else the body's
``user``) goes to the backend as ``Params.user``, which the engine's fair share
reads; per-student limits answer 429 naming their flag; ``/class`` is the
teacher's view (admin keys); ``class_store`` records every answer with its student.
"""

from .app import Server, create_app
from .identity import Roster
from .keys import check_binding, is_loopback, load_keys, load_labelled_keys
from .keysheet import make_keys, sheet_path
from .loading import GRADIENTESUR_MODEL, load_backends, served_names
from .protocol import MAX_JSON_DEPTH
from .runner import ServerThread, serve

__all__ = ["GRADIENTESUR_MODEL", "MAX_JSON_DEPTH", "Roster", "Server", "ServerThread", "check_binding",
           "create_app", "is_loopback", "load_backends", "load_keys", "load_labelled_keys", "make_keys", "serve",
           "served_names", "sheet_path"]
