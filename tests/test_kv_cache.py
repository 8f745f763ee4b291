"""KV cache type, layout and the memory-sized engine of LocalBackend, on the real demo and tiny models."""
from __future__ import annotations

from pathlib import Path

import pytest

from gsexplore.backends.llama.memory import F16_INVARIANT_CELLS
from gsexplore.backends.local import LocalBackend
from gsexplore.errors import ParamsError

# a user message of a little over 300 tokens: past the 256 cells where an f16 cache stops being batch invariant
LONG = "Summarise this list of numbers and say which is largest: " + ", ".join(str(7 * i + 3) for i in range(150))


def _decode_rows(backend: LocalBackend) -> list[int]:
    """Record, for every engine step from now on, how many sequences decoded together."""
    rows: list[int] = []
    backend._engine.on_plan = lambda plan: rows.append(len(plan.decode))
    return rows


def test_q8_0_cache_gives_a_seeded_request_the_same_tokens_alone_and_batched(demo_model_path: Path) -> None:
    b = LocalBackend(str(demo_model_path), kv_cache_type="q8_0", n_ctx=1024, slots=4, shared=False)
    try:
        info = b.info()
        assert info["kv_cache_type"] == "q8_0" and info["batch_invariant"] is True
        assert len(b.prompt_token_ids(LONG)) > F16_INVARIANT_CELLS
        kw = [dict(seed=s, temperature=1.0, max_tokens=24, ignore_eos=True) for s in (1, 2, 3, 4)]
        alone = [b.chat(LONG, **k).info["token_ids"] for k in kw]
        rows = _decode_rows(b)
        handles = [b.submit(LONG, **k) for k in kw]
        together = [h.result().info["token_ids"] for h in handles]
        assert max(rows) >= 2, "the requests did not decode in one batch"
        assert together == alone
    finally:
        b.close()


def test_batch_invariance_is_stated_per_cache_type_length_and_layout(demo_model_path: Path) -> None:
    def info(**kw):
        b = LocalBackend(str(demo_model_path), slots=2, shared=False, **kw)
        try:
            return b.info()
        finally:
            b.close()

    long_f16 = info(n_ctx=1024)
    assert long_f16["kv_cache_type"] == "f16" and long_f16["batch_invariant"] is False
    assert "256 tokens" in long_f16["batch_invariant_reason"] and "q8_0" in long_f16["batch_invariant_reason"]
    assert info(n_ctx=256)["batch_invariant"] is True  # a request never holds more than 256 cells
    assert info(n_ctx=1024, kv_cache_type="q4_0")["batch_invariant"] is True
    unified = info(n_ctx=256, kv_layout="unified", kv_cache_type="q8_0")
    assert unified["batch_invariant"] is False and "unified" in unified["batch_invariant_reason"]


def test_a_quantized_cache_the_heads_refuse_is_named(tiny_model_path: Path) -> None:
    """The tiny Qwen3's heads of 16 values are not whole q8_0 blocks of 32: refused before any context."""
    with pytest.raises(ParamsError, match="kv_cache_type='q8_0'.*multiples of 32") as e:
        LocalBackend(str(tiny_model_path), kv_cache_type="q8_0", shared=False)
    assert e.value.field == "kv_cache_type"
    with pytest.raises(ParamsError, match="kv_cache_type must be one of") as e:
        LocalBackend(str(tiny_model_path), kv_cache_type="q5_1", shared=False)
    with pytest.raises(ParamsError, match="kv_layout must be one of") as e:
        LocalBackend(str(tiny_model_path), kv_layout="paged", shared=False)
    assert e.value.field == "kv_layout"


def test_unified_layout_lets_one_request_hold_more_than_a_slot(demo_model_path: Path) -> None:
    b = LocalBackend(str(demo_model_path), kv_layout="unified", n_ctx=256, slots=2, shared=False)
    try:
        assert b.n_ctx == 512 and b.slots == 2  # one pool of 2 x 256 cells
        c = b.chat("Count to a thousand.", max_tokens=300, ignore_eos=True, seed=0)
        assert c.usage.completion_tokens == 300 and c.finish_reason == "length"
        info = b.info()
        assert info["kv_layout"] == "unified" and info["batch_invariant"] is False
        assert "sharing 512 cells" in info["kv_cache"]
    finally:
        b.close()


