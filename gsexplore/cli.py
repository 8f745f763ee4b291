"""The `gsexplore` command: serve, chat, models, sweep, lab.

    gsexplore lab [--port 8888] [NOTEBOOK]           # JupyterLab (as root too, headless too): `make lab`
    gsexplore serve --model demo                     # a GradienteSur-compatible server on 127.0.0.1:8000
    gsexplore chat "Hola, ¿cómo estás?" --temperature 0.7
    gsexplore chat --remote                          # the GradienteSur API ($GS_API_KEY)
    gsexplore models list | fetch [demo|tiny-qwen3|REPO --filename GLOB] | build tiny-qwen3 [--quant Q8_0]
    gsexplore models build qwen3-1.7b-shape [--quant Q4_K_M|Q8_0]
    gsexplore sweep CONFIG.yaml [--to-batch requests.jsonl | --from-batch results.jsonl]
    gsexplore batch run -i requests.jsonl -o results.jsonl --model demo   # vLLM's run-batch, locally

Also runs as ``python -m gsexplore.cli``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from . import wire
from .cli_args import add_param_flags as _add_param_flags
from .cli_args import local_kwargs as _local_kwargs
from .cli_args import params_from_args as _params_from_args
from .errors import GSExploreError


def _out(*args: Any, **kw: Any) -> None:
    print(*args, **kw, flush=True)


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# serve


def cmd_serve(args: argparse.Namespace) -> int:
    from . import serve

    if args.make_keys is not None:
        if not args.api_key_file:
            raise GSExploreError("--make-keys needs --api-key-file FILE: where the new keys are written")
        made = serve.make_keys(args.make_keys, args.api_key_file, args.public_url or _public_url(args),
                               admin_path=args.admin_key_file)
        print(f"gsexplore serve: {len(made)} keys in {args.api_key_file}, the sheet to print in "
              f"{serve.sheet_path(args.api_key_file)}"
              + (f", the teacher's key in {args.admin_key_file}" if args.admin_key_file else ""), flush=True)
        if args.keys_only:
            return 0
    elif args.keys_only:
        raise GSExploreError("--keys-only goes with --make-keys N")
    keys = serve.load_labelled_keys(args.api_key_file)
    admins = serve.load_labelled_keys(args.admin_key_file, env={}, prefix="docente") if args.admin_key_file else {}
    serve.check_binding(args.host, {*keys, *admins})
    serve.serve(
        args.model, filename=args.filename, host=args.host, port=args.port, api_keys=keys,
        instances=args.instances, served_model_names=args.served_model_name,
        max_tokens_cap=args.max_tokens_cap, max_queue=args.max_queue, max_body_bytes=args.max_body_bytes,
        artificial_latency_s=args.artificial_latency_ms / 1000.0, backend_kwargs=_local_kwargs(args),
        log_level=args.log_level, max_n=args.max_n, docs=not args.disable_fastapi_docs, admin_keys=admins,
        max_running_per_key=args.max_running_per_key, tpm_per_key=args.tpm_per_key, class_store=args.class_store,
    )
    return 0


def _public_url(args: argparse.Namespace) -> str:
    """The URL students type: this machine's address when listening on every interface."""
    import socket

    host = args.host
    if host in ("0.0.0.0", "::", ""):
        try:
            host = socket.gethostbyname(socket.gethostname())
        except OSError:
            host = socket.gethostname()
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{args.port}/v1"


# --------------------------------------------------------------------------
# chat


def _chat_backend(args: argparse.Namespace) -> Any:
    from .backends.spec import from_spec

    if args.remote or args.base_url:
        from .wire import DEFAULT_BASE_URL, DEFAULT_MODEL

        return from_spec(args.base_url or DEFAULT_BASE_URL, model=args.model or DEFAULT_MODEL,
                         timeout=args.timeout)
    return from_spec(args.model or "demo", filename=args.filename, **_local_kwargs(args))


