"""What a sweep varies: grid, zip and samples expanded into validated settings (see `gsexplore.sweep`)."""

from __future__ import annotations

import builtins
import math
import random
import warnings
from difflib import get_close_matches
from itertools import product
from typing import Any, Iterable, Literal

from ..errors import ParamsError
from ..params import Params, shown

__all__ = ["expand", "NOT_SWEEPABLE", "Setting", "fmt_setting"]

Setting = dict[str, Any]

#: Parameters a sweep cannot vary or set, and why.
NOT_SWEEPABLE = {"stream": "sweeps collect whole answers; streaming is for the playground"}


def _check_names(names: Iterable[str], where: str) -> None:
    known = Params.names()
    for name in names:
        if name not in known:
            close = get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ParamsError(f"unknown parameter {name!r} in {where}{hint}", field=name)
        if name in NOT_SWEEPABLE:
            raise ParamsError(f"{name!r} cannot be used in a sweep: {NOT_SWEEPABLE[name]}", field=name)


def _values(name: str, v: Any, where: str) -> list[Any]:
    if isinstance(v, (list, tuple)):
        vals = list(v)
    elif hasattr(v, "tolist"):  # numpy arrays, ranges of numpy
        vals = list(v.tolist())
    elif isinstance(v, range):
        vals = list(v)
    else:
        vals = [v]
    if not vals:
        raise ParamsError(f"{where}[{name!r}] is empty", field=name)
    return [x.item() if hasattr(x, "item") else x for x in vals]


def _grid(grid: dict[str, Any] | None) -> list[Setting]:
    if not grid:
        return [{}]
    _check_names(grid, "grid")
    keys = list(grid)
    values = [_values(k, grid[k], "grid") for k in keys]
    return [dict(builtins.zip(keys, combo)) for combo in product(*values)]


def _zip(z: dict[str, Any] | None) -> list[Setting]:
    if not z:
        return [{}]
    _check_names(z, "zip")
    cols = {k: _values(k, v, "zip") for k, v in z.items()}
    lengths = {k: len(v) for k, v in cols.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise ParamsError(f"zip lists must have the same length ({desc})", field="zip", value=lengths)
    n = next(iter(lengths.values()))
    return [{k: cols[k][i] for k in cols} for i in range(n)]


def _draw(name: str, spec: Any, rng: random.Random) -> Any:
    kind, args = None, spec
    if isinstance(spec, dict):
        if len(spec) != 1 or next(iter(spec)) not in ("uniform", "loguniform", "choice"):
            raise ParamsError(f"samples range of {name!r} must be (lo, hi), a list, or one of "
                              "{'uniform': [lo, hi]}, {'loguniform': [lo, hi]}, {'choice': [...]}",
                              field=name, value=spec)
        kind, args = next(iter(spec.items()))
    elif isinstance(spec, tuple):
        kind = "uniform"
    elif isinstance(spec, list):
        kind = "choice"
    else:
        raise ParamsError(f"samples range of {name!r} must be a (lo, hi) tuple or a list of values",
                          field=name, value=spec)
    if kind == "choice":
        if not args:
            raise ParamsError(f"samples choice list of {name!r} is empty", field=name)
        return rng.choice(list(args))
    if not isinstance(args, (list, tuple)) or len(args) != 2:
        raise ParamsError(f"samples range of {name!r} needs exactly two ends (lo, hi)", field=name, value=spec)
    lo, hi = args
    if lo > hi:
        raise ParamsError(f"samples range of {name!r}: lo={lo} > hi={hi}", field=name, value=spec)
    ints = Params.spec(name).kind == "int"  # (0, 2) for temperature is a float range
    if kind == "loguniform":
        if lo <= 0:
            raise ParamsError(f"loguniform range of {name!r} needs lo > 0", field=name, value=spec)
        x = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    else:
        x = rng.uniform(lo, hi)
    return int(round(x)) if ints else round(x, 4)


def _samples(samples: dict[str, Any] | None, default_seed: int) -> list[Setting]:
    if not samples:
        return [{}]
    if "ranges" not in samples or "n" not in samples:
        raise ParamsError("samples must be {'n': N, 'ranges': {name: (lo, hi) or [values]}, 'seed': s}",
                          field="samples", value=samples)
    unknown = set(samples) - {"n", "ranges", "seed"}
    if unknown:
        raise ParamsError(f"samples has unknown key(s) {sorted(unknown)}; use n, ranges, seed", field="samples")
    ranges = samples["ranges"]
    _check_names(ranges, "samples")
    n = int(samples["n"])
    if n < 1:
        raise ParamsError("samples n must be >= 1", field="samples", value=n)
    rng = random.Random(samples.get("seed", default_seed))
    return [{k: _draw(k, spec, rng) for k, spec in ranges.items()} for _ in range(n)]


def expand(
    grid: dict[str, Any] | None = None,
    zip: dict[str, Any] | None = None,  # noqa: A002 - the public keyword
    samples: dict[str, Any] | None = None,
    base: Params | None = None,
    *,
    seed: int = 0,
    on_invalid: Literal["raise", "skip"] = "raise",
) -> list[tuple[Setting, Params]]:
    """Every setting (what varies) with its validated Params, duplicates merged.

    grid x zip x samples (Cartesian product of the three parts). Raises one
    ParamsError listing every invalid setting, or skips them with a warning.
    """
    base = base if base is not None else Params()
    if not isinstance(base, Params):
        raise ParamsError(f"base must be a gsexplore.Params, not {type(base).__name__}", field="base")
    _check_names(base.set_fields(), "base")
    parts = [_grid(grid), _zip(zip), _samples(samples, seed)]
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        both = set(parts[a][0]) & set(parts[b][0])
        if both:
            raise ParamsError(f"parameter(s) {sorted(both)} appear in more than one of grid/zip/samples",
                              field=sorted(both)[0])
    out: list[tuple[Setting, Params]] = []
    seen: set[str] = set()
    bad: list[str] = []
    bad_items: list[tuple[str, ParamsError]] = []
    for a, b, c in product(*parts):
        setting = {**a, **b, **c}
        try:
            p = base.replace(**setting)
        except ParamsError as exc:
            bad.append(f"  {fmt_setting(setting)}: {exc}")
            bad_items.append((fmt_setting(setting), exc))
            continue
        key = p.cache_key()
        if key not in seen:
            seen.add(key)
            out.append((setting, p))
    if bad:
        msg = f"{len(bad)} invalid setting(s) of {len(bad) + len(out)}:\n" + "\n".join(bad)
        if on_invalid == "skip":
            warnings.warn(msg + "\n(skipped)", stacklevel=3)
        else:
            raise ParamsError(msg, field="grid", key="invalid_settings", n_bad=len(bad),
                              n_total=len(bad) + len(out), items=bad_items)
    if not out:
        raise ParamsError("no valid setting to run", field="grid", key="no_setting")
    return out


def fmt_setting(s: Setting) -> str:
    return ", ".join(f"{k}={shown(v)}" for k, v in s.items()) or "(base)"
