"""A sweep plan written as an OpenAI/vLLM batch file, for engines that scale past one machine.

``requests.jsonl``: one line per request not yet in the store (cell x repeat; ``n``
stays in the body), ``{"custom_id", "method": "POST", "url": "/v1/chat/completions",
"body"}``, the body built by `gsexplore.wire.request_body` exactly as RemoteBackend
sends it (model, messages, the parameters set, the repeat's seed), ``custom_id`` the
cell id and the repeat (``3f2a9c1b7d4e-0``), so results join back to their rows.
Run it with ``vllm run-batch``, a provider's Batch API, Ray Data
(``examples/ray_batch.py``) or ``gsexplore batch run``.

``requests.plan.jsonl`` beside it: what the importer needs and the results do not
carry (see `gsexplore.batch.planfile`). With a store, the store's meta records both.
Lines are generated one request at a time and written to a temporary file renamed
at the end: a sweep of any size streams, and a half-written file never looks finished.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .. import wire
from ..errors import ParamsError
from ..i18n import msg, number
from .planning import CellGroup
from .redact import backend_info, redact, secrets_of, versions

if TYPE_CHECKING:
    from .planning import SweepPlan

__all__ = ["export", "BatchExport", "custom_id", "plan_path", "cell_entry", "PLAN_FORMAT"]

PLAN_FORMAT = "gsexplore-batch-plan/1"


def custom_id(cell: str, repeat: int) -> str:
    """The sweep's own name of one request: cell id and repeat (``3f2a9c1b7d4e-0``)."""
    return f"{cell}-{repeat}"


def plan_path(requests: str | os.PathLike) -> Path:
    """Where the plan file of a batch file goes: ``requests.jsonl`` -> ``requests.plan.jsonl``."""
    p = Path(requests)
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    return p.with_name(stem + ".plan.jsonl")


def cell_entry(g: CellGroup) -> dict[str, Any]:
    """One cell's line of the plan file: its id, backend, prompt and parameters as a request."""
    return {"cell_id": g.cell_id, "backend": g.backend.name, "backend_model": g.backend.model,
            "prompt": {"id": g.prompt.id, "messages": g.prompt.messages, "expected": g.prompt.expected},
            "params": g.params.to_request()}


@dataclass
class BatchExport:
    """What an export wrote."""

    requests: str
    plan: str
    sweep_id: str
    n_requests: int
    prompt_tokens_est: int
    completion_tokens_max: int | None
    spelling: str
    exported_at: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _spelling(sp: SweepPlan, spelling: str | None) -> Literal["guided", "structured_outputs"]:
    if spelling is None:  # the backend's own, as RemoteBackend would send it
        spellings = {getattr(b, "guided_spelling", "guided") for b in sp.backends}
        spelling = spellings.pop() if len(spellings) == 1 else "guided"
    if spelling not in ("guided", "structured_outputs"):
        raise ParamsError(f"spelling={spelling!r} is not allowed: use 'guided' (vLLM <= 0.11) or "
                          "'structured_outputs' (vLLM >= 0.11)", field="spelling", value=spelling)
    return spelling  # type: ignore[return-value]


def export(sp: SweepPlan, path: str | os.PathLike, *, spelling: str | None = None, model: str | None = None,
           store: str | os.PathLike | None = None, progress: bool = True) -> BatchExport:
    """Write the plan's todo requests to ``path`` and the plan file beside it (see the module docstring).

    ``spelling``: how guided constraints are written (default: the backends'
    ``guided_spelling``, else "guided"); ``model``: the body's model for every line
    (default: the cell's, as RemoteBackend sends it; a batch engine checks it
    against the model it serves); ``store``: record the export in the store's meta.
    """
    spell = _spelling(sp, spelling)
    out, plan_out = Path(path), plan_path(path)
    if out.resolve() == plan_out.resolve():
        raise ParamsError(f"the batch file {out.name!r} would be its own plan file; name it *.jsonl",
                          field="path", value=str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp, plan_tmp = out.with_name(out.name + ".tmp"), plan_out.with_name(plan_out.name + ".tmp")
    secrets = secrets_of(sp.backends)
    header = {"format": PLAN_FORMAT, "sweep_id": sp.sweep_id, "seed": sp.seed, "repeats": sp.repeats,
              "requests": out.name, "spelling": spell, "model": model, "varied": sp.varied,
              "backends": [backend_info(b, secrets) for b in sp.backends], "versions": versions()}
    n = 0
    with open(tmp, "w", encoding="utf-8") as f, open(plan_tmp, "w", encoding="utf-8") as pf:
        pf.write(json.dumps(header, ensure_ascii=False, default=str) + "\n")
        for g in sp.groups():
            todo = [r for r in range(sp.repeats) if (g.cell_id, r, g.seed(r, sp.seed)) not in sp.done]
            if not todo:
                continue
            # secret values scrubbed, keys kept: a schema property named "key" is the user's data
            pf.write(redact(json.dumps(cell_entry(g), ensure_ascii=False), secrets) + "\n")
            body = wire.request_body(g.params, g.prompt.messages, model or g.backend.model, spell)
            if model is not None:
                body["model"] = model
            for r in todo:
                if g.params.seed is None:  # the derived seed, as the sweep runs repeat r
                    body["seed"] = g.seed(r, sp.seed)
                f.write(json.dumps(wire.batch_request_line(custom_id(g.cell_id, r), body), ensure_ascii=False)
                        + "\n")
                n += 1
    os.replace(plan_tmp, plan_out)
    os.replace(tmp, out)
    done = BatchExport(str(out.resolve()), str(plan_out.resolve()), sp.sweep_id, n, sp.prompt_tokens_est,
                       sp.completion_tokens_max, spell,
                       datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if store is not None:
        from ..store import Store

        Store(store).add_meta(sp.sweep_id, "batch_exports", done.as_dict())
    if progress:
        ctok = number(sp.completion_tokens_max) if sp.completion_tokens_max is not None else "?"
        print(msg("batch.exported", n=number(n), path=str(out), ptok=number(sp.prompt_tokens_est), ctok=ctok,
                  plan=plan_out.name), flush=True)
    return done
