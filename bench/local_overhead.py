"""LocalBackend's tokens/s against raw llama.cpp decoding at its best thread count.

Raw llama.cpp: one ``llama_decode`` per token on the same GGUF, greedy argmax of
its logits buffer (NumPy: faster than llama.cpp's greedy sampler), nothing else, for every thread
count from 1 to this machine's physical cores (each printed). LocalBackend runs
with its defaults (threads = physical cores). Same prompt, same token count
(``min_tokens`` = ``max_tokens``, ``ignore_eos``), same buffer-type choice (printed:
llama.cpp's AMX buffer type crashes on some Xeons). Prints the ratio LocalBackend /
best raw (target >= 0.95).

    .venv/bin/python bench/local_overhead.py [--runs 3] [--tokens 128] [--model demo]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

PROMPT = "Write a long story about a dragon who learns to cook. Make it very detailed."


class RawDecoder:
    """llama.cpp with nothing on top: a context at a given thread count and a greedy loop."""

    def __init__(self, path: Path, n_threads: int, n_ctx: int) -> None:
        from gsexplore.backends.llama.loading import load_llama, llama_cpp_module

        self.lc = llama_cpp_module()
        self.llm, self.report = load_llama(path, n_gpu_layers=-1, n_ctx=n_ctx, n_threads=n_threads,
                                           n_threads_batch=n_threads)
        self.n_vocab = int(self.llm.n_vocab())

    def run(self, prompt_ids: list[int], n: int) -> tuple[int, float]:
        lc, llm = self.lc, self.llm
        ctx = llm.ctx
        lc.llama_memory_clear(lc.llama_get_memory(ctx), True)
        arr = (lc.llama_token * len(prompt_ids))(*prompt_ids)
        if lc.llama_decode(ctx, lc.llama_batch_get_one(arr, len(prompt_ids))) != 0:
            raise RuntimeError("prompt decode failed")
        one = (lc.llama_token * 1)()
        t = time.perf_counter()
        for _ in range(n):
            # argmax in NumPy: faster than llama.cpp's greedy sampler, which copies the vocabulary
            one[0] = int(np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, -1), shape=(self.n_vocab,)).argmax())
            if lc.llama_decode(ctx, lc.llama_batch_get_one(one, 1)) != 0:
                raise RuntimeError("decode failed")
        return n, time.perf_counter() - t

    def close(self) -> None:
        self.llm.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--model", default="demo")
    args = ap.parse_args()

    import gsexplore as gs
    from gsexplore.backends.llama.hardware import physical_cores

    local = gs.LocalBackend(args.model, n_ctx=1024)
    info = local.info()
    cores = physical_cores()
    print(f"model {info['model']} ({info['architecture']}, vocab {info['vocab_size']}); "
          f"physical cores {cores}; LocalBackend threads {info['n_threads']}/{info['n_threads_batch']}")
    print(f"buffer types: extra {'on' if info['extra_buffer_types_used'] else 'off'} "
          f"({info['extra_buffers_reason']}); weights in {info['buffer_types']}")
    messages = [{"role": "user", "content": PROMPT}]
    p = gs.Params(temperature=0, max_tokens=args.tokens, min_tokens=args.tokens, ignore_eos=True)
    prompt_ids = local.prompt_token_ids(messages, p)

    # the prompt is cached after the first call: both sides then time decoding alone
    def ours() -> float:
        c = local.chat(messages, p)
        t = time.perf_counter()
        c = local.chat(messages, p)
        return (c.usage.completion_tokens or 0) / (time.perf_counter() - t)

    from gsexplore.backends.llama.driver import driver  # llama.cpp runs on one thread (see driver.py)

    raws = {n: driver.call(lambda n=n: RawDecoder(local.path, n, 1024)) for n in range(1, cores + 1)}
    rates: dict[str, list[float]] = {"LocalBackend": [], **{f"raw {n}t": [] for n in raws}}
    ours()
    for r in raws.values():
        driver.call(lambda r=r: r.run(prompt_ids, 8))  # warm-up
    for _ in range(args.runs):
        rates["LocalBackend"].append(ours())
        for n, r in raws.items():
            k, dt = driver.call(lambda r=r: r.run(prompt_ids, args.tokens))
            rates[f"raw {n}t"].append(k / dt)
    print(f"\n{'':14s} {'tokens/s (median of ' + str(args.runs) + ')':>26s}")
    med = {k: statistics.median(v) for k, v in rates.items()}
    for k, v in med.items():
        print(f"{k:14s} {v:26.1f}")
    best_n = max(raws, key=lambda n: med[f"raw {n}t"])
    best = med[f"raw {best_n}t"]
    print(f"\nbest raw llama.cpp: {best:.1f} tok/s at {best_n} threads")
    print(f"LocalBackend / best raw = {med['LocalBackend'] / best:.3f} (target >= 0.95)")
    for r in raws.values():
        driver.call(r.close)


if __name__ == "__main__":
    main()