def test_slots_follow_memory_and_what_the_caller_needs(demo_model_path: Path) -> None:
    b = LocalBackend(str(demo_model_path), shared=False)
    try:
        assert "not sized" in repr(b)
        b.prepare(max_request_tokens=200, concurrency=3)
        assert (b.slots, b.n_ctx) == (3, 256)  # rounded up to llama.cpp's 256
        info = b.info()
        mem = info["memory"]
        assert mem["limited_by"] == "wanted" and mem["slots_by_memory"] >= 3
        assert mem["kv_bytes_per_token"] == b._lm.kv_bytes_per_token and mem["kv_type"] == "f16"
        assert mem["kv_budget_bytes"] == int((mem["available_bytes"] - mem["weights_bytes"]
                                              - mem["margin_bytes"]) * mem["kv_share"])
        assert "3 slots of 256 tokens" in info["slots_reason"] and "MiB per slot" in info["slots_reason"]
        assert info["kv_cache_mib"] == round(mem["kv_bytes_per_token"] * 3 * 256 / 2**20, 1)
        # a request that needs more than a slot: the idle engine is made again for it
        c = b.chat("Hi", max_tokens=300, ignore_eos=True, seed=1)
        assert c.usage.completion_tokens == 300 and (b.n_ctx, b.slots) == (512, 3)  # the slots wanted stay
        # what the user fixed stays
        fixed = LocalBackend(str(demo_model_path), n_ctx=256, slots=2, shared=False)
        try:
            fixed.prepare(max_request_tokens=2000, concurrency=8)
            assert (fixed.slots, fixed.n_ctx) == (2, 256)
            with pytest.raises(ParamsError, match="max_tokens"):
                fixed.chat("Hi", max_tokens=2000)
        finally:
            fixed.close()
    finally:
        b.close()


def test_a_sweep_sizes_the_engine_for_its_requests(demo_model_path: Path) -> None:
    import gsexplore as gs

    b = LocalBackend(str(demo_model_path), shared=False)
    try:
        before = b.info()  # says what would be made, makes nothing
        assert before["kv_cache"].startswith("not made yet") and before["slots_reason"].startswith("not made yet")
        df = gs.sweep(b, ["Say hello."], grid={"temperature": [0.5, 1.0]}, repeats=3,
                      base=gs.Params(max_tokens=8), progress=False)
        assert len(df) == 6 and df.error_type.isna().all()
        assert (b.slots, b.n_ctx) == (6, 256)  # six requests, each well under 256 tokens
    finally:
        b.close()


def test_serve_takes_the_kv_cache_type() -> None:
    from gsexplore.cli import _local_kwargs, build_parser

    args = build_parser().parse_args(["serve", "--model", "demo", "--kv-cache-type", "q8_0", "--n-ctx", "1024"])
    assert _local_kwargs(args) == {"n_ctx": 1024, "kv_cache_type": "q8_0"}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--model", "demo", "--kv-cache-type", "q5"])


def test_a_plain_chat_takes_a_few_slots_and_a_sweep_more(demo_model_path: Path) -> None:
    """Nobody said how many requests come at once: PLAIN_SLOTS, not the KV cache of 128 slots."""
    import gsexplore as gs
    from gsexplore.backends.llama.memory import PLAIN_SLOTS

    b = LocalBackend(str(demo_model_path), shared=False)
    try:
        b.chat("Hi", max_tokens=2)
        assert b.slots == PLAIN_SLOTS and b.info()["memory"]["limited_by"] == "nobody said how many at once"
        gs.sweep(b, ["Say hello."], grid={}, repeats=PLAIN_SLOTS + 8, base=gs.Params(max_tokens=4), progress=False)
        assert b.slots == PLAIN_SLOTS + 8                 # the idle engine was made again for the sweep
        b.chat("Hi again", max_tokens=2)
        assert b.slots == PLAIN_SLOTS + 8                 # and a later chat keeps it
    finally:
        b.close()
