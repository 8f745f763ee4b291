"""What this machine gives llama.cpp: physical cores, and which weight buffer types are safe.

Pure functions with their inputs as arguments (sysfs root, cgroup file, llama.cpp's
system-info string), so a test can hand them any machine, an AMX Xeon included.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["physical_cores", "default_threads", "BufferChoice", "choose_extra_buffers",
           "system_features", "ExtraBuffers"]

ExtraBuffers = Literal["auto", "all", "none"]

#: llama.cpp's AMX buffer type crashes in ``ggml_backend_amx_mul_mat`` on some Xeons
#: (ggml-org/llama.cpp#20824): a segfault in the first decode of a quantized model.
AMX_BUG = "ggml-org/llama.cpp#20824 (segfault in ggml_backend_amx_mul_mat)"


def physical_cores(cpus: Iterable[int] | None = None, sysfs: str | Path = "/sys/devices/system/cpu",
                   cpu_max: str | Path = "/sys/fs/cgroup/cpu.max") -> int:
    """Physical cores this process may run on: its CPU affinity, hyperthread siblings counted once.

    ``cpus``: the logical CPUs allowed (default ``os.sched_getaffinity(0)``). A
    cgroup v2 CPU quota (``cpu.max``, as Docker's ``--cpus`` writes) caps the count.
    Without topology files (not Linux) every allowed CPU counts as a core.
    """
    if cpus is None:
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cpus = sorted(set(cpus))
    cores: set[tuple[str, str]] = set()
    root = Path(sysfs)
    for cpu in cpus:
        topo = root / f"cpu{cpu}" / "topology"
        try:
            package = (topo / "physical_package_id").read_text().strip()
            core = (topo / "core_id").read_text().strip()
        except OSError:
            cores.add(("cpu", str(cpu)))
            continue
        cores.add((package, core))
    n = max(1, len(cores))
    quota = _cgroup_quota(Path(cpu_max))
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return n


def _cgroup_quota(path: Path) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` ("max 100000" = no limit), or None."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def default_threads() -> int:
    """The default of ``n_threads`` and ``n_threads_batch``: the physical cores available."""
    return physical_cores()


def system_features(system_info: str) -> dict[str, bool]:
    """llama.cpp's ``llama_print_system_info()`` as {feature: on}, e.g. {"AVX2": True, "AMX_INT8": True}."""
    return {k: v != "0" for k, v in re.findall(r"([A-Z][A-Z0-9_]+) = (\w+)", system_info)}


@dataclass(frozen=True)
class BufferChoice:
    """Whether llama.cpp may place weights in its extra (repacked) CPU buffer types, and why."""

    requested: ExtraBuffers
    use_extra_bufts: bool
    amx_in_build: bool
    reason: str


def choose_extra_buffers(system_info: str, requested: ExtraBuffers | bool | None = "auto") -> BufferChoice:
    """Decide llama.cpp's ``use_extra_bufts`` from its system info and the user's request.

    ``"auto"`` (default): on, unless the build has AMX, whose buffer type crashes
    (``AMX_BUG``). llama.cpp offers its extra buffer types as one switch: with AMX in
    the build, turning AMX off turns the other repacked types (CPU_REPACK, for
    Q4_0/Q4_K/IQ4_NL/Q8_0 on AVX2) off too. A tensor override cannot keep them
    alone: an override names one buffer type that llama.cpp then uses without
    checking that it can hold the tensor. ``"all"`` (or True): every extra buffer
    type, AMX included (for builds where AMX works). ``"none"`` (or False): plain
    CPU buffers only.
    """
    if requested is None or requested is True:
        requested = "auto" if requested is None else "all"
    elif requested is False:
        requested = "none"
    if requested not in ("auto", "all", "none"):
        raise ValueError(f"extra_buffers must be 'auto', 'all' or 'none' (or True/False), got {requested!r}")
    amx = system_features(system_info).get("AMX_INT8", False)
    if requested == "all":
        return BufferChoice("all", True, amx, "asked for: every extra buffer type"
                            + (" (AMX included: it crashes on some CPUs, " + AMX_BUG + ")" if amx else ""))
    if requested == "none":
        return BufferChoice("none", False, amx, "asked for: plain CPU buffers only")
    if amx:
        return BufferChoice("auto", False, True,
                            "the llama.cpp build has AMX, whose buffer type crashes on some Xeons "
                            f"({AMX_BUG}); extra buffer types are off (extra_buffers='all' opts back in)")
    return BufferChoice("auto", True, False, "no AMX in the llama.cpp build: repacked buffer types on")
