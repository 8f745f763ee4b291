"""`gsexplore batch run -i requests.jsonl -o results.jsonl --model demo`: a batch file on the local engine.

vLLM's ``run-batch`` interface and output format (`gsexplore.wire.batch_output_line`),
so a laptop runs the file a cluster would. The input is read as it is consumed and
twice the engine's slots are kept in flight (vLLM keeps 2 x max_num_seqs), so every
slot stays busy. Each result line is written and flushed as its request finishes
(lines come in completion order, as in OpenAI's output files); running the same
command again skips the custom_ids already in the output, so a run cut short resumes.
A request the engine refuses becomes a failed line (400 for parameters, 404 for an
unknown model), as vLLM writes it; the run goes on.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path
from typing import Any

from .. import wire
from ..backends.base import Backend
from ..errors import ModelNotFoundError, ParamsError, UnsupportedParam
from ..i18n import msg, number
from ..params import Params
from .lines import iter_json_lines

__all__ = ["run_file"]


def _finished(output: Path) -> set[str]:
    """custom_ids already in the output; a line cut short by a crash is ended so the next starts clean."""
    done: set[str] = set()
    if not output.exists():
        return done
    with open(output, "rb") as f:
        for line in iter_json_lines(f):
            if line is not None and isinstance(line.get("custom_id"), str):
                done.add(line["custom_id"])
    with open(output, "rb+") as f:
        f.seek(0, os.SEEK_END)
        if f.tell():
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
    return done


def _count(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for raw in f if raw.strip())


def _status(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, (ParamsError, UnsupportedParam)):
        return 400, "BadRequestError"
    if isinstance(exc, ModelNotFoundError):
        return 404, "NotFoundError"
    return 500, "InternalServerError"


class _Run:
    def __init__(self, backend: Backend, served: set[str], out: Any, pbar: Any) -> None:
        self.backend, self.served, self.out, self.pbar = backend, served, out, pbar
        self.ran = self.failed = 0

    def write(self, line: dict[str, Any]) -> None:
        self.out.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.out.flush()  # in the OS's hands as soon as it is done: a killed run keeps it
        self.ran += 1
        self.failed += int(line["response"]["status_code"] != 200)
        if self.pbar is not None:
            self.pbar.update(1)

    def refuse(self, cid: str | None, status: int, message: str, type_: str, param: str | None = None) -> None:
        self.write(wire.batch_output_line(cid, status, None, wire.error_body(status, message, type_, param)))

    async def one(self, req: dict[str, Any], sem: asyncio.Semaphore) -> None:
        try:
            cid = req.get("custom_id")
            body = req.get("body")
            if req.get("url") != wire.BATCH_CHAT_URL or str(req.get("method", "POST")).upper() != "POST":
                return self.refuse(cid, 400, f"URL {req.get('url')} was used. Supported endpoints: "
                                   f"{wire.BATCH_CHAT_URL}", "BadRequestError", "url")
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                return self.refuse(cid, 400, "body must be a chat completion request with messages",
                                   "BadRequestError", "body")
            model = body.get("model")
            if model not in self.served:
                return self.refuse(cid, 404, f"The model `{model}` does not exist.", "NotFoundError", "model")
            if body.get("stream"):
                return self.refuse(cid, 400, "Request must not be sent in stream mode", "BadRequestError", "stream")
            try:
                params = Params.from_request({k: v for k, v in body.items() if k not in ("model", "messages")})
                c = await self.backend.achat(body["messages"], params)
            except Exception as exc:  # the request's failure is its line's, as in vLLM; the run goes on
                status, type_ = _status(exc)
                return self.refuse(cid, status, str(exc), type_, getattr(exc, "field", None))
            self.write(wire.batch_output_line(cid, 200, wire.completion_response(c, str(model))))
        finally:
            sem.release()

    async def all(self, path: Path, skip: set[str], limit: int) -> None:
        sem = asyncio.Semaphore(limit)
        tasks: set[asyncio.Task] = set()
        with open(path, "rb") as f:
            for n, req in enumerate(iter_json_lines(f), 1):
                if req is None:
                    raise ParamsError(f"{path.name}: line {n} is not a JSON object", field="input", value=n)
                if req.get("custom_id") in skip:
                    continue
                await sem.acquire()
                t = asyncio.create_task(self.one(req, sem))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)


def _run(coro: Any) -> None:
    """``asyncio.run`` here, or in a thread of its own when a loop already runs here (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    failure: list[BaseException] = []

    def work() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            failure.append(exc)

    t = threading.Thread(target=work, name="gsexplore-batch-run", daemon=True)
    t.start()
    t.join()
    if failure:
        raise failure[0]


def run_file(input: str | os.PathLike, output: str | os.PathLike, backend: Backend, *,  # noqa: A002
             served_names: list[str] | None = None, progress: bool = True) -> dict[str, int]:
    """Run every request of ``input`` not yet in ``output`` on ``backend``; returns the counts
    (``ran``, ``failed``, ``skipped``). ``served_names``: the model names a body may ask for
    (the backend's model is always one)."""
    src, out = Path(input), Path(output)
    if not src.exists():
        raise ParamsError(f"input file {str(src)!r} not found", field="input", value=str(src))
    skip = _finished(out)
    total = _count(src)
    served = {backend.model, *(served_names or [])}
    pbar = None
    if progress:
        from tqdm.auto import tqdm

        pbar = tqdm(total=max(0, total - len(skip)), desc="batch", unit="req", dynamic_ncols=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a", encoding="utf-8") as f:
        run = _Run(backend, served, f, pbar)
        try:
            _run(run.all(src, skip, 2 * max(1, int(backend.slots))))
        finally:
            f.flush()
            os.fsync(f.fileno())
            if pbar is not None:
                pbar.close()
    counts = {"ran": run.ran, "failed": run.failed, "skipped": len(skip)}
    if progress:
        print(msg("batch.run_done", n=number(run.ran), failed=number(run.failed), skipped=number(len(skip)),
                  out=str(out)), flush=True)
    return counts
