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


# --- every output in Spanish: no English sentence of the project, no red stderr for expected advice ----
import inspect  # noqa: E402
import re  # noqa: E402

import pytest  # noqa: E402

#: Phrases of the project's English messages (exceptions, warnings, log lines), never of a model's answer.
PROJECT_ENGLISH = re.compile(
    r"is not allowed|Input should|requests to run|settings x|already in the store|prompt tokens|"
    r"completion tokens|Warning\b|could not connect|missing or invalid|does not match|not found|is too large|"
    r"each slot holds|sweep interrupted|to resume|Traceback|did you mean|HTTP \d{3}:")
_SWEEP_PLAN = re.compile(r"^sweep \w+: \d[\d,]* requests to run.*$", re.MULTILINE)
#: the owned notebooks (06 belongs to the remote-vs-local work)
CHECKED = ("00_", "01_", "02_", "03_", "04_", "05_", "07_")


def _sweep_plan_still_english() -> bool:
    """gs.sweep's plan line is English until sweep.py says it through the catalogue (key sweep.plan)."""
    try:
        from gsexplore.sweep import SweepPlan
    except ImportError:
        return False
    return "sweep.plan" not in inspect.getsource(SweepPlan.describe)


def _texts(outputs: list) -> list[tuple[str, str]]:
    out = []
    for o in outputs or []:
        kind = o.get("output_type")
        if kind == "stream":
            out.append((o.get("name", "stdout"), o.get("text", "")))
        elif kind in ("display_data", "execute_result"):
            data = o.get("data", {})
            out.append(("data", str(data.get("text/html") or data.get("text/plain") or "")))
        elif kind == "error":
            out.append(("error", o.get("ename", "") + ": " + o.get("evalue", "")))
    return out


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):  # noqa: ANN001, ANN201 - pytest's hook signature
    outcome = yield
    problem = _problem(item)
    if problem and outcome.exception is None:
        outcome.force_exception(AssertionError(problem))


def _problem(item) -> str | None:  # noqa: ANN001
    path = str(getattr(item, "fspath", ""))
    outs = getattr(item, "test_outputs", None)
    if outs is None or not any(f"/{p}" in path for p in CHECKED):
        return None
    allow_plan = _sweep_plan_still_english()
    for name, text in _texts(outs):
        if allow_plan:
            text = _SWEEP_PLAN.sub("", text)  # pending: sweep.py switches to msg("sweep.plan")
        text = re.sub(r"<(code|pre)\b.*?</\1>", "", text, flags=re.S)  # code shown as code
        found = PROJECT_ENGLISH.search(text)
        if found:
            where = text[max(0, found.start() - 80):found.end() + 80]
            return f"English from the project in a Spanish notebook ({name}): {where!r}"
        if name == "stderr" and re.search(r"\w+Warning", text):
            return f"expected advice shown as red stderr (display it as a note): {text[:300]!r}"
    return None
