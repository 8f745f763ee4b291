"""Run notebooks and store only the outputs of their ``# NBVAL_CHECK_OUTPUT`` cells.

    .venv/bin/python notebooks/refresh_outputs.py                  # every notebook
    .venv/bin/python notebooks/refresh_outputs.py notebooks/03_*.ipynb

Use it after editing a notebook: it executes the notebook top to bottom (kernel "python3",
working directory notebooks/), keeps the reference output and an execution count of each
strict cell (nbval compares those, and skips cells without a count), clears every other
output and count, and drops widget state and timing metadata. It prints how long each
notebook took. ``tests/test_notebooks_clean.py`` checks the result.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
STRICT = "# NBVAL_CHECK_OUTPUT"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Keep only strict cells' outputs (numbered 1, 2, ...); no widget state, no timings."""
    nb.metadata.pop("widgets", None)
    count = 0
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("widgets", None)
        if cell.cell_type != "code":
            continue
        if cell.source.lstrip().startswith(STRICT):
            count += 1
            cell.execution_count = count
            for out in cell.outputs:
                if out.get("output_type") == "stream" and out.get("name") == "stderr":
                    raise SystemExit(f"a strict cell wrote to stderr (fragile to compare): {out.get('text')!r}")
                if WIDGET_MIME in out.get("data", {}):
                    raise SystemExit("a strict cell displays a widget (its id is random)")
                if "metadata" in out:
                    out["metadata"] = {}
                if out.get("output_type") == "execute_result":
                    out["execution_count"] = count
        else:
            cell.outputs = []
            cell.execution_count = None
    return nb


def refresh(path: Path, timeout: int = 600) -> float:
    """Execute one notebook in place and clean it; returns the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    root = str(HERE.parent)  # the kernel imports this checkout's gsexplore even if not installed
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([root, *[p for p in paths if p != root]])
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - t0
    nbformat.write(clean(nb), path)
    return elapsed


def main(argv: list[str]) -> None:
    paths = [Path(a) for a in argv] or sorted(HERE.glob("*.ipynb"))
    for path in paths:
        print(f"{path.name}: {refresh(path):.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
