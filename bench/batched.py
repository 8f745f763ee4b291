"""Raw llama.cpp's batched-decode curve on this machine, and gs.sweep against it, side by side.

1. **threads**: raw llama.cpp decoding a batch of 16 at every thread count from 1 to
   the physical cores (a few on big machines); the best is used from then on.
2. **raw curve**: llama.cpp with nothing on top: the prompt decoded once, its KV
   stream copied to every sequence, then one ``llama_decode`` per step with the next
   token of all of them (no sampling), for B in --batches (1, 4, 16, 32, 64, 128),
   in both of llama.cpp's cache layouts (a stream per sequence, as the engine; one
   unified); tokens/s of the better. The **best batch** is the smallest B within 5%
   of the curve's top (``memory.knee``): where batched decode stops gaining, the
   auto slot policy's cap (``memory.MAX_BATCH``) for this kind of machine.
3. **sweep**: ``gs.sweep`` of 16 and of 64 seeded repeats of one prompt (``min_tokens``
   = ``max_tokens``, ``ignore_eos``: every sequence makes exactly --tokens tokens),
   wall time of the whole sweep, sampling, rows and store included, on a LocalBackend
   with 16 slots and one with the best batch's slots; against raw at the same batch
   and at the best batch. Runs alternate (ours, raw, ours, raw), medians printed.
4. **auto**: what LocalBackend picks with no ``slots=`` (``info()["slots_reason"]``).

Targets (issue 26): 16-repeat sweep >= 0.9 of raw at 16; 64-repeat sweep >= 0.9 of raw at the best batch.

    .venv/bin/python bench/batched.py [--model demo] [--tokens 48] [--runs 2] [--batches 1 4 16 32 64 128]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

PROMPT = "Write a short story about a dragon who learns to cook."
SWEEPS = (16, 64)


class Raw:
    """One loaded model; ``rate()`` makes a context per (batch, layout, threads) and times decoding."""

    def __init__(self, path: Path, prompt_ids: list[int], tokens: int) -> None:
        from gsexplore.backends.llama.loading import llama_cpp_module, load_llama

        self.lc = llama_cpp_module()
        self.llm, _ = load_llama(path, n_gpu_layers=-1, n_ctx=256)
        self.prompt_ids, self.tokens = prompt_ids, tokens
        self.n_ctx = -(-(len(prompt_ids) + tokens + 1) // 256) * 256  # per sequence, llama.cpp's padding

    def rate(self, batch: int, threads: int, unified: bool, tokens: int | None = None) -> float:
        """Tokens/s of ``batch`` sequences decoding ``tokens`` steps after one shared prompt."""
        lc, tokens = self.lc, tokens or self.tokens
        p = lc.llama_context_default_params()
        n_batch = max(512, batch)
        p.n_ctx, p.n_batch, p.n_ubatch, p.n_seq_max = self.n_ctx * batch, n_batch, n_batch, batch
        p.kv_unified, p.n_threads, p.n_threads_batch = unified, threads, threads
        p.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_ENABLED
        p.no_perf = True
        ctx = lc.llama_init_from_model(self.llm.model, p)
        if not ctx:
            raise RuntimeError(f"llama.cpp could not make a context for {batch} sequences")
        mem = lc.llama_get_memory(ctx)
        b = lc.llama_batch_init(n_batch, 0, 1)
        try:
            P = len(self.prompt_ids)
            for i, t in enumerate(self.prompt_ids):
                b.token[i], b.pos[i], b.n_seq_id[i], b.seq_id[i][0], b.logits[i] = t, i, 1, 0, int(i == P - 1)
            b.n_tokens = P
            assert lc.llama_decode(ctx, b) == 0
            for s in range(1, batch):
                lc.llama_memory_seq_cp(mem, 0, s, -1, -1)
            n_vocab = int(self.llm.n_vocab())
            nxt = int(np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, P - 1), shape=(n_vocab,)).argmax())
            t0 = time.perf_counter()
            for step in range(tokens):
                for s in range(batch):
                    b.token[s], b.pos[s], b.n_seq_id[s], b.seq_id[s][0], b.logits[s] = nxt, P + step, 1, s, 1
                b.n_tokens = batch
                assert lc.llama_decode(ctx, b) == 0
            return batch * tokens / (time.perf_counter() - t0)
        finally:
            lc.llama_batch_free(b)
            lc.llama_free(ctx)

    def close(self) -> None:
        self.llm.close()


def thread_counts(cores: int) -> list[int]:
    """Every count up to 8 cores; beyond, a few (a GPU build hardly cares)."""
    return list(range(1, cores + 1)) if cores <= 8 else sorted({1, cores // 4, cores // 2, cores})


def sweep_rate(backend, repeats: int, tokens: int) -> float:
    import gsexplore as gs

    base = gs.Params(temperature=0.8, top_p=0.95, max_tokens=tokens, min_tokens=tokens, ignore_eos=True)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        df = gs.sweep(backend, [PROMPT], grid={}, repeats=repeats, base=base, store=f"{d}/s.parquet",
                      progress=False, seed=int(time.time()))
        dt = time.perf_counter() - t0
    assert df["error_type"].isna().all(), df["error_message"].dropna().head()
    return float(df["completion_tokens"].sum()) / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo", help="demo (default), tiny-qwen3, a .gguf path or a built model")
    ap.add_argument("--tokens", type=int, default=48, help="tokens per sequence")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 32, 64, 128])
    ap.add_argument("--sweeps", type=int, nargs="+", default=list(SWEEPS), help="repeats of each gs.sweep")
    args = ap.parse_args()

    from gsexplore.backends.llama.driver import driver  # llama.cpp runs on one thread (see driver.py)
    from gsexplore.backends.llama.hardware import physical_cores
    from gsexplore.backends.llama.memory import knee
    from gsexplore.backends.local import LocalBackend

    n_ctx = 256
    probe = LocalBackend(args.model, n_ctx=n_ctx, slots=1, shared=False)
    info = probe.info()
    prompt_ids = probe.prompt_token_ids(PROMPT)
    raw = driver.call(lambda: Raw(probe.path, prompt_ids, args.tokens))
    cores = physical_cores()
    print(f"model {info['model']}; physical cores {cores}; prompt {len(prompt_ids)} tokens; "
          f"{args.tokens} tokens per sequence; buffers: {info['buffer_types']}")

    probe_batch = min(16, max(args.batches))
    by_threads = {t: driver.call(lambda t=t: raw.rate(probe_batch, t, False, max(4, args.tokens // 2)))
                  for t in thread_counts(cores)}
    threads = max(by_threads, key=by_threads.get)
    print(f"raw batch {probe_batch} by threads: "
          + ", ".join(f"{t}: {r:.1f}" for t, r in by_threads.items()) + f" tok/s -> {threads} threads")

    def raw_best(batch: int) -> tuple[float, str, float, float]:
        layouts = {name: statistics.median(driver.call(lambda u=name == "unified": raw.rate(batch, threads, u))
                                           for _ in range(args.runs)) for name in ("streams", "unified")}
        best = max(layouts, key=layouts.get)
        return layouts[best], best, layouts["streams"], layouts["unified"]

    curve = {b: raw_best(b) for b in args.batches}
    best_batch = knee({b: r[0] for b, r in curve.items()})
    print(f"\n{'B':>5} {'raw tok/s':>10} {'layout':>8}   streams / unified")
    for b, (r, layout, s, u) in curve.items():
        print(f"{b:5d} {r:10.1f} {layout:>8}   {s:.1f} / {u:.1f}" + ("   <- best batch" if b == best_batch else ""))
    print(f"best batch (smallest within 5% of the top): {best_batch}")

    rows = []
    for repeats in args.sweeps:
        slots = 16 if repeats <= 16 else best_batch
        backend = LocalBackend(args.model, n_ctx=n_ctx, slots=slots, n_threads=threads, shared=False)
        sweep_rate(backend, min(slots, repeats), 4)  # warm-up
        ours, same, at_best = [], [], []
        for _ in range(args.runs):
            ours.append(sweep_rate(backend, repeats, args.tokens))
            same.append(driver.call(lambda: raw.rate(min(repeats, max(args.batches)), threads, False)))
        ref_same = statistics.median(same)
        ref_best = curve[best_batch][0]
        rows.append((repeats, slots, statistics.median(ours), ref_same, ref_best))
        backend.close()
    seq = statistics.median(sweep_rate(probe, 16, args.tokens) for _ in range(args.runs))
    probe.close()

    print(f"\n{'repeats':>7} {'slots':>5} {'gs.sweep':>9} {'raw same B':>11} {'ratio':>6} "
          f"{'raw best B':>11} {'ratio':>6}")
    for repeats, slots, ours, same, best in rows:
        print(f"{repeats:7d} {slots:5d} {ours:9.1f} {same:11.1f} {ours / same:6.2f} {best:11.1f} {ours / best:6.2f}")
    print(f"sequential (1 slot, 16 repeats): {seq:.1f} tok/s")
    auto = LocalBackend(args.model, shared=False)
    print(f"\nauto slots here: {auto.slots} x {auto.n_ctx} tokens: {auto.info()['slots_reason']}")
    auto.close()
    print("targets: 16 repeats >= 0.9 of raw at 16; 64 repeats >= 0.9 of raw at the best batch")
    driver.call(raw.close)


if __name__ == "__main__":
    main()
