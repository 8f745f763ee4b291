"""Command-line arguments shared by the `gsexplore` commands: the parameter flags (derived from
`Params`, so one edit adds a parameter everywhere) and the local model's flags."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_param_flags", "local_kwargs", "params_from_args"]


_SKIP_PARAMS = {"model", "stream", "extra_body"}


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "y", "si", "sí", "on"):
        return True
    if low in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated token ids, got {text!r}") from None


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # a plain string (e.g. a guided_json schema given as text)


def add_param_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per `Params` field (--temperature, --top-k, ...), with its help text."""
    from .params import Params

    group = parser.add_argument_group("generation parameters (see gsexplore.Params)")
    for spec in Params.specs():
        if spec.name in _SKIP_PARAMS:
            continue
        flag = "--" + spec.name.replace("_", "-")
        kw: dict[str, Any] = {"dest": f"param_{spec.name}", "default": None, "help": spec.help_en,
                              "metavar": spec.name.upper()}
        if spec.kind == "float":
            kw["type"] = float
        elif spec.kind == "int":
            kw["type"] = int
        elif spec.kind == "bool":
            kw.update(type=_bool, metavar="true|false")
        elif spec.kind == "list[int]":
            kw.update(type=_int_list, metavar="ID,ID")
        elif spec.kind in ("list[str]", "str|list[str]"):
            kw.update(action="append", metavar="TEXT", help=spec.help_en + " (repeat the flag for several)")
        elif spec.kind == "json":
            kw.update(type=_json_value, metavar="JSON")
        group.add_argument(flag, **kw)
    group.add_argument("--no-think", action="store_true",
                       help="turn Qwen3's thinking off (chat_template_kwargs={'enable_thinking': false})")


def params_from_args(args: argparse.Namespace) -> Any:
    """The `Params` the parameter flags given on the command line describe."""
    from .params import Params

    data: dict[str, Any] = {}
    for spec in Params.specs():
        value = getattr(args, f"param_{spec.name}", None)
        if value is None:
            continue
        if spec.kind == "str|list[str]" and isinstance(value, list) and len(value) == 1:
            value = value[0]
        data[spec.name] = value
    if getattr(args, "no_think", False):
        data["chat_template_kwargs"] = {**(data.get("chat_template_kwargs") or {}), "enable_thinking": False}
    return Params(**data)


def local_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """LocalBackend keywords from the model flags a command was given (--n-ctx, --parallel, ...)."""
    kw: dict[str, Any] = {}
    if getattr(args, "n_ctx", None) is not None:
        kw["n_ctx"] = args.n_ctx
    if getattr(args, "n_gpu_layers", None) is not None:
        kw["n_gpu_layers"] = args.n_gpu_layers
    if getattr(args, "n_threads", None) is not None:
        kw["n_threads"] = args.n_threads
    if getattr(args, "parallel", None) is not None:
        kw["slots"] = args.parallel
    if getattr(args, "kv_cache_type", None) is not None:
        kw["kv_cache_type"] = args.kv_cache_type
    if getattr(args, "system_prompt", None) is not None:
        kw["system_prompt"] = args.system_prompt or None  # "" = the chat template's own default
    return kw
