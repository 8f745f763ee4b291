"""gs.sweep: prefix-cache-friendly local order vs re-evaluating the prompt, and store read memory.

1. A local sweep of 20 settings (temperature x top_k) over one ~1,000-token prompt on
   the demo model (SmolLM2-135M-Instruct), max_tokens small, run twice:
   * as gs.sweep runs it: one prompt's settings together, so llama.cpp keeps the
     prompt in its KV cache and evaluates it once;
   * with the cache reset before every request (``Llama.reset()``), so the prompt
     is evaluated every time.
   Prints both times and their ratio.
2. The peak memory of `gsexplore.store.load` building a 10,000-row DataFrame from a
   JSONL store and from a Parquet store (fresh subprocesses: the time and the growth
   of the peak RSS, which also counts Arrow's buffers, in one; tracemalloc's peak of
   Python allocations in another, since tracing slows allocation down).

    .venv/bin/python bench/sweep.py [--tokens 8] [--prompt-tokens 1000] [--rows 10000] [--model demo]
        [--n-threads N] [--skip-prefix]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

PARAGRAPH = (
    "La cordillera de los Andes recorre el borde occidental de Sudamérica desde Venezuela hasta la "
    "Patagonia. Sus valles guardan ciudades antiguas, terrazas de cultivo y caminos que conectaban "
    "pueblos lejanos. En la sección {i} del informe se describen el clima, los ríos y la vida "
    "cotidiana de una comunidad de la región número {i}, con datos de lluvia, temperatura y cosechas. "
)


def long_prompt(backend, target: int = 1000) -> tuple[str, int]:
    """A Spanish text of about `target` prompt tokens (counted with the model's tokenizer)."""
    text = "Resume en una frase el siguiente informe.\n\n"
    i = 1
    while True:
        candidate = text + PARAGRAPH.format(i=i)
        n = len(backend.prompt_token_ids(candidate))
        if n > target:
            return text, len(backend.prompt_token_ids(text))
        text, i = candidate, i + 1


def bench_prefix(model: str, tokens: int, prompt_tokens: int, n_threads: int | None) -> None:
    from gsexplore.backends.base import Backend
    from gsexplore.backends.local import LocalBackend
    from gsexplore.params import Params
    from gsexplore.sweep import sweep

    local = LocalBackend(model, n_threads=n_threads)

    def forget() -> None:
        local.clear_cache()  # nothing of the last prompt is reused

    class ResetEveryTime(Backend):
        """The same backend with llama.cpp's KV cache emptied before each request (one at a time)."""

        name, model = local.name, local.model
        slots = 1  # one request at a time, each from a cold cache

        def events(self, messages, params, *, streaming):
            forget()
            yield from local.events(messages, params, streaming=streaming)

    prompt, n_prompt = long_prompt(local, prompt_tokens)
    grid = {"temperature": [0.2, 0.5, 0.8, 1.1, 1.4], "top_k": [10, 40, 100, -1]}
    base = Params(max_tokens=tokens)
    local.chat("Hola", base)  # load and warm up
    print(f"20 settings, one {n_prompt}-token prompt, max_tokens={tokens}, model {local.model}, "
          f"n_threads={local.info()['n_threads']}, slots={local.slots}:")
    times = {}
    for label, backend in (("prefix-cache order (gs.sweep)", local), ("prompt re-evaluated", ResetEveryTime())):
        forget()  # both start cold: the friendly order evaluates the prompt once
        t0 = time.perf_counter()
        df = sweep(backend, [prompt], grid=grid, base=base, progress=False)
        times[label] = time.perf_counter() - t0
        assert len(df) == 20 and df.error_type.isna().all(), df.error_message.dropna().head()
        print(f"  {label:30s} {times[label]:7.2f} s  ({times[label] / 20 * 1000:6.0f} ms/request)", flush=True)
    ratio = times["prompt re-evaluated"] / times["prefix-cache order (gs.sweep)"]
    print(f"  re-evaluating the prompt every time is {ratio:.1f}x slower than the prefix-cache-friendly order")


CHILD = """
import json, os, sys, time, tracemalloc
sys.path.insert(0, {root!r})
def rss_peak_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1])
import pandas, pyarrow.parquet
from gsexplore.store import load
before = rss_peak_kb()
if {traced}:
    tracemalloc.start()  # slows allocation-heavy code down: timed in a separate run
t0 = time.perf_counter()
df = load({path!r})
dt = time.perf_counter() - t0
peak = tracemalloc.get_traced_memory()[1] if {traced} else 0
print(json.dumps({{"rows": len(df), "cols": df.shape[1], "seconds": dt, "tracemalloc_peak_mb": peak / 2**20,
                  "rss_growth_mb": (rss_peak_kb() - before) / 1024,
                  "frame_mb": df.memory_usage(deep=True).sum() / 2**20}}))
"""


def bench_memory(n_rows: int) -> None:
    import random

    from gsexplore.params import Params
    from gsexplore.store import Store, compact

    rng = random.Random(0)
    vocab = "el la de que y en un una es se no por con para su al lo como más pero sus le ya o".split()
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / "s.jsonl", Path(tmp) / "s.parquet"]
        for path in paths:
            st = Store(path)
            batch = []
            for i in range(n_rows):
                p = Params(temperature=round(rng.uniform(0, 2), 2), top_k=rng.choice([5, 50, -1]), max_tokens=64,
                           seed=i)
                content = " ".join(rng.choice(vocab) for _ in range(60))
                batch.append({"sweep_id": "bench", "cell_id": f"{i // 5:012x}", "repeat": i % 5, "choice": 0,
                              "backend": "local", "model": "demo", "prompt_id": f"p{i % 10}",
                              "prompt": "¿Cuál es la capital de Chile?", "expected": "Santiago",
                              "messages": json.dumps([{"role": "user", "content": "¿Cuál es la capital de Chile?"}]),
                              **{k: v for k, v in p.to_row().items() if k != "model"},
                              "content": content, "finish_reason": "length", "prompt_tokens": 20,
                              "completion_tokens": 64, "total_tokens": 84, "latency_s": 0.5,
                              "tokens_per_s": 128.0, "timestamp": "2025-01-01T00:00:00+00:00",
                              "run_id": "r", "row_id": f"{i:032x}"})
                if len(batch) == 500:
                    st.append(batch)
                    batch = []
            st.append(batch)
            st.close()
            if path.suffix == ".parquet":
                compact(path)
            r: dict = {}
            for traced in (False, True):
                code = CHILD.format(root=str(ROOT), path=str(path), traced=traced)
                out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
                if out.returncode:
                    sys.exit(f"measuring load({path.name}) failed:\n{out.stderr}")
                got = json.loads(out.stdout.strip().splitlines()[-1])
                r.update(got if not traced else {"tracemalloc_peak_mb": got["tracemalloc_peak_mb"]})
            size = path.stat().st_size / 2**20
            print(f"load({path.name}) {r['rows']:,} rows x {r['cols']} cols from {size:.1f} MB: "
                  f"{r['seconds']:.2f} s, peak Python allocations {r['tracemalloc_peak_mb']:.0f} MB "
                  f"(tracemalloc), peak RSS growth {r['rss_growth_mb']:.0f} MB, "
                  f"DataFrame {r['frame_mb']:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=8, help="max_tokens of each request")
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--prompt-tokens", type=int, default=1000, help="length of the shared prompt")
    ap.add_argument("--model", default="demo")
    ap.add_argument("--n-threads", type=int, default=None, help="llama.cpp threads (default: its own)")
    ap.add_argument("--skip-prefix", action="store_true", help="only the memory measurement")
    args = ap.parse_args()
    if not args.skip_prefix:
        bench_prefix(args.model, args.tokens, args.prompt_tokens, args.n_threads)
    bench_memory(args.rows)


if __name__ == "__main__":
    main()
