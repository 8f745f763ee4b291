"""The slot policy: KV bytes per token, the memory readers, and slots from memory (pure), then llama.cpp for real."""
from __future__ import annotations

from pathlib import Path

import pytest

from gsexplore.backends.llama.memory import (CTX_PAD, KV_TYPES, Available, Device, KvShape, available_memory,
                                             available_ram, knee, kv_bytes_per_token, plan_slots)

# Qwen3-1.7B: 28 layers, 8 KV heads of 128
QWEN3_17B = KvShape(n_layer=28, n_head_kv=8, head_k=128, head_v=128)
GIB = 1 << 30


def test_kv_bytes_per_token_by_cache_type() -> None:
    f16 = kv_bytes_per_token(QWEN3_17B, "f16")
    assert f16 == 28 * 8 * (128 + 128) * 2  # 112 KiB per token
    q8, q4 = kv_bytes_per_token(QWEN3_17B, "q8_0"), kv_bytes_per_token(QWEN3_17B, "q4_0")
    assert q8 / f16 == pytest.approx(34 / 64)   # 8.5 bits per value
    assert q4 / f16 == pytest.approx(18 / 64)   # 4.5 bits per value
    assert kv_bytes_per_token(QWEN3_17B, "q8_0", "f16") == (q8 + f16) // 2  # K and V types apart


def test_bad_cache_types_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"kv_cache_type must be one of f16, q8_0, q4_0, got 'q5'"):
        kv_bytes_per_token(QWEN3_17B, "q5")
    with pytest.raises(ValueError, match=r"kv_cache_type='q8_0' needs head sizes that are multiples of 32"):
        kv_bytes_per_token(KvShape(2, 2, 80 + 4, 84), "q8_0")


def _ram(n: float) -> Available:
    return Available(int(n), "RAM (MemAvailable)", "cpu", True)


def test_slots_follow_memory() -> None:
    per_token = kv_bytes_per_token(QWEN3_17B)
    slot = per_token * 4096
    # exactly three slots' worth after weights and margin, all of it for the KV cache
    ram = _ram(1.1 * GIB + GIB + 3 * slot)
    plan = plan_slots(available=ram, weights_bytes=int(1.1 * GIB), kv_bytes_per_token=per_token,
                      n_ctx=4096, margin_bytes=GIB, kv_share=1.0)
    assert (plan.slots, plan.n_ctx) == (3, 4096)
    assert plan.numbers["limited_by"] == "by memory" and plan.numbers["kv_cache_bytes"] == 3 * slot
    # twice the memory: twice the slots; a quantized cache: more slots in the same memory
    twice = plan_slots(available=_ram(1.1 * GIB + GIB + 6 * slot), weights_bytes=int(1.1 * GIB),
                       kv_bytes_per_token=per_token, n_ctx=4096, margin_bytes=GIB, kv_share=1.0)
    assert twice.slots == 6
    q8 = plan_slots(available=ram, weights_bytes=int(1.1 * GIB), kv_type="q8_0", n_ctx=4096, margin_bytes=GIB,
                    kv_bytes_per_token=kv_bytes_per_token(QWEN3_17B, "q8_0"), kv_share=1.0)
    assert q8.slots == 5 and q8.kv_type == "q8_0"
    # the arithmetic is in the reason
    assert "auto: 3 slots of 4096 tokens (by memory" in plan.reason
    assert "RAM (MemAvailable)" in plan.reason and "weights 1.1 GiB" in plan.reason
    assert "112.0 KiB per token (f16)" in plan.reason


def test_shorter_requests_get_more_slots_and_context_is_padded_like_llama_cpp() -> None:
    per_token = kv_bytes_per_token(QWEN3_17B)
    ram = _ram(GIB + 8 * per_token * 4096)
    long = plan_slots(available=ram, weights_bytes=0, kv_bytes_per_token=per_token, n_ctx=4096,
                      margin_bytes=GIB, kv_share=1.0, max_batch=1000)
    short = plan_slots(available=ram, weights_bytes=0, kv_bytes_per_token=per_token, n_ctx=300,
                       margin_bytes=GIB, kv_share=1.0, max_batch=1000)
    assert long.slots == 8
    assert short.n_ctx == 2 * CTX_PAD and short.numbers["n_ctx_needed"] == 300
    assert short.slots == 8 * 4096 // 512


