"""`make bench`: every bench script on its default model (the demo), then the engine benches at Qwen3-1.7B's shape.

The Qwen3-1.7B-shaped GGUF (random weights, the real model's cost per token) is
built by ``gsexplore models build qwen3-1.7b-shape`` and never here: when it is
missing its part is skipped with a note. ``GSEXPLORE_BENCH_BIG_MODEL=/path.gguf``
names another file for that part. Each script runs in its own process; a failing
one is reported at the end (exit status 1) and the others still run.

    .venv/bin/python bench/run_all.py [--only batched serve_load ...] [--skip-big] [--dry-run]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

BIG = "qwen3-1.7b-shape"
#: the benches that measure the engine (single stream, batched decode, a classroom): run at both sizes
ENGINE_BENCHES = ("local_overhead", "batched", "serve_load")
#: tools, not benchmarks: run on demand
NOT_RUN = {"run_all", "profile_step"}


def big_model() -> Path | None:
    """The Qwen3-1.7B-shaped GGUF if it was built (or named by GSEXPLORE_BENCH_BIG_MODEL), else None."""
    named = os.environ.get("GSEXPLORE_BENCH_BIG_MODEL")
    if named:
        return Path(named) if Path(named).is_file() else None
    from gsexplore.models import cache_dir, list_models

    for row in list_models():
        if str(row["name"]).lower() == BIG:
            return Path(row["path"])
    found = sorted(p for p in cache_dir().rglob("*.gguf") if BIG in p.name.lower())
    return found[0] if found else None


def run(script: Path, extra: list[str], dry: bool = False) -> bool:
    print(f"\n== {script.relative_to(ROOT)} {' '.join(extra)}".rstrip(), flush=True)
    return dry or subprocess.run([sys.executable, str(script), *extra], cwd=ROOT).returncode == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", help="script names (without .py) to run")
    ap.add_argument("--skip-big", action="store_true", help="only the default model")
    ap.add_argument("--dry-run", action="store_true", help="print what would run")
    args = ap.parse_args()

    scripts = [p for p in sorted(BENCH.glob("*.py"))
               if p.stem not in NOT_RUN and not p.stem.startswith("_") and (not args.only or p.stem in args.only)]
    failed = [s.name for s in scripts if not run(s, [], args.dry_run)]
    big = None if args.skip_big else big_model()
    engine = [s for s in scripts if s.stem in ENGINE_BENCHES]
    if big is None and not args.skip_big and engine:
        print(f"\n== Qwen3-1.7B shape: skipped, not built (gsexplore models build {BIG}: 1.1 GB, a few minutes; "
              "or GSEXPLORE_BENCH_BIG_MODEL=/path.gguf)")
    elif big is not None:
        failed += [f"{s.name} --model {big.name}" for s in engine if not run(s, ["--model", str(big)], args.dry_run)]
    print("\nprofile the engine's step: bench/profile_step.py (needs py-spy)")
    if failed:
        print("failed: " + "; ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
