"""Where the engine's step spends its time: inside ``llama_decode`` or around it (py-spy).

Runs a ``gs.sweep`` of --repeats seeded repeats (``min_tokens`` = ``max_tokens``,
``ignore_eos``) in a child process; once it has loaded the model and warmed up,
``py-spy record --native --pid`` attaches and samples the measured sweep alone. Keeps
the samples of the engine's thread (the stacks through ``backends/llama/driver.py``;
py-spy leaves out idle threads, and waits for work are dropped), and prints:

* the share of the engine thread's busy samples inside ``llama_decode`` and outside it
  (sampling, penalties, detokenising, stop checks, events, batch filling, the GIL);
* outside ``llama_decode`` per generated token, in ms (samples / rate / tokens);
* the Python functions (innermost Python frame) that take the samples outside it.

A sample is inside when a native frame is ``llama_decode`` or, without native frames,
when the innermost Python frame's source line calls ``llama_decode(``. py-spy needs
permission to ptrace the workload (containers may need ``--cap-add SYS_PTRACE``).

    .venv/bin/python bench/profile_step.py [--model demo] [--repeats 16] [--tokens 64] [--rate 250]
        [--no-native] [--raw out.txt]
"""
from __future__ import annotations

import argparse
import json
import linecache
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

PROMPT = "Write a short story about a dragon who learns to cook."
ENGINE_THREAD = "backends/llama/driver.py"
_PY_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*\.py):(?P<line>\d+)\)$")


def child(args: argparse.Namespace) -> None:
    """The profiled workload: a warm-up, then the sweep; prints its tokens and wall time as JSON."""
    import gsexplore as gs
    from gsexplore.backends.local import LocalBackend

    backend = LocalBackend(args.model, n_ctx=256, slots=args.slots or args.repeats, shared=False)
    base = gs.Params(temperature=0.8, top_p=0.95, max_tokens=args.tokens, min_tokens=args.tokens, ignore_eos=True)
    with tempfile.TemporaryDirectory() as d:
        warm = gs.Params(max_tokens=4, min_tokens=4, ignore_eos=True)
        gs.sweep(backend, [PROMPT], grid={}, repeats=2, base=warm, store=f"{d}/w.parquet", progress=False)
        print("ready", flush=True)
        sys.stdin.readline()  # the profiler is attached: go
        t0 = time.perf_counter()
        df = gs.sweep(backend, [PROMPT], grid={}, repeats=args.repeats, base=base, store=f"{d}/s.parquet",
                      progress=False, seed=1)
        wall = time.perf_counter() - t0
    print(json.dumps({"tokens": int(df["completion_tokens"].sum()), "wall_s": wall, "slots": backend.slots}))
    backend.close()


def in_decode(frames: list[str]) -> bool:
    """Whether a sample (frames root first) is inside llama_decode."""
    if any(f.split(" (")[0].strip() == "llama_decode" for f in frames):
        return True
    for f in reversed(frames):
        m = _PY_FRAME.match(f)
        if m:
            return "llama_decode(" in linecache.getline(m["file"], int(m["line"]))
    return False


def innermost_python(frames: list[str]) -> str:
    for f in reversed(frames):
        m = _PY_FRAME.match(f)
        if m:
            return f"{m['func']} ({Path(m['file']).name}:{m['line']})"
    return frames[-1] if frames else "?"


def analyse(raw: str) -> tuple[int, int, Counter[str]]:
    """(engine busy samples, of which in llama_decode, outside ones by innermost Python frame) of py-spy's raw output.

    Samples of the engine thread waiting for work (``Condition.wait``) are not busy.
    """
    total = inside = 0
    outside: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit() or ENGINE_THREAD not in stack:
            continue
        frames, n = stack.split(";"), int(count)
        if innermost_python(frames).startswith("Condition.wait "):
            continue
        total += n
        if in_decode(frames):
            inside += n
        else:
            outside[innermost_python(frames)] += n
    return total, inside, outside


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo", help="demo (default), tiny-qwen3, a .gguf path or a built model")
    ap.add_argument("--repeats", type=int, default=16)
    ap.add_argument("--slots", type=int, default=None, help="engine slots (default: --repeats)")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--no-native", action="store_true", help="Python frames only")
    ap.add_argument("--raw", help="keep py-spy's raw output in this file")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        sys.exit("py-spy not found: pip install py-spy (it is in the test extras)")
    out = Path(args.raw) if args.raw else Path(tempfile.mkdtemp()) / "raw.txt"
    work = subprocess.Popen([sys.executable, __file__, "--child", "--model", args.model, "--repeats",
                             str(args.repeats), "--tokens", str(args.tokens)]
                            + (["--slots", str(args.slots)] if args.slots else []),
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert work.stdin and work.stdout
    for line in work.stdout:  # loaded and warmed up: only the measured sweep is sampled
        if line.strip() == "ready":
            break
    else:
        sys.exit(f"the workload exited with {work.wait()} before it was ready")
    cmd = [spy, "record", "--format", "raw", "--rate", str(args.rate), "-o", str(out), "--pid", str(work.pid)]
    spying = subprocess.Popen(cmd + ([] if args.no_native else ["--native"]), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    assert spying.stdout
    started = []
    for line in spying.stdout:
        started.append(line)
        if "Sampling process" in line:
            break
    else:
        work.kill()
        sys.exit(f"py-spy could not attach (ptrace permission?):\n{''.join(started)[-2000:]}")
    work.stdin.write("go\n")
    work.stdin.flush()
    result = next((json.loads(x) for x in work.stdout if x.startswith("{")), None)
    work.wait()
    spying.communicate()
    if result is None or not out.exists():
        sys.exit(f"no result (workload exit {work.returncode}, py-spy exit {spying.returncode})")
    total, inside, outside = analyse(out.read_text())
    if not total:
        sys.exit(f"no samples of the engine's thread ({ENGINE_THREAD}) in {out}")
    tokens = result["tokens"]
    busy_s = total / args.rate
    print(f"model {args.model}; {args.repeats} repeats x {args.tokens} tokens on {result['slots']} slots: "
          f"{tokens} tokens in {result['wall_s']:.2f} s ({tokens / result['wall_s']:.1f} tok/s)")
    print(f"engine thread busy {busy_s:.2f} s ({total} samples at {args.rate}/s, "
          f"{busy_s / result['wall_s']:.0%} of the sweep's wall time)")
    print(f"inside llama_decode:  {inside / total:6.1%}")
    print(f"outside llama_decode: {1 - inside / total:6.1%}  = {(total - inside) / args.rate / tokens * 1e3:.3f} ms "
          "per generated token")
    print(f"\ntop {args.top} outside llama_decode (innermost Python frame):")
    for name, n in outside.most_common(args.top):
        print(f"  {n / total:6.1%}  {n / args.rate / tokens * 1e3:7.3f} ms/token  {name}")
    if args.raw:
        print(f"\nraw samples kept in {out}")


if __name__ == "__main__":
    main()
