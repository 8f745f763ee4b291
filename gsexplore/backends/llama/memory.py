"""How many slots, of how many tokens, the engine's KV cache gets: from memory, not a constant.

The policy (``plan_slots``) is pure arithmetic on what it is handed: the memory the
process can use, the weights, a margin, the KV bytes per token of the model and
cache type, and what the caller needs (tokens per request, slots wanted). The
readers around it (``available_ram``, ``offload_devices``, ``available_memory``,
``kv_shape``) fetch those inputs from this machine and from llama.cpp, so a test
can hand the policy any machine.

Where the memory comes from:

* CPU: ``MemAvailable`` of ``/proc/meminfo`` (the kernel's estimate of what can be
  allocated without swapping, page cache counted as reclaimable), capped by the
  process's cgroup limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``, of its own
  cgroup and every ancestor) less what the cgroup holds beyond inactive page cache.
  llama.cpp's CPU device is no help: ``ggml_backend_cpu_device_get_memory``
  (ggml-cpu.cpp) reports the whole physical memory as free. A mmap'd GGUF sits in
  page cache, which MemAvailable counts as free, so the weights are subtracted.
* GPU: ``ggml_backend_dev_memory(dev, &free, &total)`` (ggml-backend.h) of the
  GPU devices llama.cpp registered (``ggml_backend_dev_count``/``_get``/``_type``),
  read after the model is loaded, so the offloaded weights are already gone from
  ``free`` and are not subtracted again.

KV cache types (llama.cpp as vendored by llama-cpp-python 0.3.36):

* ``llama_context_params.type_k`` / ``.type_v`` (ggml type ids: F16 = 1, Q8_0 = 8,
  Q4_0 = 2) set the K and V cache types; llama.h still marks them [EXPERIMENTAL].
* A quantized V cache needs flash attention: ``llama_init_from_model``
  (llama-context.cpp) turns ``flash_attn_type`` AUTO into ENABLED for it and
  refuses DISABLED ("quantized V cache requires flash_attn to be enabled"); the
  ``llama_context`` constructor throws the same when FA ends up off. With FA on, a
  quantized K or V needs the head size to be a multiple of the block (32 for
  q8_0/q4_0), else the context is refused. A quantized K alone works without FA.
* The engine always runs with FA (see engine.py), so q8_0 and q4_0 are plain choices.
* Bytes: f16 2 per value; q8_0 34 per block of 32 (8.5 bits); q4_0 18 per 32 (4.5
  bits): 0.53 and 0.28 of f16. ``ggml_row_size`` of one K row (all KV heads of a
  layer), as ``llama_kv_cache`` allocates ``ggml_new_tensor_3d(type_k, n_embd_k_gqa,
  kv_size, n_stream)``.

Layouts and batch invariance (llama-kv-cache.cpp, llama-graph.cpp, ggml-cpu ops.cpp):

* ``kv_unified=False`` gives ``n_stream = n_seq_max`` streams of one size each
  (the 3-D tensor above: ``kv_size = n_ctx_seq = n_ctx / n_seq_max``, padded to 256
  in the ``llama_context`` constructor); a sequence maps to its own stream
  (``seq_to_stream``), so slots cannot hold different lengths.
* ``kv_unified=True`` is one stream of ``n_ctx`` cells shared by every sequence
  (``n_ctx_seq = n_ctx``): a slot can grow to the whole cache, but its cells land
  wherever ``find_slot`` finds free ones, interleaved with and after the holes left
  by other sequences. In the CPU flash-attention kernel
  (``ggml_compute_forward_flash_attn_ext_f16``) the online softmax runs over the
  cells in buffer order (masked cells skipped in ``_one_chunk``, but grouped in
  KV tiles by ``_tiled`` for prompt chunks of f16/f32 caches), so where the cells
  sit changes the rounding: no batch invariance.
* Streams are not fully invariant either: a decode step whose ubatch holds ONE
  stream, one token, an f16/f32 cache and ``n_kv >= 512`` (``n_kv`` is the used
  cells padded to 256, ``llama_kv_cache::get_n_kv``) takes the split-KV path
  (chunks per thread, partials reduced), which a batch of several streams never
  takes. Measured (demo model, 2 threads): a sequence of 300 or 700 tokens decoding
  one token alone vs beside another differs by up to 0.49 in its logits with f16,
  in both layouts; at 100 tokens it is bit-identical. q8_0/q4_0 caches never take
  the split-KV or tiled paths (they require f16/f32), always ``_one_chunk``:
  bit-identical at every length tried (tests/test_memory.py).
  ``ggml_backend_cpu_set_use_ref`` would force the reference path for f16 too, but
  it is per CPU backend and llama.h gives no handle on a context's backends.
* On CUDA the FA kernels pick parallel blocks and stream-K splits from ``n_kv`` and
  the number of query tiles (``launch_fattn``, fattn-common.cuh): not invariant.
* No layout of this llama.cpp gives both different lengths per slot and batch
  invariance; ``kv_layout="unified"`` can only be offered with
  ``batch_invariant: False``.
"""
from __future__ import annotations

