"""LocalBackend's tokens/s against raw llama_cpp.Llama.create_chat_completion.

Same model (the offline demo, SmolLM2-135M-Instruct), same Llama object, same
prompt and settings, alternating runs. Prints both and their ratio (target >= 0.95).

    .venv/bin/python bench/local_overhead.py [--runs 3] [--tokens 128] [--mode greedy|sampled]
        [--model demo] [--n-gpu-layers -1]

``greedy``: temperature 0. ``sampled``: temperature 0.8, top_k 40, top_p 0.95,
min_p 0.05 with a fixed seed (both sides get the same stages; llama-cpp-python
applies them in its own order, which does not change the cost).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

PROMPT = "Write a long story about a dragon who learns to cook. Make it very detailed."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--mode", choices=("greedy", "sampled"), default="greedy")
    ap.add_argument("--model", default="demo")
    ap.add_argument("--n-gpu-layers", type=int, default=-1)
    ap.add_argument("--n-threads", type=int, default=None)
    args = ap.parse_args()

    import gsexplore as gs
    from gsexplore.backends.local import LocalBackend

    local = LocalBackend(args.model, n_gpu_layers=args.n_gpu_layers, n_threads=args.n_threads)
    llm = local.llama
    info = local.info()
    print(f"model {info['model']} ({info['architecture']}, vocab {info['vocab_size']}), "
          f"threads {info['n_threads']}, gpu offload supported {info['gpu_offload_supported']}, "
          f"layers offloaded {info['layers_offloaded']}/{info['n_layer']}")
    messages = [{"role": "user", "content": PROMPT}]
    if args.mode == "greedy":
        ours = gs.Params(temperature=0, max_tokens=args.tokens)
        raw_kw = dict(temperature=0.0)
    else:
        ours = gs.Params(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, seed=1234, max_tokens=args.tokens)
        raw_kw = dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, seed=1234)
    # llama-cpp-python's own extras switched off where they would cost time
    raw_kw.update(repeat_penalty=1.0, max_tokens=args.tokens)

    def run_ours() -> tuple[int, float, float]:
        t, c0 = time.perf_counter(), time.process_time()
        c = local.chat(messages, ours)
        return c.usage.completion_tokens or 0, time.perf_counter() - t, time.process_time() - c0

    def run_raw() -> tuple[int, float, float]:
        with local.lock:
            t, c0 = time.perf_counter(), time.process_time()
            r = llm.create_chat_completion(messages, **raw_kw)
            return r["usage"]["completion_tokens"], time.perf_counter() - t, time.process_time() - c0

    run_ours(), run_raw()  # warm-up: load pages, fill caches
    wall: dict[str, list[float]] = {"gsexplore": [], "raw": []}
    cpu: dict[str, list[float]] = {"gsexplore": [], "raw": []}
    for i in range(args.runs):
        for name, fn in (("gsexplore", run_ours), ("raw", run_raw)):
            n, dt, ct = fn()
            wall[name].append(n / dt)
            cpu[name].append(n / ct)
            print(f"run {i + 1} {name:9s}: {n:4d} tokens in {dt:6.3f} s = {n / dt:7.1f} tok/s "
                  f"({n / ct:7.1f} tok per CPU-second)")
    a, b = statistics.median(wall["gsexplore"]), statistics.median(wall["raw"])
    ca, cb = statistics.median(cpu["gsexplore"]), statistics.median(cpu["raw"])
    print(f"median LocalBackend {a:.1f} tok/s, raw create_chat_completion {b:.1f} tok/s, "
          f"ratio {a / b:.3f} (target >= 0.95)")
    print(f"per CPU-second (less sensitive to a busy machine): {ca:.1f} vs {cb:.1f}, ratio {ca / cb:.3f}")


if __name__ == "__main__":
    main()
