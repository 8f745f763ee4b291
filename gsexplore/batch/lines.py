"""Reading batch result lines, as OpenAI's Batch API and vLLM's ``run-batch`` write them (shapes: `gsexplore.wire`).

Input, one request a line (vLLM's ``BatchRequestInput``)::

    {"custom_id": "3f2a9c1b7d4e-0", "method": "POST", "url": "/v1/chat/completions", "body": {...}}

Output, one result a line, in any order (vLLM's ``BatchRequestOutput``, OpenAI's output and error files)::

    {"id": "vllm-...", "custom_id": "...", "response": {"status_code": 200, "request_id": "...", "body": {...}},
     "error": null}

A failed request has ``status_code`` >= 400 and its error in ``response.body``
(OpenAI) or in ``error`` with ``body`` null (vLLM: the ``{"error": {...}}`` shape of
`gsexplore.wire.error_body`, or a plain string), or ``response`` null and
``error: {"code", "message"}`` (OpenAI's error file).
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

from ..backends._http import error_for_status, error_message
from ..errors import APIError

__all__ = ["parse_custom_id", "is_success", "line_error", "engine_of", "iter_json_lines"]

_CUSTOM_ID = re.compile(r"^([0-9a-f]{12})-(\d+)$")  # gsexplore.sweep.export.custom_id


def parse_custom_id(cid: Any) -> tuple[str, int] | None:
    """(cell id, repeat) of a custom_id the export wrote, else None."""
    m = _CUSTOM_ID.match(cid) if isinstance(cid, str) else None
    return (m.group(1), int(m.group(2))) if m else None


def is_success(line: dict[str, Any]) -> bool:
    """Whether a result line carries a chat completion."""
    resp = line.get("response")
    if not isinstance(resp, dict) or line.get("error"):
        return False
    status = resp.get("status_code")
    body = resp.get("body")
    return (status is None or 200 <= int(status) < 300) and isinstance(body, dict) and "choices" in body


def line_error(line: dict[str, Any]) -> APIError:
    """The APIError of a failed result line (the same classes and messages as an online request's)."""
    resp = line.get("response") if isinstance(line.get("response"), dict) else {}
    status = resp.get("status_code")
    body, err = resp.get("body"), line.get("error")
    if isinstance(body, dict) and "error" in body:
        payload: Any = body
    elif isinstance(err, dict):
        payload = err if ("error" in err or "message" in err) else {"error": err}
    elif isinstance(err, str) and err:
        payload = {"error": {"message": err}}
    else:
        payload = {"error": {"message": f"the result line has no response body (status {status})"}}
    headers = {"x-request-id": resp["request_id"]} if resp.get("request_id") else {}
    if isinstance(status, int) and status >= 400:
        return error_for_status(status, json.dumps(payload, ensure_ascii=False), headers)
    message, param = error_message(payload)
    inner = payload.get("error") if isinstance(payload.get("error"), dict) else payload
    code = inner.get("code") if isinstance(inner, dict) else None
    text = f"{code}: {message}" if isinstance(code, str) else message
    return APIError(text + (f" (param: {param})" if param else ""), request_id=resp.get("request_id"),
                    body=payload)


def engine_of(line: dict[str, Any]) -> str:
    """Which engine wrote a result line, from its id: vllm, openai, gsexplore, ray (examples/ray_batch.py),
    else unknown."""
    lid = str(line.get("id") or "")
    if lid.startswith("vllm-"):
        return "vllm"
    if lid.startswith("batch_req_"):
        return "openai"
    if lid.startswith("gsexplore-"):
        return "gsexplore"
    if lid.startswith("ray-"):
        return "ray"
    return "unknown"


def iter_json_lines(f: Any, on_bytes: Any = None) -> Iterator[dict[str, Any] | None]:
    """The objects of a JSONL file opened in binary; None for a line that is not complete JSON
    (a file cut short). ``on_bytes(chunk)`` sees every byte (for the file's sha256)."""
    for raw in f:
        if on_bytes is not None:
            on_bytes(raw)
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            yield None
            continue
        yield obj if isinstance(obj, dict) else None