def test_no_fixed_cap_of_16_but_the_batch_knee_the_caller_and_llama_cpp() -> None:
    per_token = kv_bytes_per_token(QWEN3_17B)
    big = _ram(200 * GIB)
    assert plan_slots(available=big, weights_bytes=0, kv_bytes_per_token=per_token, n_ctx=512,
                      max_batch=64).slots == 64
    wanted = plan_slots(available=big, weights_bytes=0, kv_bytes_per_token=per_token, n_ctx=512,
                        max_batch=64, want_slots=20)
    assert wanted.slots == 20 and wanted.numbers["limited_by"] == "wanted"
    most = plan_slots(available=big, weights_bytes=0, kv_bytes_per_token=per_token, n_ctx=256, max_batch=10_000)
    assert most.slots == 256 and "llama.cpp's most" in most.reason


def test_gpu_free_memory_already_lacks_the_weights() -> None:
    per_token = kv_bytes_per_token(QWEN3_17B)
    gpu = Available(GIB + 10 * per_token * 1024, "CUDA0 free", "gpu", False)
    plan = plan_slots(available=gpu, weights_bytes=5 * GIB, kv_bytes_per_token=per_token, n_ctx=1024,
                      margin_bytes=GIB, kv_share=1.0)
    assert plan.slots == 10 and plan.numbers["weights_bytes"] == 0
    assert "weights already out" in plan.reason
    # a device share below 1 keeps memory for others (vLLM's gpu_memory_utilization)
    assert plan_slots(available=gpu, weights_bytes=0, kv_bytes_per_token=per_token, n_ctx=1024,
                      margin_bytes=GIB, kv_share=0.5).slots == 5


def test_when_nothing_fits_the_error_names_n_ctx_and_the_ways_out() -> None:
    per_token = kv_bytes_per_token(QWEN3_17B)
    with pytest.raises(ValueError, match=r"n_ctx=32768: one slot needs 3.5 GiB .* lower n_ctx, use "
                                         r"kv_cache_type='q8_0'"):
        plan_slots(available=_ram(4 * GIB), weights_bytes=GIB, kv_bytes_per_token=per_token, n_ctx=32768)


def test_asked_slots_are_kept_and_the_reason_says_whether_they_fit() -> None:
    per_token = kv_bytes_per_token(QWEN3_17B)
    plan = plan_slots(available=_ram(4 * GIB), weights_bytes=GIB, kv_bytes_per_token=per_token, n_ctx=4096,
                      slots=64)
    assert (plan.slots, plan.n_ctx) == (64, 4096) and plan.numbers["fits"] is False
    assert plan.reason.startswith("asked for: 64 slots of 4096 tokens") and "more than the" in plan.reason
    with pytest.raises(ValueError, match="slots must be >= 1"):
        plan_slots(available=_ram(4 * GIB), weights_bytes=0, kv_bytes_per_token=per_token, slots=0)


def test_default_context_follows_the_training_context() -> None:
    per_token = kv_bytes_per_token(QWEN3_17B)
    plan = plan_slots(available=_ram(64 * GIB), weights_bytes=0, kv_bytes_per_token=per_token, n_ctx_train=2048)
    assert plan.n_ctx == 2048
    assert plan_slots(available=_ram(64 * GIB), weights_bytes=0, kv_bytes_per_token=per_token).n_ctx == 4096


def test_knee_of_a_batched_decode_curve() -> None:
    assert knee({1: 10.0, 4: 35.0, 16: 100.0, 32: 104.0, 64: 103.0}) == 16
    assert knee({1: 10.0, 4: 35.0, 16: 60.0, 32: 100.0}) == 32
    with pytest.raises(ValueError):
        knee({})


def _meminfo(tmp: Path, avail_kb: int) -> Path:
    p = tmp / "meminfo"
    p.write_text(f"MemTotal:       99999999 kB\nMemFree:         1000 kB\nMemAvailable:   {avail_kb} kB\n")
    return p


