"""Run a gsexplore batch file with Ray Data against OpenAI-compatible endpoints; write results gs.load_batch imports.

    pip install 'gsexplore[ray]'
    gsexplore sweep study.yaml --out study --to-batch requests.jsonl --batch-model Qwen/Qwen3-1.7B
    python examples/ray_batch.py requests.jsonl results.jsonl \
        --url http://gpu-01:8000/v1 --url http://gpu-02:8000/v1      # vLLM or `gsexplore serve` servers
    gsexplore sweep study.yaml --out study --from-batch results.jsonl

Each endpoint gets its share of the requests (by custom_id) through one
`HttpRequestProcessorConfig` processor; the shares are joined and written as
vLLM's batch output lines (``{"id", "custom_id", "response": {"status_code",
"request_id", "body"}, "error"}``). The key, if the servers need one, comes from
the environment variable named by --api-key-env (default GS_API_KEY), never from
the command line. This script needs only Ray; gsexplore imports the results.
"""
from __future__ import annotations

import argparse
import json
import os
import uuid
import zlib
from typing import Any

import numpy as np
import ray
from ray.data.llm import HttpRequestProcessorConfig, build_processor


def plain(obj: Any) -> Any:
    """Ray rows as JSON: numpy arrays as lists, and the nulls Arrow adds for keys a row did not have dropped
    (read_json unifies the rows' schemas), so each body is sent as the export wrote it."""
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def result_line(row: dict[str, Any]) -> dict[str, Any]:
    """A processed row as one line of vLLM's batch output."""
    resp = plain(row["http_response"]) or {}
    ok = isinstance(resp, dict) and "choices" in resp
    err = resp.get("error") if isinstance(resp, dict) and isinstance(resp.get("error"), dict) else {}
    status = 200 if ok else (err.get("code") if isinstance(err.get("code"), int) else 500)
    return {"id": f"ray-{uuid.uuid4().hex}", "custom_id": row["custom_id"],
            "response": {"status_code": status, "request_id": f"ray-batch-{uuid.uuid4().hex}", "body": resp},
            "error": None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("requests", help="the batch file gsexplore exported")
    ap.add_argument("results", help="the results file to write (JSONL)")
    ap.add_argument("--url", action="append", required=True, help="an endpoint's base URL, e.g. http://host:8000/v1"
                    " (repeat for several)")
    ap.add_argument("--api-key-env", default="GS_API_KEY", help="environment variable holding the key, if any")
    ap.add_argument("--concurrency", type=int, default=1, help="Ray workers per endpoint")
    ap.add_argument("--batch-size", type=int, default=16, help="requests a worker sends at once")
    ap.add_argument("--qps", type=float, default=None, help="requests per second per worker (rate limits)")
    args = ap.parse_args()

    ray.init(ignore_reinit_error=True)
    key = os.environ.get(args.api_key_env)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    requests = ray.data.read_json(args.requests)  # one row per line: custom_id, method, url, body
    n = len(args.url)
    parts = []
    for i, base in enumerate(args.url):
        share = requests.filter(lambda r, i=i: zlib.crc32(r["custom_id"].encode()) % n == i) if n > 1 else requests
        processor = build_processor(
            HttpRequestProcessorConfig(url=base.rstrip("/") + "/chat/completions", headers=headers,
                                       qps=args.qps, concurrency=args.concurrency, batch_size=args.batch_size),
            preprocess=lambda row: {"custom_id": row["custom_id"], "payload": plain(row["body"])},
            postprocess=lambda row: {"line": json.dumps(result_line(row), ensure_ascii=False)},
        )
        parts.append(processor(share))
    results = parts[0].union(*parts[1:]) if n > 1 else parts[0]
    written = 0
    with open(args.results, "w", encoding="utf-8") as f:
        for row in results.iter_rows():  # streamed: the driver never holds the whole result
            f.write(row["line"] + "\n")
            written += 1
    print(f"{written} results in {args.results}: import them with gs.load_batch({args.results!r}, store=...)")


if __name__ == "__main__":
    main()
