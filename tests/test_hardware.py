"""Threads and buffer types: the pure decisions, on any machine described to them."""
from __future__ import annotations

from pathlib import Path

import pytest

from gsexplore.backends.llama.hardware import (choose_extra_buffers, physical_cores,
                                               system_features)

# llama_print_system_info() of a build on a Sapphire Rapids Xeon and on an AVX2 laptop
AMX_INFO = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | "
            "BMI2 = 1 | AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | "
            "AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |")
AVX2_INFO = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
             "LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |")


def _topology(root: Path, cpus: dict[int, tuple[int, int]]) -> Path:
    """A fake /sys/devices/system/cpu: logical cpu -> (package, core)."""
    for cpu, (package, core) in cpus.items():
        topo = root / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text(f"{package}\n")
        (topo / "core_id").write_text(f"{core}\n")
    return root


def test_amx_build_leaves_extra_buffers_out_by_default() -> None:
    c = choose_extra_buffers(AMX_INFO)
    assert c.amx_in_build and not c.use_extra_bufts and c.requested == "auto"
    assert "20824" in c.reason and "extra_buffers='all'" in c.reason


def test_amx_build_opt_in_and_opt_out() -> None:
    assert choose_extra_buffers(AMX_INFO, "all").use_extra_bufts
    assert choose_extra_buffers(AMX_INFO, True).use_extra_bufts
    assert "crashes" in choose_extra_buffers(AMX_INFO, "all").reason
    assert not choose_extra_buffers(AVX2_INFO, "none").use_extra_bufts
    assert not choose_extra_buffers(AVX2_INFO, False).use_extra_bufts


def test_build_without_amx_keeps_repacked_buffers() -> None:
    c = choose_extra_buffers(AVX2_INFO)
    assert c.use_extra_bufts and not c.amx_in_build
    assert choose_extra_buffers(AVX2_INFO, None) == c


def test_amx_off_in_build_counts_as_no_amx() -> None:
    assert choose_extra_buffers(AVX2_INFO.replace("FMA = 1", "FMA = 1 | AMX_INT8 = 0")).use_extra_bufts


def test_bad_extra_buffers_value_names_the_field() -> None:
    with pytest.raises(ValueError, match="extra_buffers must be 'auto', 'all' or 'none'"):
        choose_extra_buffers(AVX2_INFO, "amx")


def test_system_features_parses_llama_cpp_info() -> None:
    f = system_features(AMX_INFO)
    assert f["AMX_INT8"] and f["AVX2"] and f["REPACK"]
    assert "AMX_INT8" not in system_features(AVX2_INFO)


def test_hyperthread_siblings_count_once(tmp_path: Path) -> None:
    # 2 packages x 2 cores x 2 threads
    sysfs = _topology(tmp_path, {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1),
                                 4: (0, 0), 5: (0, 1), 6: (1, 0), 7: (1, 1)})
    nolimit = tmp_path / "cpu.max"
    nolimit.write_text("max 100000\n")
    assert physical_cores(range(8), sysfs, nolimit) == 4
    assert physical_cores([0, 4], sysfs, nolimit) == 1      # one core's two threads
    assert physical_cores([0, 1, 4], sysfs, nolimit) == 2   # affinity decides which cores


def test_cgroup_quota_caps_the_cores(tmp_path: Path) -> None:
    sysfs = _topology(tmp_path / "sys", {i: (0, i) for i in range(8)})
    quota = tmp_path / "cpu.max"
    quota.write_text("250000 100000\n")                      # docker --cpus=2.5
    assert physical_cores(range(8), sysfs, quota) == 3
    assert physical_cores(range(8), sysfs, tmp_path / "absent") == 8


def test_no_topology_counts_each_cpu(tmp_path: Path) -> None:
    assert physical_cores([0, 1, 2], tmp_path / "nothing", tmp_path / "absent") == 3


def test_this_machine_has_at_least_one_core() -> None:
    assert physical_cores() >= 1