import ctypes
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PLAIN_SLOTS", "KV_TYPES", "KvShape", "Available", "Device", "SlotPlan", "kv_bytes_per_token", "kv_shape",
           "available_ram", "offload_devices", "available_memory", "plan_slots", "plan_for_model",
           "knee", "default_max_batch", "batch_invariance", "CTX_PAD", "F16_INVARIANT_CELLS"]

#: cache type name -> (ggml type id, values per block, bytes per block), as ggml's type traits
KV_TYPES: dict[str, tuple[int, int, int]] = {"f16": (1, 1, 2), "q8_0": (8, 32, 34), "q4_0": (2, 32, 18)}
#: llama.cpp pads each stream's cells to a multiple of 256 (``n_ctx_seq``)
CTX_PAD = 256
#: with an f16 cache a lone decoding sequence takes the split-KV path from n_kv >= 512, i.e. from
#: 257 cells on (n_kv = cells padded to 256): up to this many it is bit-identical alone or batched
F16_INVARIANT_CELLS = 256
#: a request's context when the caller does not say (LocalBackend's n_ctx default)
DEFAULT_N_CTX = 4096
#: llama.cpp's LLAMA_MAX_SEQ (llama-cparams.h): the most sequences one context holds
MAX_SEQ = 256
#: kept back from the memory read, for llama.cpp's compute and output buffers and the Python side
MARGIN_BYTES = 1 << 30
#: the share of what remains that the KV cache may take: on CPU the notebook, pandas and other
#: processes live in the same RAM; on a GPU, vLLM's gpu_memory_utilization default
KV_SHARE = {"cpu": 0.5, "gpu": 0.9}
#: where raw batched decode stops gaining, by device kind (bench/batched.py prints this machine's
#: curve and its knee). Measured on 2 cores: on an EPYC (2026-12-06) batch 16 still gained on the
#: demo and on the Qwen3-1.7B shape; on a Xeon (2026-12-07) the demo gained up to 64 (206.5 tok/s
#: at 32, 231.4 at 64, 236.8 at 128) and the 1.7B shape up to 128 (60.7, 77.5, 95.7): the bigger
#: the weights, the longer a batch amortises reading them. More cores only add compute per weight
#: read, so the knee does not come earlier; GPUs gain to 64-256.
MAX_BATCH = {"cpu": 128, "gpu": 256}
#: slots for requests whose caller said nothing of how many come at once (a notebook's chats):
#: the KV cache of MAX_BATCH slots would hold GiBs for one chat (3.6 GiB at the 1.7B shape); a
#: caller that needs more says so (``gs.sweep``'s concurrency, ``serve --parallel``) and an idle
#: engine is made again, larger
PLAIN_SLOTS = 16

_GIB, _MIB, _KIB = 1 << 30, 1 << 20, 1 << 10
# ggml_backend_dev_type: CPU, GPU, IGPU, ACCEL, META
_DEV_GPU, _DEV_IGPU = 1, 2


@dataclass(frozen=True)
class KvShape:
    """What a token costs in the KV cache: layers x KV heads x (K head + V head) values."""

    n_layer: int
    n_head_kv: int
    head_k: int
    head_v: int


@dataclass(frozen=True)
class Available:
    """Memory the KV cache can come out of, and whether the weights must still come out of it."""

    bytes: int
    where: str                 # "RAM (MemAvailable)", "CUDA0 free", ...
    kind: str                  # "cpu" or "gpu"
    weights_counted: bool      # True when the weights are not yet subtracted from ``bytes``


@dataclass(frozen=True)
class Device:
    """One device llama.cpp registered, with its memory as ggml_backend_dev_memory reports it."""

    name: str
    description: str
    kind: int                  # ggml_backend_dev_type
    free: int
    total: int


@dataclass(frozen=True)
class SlotPlan:
    """The policy's answer: slots, tokens per slot, and the arithmetic (``reason``, ``numbers``)."""

    slots: int
    n_ctx: int
    kv_type: str
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)


