"""`gsexplore sweep CONFIG.yaml --out DIR`: a sweep from a YAML file, with its CSV, plots and summary.

A config (examples in data/sweeps/)::

    title: Temperatura y diversidad         # optional: plot titles
    lang: es                                # es | en: plot and table labels
    backends:                               # one or a list
      - local: demo                         # demo | tiny-qwen3 | path.gguf | HF repo id
        n_ctx: 1024                         # other keys: LocalBackend options
      - remote: {base_url: "https://api.gradientesur.com/functions/v1", model: "Qwen/Qwen3-1.7B",
                 api_key_env: GS_API_KEY}   # the key comes from the environment, never the file
    prompts_file: creatividad_es            # a file in data/prompts/ or a path (relative to the config)
    max_prompts: 3                          # optional: the first N prompts (or prompt_ids: [...])
    prompts: ["Hola", ...]                  # instead of prompts_file: strings or {id, messages, expected}
    grid: {temperature: [0, 0.7, 1.4]}      # and/or zip: {...}, samples: {n, seed, ranges}
    repeats: 3
    base: {max_tokens: 24}                  # Params for every request
    seed: 0
    plots:                                  # optional; default plots otherwise
      - {x: temperature, y: distinct_2}
      - {x: temperature, y: n_words, kind: box}
    summary_by: [temperature]               # optional; default: backend + varied parameters

In ``samples.ranges`` YAML has no tuples: write ``{uniform: [0, 2]}`` for a
uniform draw, a list for a choice.

DIR receives results.parquet (the resumable store: run the same command again to
finish an interrupted sweep), results.csv, summary.csv and one PNG per plot; the
summary table is printed. Exit status: 0 done, 1 some requests failed,
2 bad config, 130 interrupted.

Past one machine (`gsexplore.batch`): ``--to-batch requests.jsonl`` writes the
requests not yet in DIR's store as an OpenAI/vLLM batch file (and
``requests.plan.jsonl`` beside it) instead of running them; run it with ``vllm
run-batch``, a Batch API, Ray Data or ``gsexplore batch run``; then
``--from-batch results.jsonl`` imports the results into DIR's store and writes the
CSV, summary and plots as a run would.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from .errors import GSExploreError, ParamsError

__all__ = ["main", "load_config", "make_backends", "default_plots"]

KEYS = ("title", "name", "lang", "backends", "backend", "prompts", "prompts_file", "max_prompts", "prompt_ids",
        "grid", "zip", "samples", "repeats", "base", "seed", "concurrency", "on_error", "on_invalid",
        "plots", "summary_by", "description")


class ConfigError(GSExploreError):
    """The YAML config is not valid."""


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a sweep config (unknown keys are an error naming the closest known one)."""
    import yaml

    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path.name}: not valid YAML: {exc}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path.name}: the config must be a mapping of keys (backends, prompts, grid, ...)")
    for k in cfg:
        if k not in KEYS:
            close = get_close_matches(str(k), KEYS, n=1)
            raise ConfigError(f"{path.name}: unknown key {k!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
    if "backend" in cfg:
        cfg.setdefault("backends", cfg.pop("backend"))
    if not cfg.get("backends"):
        raise ConfigError(f"{path.name}: 'backends' is missing (e.g. backends: [{{local: demo}}])")
    if not cfg.get("prompts") and not cfg.get("prompts_file"):
        raise ConfigError(f"{path.name}: give 'prompts' or 'prompts_file'")
    cfg["_dir"] = str(path.resolve().parent)
    return cfg


def make_backends(spec: Any, base_dir: str | None = None) -> list[Any]:
    """Backends from the config's `backends` entry."""
    specs = spec if isinstance(spec, list) else [spec]
    out = []
    for i, s in enumerate(specs):
        if isinstance(s, str):
            s = {"local": s}
        if not isinstance(s, dict) or len({"local", "remote"} & set(s)) != 1:
            raise ConfigError(f"backends[{i}] must be {{local: demo|tiny-qwen3|path}} or "
                              "{remote: {base_url, model}}")
        if "local" in s:
            opts = {k: v for k, v in s.items() if k not in ("local", "options")}
            opts.update(s.get("options") or {})
            model = s["local"]
            if isinstance(model, dict):
                opts.update({k: v for k, v in model.items() if k != "model"})
                model = model.get("model", "demo")
            out.append(_local(str(model), opts, base_dir))
        else:
            r = s["remote"] or {}
            if not isinstance(r, dict):
                r = {"base_url": r}
            r = {**r, **{k: v for k, v in s.items() if k != "remote"}}
            if "api_key" in r:
                raise ConfigError(f"backends[{i}]: do not write the API key in the config; set an environment "
                                  "variable and name it with api_key_env (default GS_API_KEY)")
            env = r.pop("api_key_env", "GS_API_KEY")
            from .backends.remote import RemoteBackend

            out.append(RemoteBackend(api_key=os.environ.get(env), **r))
    return out


def _local(model: str, opts: dict[str, Any], base_dir: str | None) -> Any:
    from .backends.spec import from_spec
    from .models import ALIASES, DEMO_NAME, TINY_QWEN3_NAME

    shipped = model in (DEMO_NAME, TINY_QWEN3_NAME, *ALIASES)
    p = Path(model).expanduser()
    if not shipped and not p.is_absolute() and base_dir and (Path(base_dir) / p).exists():  # relative to the config
        model = str(Path(base_dir) / p)
    return from_spec(model, **opts)


def _prompts(cfg: dict[str, Any]) -> Any:
    from .prompts import load_prompts

    if cfg.get("prompts_file"):
        f = str(cfg["prompts_file"])
        rel = Path(cfg["_dir"]) / f
        prompts = load_prompts(str(rel) if rel.is_file() else f)
    else:
        prompts = load_prompts(cfg["prompts"])
    if cfg.get("prompt_ids"):
        want = [str(x) for x in cfg["prompt_ids"]]
        by_id = {p.id: p for p in prompts}
        missing = [w for w in want if w not in by_id]
        if missing:
            raise ConfigError(f"prompt_ids not found: {missing}; known: {sorted(by_id)}")
        prompts = [by_id[w] for w in want]
    if cfg.get("max_prompts"):
        prompts = prompts[: int(cfg["max_prompts"])]
    return prompts


def default_plots(df: Any) -> list[dict[str, Any]]:
    """The plots a person reading a sweep wants first: metrics against the first varied parameter."""
    from .metrics import varied_params

    varied = [v for v in varied_params(df) if v in df.columns]
    several = df["backend"].nunique() > 1 if "backend" in df.columns else False
    x = varied[0] if varied else "prompt_id"
    hue = varied[1] if len(varied) > 1 else ("backend" if several else None)
    plots: list[dict[str, Any]] = []
    if varied:
        plots.append({"x": x, "y": "distinct_2", "hue": hue})
        plots.append({"x": x, "y": "pairwise_similarity", "hue": hue})
        if df["expected"].notna().any():
            plots.append({"x": x, "y": "contains_expected", "hue": hue})
        if "guided_valid" in df.columns and df["guided_valid"].notna().any():
            plots.append({"x": x, "y": "validity_rate", "hue": hue})
    plots.append({"x": x, "y": "n_words", "kind": "box", "hue": hue if varied else None})
    if len(varied) > 1:
        plots.append({"x": varied[0], "y": "distinct_2", "hue": varied[1], "kind": "heatmap"})
    if several and varied:
        plots.append({"x": x, "y": "tokens_per_s", "col": "backend"})
    return plots


def _plot_name(p: dict[str, Any]) -> str:
    name = f"{p['y']}_vs_{p['x']}"
    if p.get("hue"):
        name += f"_by_{p['hue']}"
    if p.get("col"):
        name += f"_per_{p['col']}"
    if p.get("kind", "line") != "line":
        name += f"_{p['kind']}"
    return name + ".png"


def _summary_table(summary: Any, by: list[str]) -> Any:
    import pandas as pd

    if summary.empty:
        return summary

    def cell(r: Any) -> str:
        if pd.isna(r["mean"]):
            return "-"
        if pd.isna(r["ci_high"]):
            return f"{r['mean']:.3g}"
        # Wilson and bootstrap intervals are not symmetric: show both ends
        return f"{r['mean']:.3g} [{r['ci_low']:.3g}, {r['ci_high']:.3g}]"

    s = summary.assign(value=summary.apply(cell, axis=1))
    if not by:
        return s.set_index("metric")[["value"]].T
    table = s.pivot_table(index=by, columns="metric", values="value", aggfunc="first", sort=False)
    return table[[m for m in dict.fromkeys(summary["metric"]) if m in table.columns]]


def _run_or_export(args: argparse.Namespace, spec: Any, backends: list[Any], out: Path) -> Any:
    """The sweep run (or, with --to-batch, written as a batch file) into DIR's store."""
    if args.to_batch:
        from .sweep import plan
        from .sweep.api import done_keys
        from .store import Store

        st = Store(out / "results.parquet")
        sp = plan(backends, spec.prompts, grid=spec.grid or None, zip=spec.zip, samples=spec.samples,
                  repeats=spec.repeats, base=spec.base, seed=spec.seed, on_invalid=spec.on_invalid,
                  done=done_keys(st, args.force), store=st.path)
        e = sp.to_batch(args.to_batch, spelling=args.guided_spelling, model=args.batch_model,
                        progress=not args.no_progress)
        import pandas as pd

        df = pd.DataFrame()
        df.attrs["batch_export"] = e.as_dict()
        return df
    from .sweep import SweepFailed

    try:
        return spec.run(backends, store=str(out / "results.parquet"), progress=not args.no_progress,
                        force=args.force, dry_run=args.dry_run)
    except SweepFailed as exc:  # the rows are saved: write the CSV and say it (exit status 1)
        print(f"gsexplore sweep: {exc}", file=sys.stderr)
        return exc.df


def main(argv: list[str] | None = None) -> int:
    """Run `gsexplore sweep CONFIG.yaml --out DIR`; returns the exit status."""
    ap = argparse.ArgumentParser(prog="gsexplore sweep", description="Run a parameter sweep from a YAML config.")
    ap.add_argument("config", help="the sweep's YAML file (examples in data/sweeps/)")
    ap.add_argument("--out", required=True, help="folder for results.parquet, results.csv, summary.csv and plots")
    ap.add_argument("--force", action="store_true", help="run every request again, even those already in the store")
    ap.add_argument("--dry-run", action="store_true", help="validate and print the plan; run nothing")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    ap.add_argument("--lang", choices=["es", "en"], help="labels of plots and tables (default: the config's, or en)")
    batch = ap.add_argument_group("batch files (vllm run-batch, Batch APIs, Ray Data, gsexplore batch run)")
    batch.add_argument("--to-batch", metavar="REQUESTS.jsonl",
                       help="write the requests not yet in the store as a batch file; run nothing")
    batch.add_argument("--from-batch", metavar="RESULTS.jsonl",
                       help="import a batch results file into the store, then write the CSV, summary and plots")
    batch.add_argument("--batch-model", metavar="NAME", help="--to-batch: the model name every body asks for "
                       "(default: each backend's; a batch engine checks it against the model it serves)")
    batch.add_argument("--guided-spelling", choices=["guided", "structured_outputs"],
                       help="--to-batch: how guided constraints are written (default: the backends')")
    batch.add_argument("--plan", metavar="REQUESTS.jsonl", help="--from-batch: the batch file the export wrote "
                       "(default: the exports recorded in the store)")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    import pandas as pd

    from .sweep_spec import SweepSpec

    try:
        cfg = load_config(args.config)
        lang = args.lang or cfg.get("lang", "en")
        spec = SweepSpec.from_config(cfg, _prompts(cfg))
        backends = [] if args.from_batch else make_backends(cfg["backends"], cfg["_dir"])
        if args.to_batch and args.from_batch:
            raise ConfigError("--to-batch and --from-batch are two steps: give one of them")
    except (ConfigError, ParamsError, GSExploreError) as exc:
        print(f"gsexplore sweep: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import logging

    sweep_log = logging.getLogger("gsexplore.sweep")
    handler = logging.StreamHandler(sys.stderr)  # the plan line goes to stderr even without progress
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = sweep_log.level
    sweep_log.addHandler(handler)
    sweep_log.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if args.from_batch:
                from .batch import load_batch

                df = load_batch(args.from_batch, store=out / "results.parquet", plan=args.plan,
                                progress=not args.no_progress)
            else:
                df = _run_or_export(args, spec, backends, out)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    except ParamsError as exc:
        print(f"gsexplore sweep: {exc}", file=sys.stderr)
        return 2
    finally:
        sweep_log.removeHandler(handler)
        sweep_log.setLevel(level)
        for b in backends:
            try:
                b.close()
            except Exception:  # closing is best effort
                pass
    if args.to_batch:
        e = df.attrs["batch_export"]
        print(f"{e['n_requests']} requests in {e['requests']} (plan: {e['plan']}), ~{e['prompt_tokens_est']:,} "
              f"prompt tokens, <= {e['completion_tokens_max']} completion tokens")
        return 0
    if args.dry_run:
        p = df.attrs["plan"]
        print(f"{p['requests']} requests ({p['in_store']} already in {out / 'results.parquet'}), "
              f"~{p['prompt_tokens_est']:,} prompt tokens, <= {p['completion_tokens_max']} completion tokens")
        return 0

    from .metrics import add_metrics, default_by, summarize
    from .plots import plot, save

    df.drop(columns=["messages"]).to_csv(out / "results.csv", index=False)
    by = list(cfg.get("summary_by") or default_by(df))
    summary = summarize(df, by=by)
    summary.to_csv(out / "summary.csv", index=False)
    written = [out / "results.parquet", out / "results.csv", out / "summary.csv"]
    if not args.no_plots and df["error_type"].isna().any():
        dfm = add_metrics(df)
        specs = cfg.get("plots") or default_plots(df)
        for spec in specs:
            spec = dict(spec)
            fname = spec.pop("file", None) or _plot_name(spec)
            title = spec.pop("title", None)  # default: a title saying what is plotted
            try:
                obj = plot(dfm, lang=lang, title=title, **spec)
                fig = obj if hasattr(obj, "savefig") else obj.get_figure()
                if cfg.get("title") and not hasattr(obj, "savefig"):
                    fig.suptitle(str(cfg["title"]), fontsize=10, color="#555")
                written.append(save(obj, out / fname))
                plt.close(fig)
            except (KeyError, ValueError) as exc:
                print(f"warning: plot {spec} skipped: {exc}", file=sys.stderr)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print()
        print(_summary_table(summary, by).to_string())
    print()
    errors = int(df["error_type"].notna().sum())
    print(f"{len(df)} rows ({errors} errors) in {out}: " + ", ".join(p.name for p in written))
    if df.attrs.get("interrupted"):
        print("interrupted: run the same command again to finish the sweep", file=sys.stderr)
        return 130
    return 1 if errors else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
