"""A classroom on one machine: is every student served fairly, and does the server hold up a whole class?

Three scenarios against ``gsexplore serve --make-keys`` (a subprocess on 127.0.0.1, one key per student):

1. **flood**: one student sends 16 long requests (160 tokens) at once while four others each ask one short
   question (16 tokens); the short questions' p95 latency under the flood against the same questions on
   an idle server (target: <= 4x idle; FIFO gave 41x).
2. **exercise**: 30 students send the same exercise (a ~800-token lesson context plus a short question) at
   once: aggregate tokens/s, time to first token p50/p95, and prompt tokens the engine evaluated (a prefix
   shared across slots is evaluated once); side by side with llama.cpp's ``llama-server -np`` at the same
   slots when ``LLAMA_SERVER`` points at one (targets: TTFT p95 <= 0.5x llama-server's, throughput >= 1.0x).
3. **soak**: 5,000 mixed requests from 30 keys (chats, streams the client drops, n>1, guided, malformed
   bodies, wrong keys): no 5xx, and the server's RSS after warm-up and at the end (target: < 50 MiB growth).

    .venv/bin/python bench/classroom.py [--model demo] [--parallel 8] [--only flood exercise soak]
    .venv/bin/python bench/classroom.py --quick      # a few requests of each: checks the script, no numbers
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from serve_load import _free_port, _llama_server, _wait_ready, llama_server_flags  # noqa: E402  (bench/ is the script's folder)

ROOT = Path(__file__).resolve().parent.parent
LESSON = ("Lección: el ciclo del agua. El agua de los océanos, ríos y lagos se evapora con el calor del sol; "
          "el vapor sube, se enfría y se condensa en nubes; cuando las gotas crecen, caen como lluvia, nieve "
          "o granizo; parte se infiltra en el suelo y alimenta los acuíferos, parte escurre hacia los ríos "
          "y vuelve al mar. Las plantas devuelven vapor por transpiración. ")


def pct(v: list[float], q: int) -> float:
    v = sorted(v)
    return statistics.quantiles(v, n=100, method="inclusive")[q - 1] if len(v) > 1 else v[0]


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """``gsexplore serve`` with N fresh labelled keys, in a subprocess."""

    def __init__(self, model: str, parallel: int, students: int, n_ctx: int, extra: list[str] = ()) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="gs-classroom-"))
        self.port = _free_port()
        keys = self.dir / "claves.txt"
        cmd = [sys.executable, "-m", "gsexplore.cli", "serve", "--model", model, "--port", str(self.port),
               "--parallel", str(parallel), "--n-ctx", str(n_ctx), "--max-queue", "512", "--log-level", "warning",
               "--make-keys", str(students), "--api-key-file", str(keys), *extra]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.base = f"http://127.0.0.1:{self.port}"
        _wait_ready(f"{self.base}/health", self.proc)
        self.keys = [line.split()[0] for line in keys.read_text().splitlines() if line and not line.startswith("#")]

    def health(self) -> dict:
        import httpx

        return httpx.get(f"{self.base}/health", timeout=30).json()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


async def ask(http, base: str, key: str | None, text: str, tokens: int, *, stream: bool = True,
              model: str = "Qwen/Qwen3-1.7B", **extra) -> tuple[float, float, int]:
    """One streamed request: (latency, time to first token, status)."""
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": tokens,
            "ignore_eos": True, "stream": stream, **extra}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    t0 = time.perf_counter()
    ttft = None
    async with http.stream("POST", f"{base}/v1/chat/completions", json=body, headers=headers) as r:
        async for line in r.aiter_lines():
            if ttft is None and line.startswith("data: ") and '"content"' in line:
                ttft = time.perf_counter() - t0
        status = r.status_code
    return time.perf_counter() - t0, ttft or 0.0, status


def client(n: int):
    import httpx

    limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=n + 8)
    return httpx.AsyncClient(timeout=900, limits=limits)


# --- 1. flood --------------------------------------------------------------------------
async def flood(srv: Server, long_n: int, long_tokens: int, short_tokens: int, rounds: int) -> dict:
    async with client(long_n + 8) as http:
        await ask(http, srv.base, srv.keys[0], "hola", 2)  # warm-up
        idle: list[float] = []
        busy: list[float] = []
        for r in range(rounds):
            got = await asyncio.gather(*[ask(http, srv.base, srv.keys[1 + i], f"Pregunta corta {i}.", short_tokens)
                                         for i in range(4)])
            idle += [g[0] for g in got]
            floods = [asyncio.create_task(ask(http, srv.base, srv.keys[0], f"Escribí un cuento largo {j}.",
                                              long_tokens)) for j in range(long_n)]
            while (await http.get(f"{srv.base}/health")).json()["pending"] < long_n:  # the flood is in first
                await asyncio.sleep(0.05)
            got = await asyncio.gather(*[ask(http, srv.base, srv.keys[1 + i], f"Pregunta corta {i}.", short_tokens)
                                         for i in range(4)])
            busy += [g[0] for g in got]
            await asyncio.gather(*floods)
    return {"idle_p95": pct(idle, 95), "flood_p95": pct(busy, 95), "ratio": pct(busy, 95) / pct(idle, 95)}


# --- 2. the same exercise from every student ----------------------------------------------
async def exercise(base: str, keys: list[str | None], students: int, lesson_words: int, tokens: int,
                   model: str = "Qwen/Qwen3-1.7B") -> dict:
    lesson = " ".join((LESSON * 40).split()[:lesson_words])
    async with client(students) as http:
        await ask(http, base, keys[0], "hola", 2, model=model)  # warm-up
        t0 = time.perf_counter()
        got = await asyncio.gather(*[ask(http, base, keys[i % len(keys)],
                                         f"{lesson}\n\nPregunta: ¿qué es la condensación?", tokens, model=model,
                                         temperature=0.8, seed=i) for i in range(students)])
        wall = time.perf_counter() - t0
    ttft = [g[1] for g in got]
    return {"tok_s": students * tokens / wall, "ttft50": pct(ttft, 50), "ttft95": pct(ttft, 95),
            "ok": sum(g[2] == 200 for g in got)}


def prompt_tokens_evaluated(srv: Server) -> int:
    return sum(int(e.get("prompt_tokens_decoded", 0)) for e in srv.health().get("engines", []))


# --- 3. soak -----------------------------------------------------------------------------
async def soak(srv: Server, total: int, warmup: int, concurrency: int) -> dict:
    import httpx

    rng = random.Random(0)
    statuses: dict[int, int] = {}
    rss: dict[str, float] = {}

    async def one(http, i: int) -> None:
        key = srv.keys[i % len(srv.keys)]
        kind = rng.choice(["chat", "chat", "stream", "drop", "n", "guided", "malformed", "wrong_key"])
        headers = {"Authorization": f"Bearer {key if kind != 'wrong_key' else 'not-a-key'}"}
        url = f"{srv.base}/v1/chat/completions"
        body: dict = {"messages": [{"role": "user", "content": f"Pregunta {i}"}], "max_tokens": 8}
        try:
            if kind == "malformed":
                r = await http.post(url, content=b'{"messages": [', headers=headers)
                status = r.status_code
            elif kind in ("stream", "drop"):
                async with http.stream("POST", url, json={**body, "stream": True}, headers=headers) as r:
                    status = r.status_code
                    async for line in r.aiter_lines():
                        if kind == "drop" and line.startswith("data: "):
                            break  # the client leaves mid-answer
            else:
                if kind == "n":
                    body["n"] = 3
                elif kind == "guided":
                    body["guided_choice"] = ["sí", "no"]
                r = await http.post(url, json=body, headers=headers)
                status = r.status_code
        except httpx.HTTPError:
            status = -1
        statuses[status] = statuses.get(status, 0) + 1

    async with client(concurrency) as http:
        sem = asyncio.Semaphore(concurrency)

        async def bounded(i: int) -> None:
            async with sem:
                await one(http, i)

        await asyncio.gather(*[bounded(i) for i in range(warmup)])
        rss["warm"] = rss_mib(srv.proc.pid)
        await asyncio.gather(*[bounded(i) for i in range(warmup, total)])
        rss["end"] = rss_mib(srv.proc.pid)
    return {"statuses": dict(sorted(statuses.items())), "rss_warm": rss["warm"], "rss_end": rss["end"],
            "growth": rss["end"] - rss["warm"], "server_errors": sum(n for s, n in statuses.items() if s >= 500)}


def llama_server_exercise(binary: str, model: str, parallel: int, n_ctx: int, students: int, lesson_words: int,
                          tokens: int) -> dict:
    from gsexplore.models import resolve

    port = _free_port()
    cmd = [binary, "-m", str(resolve(model)), "--host", "127.0.0.1", "--port", str(port), "-np", str(parallel),
           "-c", str(n_ctx * parallel), "-fa", "on", "--metrics", *llama_server_flags(students)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/health", proc)
        out = asyncio.run(exercise(f"http://127.0.0.1:{port}", [None], students, lesson_words, tokens, model="x"))
        import httpx

        for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text.splitlines():
            if line.startswith("llamacpp:prompt_tokens_total"):
                out["prompt_evaluated"] = int(float(line.split()[-1]))
        return out
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--only", nargs="+", default=["flood", "exercise", "soak"])
    ap.add_argument("--quick", action="store_true", help="a few requests of each scenario (checks the script)")
    a = ap.parse_args()
    q = a.quick
    cfg = {"long_n": 4 if q else 16, "long_tokens": 24 if q else 160, "short_tokens": 4 if q else 16,
           "rounds": 1 if q else 3, "students": 6 if q else 30, "lesson_words": 60 if q else 560,
           "ex_tokens": 8 if q else 32, "soak": 60 if q else 5000, "warmup": 20 if q else 500}
    n_ctx = 256 if q else 1280
    print(f"model {a.model}; --parallel {a.parallel}; {'QUICK: not a measurement' if q else ''}")

    if "flood" in a.only:
        srv = Server(a.model, a.parallel, 5, n_ctx)
        try:
            r = asyncio.run(flood(srv, cfg["long_n"], cfg["long_tokens"], cfg["short_tokens"], cfg["rounds"]))
        finally:
            srv.close()
        print(f"flood: {cfg['long_n']} x {cfg['long_tokens']} tokens from one key; 4 short questions of "
              f"{cfg['short_tokens']} tokens: p95 idle {r['idle_p95']:.2f} s, under the flood "
              f"{r['flood_p95']:.2f} s ({r['ratio']:.1f}x idle; target <= 4x)")

    if "exercise" in a.only:
        srv = Server(a.model, a.parallel, cfg["students"], n_ctx)
        try:
            before = prompt_tokens_evaluated(srv)
            r = asyncio.run(exercise(srv.base, srv.keys, cfg["students"], cfg["lesson_words"], cfg["ex_tokens"]))
            r["prompt_evaluated"] = prompt_tokens_evaluated(srv) - before
        finally:
            srv.close()
        rows = [("gsexplore serve", r)]
        binary = _llama_server()
        if binary:
            rows.append(("llama-server", llama_server_exercise(binary, a.model, a.parallel, n_ctx, cfg["students"],
                                                               cfg["lesson_words"], cfg["ex_tokens"])))
        else:
            print("llama-server not found (bench/build_llama_server.sh, or LLAMA_SERVER=/path): its column is skipped")
        print(f"exercise: {cfg['students']} students, one ~{cfg['lesson_words']}-word lesson + a question, "
              f"{cfg['ex_tokens']} tokens each")
        print(f"{'server':>16} {'tok/s':>7} {'ttft50':>7} {'ttft95':>7} {'prompt evaluated':>17} {'ok':>4}")
        for name, x in rows:
            print(f"{name:>16} {x['tok_s']:7.1f} {x['ttft50']:7.2f} {x['ttft95']:7.2f} "
                  f"{x.get('prompt_evaluated', -1):17d} {x['ok']:4d}")
        if len(rows) == 2:
            ours, ref = rows[0][1], rows[1][1]
            print(f"{'ratio':>16} {ours['tok_s'] / ref['tok_s']:7.2f} {'':7} {ours['ttft95'] / ref['ttft95']:7.2f}"
                  "   (targets: throughput >= 1.0, ttft p95 <= 0.5)")

    if "soak" in a.only:
        srv = Server(a.model, a.parallel, 30, 256)
        try:
            r = asyncio.run(soak(srv, cfg["soak"], cfg["warmup"], concurrency=2 * a.parallel))
        finally:
            srv.close()
        print(f"soak: {cfg['soak']} mixed requests from 30 keys; statuses {json.dumps(r['statuses'])}; "
              f"5xx {r['server_errors']}; RSS {r['rss_warm']:.0f} MiB after {cfg['warmup']} requests, "
              f"{r['rss_end']:.0f} MiB at the end ({r['growth']:+.0f} MiB; target < 50)")


if __name__ == "__main__":
    main()
