"""RemoteBackend throughput against `gsexplore serve` with an artificial per-request latency.

Starts serve in this process (uvicorn in a thread, on 127.0.0.1) over the tiny Qwen3 model
with max_tokens=1, so that the server's own work is small and what is measured is the
client: how close 200 requests at concurrency 16 come to the ideal N/C x latency, and
the speed-up over a sequential loop of blocking posts like the seed's `requests` example.

    python bench/remote_throughput.py                  # in-process serve, tiny-qwen3, 200 requests, C=16, 100 ms
    python bench/remote_throughput.py --server-process # serve as a separate process (`gsexplore serve`)
    python bench/remote_throughput.py --model demo --max-tokens 8

In-process, the server and the client share one interpreter (one GIL), so the figure
includes the server's CPU too; the load average printed says how busy the machine was.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gsexplore as gs  # noqa: E402
from gsexplore.backends.remote import RemoteBackend  # noqa: E402
from gsexplore.serve import ServerThread, create_app, load_backends  # noqa: E402

TARGET = 1.15
PROMPT = "Hola, cómo estás?"


async def concurrent_run(backend: RemoteBackend, n: int, warm_up: int, params: gs.Params) -> tuple[float, float]:
    """(wall s, CPU s of this process) for n concurrent achat calls, after a warm-up in the same event loop."""
    await asyncio.gather(*(backend.achat(PROMPT, params) for _ in range(warm_up)))  # connections, caches
    cpu0, t0 = time.process_time(), time.perf_counter()
    out = await asyncio.gather(*(backend.achat(PROMPT, params) for _ in range(n)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert len(out) == n and all(c.finish_reason for c in out)
    return wall, cpu


def sequential_run(url: str, key: str, model: str, n: int, max_tokens: int) -> float:
    """A loop of blocking posts, one after the other, like the seed's example (httpx instead of requests)."""
    headers = {"Authorization": "Bearer " + key}
    data = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
            "temperature": 0.0}
    t0 = time.perf_counter()
    with httpx.Client(timeout=60) as client:
        for _ in range(n):
            r = client.post(url + "/chat/completions", headers=headers, json=data)
            r.raise_for_status()
            r.json()
    return time.perf_counter() - t0


class _ServeProcess:
    """`python -m gsexplore.cli serve` on a free port, keys from a file."""

    def __init__(self, args: argparse.Namespace, key: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._keyfile = tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False)
        self._keyfile.write(key + "\n")
        self._keyfile.close()
        cmd = [sys.executable, "-m", "gsexplore.cli", "serve", "--model", args.model, "--port", str(self.port),
               "--api-key-file", self._keyfile.name, "--served-model-name", "bench",
               "--instances", str(args.instances), "--n-threads", str(args.threads), "--max-queue", str(args.requests + args.concurrency),
               "--artificial-latency-ms", str(args.latency_ms), "--log-level", "warning"]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}/v1"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("gsexplore serve did not start")
            time.sleep(0.1)

    def __enter__(self) -> _ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        os.unlink(self._keyfile.name)


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
    ap.add_argument("--server-process", action="store_true", help="run serve as a separate process")
    ap.add_argument("--strict", action="store_true", help=f"exit 1 when wall/ideal > {TARGET}")
    args = ap.parse_args(argv)

    key = secrets.token_urlsafe(24)
    latency = args.latency_ms / 1000.0
    params = gs.Params(max_tokens=args.max_tokens, temperature=0.0)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    if args.server_process:
        server = _ServeProcess(args, key)
        where = "serve in a separate process"
    else:
        # one llama.cpp thread: the model's work per request is tiny, and spinning worker threads
        # would compete with the server's and the client's Python threads for the cores
        backends = load_backends(args.model, instances=args.instances, n_threads=args.threads)
        app = create_app(backends, api_keys={key}, artificial_latency_s=latency,
                         max_queue=args.requests + args.concurrency, served_model_names=["bench"])
        server = ServerThread(app).start()
        where = "serve in-process (uvicorn thread)"
    start_s = time.perf_counter() - t0
    try:
        remote = RemoteBackend(server.url, api_key=key, model="bench", max_concurrency=args.concurrency,
                               max_retries=0)
        wall, cpu = asyncio.run(concurrent_run(remote, args.requests, args.concurrency, params))
        seq = sequential_run(server.url, key, "bench", args.sequential, args.max_tokens)
        remote.close()
    finally:
        server.__exit__(None, None, None)

    ideal = args.requests / args.concurrency * latency
    ratio = wall / ideal
    seq_total = seq / args.sequential * args.requests
    print(f"gsexplore remote throughput: {where} on 127.0.0.1, model {args.model} "
          f"({args.instances} instance, ready in {start_s:.1f} s), max_tokens={args.max_tokens}, "
          f"artificial latency {args.latency_ms:g} ms per request; "
          f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} CPUs")
    print("  the seed's request, repeated; a tiny model with small max_tokens keeps the server's work light,"
          " so this measures the client")
    print(f"  async achat, {args.requests} requests, concurrency {args.concurrency}: {wall:.3f} s wall, "
          f"{cpu / args.requests * 1000:.2f} ms CPU per request in this process")
    print(f"  ideal N/C x latency = {args.requests}/{args.concurrency} x {latency:g} s = {ideal:.3f} s")
    rounds = -(-args.requests // args.concurrency)
    print(f"  wall / ideal = {ratio:.3f}  (target <= {TARGET}: {'met' if ratio <= TARGET else 'MISSED'}; "
          f"{args.concurrency} slots need at least {rounds} x {latency:g} s = {rounds * latency:.3f} s, "
          f"a floor of {rounds * latency / ideal:.3f})")
    print(f"  sequential blocking posts (seed-style loop): {args.sequential} in {seq:.3f} s "
          f"-> {seq_total:.2f} s for {args.requests} (extrapolated)")
    print(f"  speed-up of async achat over the sequential loop: {seq_total / wall:.1f}x")
    return 1 if args.strict and ratio > TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