def _row_bytes(kv_type: str, values: int) -> int:
    if kv_type not in KV_TYPES:
        raise ValueError(f"kv_cache_type must be one of {', '.join(KV_TYPES)}, got {kv_type!r}")
    _, block, size = KV_TYPES[kv_type]
    if values % block:
        raise ValueError(f"kv_cache_type={kv_type!r} needs head sizes that are multiples of {block} "
                         f"(llama.cpp refuses the context otherwise); this model has {values}")
    return values // block * size


def kv_bytes_per_token(shape: KvShape, kv_type: str = "f16", kv_type_v: str | None = None) -> int:
    """Bytes one token takes in the KV cache (all layers, K and V) for the given cache types."""
    k = _row_bytes(kv_type, shape.head_k) * shape.n_head_kv
    v = _row_bytes(kv_type_v or kv_type, shape.head_v) * shape.n_head_kv
    return shape.n_layer * (k + v)


def kv_shape(lc: Any, model: Any, meta: dict[str, str]) -> KvShape:
    """The KV shape of a loaded llama.cpp model (head sizes from GGUF metadata, else n_embd / n_head)."""
    arch = meta.get("general.architecture", "")
    n_head = max(1, int(lc.llama_model_n_head(model)))
    head_k = int(meta.get(f"{arch}.attention.key_length") or lc.llama_model_n_embd(model) // n_head)
    head_v = int(meta.get(f"{arch}.attention.value_length") or head_k)
    return KvShape(int(lc.llama_model_n_layer(model)), int(lc.llama_model_n_head_kv(model)), head_k, head_v)


# --- what this machine has ---------------------------------------------------------------------
def _meminfo_available(meminfo: Path) -> int | None:
    try:
        m = re.search(r"^MemAvailable:\s+(\d+)\s*kB", meminfo.read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) * _KIB if m else None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return None if text == "max" or not text.isdigit() else int(text)


def _stat(path: Path, key: str) -> int:
    try:
        m = re.search(rf"^{key} (\d+)$", path.read_text(), re.M)
    except OSError:
        return 0
    return int(m.group(1)) if m else 0


def _cgroup_headroom(proc_cgroup: Path, cgroup_root: Path) -> int | None:
    """Bytes the process's cgroup (and its ancestors) still allow, page cache counted as free."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    best: int | None = None
    for line in lines:
        hid, controllers, rel = (line.split(":", 2) + ["", ""])[:3]
        if hid == "0" and controllers == "":  # cgroup v2
            base, files = cgroup_root, ("memory.max", "memory.current", "memory.stat", "inactive_file")
        elif "memory" in controllers.split(","):  # cgroup v1
            base = cgroup_root / "memory"
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes", "memory.stat", "total_inactive_file")
        else:
            continue
        d = base / rel.lstrip("/")
        while True:
            limit = _read_int(d / files[0])
            if limit is not None and limit < 1 << 60:  # v1 writes "no limit" as ~2**63
                used = (_read_int(d / files[1]) or 0) - _stat(d / files[2], files[3])
                room = max(0, limit - max(0, used))
                best = room if best is None else min(best, room)
            if d == base or d.parent == d:
                break
            d = d.parent
    return best


def available_ram(meminfo: str | Path = "/proc/meminfo", proc_cgroup: str | Path = "/proc/self/cgroup",
                  cgroup_root: str | Path = "/sys/fs/cgroup") -> Available:
    """RAM this process can still use: MemAvailable, capped by its cgroup's memory limit if any."""
    avail = _meminfo_available(Path(meminfo))
    room = _cgroup_headroom(Path(proc_cgroup), Path(cgroup_root))
    if room is not None and (avail is None or room < avail):
        return Available(room, "RAM (cgroup limit)", "cpu", True)
    if avail is None:
        raise OSError(f"cannot read MemAvailable from {meminfo} and no cgroup limit is set: "
                      "pass slots= and n_ctx= to choose")
    return Available(avail, "RAM (MemAvailable)", "cpu", True)


def _ggml() -> ctypes.CDLL:
    from llama_cpp._ggml import libggml  # the libggml llama_cpp loaded (its registry, its devices)

    lib = libggml
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    for fn in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
        getattr(lib, fn).argtypes = [ctypes.c_void_p]
        getattr(lib, fn).restype = ctypes.c_char_p
    lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_type.restype = ctypes.c_int
    lib.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                            ctypes.POINTER(ctypes.c_size_t)]
    lib.ggml_backend_dev_memory.restype = None
    return lib


