"""Batch files: rows/s of exporting a sweep plan and of importing its results, for N requests (default 100,000).

A plan of settings x prompts x repeats = N requests on a RemoteBackend that is never
contacted (no model, no network); the export writes requests.jsonl and its plan file;
a results file in vLLM's output format (one short answer per request) is written, then
imported into a Parquet store, then imported again (everything skipped). Prints the
time and requests/s of each step, the files' sizes and the peak RSS growth.

    .venv/bin/python bench/batch.py [--requests 100000] [--repeats 20] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _results(requests: Path, out: Path) -> int:
    """A vLLM results file answering every request of ``requests`` (streamed)."""
    n = 0
    with open(requests, encoding="utf-8") as f, open(out, "w", encoding="utf-8") as o:
        for line in f:
            req = json.loads(line)
            body = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": 0,
                    "model": req["body"]["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Santiago de Chile.",
                                                         "reasoning_content": None, "tool_calls": []},
                                 "logprobs": None, "finish_reason": "stop", "stop_reason": None}],
                    "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}}
            o.write(json.dumps({"id": f"vllm-{uuid.uuid4().hex}", "custom_id": req["custom_id"],
                                "response": {"status_code": 200, "request_id": f"vllm-batch-{n}", "body": body},
                                "error": None}) + "\n")
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--keep", help="write the files here (default: a temporary folder)")
    args = ap.parse_args()

    from gsexplore.backends.remote import RemoteBackend
    from gsexplore.batch import load_batch
    from gsexplore.params import Params
    from gsexplore.sweep import plan

    # settings x prompts x repeats = requests: 10 temperatures x 5 top_k, prompts to fill the rest
    settings = 50
    prompts = max(1, math.ceil(args.requests / (settings * args.repeats)))
    remote = RemoteBackend("http://127.0.0.1:9/v1", model="Qwen/Qwen3-1.7B")
    texts = [f"Pregunta número {i}: ¿cuál es la capital de Chile?" for i in range(prompts)]
    grid = {"temperature": [round(0.2 * i, 1) for i in range(10)], "top_k": [5, 10, 20, 50, 100]}

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(args.keep or tmp)
        d.mkdir(parents=True, exist_ok=True)
        rss0 = _rss_mb()
        t0 = time.perf_counter()
        sp = plan(remote, texts, grid=grid, repeats=args.repeats, base=Params(max_tokens=16))
        t_plan = time.perf_counter() - t0
        t0 = time.perf_counter()
        e = sp.to_batch(d / "requests.jsonl", progress=False)
        t_export = time.perf_counter() - t0
        n = _results(d / "requests.jsonl", d / "results.jsonl")
        t0 = time.perf_counter()
        df = load_batch(d / "results.jsonl", store=d / "study.parquet", plan=d / "requests.jsonl", progress=False)
        t_import = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = load_batch(d / "results.jsonl", store=d / "study.parquet", plan=d / "requests.jsonl", progress=False)
        t_again = time.perf_counter() - t0
        mb = {p.name: round(p.stat().st_size / 2**20, 1) for p in sorted(d.iterdir()) if p.is_file()}
        print(f"requests: {e.n_requests:,} ({settings} settings x {prompts} prompts x {args.repeats} repeats)")
        print(f"plan:      {t_plan:8.2f} s")
        print(f"export:    {t_export:8.2f} s  {e.n_requests / t_export:10,.0f} requests/s")
        print(f"import:    {t_import:8.2f} s  {len(df) / t_import:10,.0f} rows/s ({len(df):,} rows)")
        print(f"re-import: {t_again:8.2f} s  {n / t_again:10,.0f} lines/s (skipped {again.attrs['batch']['skipped']:,})")
        print(f"files (MiB): {mb}")
        print(f"peak RSS growth: {_rss_mb() - rss0:,.0f} MiB")
        assert len(df) == e.n_requests == n and again.attrs["batch"]["imported"] == 0


if __name__ == "__main__":
    main()