def _print_stream(backend: Any, messages: list[dict[str, Any]], params: Any, stream: bool) -> Any:
    dim, reset = ("\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "")
    if not stream:
        c = backend.chat(messages, params)
        if c.reasoning_content:
            _out(f"{dim}{c.reasoning_content.strip()}{reset}\n")
        _out(c.content or "")
        return c
    in_reasoning = False
    completion = None
    for d in backend.stream(messages, params):
        if d.kind == "done":
            completion = d.completion
        elif d.kind == "reasoning":
            if not in_reasoning:
                _out(dim, end="")
                in_reasoning = True
            _out(d.text, end="")
        else:
            if in_reasoning:
                _out(reset + "\n", end="")
                in_reasoning = False
            _out(d.text, end="")
    if in_reasoning:
        _out(reset, end="")
    _out()
    return completion


def _summary(c: Any) -> str:
    u = c.usage
    parts = [f"finish_reason={c.finish_reason}"]
    if u.completion_tokens is not None:
        parts.append(f"{u.prompt_tokens} + {u.completion_tokens} tokens")
    if c.latency_s is not None:
        parts.append(f"{c.latency_s:.2f} s")
    if c.tokens_per_s:
        parts.append(f"{c.tokens_per_s:.1f} tok/s")
    return "[" + ", ".join(parts) + "]"


def cmd_chat(args: argparse.Namespace) -> int:
    params = _params_from_args(args)
    prompt = " ".join(args.prompt) if args.prompt else None
    if prompt is None and not sys.stdin.isatty():
        prompt = sys.stdin.read().strip()
    backend = _chat_backend(args)
    history: list[dict[str, Any]] = [{"role": "system", "content": args.system}] if args.system else []
    try:
        if prompt:
            c = _print_stream(backend, history + [{"role": "user", "content": prompt}], params, not args.no_stream)
            if args.json:
                _out(json.dumps(wire.completion_response(c, c.model), ensure_ascii=False, indent=2))
            elif not args.quiet:
                _err(_summary(c))
            return 0
        _err("gsexplore chat: escribe tu mensaje (/reset borra la conversación, /salir o Ctrl-D termina)")
        while True:
            try:
                line = input("> ").strip()
            except EOFError:
                _out()
                return 0
            if not line:
                continue
            if line in ("/salir", "/exit", "/quit"):
                return 0
            if line == "/reset":
                history = history[:1] if args.system else []
                continue
            history.append({"role": "user", "content": line})
            c = _print_stream(backend, history, params, not args.no_stream)
            history.append({"role": "assistant", "content": c.content or ""})
            if not args.quiet:
                _err(_summary(c))
    except KeyboardInterrupt:
        _out()
        return 130
    finally:
        backend.close()


# --------------------------------------------------------------------------
# models


def cmd_models_list(args: argparse.Namespace) -> int:
    from .models import list_models

    rows = list_models()
    if args.json:
        _out(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    if not rows:
        _out("no models yet: run `gsexplore models fetch`")
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        extra = f" --filename {r['filename']}" if r.get("filename") else ""
        _out(f"{r['name']:<{width}}  {r['size_mb']:>8.1f} MB  {r['source']:<11}  {r['path']}{extra}")
    return 0


def cmd_models_fetch(args: argparse.Namespace) -> int:
    from . import models

    if args.model is None:
        demo = models.demo_path()
        _out(f"demo: {demo}")
        tiny = models.tiny_qwen3()
        _out(f"tiny-qwen3: {tiny}")
        return 0
    path = models.resolve(args.model, args.filename)
    _out(f"{args.model}: {path}")
    return 0


def cmd_models_build(args: argparse.Namespace) -> int:
    from . import models

    if args.model == models.QWEN3_17B_SHAPE_NAME:
        quant = args.quant or "Q4_K_M"
        _out(f"building {args.model} {quant.upper()} (random weights at Qwen3-1.7B's shape; minutes, ~4 GB of "
             "memory, 3.4 GB of temporary disk)")
        try:
            path = models.qwen3_17b_shape(quant)
        except ValueError as e:
            _err(str(e))
            return 2
        _out(f"{args.model} {quant.upper()}: {path}")
        return 0
    if args.model != models.TINY_QWEN3_NAME and models.ALIASES.get(args.model) != models.TINY_QWEN3_NAME:
        _err(f"only tiny-qwen3 and {models.QWEN3_17B_SHAPE_NAME} are built here, not {args.model!r}; quantize "
             "any GGUF in Python with gsexplore.models.quantize(src, dst, kind)")
        return 2
    try:
        path = models.tiny_qwen3(quant=args.quant)
    except ValueError as e:
        _err(str(e))
        return 2
    _out(f"tiny-qwen3{'' if args.quant is None else ' ' + args.quant.upper()}: {path}")
    return 0


# --------------------------------------------------------------------------
# sweep (written in gsexplore/sweep_cli.py; imported only when used)


def cmd_sweep(argv: Sequence[str]) -> int:
    # >>> sweep: implemented by gsexplore.sweep_cli.main(argv) <<<
    from .sweep_cli import main as sweep_main

    return int(sweep_main(list(argv)) or 0)


# --------------------------------------------------------------------------
# batch


def cmd_batch_run(args: argparse.Namespace) -> int:
    from .backends.spec import from_spec
    from .batch import run_file

    backend = from_spec(args.model, filename=args.filename, **_local_kwargs(args))
    try:
        counts = run_file(args.input_file, args.output_file, backend,
                          served_names=[args.model, wire.DEFAULT_MODEL, *(args.served_model_name or [])],
                          progress=not args.no_progress)
    finally:
        backend.close()
    return 1 if counts["failed"] else 0


def cmd_lab(argv: Sequence[str]) -> int:
    from .lab import main as lab_main  # its own parser: unknown options go to JupyterLab

    return int(lab_main(list(argv)) or 0)


# --------------------------------------------------------------------------
# doctor


def cmd_doctor(args: argparse.Namespace) -> int:
    from . import doctor

    return doctor.main(generate=not args.no_generate, out=_out)


# --------------------------------------------------------------------------
# the parser


def build_parser() -> argparse.ArgumentParser:
    """The `gsexplore` argument parser."""
    parser = argparse.ArgumentParser(
        prog="gsexplore", description="Explore how generation parameters change what a chat model says.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # serve
    sp = sub.add_parser("serve", help="serve a local model with the GradienteSur (vLLM) Chat Completions API",
                        description="A GradienteSur-compatible server over a local GGUF model.")
    sp.add_argument("--model", required=True, help="a .gguf path, 'demo', 'tiny-qwen3' or a Hugging Face repo id")
    sp.add_argument("--filename", help="glob selecting the GGUF inside a repo or folder (e.g. '*Q8_0.gguf')")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; "
                    "other addresses need API keys)")
    sp.add_argument("--port", type=int, default=8000)
    sp.add_argument("--api-key-file", help="file with one API key per line, optionally followed by the "
                    "student's label ('KEY ana'; unlabelled keys are alumno-1, -2, ...); keys also from "
                    "$GSEXPLORE_SERVER_KEYS, comma-separated")
    sp.add_argument("--admin-key-file", help="the teacher's keys (same format): they open the class view "
                    "at /class")
    sp.add_argument("--make-keys", type=int, metavar="N", help="write N fresh labelled keys to --api-key-file "
                    "(which must not exist), a printable sheet beside it (FILE.html) and, with --admin-key-file "
                    "not existing yet, a teacher's key there; then serve")
    sp.add_argument("--keys-only", action="store_true", help="with --make-keys: write the keys and exit")
    sp.add_argument("--public-url", help="the server's URL printed on the key sheet (default: this machine's "
                    "address, --port and /v1)")
    sp.add_argument("--max-running-per-key", type=int, metavar="N",
                    help="requests one student may have in progress (the next is a 429)")
    sp.add_argument("--tpm-per-key", type=int, metavar="N",
                    help="tokens (prompt + completion) one student may use per minute (then 429)")
    sp.add_argument("--class-store", metavar="FILE", help="record every finished answer, with its student, "
                    "in this store (.parquet or .jsonl; gs.load reads it)")
    sp.add_argument("--served-model-name", action="append",
                    help="another model name clients may send (repeatable; the --model value as typed, the GGUF "
                         "file's stem and Qwen/Qwen3-1.7B are always served: the alias lets the GradienteSur "
                         "examples run unchanged)")
    sp.add_argument("--parallel", type=int, help="requests generated at once, batched in one llama.cpp context "
                    "(vLLM's --max-num-seqs, llama-server's -np; default: 16, fewer when this machine's "
                    "memory holds fewer at --n-ctx)")
    sp.add_argument("--instances", type=int, default=1, help="copies of the model and its engine (one per GPU)")
    sp.add_argument("--n-ctx", type=int, help="tokens each request may hold (prompt + max_tokens; each of the "
                    "--parallel slots gets this many; default 4096)")
    sp.add_argument("--kv-cache-type", choices=["f16", "q8_0", "q4_0"], help="KV cache type (default f16; "
                    "q8_0 and q4_0 take 0.53 and 0.28 of its memory, so more slots fit, and keep a request's "
                    "tokens the same alone or batched at any length on CPU; need head sizes in multiples of 32)")
    sp.add_argument("--n-gpu-layers", type=int, help="layers offloaded to the GPU (-1: all)")
    sp.add_argument("--n-threads", type=int, help="CPU threads of each instance (default: llama.cpp's)")
    sp.add_argument("--system-prompt", help="system message for requests that have none (default: none, "
                    "except 'You are a helpful assistant.' for the demo model; '' = the chat template's own)")
    sp.add_argument("--max-tokens-cap", type=int, default=4096, help="largest max_tokens accepted "
                    "(also the most a request that sets none gets)")
    sp.add_argument("--max-queue", type=int, default=64, help="requests that may wait for a free instance")
    sp.add_argument("--max-body-bytes", type=int, default=1_000_000, help="largest request body accepted")
    sp.add_argument("--max-n", type=int, default=16, help="largest n (answers per request) accepted")
    sp.add_argument("--disable-fastapi-docs", action="store_true", help="no /openapi.json and /docs")
    sp.add_argument("--artificial-latency-ms", type=float, default=0.0,
                    help="sleep this long per request without holding the model (benchmarks)")
    sp.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    sp.set_defaults(func=cmd_serve)

    # chat
    cp = sub.add_parser("chat", help="chat with a local model or the API from the terminal",
                        description="One question (PROMPT or stdin) or an interactive conversation.")
    cp.add_argument("prompt", nargs="*", help="the message; without it, an interactive conversation")
    cp.add_argument("--model", help="local: a .gguf path, 'demo' (default), 'tiny-qwen3' or a repo id; "
                    "remote: the model name (default Qwen/Qwen3-1.7B)")
    cp.add_argument("--filename", help="glob selecting the GGUF inside a repo or folder")
    cp.add_argument("--remote", action="store_true", help="use the GradienteSur API ($GS_API_KEY)")
    cp.add_argument("--base-url", help="another OpenAI/vLLM-compatible server (implies --remote)")
    cp.add_argument("--timeout", type=float, default=60.0)
    cp.add_argument("--system", help="a system message")
    cp.add_argument("--n-ctx", type=int)
    cp.add_argument("--n-gpu-layers", type=int)
    cp.add_argument("--n-threads", type=int)
    cp.add_argument("--no-stream", action="store_true", help="print the answer when it is complete")
    cp.add_argument("--json", action="store_true", help="also print the raw response (one-shot only)")
    cp.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    _add_param_flags(cp)
    cp.set_defaults(func=cmd_chat)

    # models
    mp = sub.add_parser("models", help="list or fetch models")
    msub = mp.add_subparsers(dest="models_command", metavar="ACTION")
    lp = msub.add_parser("list", help="models available without downloading")
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=cmd_models_list)
    fp = msub.add_parser("fetch", help="fetch the demo model and build tiny-qwen3 (default), or fetch one model")
    fp.add_argument("model", nargs="?", help="'demo', 'tiny-qwen3' or a Hugging Face repo id")
    fp.add_argument("--filename", help="glob selecting the GGUF in the repo (e.g. '*Q4_K_M.gguf')")
    fp.set_defaults(func=cmd_models_fetch)
    bp = msub.add_parser("build", help="build tiny-qwen3, optionally quantized by llama.cpp (--quant Q8_0), or "
                         "qwen3-1.7b-shape (benchmarks: Qwen3-1.7B's cost per token, random weights)")
    bp.add_argument("model", help="'tiny-qwen3' or 'qwen3-1.7b-shape'")
    bp.add_argument("--quant", help="a llama.cpp type such as Q8_0 or Q4_0 (tiny-qwen3, default: f16); "
                    "Q4_K_M (default) or Q8_0 (qwen3-1.7b-shape)")
    bp.set_defaults(func=cmd_models_build)
    mp.set_defaults(func=lambda a: (mp.print_help(), 0)[1])

    # doctor
    dp = sub.add_parser("doctor", help="check the install: llama.cpp build, threads, buffer types, "
                        "models, API key, a short generation",
                        description="What this machine gives gsexplore; exit status 1 when something "
                                    "is broken, with what to do.")
    dp.add_argument("--no-generate", action="store_true", help="skip the generation check")
    dp.set_defaults(func=cmd_doctor)

    # batch
    bp = sub.add_parser("batch", help="run an OpenAI/vLLM batch file on a local model (gsexplore batch run)")
    bsub = bp.add_subparsers(dest="batch_command", metavar="ACTION")
    rp = bsub.add_parser("run", help="run a batch file like `vllm run-batch` (resumable)",
                         description="Run every request of a batch JSONL file (OpenAI's Batch API format, as "
                                     "`gsexplore sweep --to-batch` writes it) on a local model, with every slot "
                                     "busy; results in vLLM's output format. Lines already in the output are "
                                     "skipped, so the same command resumes a run cut short. Exit status 1 when "
                                     "some request failed.")
    rp.add_argument("-i", "--input-file", required=True, help="the batch file (one request a line)")
    rp.add_argument("-o", "--output-file", required=True, help="the results file (appended to; resumable)")
    rp.add_argument("--model", required=True, help="a .gguf path, 'demo', 'tiny-qwen3' or a Hugging Face repo id")
    rp.add_argument("--filename", help="glob selecting the GGUF inside a repo or folder")
    rp.add_argument("--served-model-name", action="append",
                    help="another model name the bodies may ask for (repeatable; --model as typed, the model's "
                         "own name and Qwen/Qwen3-1.7B are always accepted)")
    rp.add_argument("--parallel", type=int, help="requests generated at once (vLLM's --max-num-seqs)")
    rp.add_argument("--n-ctx", type=int, help="tokens each request may hold")
    rp.add_argument("--n-gpu-layers", type=int, help="layers offloaded to the GPU (-1: all)")
    rp.add_argument("--n-threads", type=int, help="CPU threads (default: llama.cpp's)")
    rp.add_argument("--system-prompt", help="system message for requests that have none")
    rp.add_argument("--no-progress", action="store_true", help="no progress bar")
    rp.set_defaults(func=cmd_batch_run)
    bp.set_defaults(func=lambda a: (bp.print_help(), 0)[1])

    # sweep: parsed by gsexplore.sweep_cli; listed here for --help
    sub.add_parser("sweep", help="run a parameter sweep from a YAML config (gsexplore sweep CONFIG.yaml)",
                   add_help=False)
    # lab: parsed by gsexplore.lab; listed here for --help
    sub.add_parser("lab", help="JupyterLab on notebooks/00_inicio_rapido.ipynb (gsexplore lab --help)",
                   add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gsexplore` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "sweep":
            return cmd_sweep(argv[1:])
        if argv and argv[0] == "lab":
            return cmd_lab(argv[1:])
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
        return int(args.func(args) or 0)
    except GSExploreError as e:
        _err(f"gsexplore: error: {e}")
        return 2 if isinstance(e, ValueError) else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