def test_ram_is_capped_by_a_cgroup_v2_limit_of_the_process_or_an_ancestor(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    own = root / "user.slice" / "app"
    own.mkdir(parents=True)
    (tmp_path / "cgroup").write_text("0::/user.slice/app\n")
    (own / "memory.max").write_text("max\n")
    (own / "memory.current").write_text(f"{3 * GIB}\n")
    (own / "memory.stat").write_text(f"anon 1\ninactive_file {GIB}\n")
    (root / "user.slice" / "memory.max").write_text(f"{8 * GIB}\n")
    (root / "user.slice" / "memory.current").write_text(f"{5 * GIB}\n")
    (root / "user.slice" / "memory.stat").write_text(f"inactive_file {2 * GIB}\n")
    got = available_ram(_meminfo(tmp_path, 20 * 2**20), tmp_path / "cgroup", root)
    assert got == Available(5 * GIB, "RAM (cgroup limit)", "cpu", True)  # 8 - (5 - 2)
    # a machine with more room in the cgroup than MemAvailable: MemAvailable
    got = available_ram(_meminfo(tmp_path, 2 * 2**20), tmp_path / "cgroup", root)
    assert got == Available(2 * GIB, "RAM (MemAvailable)", "cpu", True)


def test_ram_under_cgroup_v1(tmp_path: Path) -> None:
    own = tmp_path / "cg" / "memory" / "docker" / "abc"
    own.mkdir(parents=True)
    (tmp_path / "cgroup").write_text("5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n")
    (own / "memory.limit_in_bytes").write_text(f"{4 * GIB}\n")
    (own / "memory.usage_in_bytes").write_text(f"{GIB}\n")
    (own / "memory.stat").write_text(f"cache 5\ntotal_inactive_file {GIB // 2}\n")
    (tmp_path / "cg" / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # no limit
    got = available_ram(_meminfo(tmp_path, 20 * 2**20), tmp_path / "cgroup", tmp_path / "cg")
    assert got.bytes == 4 * GIB - GIB // 2 and got.where == "RAM (cgroup limit)"


def test_offloading_reads_the_gpus_and_falls_back_to_ram(tmp_path: Path) -> None:
    devices = [Device("CPU", "cpu", 0, 99 * GIB, 99 * GIB), Device("CUDA0", "H100", 1, 70 * GIB, 80 * GIB),
               Device("CUDA1", "H100", 1, 60 * GIB, 80 * GIB)]
    got = available_memory(-1, devices)
    assert got == Available(130 * GIB, "CUDA0+CUDA1 free", "gpu", False)
    ram = dict(meminfo=_meminfo(tmp_path, 2**20), proc_cgroup=tmp_path / "none", cgroup_root=tmp_path)
    assert available_memory(0, devices, **ram).where == "RAM (MemAvailable)"        # nothing offloaded
    assert available_memory(-1, devices[:1], **ram).where == "RAM (MemAvailable)"   # a CPU-only build


# --- what it reads on this machine, and llama.cpp itself ----------------------------------------
def test_this_machines_ram_and_llama_cpp_devices() -> None:
    from gsexplore.backends.llama.memory import offload_devices

    total = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0]) * 1024
    ram = available_ram()
    assert 0 < ram.bytes <= total and ram.kind == "cpu"
    devices = offload_devices()
    cpu = [d for d in devices if d.kind == 0]
    assert cpu and cpu[0].total == pytest.approx(total, rel=0.05)  # llama.cpp's CPU device: physical memory


def test_cache_type_sizes_are_ggmls() -> None:
    import ctypes

    from llama_cpp._ggml import libggml

    libggml.ggml_type_size.argtypes = [ctypes.c_int]
    libggml.ggml_type_size.restype = ctypes.c_size_t
    libggml.ggml_blck_size.argtypes = [ctypes.c_int]
    libggml.ggml_blck_size.restype = ctypes.c_int64
    for name, (type_id, block, size) in KV_TYPES.items():
        assert (libggml.ggml_blck_size(type_id), libggml.ggml_type_size(type_id)) == (block, size), name


def _context(path: Path, kv_type: str):
    """llama.cpp on ``path`` and a flash-attention context with a ``kv_type`` KV cache (or None if refused)."""
    from gsexplore.backends.llama.loading import llama_cpp_module, load_llama

    lc = llama_cpp_module()
    llm, _ = load_llama(path, n_gpu_layers=0, n_ctx=256, n_threads=1, n_threads_batch=1)
    p = lc.llama_context_default_params()
    p.n_ctx, p.n_batch, p.n_ubatch, p.n_seq_max, p.n_threads, p.n_threads_batch = 256, 64, 64, 1, 1, 1
    p.type_k = p.type_v = KV_TYPES[kv_type][0]
    p.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_ENABLED
    return lc, llm, lc.llama_init_from_model(llm.model, p)


@pytest.mark.parametrize("kv_type", list(KV_TYPES))
def test_kv_bytes_per_token_is_what_llama_cpp_stores(demo_model_path: Path, kv_type: str) -> None:
    """A sequence's saved state grows by the KV bytes of each token (plus 12 bytes of cell metadata)."""
    from gsexplore.backends.llama.memory import kv_shape

    lc, llm, ctx = _context(demo_model_path, kv_type)
    assert ctx, f"llama.cpp refused a {kv_type} KV cache"
    b = lc.llama_batch_init(64, 0, 1)
    try:
        sizes = []
        for start, n in ((0, 8), (8, 40)):
            for i in range(n):
                b.token[i], b.pos[i], b.n_seq_id[i], b.seq_id[i][0], b.logits[i] = 100 + i, start + i, 1, 0, 0
            b.logits[n - 1] = 1
            b.n_tokens = n
            assert lc.llama_decode(ctx, b) == 0
            sizes.append(int(lc.llama_state_seq_get_size(ctx, 0)))
        per_token = (sizes[1] - sizes[0]) / 40 - 12  # pos, n_seq_id and one seq id per cell
        assert per_token == kv_bytes_per_token(kv_shape(lc, llm.model, dict(llm.metadata)), kv_type)
    finally:
        lc.llama_batch_free(b)
        lc.llama_free(ctx)
        llm.close()


