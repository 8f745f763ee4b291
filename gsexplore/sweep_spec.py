"""SweepSpec: what a sweep is (prompts, grid, repeats, fixed parameters), apart from how it was written.

The SweepBuilder panel and the ``gsexplore sweep`` YAML file are two ways of
writing the same SweepSpec; `plan` and `run` hand it to `gsexplore.sweep`.

>>> spec = SweepSpec(prompts=["Hola"], grid={"temperature": [0.2, 1.0]}, repeats=2,
...                  base=Params(max_tokens=16))
>>> spec.requests_per_backend
4
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ParamsError
from .params import Params

__all__ = ["SweepSpec"]


@dataclass(frozen=True)
class SweepSpec:
    """The settings of one sweep; the backends and the store are given when it runs."""

    prompts: str | Sequence[Any] = ()
    grid: dict[str, list[Any]] = field(default_factory=dict)
    repeats: int = 1
    base: Params = field(default_factory=Params)
    zip: dict[str, list[Any]] | None = None  # noqa: A003 - gs.sweep's name for it
    samples: dict[str, Any] | None = None
    seed: int = 0
    concurrency: int = 8
    on_error: str = "record"
    on_invalid: str = "raise"

    def __post_init__(self) -> None:
        if not isinstance(self.repeats, int) or isinstance(self.repeats, bool) or self.repeats < 1:
            raise ParamsError(f"repeats must be a whole number >= 1, not {self.repeats!r}", field="repeats",
                              value=self.repeats, key="below_minimum", typed=self.repeats, minimum=1)
        if not isinstance(self.base, Params):
            raise ParamsError(f"base must be a gsexplore.Params, not {type(self.base).__name__}", field="base")

    @property
    def requests_per_backend(self) -> int:
        """Settings x prompts x repeats, for one backend, when the grid is a plain product of lists."""
        n = 1
        for values in self.grid.values():
            n *= len(values)
        prompts = 1 if isinstance(self.prompts, str) else len(self.prompts)
        return n * prompts * self.repeats

    def replace(self, **changes: Any) -> SweepSpec:
        """A copy with ``changes`` (the spec itself is immutable)."""
        return replace(self, **changes)

    def plan(self, backends: Any) -> Any:
        """The `gsexplore.sweep.SweepPlan`: every request, validated, nothing run (ParamsError if invalid)."""
        from .sweep import plan

        return plan(backends, self.prompts, grid=self.grid or None, zip=self.zip, samples=self.samples,
                    repeats=self.repeats, base=self.base, seed=self.seed, on_invalid=self.on_invalid)  # type: ignore[arg-type]

    def run(self, backends: Any, store: str | os.PathLike | None = None, **options: Any) -> Any:
        """Run it with `gsexplore.sweep.sweep` (``options`` are sweep's: progress, cancel, force...)."""
        from .sweep import sweep

        kw: dict[str, Any] = dict(grid=self.grid or None, zip=self.zip, samples=self.samples, repeats=self.repeats,
                                  base=self.base, store=store, concurrency=self.concurrency, seed=self.seed,
                                  on_error=self.on_error, on_invalid=self.on_invalid)
        kw.update(options)
        return sweep(backends, self.prompts, **kw)

    @classmethod
    def from_config(cls, cfg: dict[str, Any], prompts: Any) -> SweepSpec:
        """The spec a ``gsexplore sweep`` YAML config describes (``prompts`` already loaded from it)."""
        return cls(prompts=prompts, grid=dict(cfg.get("grid") or {}), zip=cfg.get("zip"),
                   samples=cfg.get("samples"),  # {uniform: [lo, hi]} and lists mean what they mean in gs.sweep
                   repeats=int(cfg.get("repeats", 1)), base=Params(**(cfg.get("base") or {})),
                   seed=int(cfg.get("seed", 0)), concurrency=int(cfg.get("concurrency", 8)),
                   on_error=cfg.get("on_error", "record"), on_invalid=cfg.get("on_invalid", "raise"))
