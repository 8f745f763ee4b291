"""`gsexplore doctor`: what this machine gives gsexplore, and whether local generation works.

Each check is a line ``ok`` / ``warn`` / ``FAIL`` with what was found and, on a
failure, what to do. The generation check runs in a subprocess, so a llama.cpp
crash is reported instead of killing the doctor. The API key's value is never shown.
"""
from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata

__all__ = ["Check", "run_checks", "main"]

API_KEY_ENV = "GS_API_KEY"

_GENERATE = r"""
import json, sys, time
import gsexplore as gs
b = gs.LocalBackend.demo(n_ctx=512)
p = gs.Params(temperature=0, max_tokens=8, min_tokens=8)
b.chat("Hi", p)                                  # warm-up: pages in, prompt cached
t = time.perf_counter()
c = b.chat("Say something about the sea.", p)
dt = time.perf_counter() - t
info = b.info()
print(json.dumps({"tokens": c.usage.completion_tokens, "seconds": dt,
                  "buffer_types": info["buffer_types"], "n_threads": info["n_threads"]}))
"""


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: str  # "ok", "warn", "FAIL"
    detail: str
    fix: str = ""

    def line(self) -> str:
        s = f"[{self.status:>4}] {self.name}: {self.detail}"
        return s + (f"\n       -> {self.fix}" if self.fix else "")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _check_versions() -> Check:
    from ._version import __version__

    return Check("versions", "ok", f"Python {platform.python_version()} ({sys.executable}), "
                 f"gsexplore {__version__}, llama-cpp-python {_version('llama-cpp-python')}, "
                 f"llguidance {_version('llguidance')}")


def _check_llama_build() -> Iterator[Check]:
    try:
        from .backends.llama.loading import llama_cpp_module, system_info
        lc = llama_cpp_module()
        info = system_info()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        yield Check("llama.cpp", "FAIL", f"llama-cpp-python does not import: {exc}",
                    "reinstall it: .venv/bin/pip install --force-reinstall llama-cpp-python (or `make setup`)")
        return
    from .backends.llama.hardware import choose_extra_buffers, physical_cores, system_features

    feats = [k for k, on in system_features(info).items() if on]
    yield Check("llama.cpp build", "ok", f"CPU features {' '.join(feats) or 'none reported'}")
    gpu = bool(lc.llama_supports_gpu_offload())
    yield Check("GPU offload", "ok", "supported by this build" if gpu else
                "not in this build (CPU only); `make gpu` rebuilds with CUDA")
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    yield Check("threads", "ok", f"{physical_cores()} (physical cores available; "
                f"{len(affinity) or os.cpu_count()} logical CPUs allowed) for n_threads and n_threads_batch")
    c = choose_extra_buffers(info)
    yield Check("buffer types", "ok", f"extra buffer types {'on' if c.use_extra_bufts else 'off'}: {c.reason}")


def _check_models() -> Check:
    try:
        from .models import list_models
        rows = list_models()
    except Exception as exc:  # noqa: BLE001
        return Check("models", "FAIL", f"cannot list the model cache: {exc}",
                     "check $GSEXPLORE_CACHE, then run `gsexplore models fetch`")
    if not rows:
        return Check("models", "FAIL", "no models in the cache", "run `gsexplore models fetch`")
    names = ", ".join(f"{r['name']}{' ' + r['filename'] if r['filename'] else ''} ({r['size_mb']:.1f} MB)"
                      for r in rows)
    demo = any(r["name"] == "demo" for r in rows)
    return Check("models", "ok" if demo else "FAIL", names,
                 "" if demo else "the demo model is missing: run `gsexplore models fetch`")


def _check_remote(timeout: float) -> Check:
    if not os.environ.get(API_KEY_ENV):
        return Check("remote API", "ok", f"{API_KEY_ENV} is not set: the remote API is not used "
                     "(everything runs on the local models)")
    from .backends.remote import RemoteBackend

    try:
        backend = RemoteBackend(timeout=timeout, max_retries=0)
        models = backend.models()
    except Exception as exc:  # noqa: BLE001 - the message is scrubbed of the key by the client
        return Check("remote API", "warn", f"{API_KEY_ENV} is set; {RemoteBackend.__name__} "
                     f"did not answer: {type(exc).__name__}: {exc}",
                     "offline is fine for local work; otherwise check the network and the key")
    return Check("remote API", "ok", f"{API_KEY_ENV} is set; {backend.base_url} serves {', '.join(models)}")


def _check_generation(timeout: float) -> Check:
    try:
        proc = subprocess.run([sys.executable, "-c", _GENERATE], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return Check("generation", "FAIL", f"the demo model did not answer in {timeout:.0f} s",
                     "the machine may be overloaded; run `gsexplore doctor` again")
    if proc.returncode != 0:
        how = (f"crashed ({signal.Signals(-proc.returncode).name})" if proc.returncode < 0
               else f"failed (exit status {proc.returncode})")
        tail = proc.stderr.strip().splitlines()[-3:]
        return Check("generation", "FAIL", f"the demo model {how}: {' | '.join(tail)}",
                     "try LocalBackend(..., extra_buffers='none'); report the CPU (`lscpu`) and this output")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    rate = out["tokens"] / out["seconds"] if out["seconds"] > 0 else float("inf")
    where = ", ".join(f"{k} {v:.0f} MiB" for k, v in out["buffer_types"].items())
    return Check("generation", "ok", f"demo model: {out['tokens']} tokens at {rate:.0f} tokens/s "
                 f"on {out['n_threads']} threads (weights in {where})")


def run_checks(*, generate: bool = True, remote_timeout: float = 5.0,
               generate_timeout: float = 300.0) -> list[Check]:
    """Every check, in the order printed."""
    steps: list[Callable[[], Check | Iterator[Check]]] = [
        _check_versions, _check_llama_build, _check_models, lambda: _check_remote(remote_timeout)]
    if generate:
        steps.append(lambda: _check_generation(generate_timeout))
    checks: list[Check] = []
    for step in steps:
        got = step()
        checks.extend([got] if isinstance(got, Check) else list(got))
    return checks


def main(*, generate: bool = True, out: Callable[[str], None] = print) -> int:
    """Print the report; 1 when any check failed."""
    checks = run_checks(generate=generate)
    for c in checks:
        out(c.line())
    failed = [c.name for c in checks if c.status == "FAIL"]
    out(f"gsexplore doctor: {'FAILED: ' + ', '.join(failed) if failed else 'all good'}")
    return 1 if failed else 0
