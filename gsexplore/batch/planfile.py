"""The plan file written beside a batch file: what the importer needs to turn a custom_id back into a row.

A result line holds only ``custom_id`` and the response, and a request body lacks
the prompt's id, its expected answer and the backend the sweep planned, so the export
writes ``requests.plan.jsonl`` beside ``requests.jsonl``: a header line (the sweep's
id, seed, definition, backends) and one line per cell (cell id, backend, prompt,
parameters as sent). Repeats are not listed: a custom_id carries its repeat and the
seed is derived from it as the sweep derives it. The store's meta records where the
plan file is, so ``load_batch(results, store=...)`` finds it; ``plan=`` names it otherwise.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ParamsError
from ..params import Params
from ..prompts import Prompt
from ..sweep.export import PLAN_FORMAT
from ..sweep.planning import derive_seed
from ..sweep.rows import cell_row

__all__ = ["PlanIndex", "read_plan"]


@dataclass
class _Cell:
    entry: dict[str, Any]
    params: Params | None = None
    base: dict[str, Any] | None = None


@dataclass
class PlanIndex:
    """The cells of one plan file by id; rows are built from it one request at a time."""

    header: dict[str, Any]
    path: Path
    cells: dict[str, _Cell] = field(default_factory=dict)

    @property
    def sweep_id(self) -> str:
        return str(self.header["sweep_id"])

    def knows(self, cell: str, repeat: int) -> bool:
        return cell in self.cells and 0 <= repeat < int(self.header["repeats"])

    def params(self, cell: str) -> Params:
        """The cell's Params (validated once per cell)."""
        c = self.cells[cell]
        if c.params is None:
            c.params = Params.from_request(c.entry["params"])
        return c.params

    def seed(self, cell: str, repeat: int) -> int | None:
        p = self.params(cell)
        return p.seed if p.seed is not None else derive_seed(cell, repeat, int(self.header["seed"]))

    def base(self, cell: str, repeat: int) -> dict[str, Any]:
        """The columns every row of request (cell, repeat) shares, its seed included."""
        c = self.cells[cell]
        if c.base is None:
            e = c.entry
            pr = e["prompt"]
            prompt = Prompt(str(pr["id"]), pr["messages"], pr.get("expected"))
            c.base = cell_row(self.sweep_id, cell, 0, e["backend"], e["backend_model"], prompt, self.params(cell))
        return {**c.base, "repeat": repeat, "seed": self.seed(cell, repeat)}

    def messages(self, cell: str) -> list[dict[str, Any]]:
        return self.cells[cell].entry["prompt"]["messages"]

    def backend(self, cell: str) -> str:
        return self.cells[cell].entry["backend"]


def read_plan(path: str | os.PathLike) -> PlanIndex:
    """Read a plan file (ParamsError naming it when it is not one)."""
    p = Path(path)
    try:
        f = open(p, encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"plan file {str(p)!r} not found: it is written beside the batch file by the export "
                          "(requests.jsonl -> requests.plan.jsonl)", field="plan", value=str(p)) from None
    with f:
        first = f.readline()
        try:
            header = json.loads(first)
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != PLAN_FORMAT:
            raise ParamsError(f"{p.name} is not a gsexplore batch plan file (its first line must have "
                              f"format={PLAN_FORMAT!r})", field="plan", value=str(p))
        index = PlanIndex(header, p)
        for line in f:
            if line.strip():
                e = json.loads(line)
                index.cells[e["cell_id"]] = _Cell(e)
    return index
