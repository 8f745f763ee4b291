"""The committed notebooks are clean: only strict cells keep outputs, and each one opens properly.

CI runs every notebook with ``pytest --nbval-lax notebooks/``: outputs are compared only for
cells whose first line is ``# NBVAL_CHECK_OUTPUT``. Those cells must keep their reference
output and an execution count (nbval skips the comparison of a cell that was never run);
every other cell is stored without outputs or execution count, and no notebook stores
widget state. Each notebook opens with a markdown cell: a Spanish ``# title`` and a
two-line English summary starting with ``**English:**``.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
STRICT = "# NBVAL_CHECK_OUTPUT"
EXPECTED = [
    "00_inicio_rapido",
    "01_muestreo",
    "02_penalizaciones_y_parada",
    "03_decodificacion_guiada",
    "04_barridos",
    "05_razonamiento",
    "06_local_vs_remoto",
    "07_logprobs",
    "08_clase",
]
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# Spanish in a title: an accented letter, ñ, ¿/¡, or a common Spanish word
_SPANISH = re.compile(r"[áéíóúñ¿¡]|\b(el|la|los|las|de|del|y|con|qué|cómo|tu|un|una)\b", re.IGNORECASE)

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _is_strict(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "code" and cell.source.lstrip().startswith(STRICT)


def test_every_planned_notebook_is_there():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_valid_and_uses_the_python3_kernel(path: Path):
    nb = _read(path)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_opens_with_spanish_title_and_two_line_english_summary(path: Path):
    first = _read(path).cells[0]
    assert first.cell_type == "markdown", "the first cell must be markdown"
    lines = first.source.splitlines()
    assert lines[0].startswith("# "), "the first line must be a '# title'"
    assert _SPANISH.search(lines[0][2:]), f"the title does not look Spanish: {lines[0]!r}"
    start = next((i for i, line in enumerate(lines) if line.startswith("**English:**")), None)
    assert start is not None, "no '**English:**' summary in the first cell"
    summary = []
    for line in lines[start:]:
        if not line.strip() or line.strip() == "---":
            break
        summary.append(line)
    assert len(summary) == 2, f"the English summary must be two lines, got {len(summary)}"
    assert len(" ".join(summary)) > 80, "the English summary is too short to say anything"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_only_strict_cells_keep_outputs(path: Path):
    nb = _read(path)
    strict = [c for c in nb.cells if _is_strict(c)]
    assert strict, f"{path.name} has no '{STRICT}' cell"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        where = f"{path.name} cell {i} ({cell.source.splitlines()[0][:50] if cell.source else ''!r})"
        if _is_strict(cell):
            assert cell.outputs, f"{where}: a strict cell must keep its reference output"
            assert cell.execution_count is not None, \
                f"{where}: a strict cell needs an execution count, or nbval skips its comparison"
            for out in cell.outputs:
                assert out.get("output_type") != "error", f"{where}: the reference output is an error"
                assert not (out.get("output_type") == "stream" and out.get("name") == "stderr"), \
                    f"{where}: stderr in a strict cell makes the comparison fragile"
                assert WIDGET_MIME not in out.get("data", {}), f"{where}: a widget in a strict cell"
        else:
            assert not cell.outputs, f"{where}: outputs must be cleared (only {STRICT} cells keep them)"
            assert cell.execution_count is None, f"{where}: execution count must be cleared"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_widget_state_or_execution_metadata(path: Path):
    nb = _read(path)
    assert "widgets" not in nb.metadata, "widget state saved in the notebook metadata"
    for i, cell in enumerate(nb.cells):
        assert "widgets" not in cell.metadata, f"cell {i}: widget state in the cell metadata"
        assert "execution" not in cell.metadata, f"cell {i}: execution timing metadata"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_remote_api_is_only_used_behind_a_key_check(path: Path):
    """A cell that talks to the real API (RemoteBackend() with its default URL) checks GS_API_KEY first."""
    for i, cell in enumerate(_read(path).cells):
        if cell.cell_type != "code":
            continue
        if "RemoteBackend()" in cell.source or "api.gradientesur.com" in cell.source:
            assert 'os.environ.get("GS_API_KEY")' in cell.source, \
                f"{path.name} cell {i} uses the remote API without checking GS_API_KEY"
