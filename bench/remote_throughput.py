"""RemoteBackend throughput against `gsexplore serve` with an artificial per-request latency.

Starts serve in this process (uvicorn in a thread, on 127.0.0.1) over a tiny model with
max_tokens=1, so that the server's own work is small and what is measured is the
client: how close 200 requests at concurrency 16 come to the ideal N/C x latency,
and the speed-up over a sequential loop of blocking posts like the seed's `requests`
example.

    python bench/remote_throughput.py                 # tiny-qwen3, 200 requests, C=16, 100 ms
    python bench/remote_throughput.py --model demo --max-tokens 8
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time

import httpx

import gsexplore as gs
from gsexplore.backends.remote import RemoteBackend
from gsexplore.server import ServerThread, create_app, load_backends

TARGET = 1.15


async def concurrent_run(backend: RemoteBackend, n: int, params: gs.Params) -> float:
    t0 = time.perf_counter()
    out = await asyncio.gather(*(backend.achat("Hola, cómo estás?", params) for i in range(n)))
    wall = time.perf_counter() - t0
    assert len(out) == n and all(c.finish_reason for c in out)
    return wall


def sequential_run(url: str, key: str, model: str, n: int, max_tokens: int) -> float:
    """A loop of blocking posts, one after the other, like the seed's example (httpx instead of requests)."""
    headers = {"Authorization": "Bearer " + key}
    t0 = time.perf_counter()
    with httpx.Client(timeout=60) as client:
        for i in range(n):
            data = {"model": model, "messages": [{"role": "user", "content": "Hola, cómo estás?"}],
                    "max_tokens": max_tokens, "temperature": 0.0}
            r = client.post(url + "/chat/completions", headers=headers, json=data)
            r.raise_for_status()
            r.json()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-qwen3", help="tiny-qwen3 (default), demo or a .gguf path")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--latency-ms", type=float, default=100.0)
    ap.add_argument("--max-tokens", type=int, default=1)
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads per instance")
    ap.add_argument("--sequential", type=int, default=40, help="requests in the sequential loop (extrapolated)")
    ap.add_argument("--strict", action="store_true", help=f"exit 1 when wall/ideal > {TARGET}")
    args = ap.parse_args(argv)

    key = secrets.token_urlsafe(24)
    latency = args.latency_ms / 1000.0
    t0 = time.perf_counter()
    # one llama.cpp thread: the model's work per request is tiny, and spinning worker threads would
    # compete with the server's and the client's Python threads for the cores
    backends = load_backends(args.model, instances=args.instances, n_threads=args.threads)
    load_s = time.perf_counter() - t0
    app = create_app(backends, api_keys={key}, artificial_latency_s=latency,
                     max_queue=args.requests + args.concurrency, served_model_names=["bench"])
    params = gs.Params(max_tokens=args.max_tokens, temperature=0.0)
    with ServerThread(app) as srv:
        remote = RemoteBackend(srv.url, api_key=key, model="bench", max_concurrency=args.concurrency,
                               max_retries=0)
        asyncio.run(concurrent_run(remote, args.concurrency, params))  # warm-up: connections, model caches
        wall = asyncio.run(concurrent_run(remote, args.requests, params))
        seq = sequential_run(srv.url, key, "bench", args.sequential, args.max_tokens)
        remote.close()

    ideal = args.requests / args.concurrency * latency
    ratio = wall / ideal
    seq_total = seq / args.sequential * args.requests
    print(f"gsexplore remote throughput: serve in-process on 127.0.0.1, model {args.model} "
          f"(loaded in {load_s:.1f} s, {args.instances} instance), max_tokens={args.max_tokens}, "
          f"artificial latency {args.latency_ms:g} ms per request")
    print("  (the seed's request repeated; a tiny model with small max_tokens keeps the server's work light,"
          " so this measures the client)")
    print(f"  async achat, {args.requests} requests, concurrency {args.concurrency}: {wall:.3f} s wall")
    print(f"  ideal N/C x latency = {args.requests}/{args.concurrency} x {latency:g} s = {ideal:.3f} s")
    print(f"  wall / ideal = {ratio:.3f}  (target <= {TARGET}: {'met' if ratio <= TARGET else 'MISSED'})")
    print(f"  sequential blocking posts (seed-style loop): {args.sequential} in {seq:.3f} s "
          f"-> {seq_total:.2f} s for {args.requests} (extrapolated)")
    print(f"  speed-up of async achat over the sequential loop: {seq_total / wall:.1f}x")
    return 1 if args.strict and ratio > TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
