"""Every model the project ships loads and generates on this CPU, in a subprocess.

A llama.cpp crash (SIGSEGV in a buffer type, an illegal instruction) kills only the
subprocess: the test fails naming the CPU's features and llama.cpp's build, and the
rest of the suite runs on.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys
import gsexplore as gs
from gsexplore.backends.llama.hardware import physical_cores
b = gs.LocalBackend(sys.argv[1], n_ctx=512)
c = b.chat("What is the capital of France?", gs.Params(temperature=0, max_tokens=8))
info = b.info()
print(json.dumps({"content": c.content, "reasoning": c.reasoning_content,
                  "tokens": c.usage.completion_tokens, "info": info, "cores": physical_cores()}))
"""


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                wanted = ("avx", "amx", "f16c", "fma", "sse4")
                return " ".join(f for f in line.split(":", 1)[1].split() if f.startswith(wanted))
    except OSError:
        pass
    return "unknown"


@pytest.mark.parametrize("model", ["tiny-qwen3", "demo"])
def test_shipped_model_generates_in_a_subprocess(model: str) -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, model], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        from gsexplore.backends.llama.loading import system_info

        how = (f"killed by {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
               else f"exit status {proc.returncode}")
        pytest.fail(f"{model}: generating {how}.\nCPU flags: {_cpu_flags()}\n"
                    f"llama.cpp: {system_info()}\nstderr (last 2000 chars):\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    info = out["info"]
    assert out["tokens"] >= 1
    assert info["n_threads"] == info["n_threads_batch"] == out["cores"]
    assert info["buffer_types"], "the load log names the buffer types that hold the weights"
    if not info["extra_buffer_types_used"]:
        assert not any(name.startswith("AMX") for name in info["buffer_types"])


def test_demo_answers_paris_on_this_cpu() -> None:
    """The README's done-when command, in a subprocess (a crash fails only this test)."""
    code = ("import gsexplore as gs; print(gs.LocalBackend.demo()"
            ".chat('What is the capital of France?', gs.Params(temperature=0)).content)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Paris" in proc.stdout
