"""Sweeps past one machine: a sweep as an OpenAI/vLLM batch file, its results back as rows.

    sp = gsexplore.sweep.plan(backends, prompts, grid=..., repeats=..., base=...)
    sp.to_batch("requests.jsonl")                 # or gs.sweep(..., store=..., to_batch="requests.jsonl")
    # vllm run-batch -i requests.jsonl -o results.jsonl --model Qwen/Qwen3-1.7B
    # gsexplore batch run -i requests.jsonl -o results.jsonl --model demo    (this machine)
    # examples/ray_batch.py                         (Ray Data over OpenAI-compatible endpoints)
    df = gs.load_batch("results.jsonl", store="study.parquet", plan="requests.jsonl")

Export: `gsexplore.sweep.export` (the plan and the wire body are the sweep's).
Here: reading result lines (`lines`), the plan file (`planfile`), the importer
(`importer`) and the local runner with vLLM's interface (`local`).
"""

from __future__ import annotations

from .importer import load_batch
from .local import run_file

__all__ = ["load_batch", "run_file"]
