"""nbval starts one Jupyter kernel per notebook; make it import this checkout's gsexplore.

`make setup` installs gsexplore in editable mode, so this changes nothing there. It matters
when the package is not installed in the environment that runs
``pytest --nbval-lax notebooks/`` (a plain checkout): the kernels inherit this PYTHONPATH.
"""

from __future__ import annotations

import os
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
_paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
if _ROOT not in _paths:
    os.environ["PYTHONPATH"] = os.pathsep.join([_ROOT, *_paths])