def test_quantized_cache_needs_heads_in_whole_blocks(tiny_model_path: Path) -> None:
    """The tiny Qwen3's heads of 16 values: llama.cpp refuses q8_0 with flash attention, and so do we."""
    from gsexplore.backends.llama.memory import kv_shape

    lc, llm, ctx = _context(tiny_model_path, "q8_0")
    try:
        assert not ctx
        with pytest.raises(ValueError, match="multiples of 32"):
            kv_bytes_per_token(kv_shape(lc, llm.model, dict(llm.metadata)), "q8_0")
    finally:
        if ctx:
            lc.llama_free(ctx)
        llm.close()


@pytest.mark.parametrize("n_prompt", [100, 300])
def test_q8_0_cache_keeps_a_sequence_bit_identical_alone_or_batched(demo_model_path: Path, n_prompt: int) -> None:
    """With a q8_0 cache llama.cpp's CPU flash attention takes one path whatever the batch, at any length.

    (An f16 cache past 256 cells takes a split-KV path when one sequence decodes alone: see memory.py.)
    """
    import numpy as np

    from gsexplore.backends.llama.loading import llama_cpp_module, load_llama

    lc = llama_cpp_module()
    llm, _ = load_llama(demo_model_path, n_gpu_layers=0, n_ctx=256, n_threads=2, n_threads_batch=2)
    p = lc.llama_context_default_params()
    p.n_ctx, p.n_batch, p.n_ubatch, p.n_seq_max, p.n_threads, p.n_threads_batch = 1024, 512, 512, 2, 2, 2
    p.type_k = p.type_v = KV_TYPES["q8_0"][0]
    p.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_ENABLED
    ctx = lc.llama_init_from_model(llm.model, p)
    b = lc.llama_batch_init(512, 0, 1)
    n_vocab = int(llm.n_vocab())

    def decode(items: list[tuple[int, int, int]]) -> list[np.ndarray]:
        for i, (tok, pos, seq) in enumerate(items):
            b.token[i], b.pos[i], b.n_seq_id[i], b.seq_id[i][0], b.logits[i] = tok, pos, 1, seq, 1
        b.n_tokens = len(items)
        assert lc.llama_decode(ctx, b) == 0
        return [np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, i), shape=(n_vocab,)).copy()
                for i in range(len(items))]

    try:
        prompt = [100 + i for i in range(n_prompt)]
        for seq in (0, 1):
            for start in range(0, n_prompt, 256):
                decode([(t, start + i, seq) for i, t in enumerate(prompt[start:start + 256])])
        alone = decode([(42, n_prompt, 0)])[0]
        lc.llama_memory_seq_rm(lc.llama_get_memory(ctx), 0, n_prompt, -1)
        together = decode([(42, n_prompt, 0), (42, n_prompt, 1)])[0]
        assert np.array_equal(alone, together)
    finally:
        lc.llama_batch_free(b)
        lc.llama_free(ctx)
        llm.close()


def test_plan_for_a_loaded_model_agrees_with_its_engine(demo_model_path: Path) -> None:
    """plan_for_model reads a LoadedModel as the engine will (the wiring in model.py is one call)."""
    from gsexplore.backends.llama.memory import plan_for_model
    from gsexplore.backends.local import LocalBackend

    backend = LocalBackend(str(demo_model_path), n_ctx=256, slots=1, shared=False)
    try:
        lm = backend._lm
        plan = plan_for_model(lm, n_ctx=300, slots=None, want_slots=3)
        assert plan.numbers["kv_bytes_per_token"] == lm.kv_bytes_per_token  # f16, as model.py computes it
        assert (plan.slots, plan.n_ctx) == (3, 512) and plan.numbers["limited_by"] == "wanted"
        assert plan.numbers["weights_bytes"] == int(lm.lc.llama_model_size(lm.llm.model)) > 0
        q8 = plan_for_model(lm, n_ctx=300, slots=None, kv_type="q8_0")
        assert q8.numbers["kv_bytes_per_token"] == lm.kv_bytes_per_token * 34 // 64
    finally:
        backend.close()