def offload_devices() -> list[Device]:
    """Every device llama.cpp registered (CPU included), with free and total memory as it reports them."""
    lib = _ggml()
    out = []
    for i in range(int(lib.ggml_backend_dev_count())):
        dev = lib.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        out.append(Device((lib.ggml_backend_dev_name(dev) or b"").decode(),
                          (lib.ggml_backend_dev_description(dev) or b"").decode(),
                          int(lib.ggml_backend_dev_type(dev)), int(free.value), int(total.value)))
    return out


def available_memory(n_gpu_layers: int, devices: list[Device] | None = None, **ram: Any) -> Available:
    """Where the KV cache will live: the GPUs' free memory when layers are offloaded to one, else RAM.

    Read after the model is loaded: offloaded weights are then already out of the GPUs' ``free``.
    """
    if n_gpu_layers != 0:
        gpus = [d for d in (offload_devices() if devices is None else devices) if d.kind in (_DEV_GPU, _DEV_IGPU)]
        if gpus:
            names = "+".join(d.name for d in gpus)
            return Available(sum(d.free for d in gpus), f"{names} free", "gpu", False)
    return available_ram(**ram)


# --- the policy --------------------------------------------------------------------------------
def knee(curve: dict[int, float], tolerance: float = 0.05) -> int:
    """The smallest batch size whose tokens/s is within ``tolerance`` of the curve's best."""
    if not curve:
        raise ValueError("knee() needs at least one (batch size, tokens/s) point")
    best = max(curve.values())
    return min(b for b, r in curve.items() if r >= (1 - tolerance) * best)


def default_max_batch(kind: str) -> int:
    """The batch size past which raw batched decode stops gaining on this kind of device."""
    return MAX_BATCH.get(kind, MAX_BATCH["cpu"])


def _size(n: float) -> str:
    return f"{n / _GIB:.1f} GiB" if abs(n) >= _GIB else f"{n / _MIB:.0f} MiB"


def plan_slots(*, available: Available, weights_bytes: int, kv_bytes_per_token: int, kv_type: str = "f16",
               n_ctx: int | None = None, slots: int | None = None, want_slots: int | None = None,
               want_why: str = "wanted", max_batch: int | None = None, n_ctx_train: int | None = None,
               margin_bytes: int = MARGIN_BYTES, kv_share: float | None = None) -> SlotPlan:
    """Slots and tokens per slot for the KV cache, with the arithmetic spelled out.

    ``n_ctx``: the tokens one request needs (largest prompt + max_tokens; serve's
    ``--n-ctx``); default 4096, or the training context if smaller; rounded up to 256
    as llama.cpp does. ``slots``: asked for (kept; the reason says whether it fits).
    Otherwise slots = what the KV budget holds at ``n_ctx`` each, at most ``want_slots``
    (the requests the caller will have in flight), ``max_batch`` (where batched decode
    stops gaining; default by device kind) and llama.cpp's 256 sequences. Budget =
    (available - weights, when not yet out of it, - margin) x the device's share.
    ``want_why`` names the ``want_slots`` limit in the reason. Raises ValueError naming
    ``n_ctx`` when not even one slot fits.
    """
    if kv_bytes_per_token <= 0:
        raise ValueError(f"kv_bytes_per_token must be positive, got {kv_bytes_per_token}")
    asked_ctx = n_ctx is not None
    need = int(n_ctx) if asked_ctx else min(DEFAULT_N_CTX, n_ctx_train or DEFAULT_N_CTX)
    if need < 1:
        raise ValueError(f"n_ctx must be >= 1, got {n_ctx}")
    per_slot_ctx = math.ceil(need / CTX_PAD) * CTX_PAD
    per_slot = kv_bytes_per_token * per_slot_ctx
    share = KV_SHARE.get(available.kind, 0.5) if kv_share is None else float(kv_share)
    weights = int(weights_bytes) if available.weights_counted else 0
    left = available.bytes - weights - int(margin_bytes)
    budget = max(0, int(left * share))
    by_memory = budget // per_slot
    cap = default_max_batch(available.kind) if max_batch is None else int(max_batch)
    numbers: dict[str, Any] = {
        "available_bytes": available.bytes, "available_from": available.where, "weights_bytes": weights,
        "margin_bytes": int(margin_bytes), "kv_share": share, "kv_budget_bytes": budget, "kv_type": kv_type,
        "kv_bytes_per_token": kv_bytes_per_token, "n_ctx_needed": need, "n_ctx": per_slot_ctx,
        "slots_by_memory": by_memory, "max_batch": cap, "want_slots": want_slots}
    head = (f"{available.where} {_size(available.bytes)}"
            + (f" - weights {_size(weights)}" if weights else " (weights already out)")
            + f" - margin {_size(margin_bytes)}, x {share:g} for the KV cache = {_size(budget)}; "
            f"{kv_bytes_per_token / _KIB:.1f} KiB per token ({kv_type}) x {per_slot_ctx} tokens = "
            f"{_size(per_slot)} per slot")
    if slots is not None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        fits = slots <= by_memory
        numbers.update(slots=int(slots), kv_cache_bytes=int(slots) * per_slot, fits=fits)
        reason = (f"asked for: {slots} slots of {per_slot_ctx} tokens = {_size(slots * per_slot)} of KV cache; "
                  + head + ("" if fits else f"; more than the {by_memory} the budget holds"))
        return SlotPlan(int(slots), per_slot_ctx, kv_type, reason, numbers)
    if by_memory < 1:
        raise ValueError(
            f"n_ctx={need}: one slot needs {_size(per_slot)} of KV cache ({kv_type}), the budget is "
            f"{_size(budget)} ({head}); lower n_ctx, use kv_cache_type='q8_0' or 'q4_0', or pass slots=1")
    limits = [(by_memory, "by memory"), (cap, "where batched decode stops gaining"), (MAX_SEQ, "llama.cpp's most")]
    if want_slots is not None:
        limits.append((max(1, int(want_slots)), want_why))
    chosen, why = min(limits, key=lambda x: x[0])
    numbers.update(slots=chosen, kv_cache_bytes=chosen * per_slot, limited_by=why)
    others = ", ".join(f"{n} {w}" for n, w in limits if w != why)
    reason = (f"auto: {chosen} slots of {per_slot_ctx} tokens ({why}; {others}): {head}; "
              "pass slots= (and n_ctx=) to choose")
    return SlotPlan(chosen, per_slot_ctx, kv_type, reason, numbers)


