"""gs.sweep on the batched engine against raw llama.cpp batched decoding, side by side.

For B in (16, 32) seeded repeats of one prompt (``min_tokens`` = ``max_tokens``,
``ignore_eos``: every sequence makes exactly --tokens tokens):

* **sweep**: ``gs.sweep`` over a LocalBackend with 16 slots (32 repeats = two waves);
  wall time of the whole sweep, sampling, rows and store included;
* **raw**: llama.cpp with nothing on top: the prompt decoded once, its KV stream
  copied to every sequence, then one ``llama_decode`` per step with the next token
  of all of them (no sampling), at the same batch size, model and threads, in the
  best of llama.cpp's two cache layouts (a stream per sequence, or one unified);
* **sequential**: the same sweep on one slot (one sequence at a time, as before the engine).

Prints tokens/s of each and the ratio sweep / raw (target >= 0.8 at batch 16).

    .venv/bin/python bench/batched.py [--tokens 48] [--model demo] [--runs 2]
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


def raw_batched(path: Path, prompt_ids: list[int], batch: int, tokens: int, n_ctx: int, threads: int,
                unified: bool) -> float:
    """Tokens/s of llama.cpp decoding ``batch`` sequences ``tokens`` steps (after one shared prompt)."""
    from gsexplore.backends.llama.loading import llama_cpp_module, load_llama

    lc = llama_cpp_module()
    llm, _ = load_llama(path, n_gpu_layers=-1, n_ctx=256, n_threads=threads, n_threads_batch=threads)
    p = lc.llama_context_default_params()
    p.n_ctx, p.n_batch, p.n_ubatch, p.n_seq_max = n_ctx * batch, 512, 512, batch
    p.kv_unified, p.n_threads, p.n_threads_batch = unified, threads, threads
    p.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_ENABLED
    ctx = lc.llama_init_from_model(llm.model, p)
    mem = lc.llama_get_memory(ctx)
    b = lc.llama_batch_init(512, 0, 1)
    try:
        P = len(prompt_ids)
        for i, t in enumerate(prompt_ids):
            b.token[i], b.pos[i], b.n_seq_id[i], b.seq_id[i][0], b.logits[i] = t, i, 1, 0, int(i == P - 1)
        b.n_tokens = P
        assert lc.llama_decode(ctx, b) == 0
        for s in range(1, batch):
            lc.llama_memory_seq_cp(mem, 0, s, -1, -1)
        n_vocab = int(llm.n_vocab())
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
        llm.close()


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
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()

    import gsexplore as gs
    from gsexplore.backends.llama.driver import driver  # llama.cpp runs on one thread (see driver.py)
    from gsexplore.backends.local import LocalBackend

    n_ctx = 256
    engine = LocalBackend(args.model, n_ctx=n_ctx, slots=16, shared=False)
    one = LocalBackend(args.model, n_ctx=n_ctx, slots=1, shared=False)
    info = engine.info()
    threads = info["n_threads"]
    prompt_ids = engine.prompt_token_ids(PROMPT)
    print(f"model {info['model']}; threads {threads}; prompt {len(prompt_ids)} tokens; "
          f"{args.tokens} tokens per sequence; buffers: {info['buffer_types']}")
    sweep_rate(engine, 16, 4)  # warm-up
    rows = []
    for batch in (16, 32):
        ours = [sweep_rate(engine, batch, args.tokens) for _ in range(args.runs)]
        raw = {layout: [driver.call(lambda u=layout == "unified": raw_batched(
                            engine.path, prompt_ids, batch, args.tokens, n_ctx, threads, u))
                        for _ in range(args.runs)] for layout in ("streams", "unified")}
        best_layout = max(raw, key=lambda k: statistics.median(raw[k]))
        rows.append((batch, statistics.median(ours), statistics.median(raw[best_layout]), best_layout,
                     statistics.median(raw["streams"]), statistics.median(raw["unified"])))
    seq = statistics.median(sweep_rate(one, 16, args.tokens) for _ in range(args.runs))
    print(f"\n{'batch':>5} {'gs.sweep tok/s':>15} {'raw llama.cpp':>14} {'ratio':>6}   raw by layout")
    for batch, ours, raw, layout, streams, unified in rows:
        print(f"{batch:5d} {ours:15.1f} {raw:14.1f} {ours / raw:6.2f}   streams {streams:.1f}, unified {unified:.1f}"
              + ("   (sweep: 16 slots, two waves)" if batch == 32 else ""))
    print(f"\nsequential (1 slot, 16 repeats): {seq:.1f} tok/s; batched engine at 16 = {rows[0][1] / seq:.1f}x")
    print(f"target: gs.sweep >= 0.8 of raw llama.cpp at batch 16 -> {rows[0][1] / rows[0][2]:.2f}")


if __name__ == "__main__":
    main()