def plan_for_model(lm: Any, *, n_ctx: int | None, slots: int | None, kv_type: str = "f16",
                   want_slots: int | None = None, want_why: str = "wanted",
                   max_batch: int | None = None) -> SlotPlan:
    """``plan_slots`` for a loaded model (``LoadedModel``: its lc, llm, meta, n_gpu_layers, n_ctx_train)."""
    lc, model = lm.lc, lm.llm.model
    per_token = kv_bytes_per_token(kv_shape(lc, model, lm.meta), kv_type)
    return plan_slots(available=available_memory(lm.n_gpu_layers), weights_bytes=int(lc.llama_model_size(model)),
                      kv_bytes_per_token=per_token, kv_type=kv_type, n_ctx=n_ctx, slots=slots,
                      want_slots=want_slots, want_why=want_why, max_batch=max_batch,
                      n_ctx_train=lm.n_ctx_train)


def batch_invariance(kv_type: str, kv_layout: str, n_ctx_seq: int, on_gpu: bool) -> tuple[bool, str]:
    """Whether a sequence's logits are bit-identical alone or batched, for this cache (see the module doc).

    ``n_ctx_seq``: the most tokens one sequence may hold. Returns (answer, why).
    """
    if on_gpu:
        return False, ("not guaranteed: layers run on a GPU, whose flash-attention kernels split the work by "
                       "cache length and batch, so a seeded request can give other tokens alone than batched")
    if kv_layout == "unified":
        return False, ("no: kv_layout='unified' puts a sequence's cells wherever free ones are, among other "
                       "sequences' cells, which changes the attention's rounding: a seeded request can give "
                       "other tokens alone than batched (kv_layout='streams' keeps them apart)")
    if kv_type == "f16" and n_ctx_seq > F16_INVARIANT_CELLS:
        return False, (f"only up to {F16_INVARIANT_CELLS} tokens per request (prompt + output): past that, with "
                       "an f16 cache, a sequence decoding alone takes llama.cpp's split-KV CPU path and its "
                       "logits differ slightly from batched (up to ~0.5 measured), so a seeded request can "
                       "give other tokens alone than batched; kv_cache_type='q8_0' or 'q4_0' keeps them "
                       "identical at every length")
    return True, (f"yes: on this CPU a sequence's logits are bit-identical alone or batched ({kv_type} cache, a "
                  "stream per slot), so a seeded request gives the same tokens either way")
