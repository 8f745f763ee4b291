"""`gsexplore lab`: JupyterLab on the notebooks, wherever it runs (``make lab`` runs it).

    gsexplore lab                                  # notebooks/00_inicio_rapido.ipynb on localhost:8888
    gsexplore lab --port 8890 notebooks/01_muestreo.ipynb
    gsexplore lab --simple                         # simple mode: one document, no file browser (a class)
    gsexplore lab --LabApp.extension_manager=readonly   # other options go to JupyterLab as they are
    gsexplore lab --write-settings                 # only write the environment's overrides.json

The one home of how the project starts JupyterLab (the tests build their servers from
:func:`jupyter_command` too):

- as root (Docker containers, many cloud and lab machines): ``--allow-root``, only when the uid is 0;
- headless (no display, no browser): ``--no-browser``; once the server answers, the notebook's URL
  with its token and the ``ssh -L`` line that reaches it from a laptop are printed;
- on the port asked for, or the next free one (JupyterLab is told that exact port, so the URL
  printed is the one it listens on);
- without JupyterLab's news and update checks: ``overrides.json`` in the environment's JupyterLab
  settings (``.venv/share/jupyter/lab/settings/``), written by ``make setup`` and, when missing, here.
  Nothing asks to reach the internet and no toast covers the notebook.

Also runs as ``python -m gsexplore.lab``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_NOTEBOOK = "notebooks/00_inicio_rapido.ipynb"
DEFAULT_PORT = 8888
NOTIFICATION_PLUGIN = "@jupyterlab/apputils-extension:notification"
#: JupyterLab's notification settings with news ("Ask" by default: a toast) and update checks off
NOTIFICATION_SETTINGS: dict[str, Any] = {"fetchNews": "false", "checkForUpdates": False}
OVERRIDES = {NOTIFICATION_PLUGIN: NOTIFICATION_SETTINGS}


def _say(msg: str = "") -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------
# the environment's settings: overrides.json


def app_dir() -> Path:
    """JupyterLab's application folder of this environment (``{sys.prefix}/share/jupyter/lab``)."""
    try:
        from jupyterlab.commands import get_app_dir
    except ImportError:  # JupyterLab's own rule, for the common case
        return Path(os.environ.get("JUPYTERLAB_DIR") or Path(sys.prefix, "share", "jupyter", "lab"))
    return Path(get_app_dir())


def overrides_path() -> Path:
    """Where JupyterLab reads the environment's setting overrides (defaults every user gets)."""
    return app_dir() / "settings" / "overrides.json"


def _read_overrides(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8") or "{}")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def write_overrides(path: Path | None = None) -> Path:
    """Write news and update checks off into ``overrides.json``, keeping any other overrides there."""
    path = overrides_path() if path is None else path
    data = _read_overrides(path)
    data[NOTIFICATION_PLUGIN] = {**(data.get(NOTIFICATION_PLUGIN) or {}), **NOTIFICATION_SETTINGS}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def overrides_ok(path: Path | None = None) -> bool:
    """Whether ``overrides.json`` already turns news and update checks off."""
    try:
        current = _read_overrides(overrides_path() if path is None else path).get(NOTIFICATION_PLUGIN) or {}
    except (OSError, ValueError):
        return False
    return all(current.get(k) == v for k, v in NOTIFICATION_SETTINGS.items())


def ensure_overrides() -> None:
    """Write ``overrides.json`` when it lacks the settings (an environment set up before they existed)."""
    if overrides_ok():
        return
    try:
        write_overrides()
    except (OSError, ValueError) as e:
        print(f"gsexplore lab: could not turn JupyterLab's news off ({e}); "
              "JupyterLab may ask about news", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# the machine: root, a browser, a free port


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def has_browser() -> bool:
    """Whether a browser can open here: on Linux and BSD, a display (or an explicit $BROWSER) and a browser."""
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")) and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("BROWSER")):
        return False
    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


def _port_free(ip: str, port: int) -> bool:
    host = "127.0.0.1" if ip in ("localhost", "") else ip
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Tornado binds
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(port: int, ip: str = "localhost", tries: int = 50) -> int:
    """``port`` if it is free, else the next free one (as JupyterLab's own port retries would)."""
    for p in range(port, port + tries + 1):
        if _port_free(ip, p):
            return p
    raise OSError(f"ports {port}-{port + tries} are all in use; choose another: make lab PORT=...")


def ssh_hint(port: int) -> str:
    """The ``ssh -L`` line that brings this machine's ``port`` to the same port on a laptop."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no name for this uid (some containers)
        user = "USER"
    conn = os.environ.get("SSH_CONNECTION", "").split()
    host = conn[2] if len(conn) >= 4 else socket.gethostname()  # the address this ssh session reached
    if ":" in host:
        host = f"[{host}]"
    return f"ssh -L {port}:localhost:{port} {user}@{host}"


# --------------------------------------------------------------------------
# the command


def jupyter_command(port: int, root_dir: str | os.PathLike[str], notebook: str | None = None, *,
                    ip: str = "localhost", open_browser: bool = False, simple: bool = False,
                    extra: Sequence[str] = ()) -> list[str]:
    """The JupyterLab command line: this environment's Python, root only with ``--allow-root``.

    ``notebook`` (relative to ``root_dir``) opens in the browser; with ``simple`` it is also the
    page the server's root URL leads to, in simple mode (``/doc/tree/...``).
    """
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.ip={ip}", f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root_dir}"]
    if not open_browser:
        argv.append("--no-browser")
    if is_root():
        argv.append("--allow-root")
    if notebook and simple:
        argv.append(f"--LabApp.default_url=/doc/tree/{urllib.parse.quote(notebook)}")
    argv.extend(extra)
    if notebook and not simple:
        argv.append(str(Path(root_dir, notebook)))  # the file the browser opens (/lab/tree/...)
    return argv


def notebook_url(port: int, token: str, notebook: str | None, *, simple: bool = False) -> str:
    path = f"/{'doc' if simple else 'lab'}/tree/{urllib.parse.quote(notebook)}" if notebook else "/lab"
    return f"http://localhost:{port}{path}?token={urllib.parse.quote(token)}"


def _answers(ip: str, port: int, token: str) -> bool:
    host = "127.0.0.1" if ip in ("localhost", "", "0.0.0.0") else ("::1" if ip == "::" else ip)
    host = f"[{host}]" if ":" in host else host
    req = urllib.request.Request(f"http://{host}:{port}/api/status", headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(req, timeout=2) as r:  # noqa: S310 - the server we started
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait(proc: subprocess.Popen[bytes]) -> int:
    """The server's exit status; Ctrl-C reaches it too (it asks to confirm), so here it only waits."""
    while True:
        try:
            rc = proc.wait()
            return 128 - rc if rc < 0 else rc
        except KeyboardInterrupt:
            continue


def launch(notebook: str | None = DEFAULT_NOTEBOOK, *, port: int = DEFAULT_PORT, ip: str = "localhost",
           root_dir: str | os.PathLike[str] = ".", browser: bool | None = None, simple: bool = False,
           extra: Sequence[str] = ()) -> int:
    """Run JupyterLab until it stops; print its URL (and, headless, the ``ssh -L`` line) once it answers."""
    root = Path(root_dir).resolve()
    if notebook and not (root / notebook).is_file():
        print(f"gsexplore lab: no notebook {root / notebook}", file=sys.stderr, flush=True)
        return 2
    ensure_overrides()
    chosen = free_port(port, ip)
    if chosen != port:
        _say(f"gsexplore lab: port {port} is in use; using {chosen}")
    token = os.environ.get("JUPYTER_TOKEN") or secrets.token_urlsafe(24)
    open_browser = has_browser() if browser is None else browser
    argv = jupyter_command(chosen, root, notebook, ip=ip, open_browser=open_browser, simple=simple, extra=extra)
    # the token through the environment, not the command line (where `ps` shows it to everyone)
    proc = subprocess.Popen(argv, env={**os.environ, "JUPYTER_TOKEN": token})
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    try:
        while proc.poll() is None and not _answers(ip, chosen, token):
            time.sleep(0.5)
        if proc.poll() is None:
            _say()
            _say(f"    gsexplore lab: JupyterLab is ready on {notebook or 'the project folder'}:")
            _say(f"    {notebook_url(chosen, token, notebook, simple=simple)}")
            if not open_browser:
                _say("    No browser here: from your laptop, run")
                _say(f"        {ssh_hint(chosen)}")
                _say("    and open the URL above there.")
            _say("    Ctrl-C stops JupyterLab.")
            _say()
    except KeyboardInterrupt:
        pass  # JupyterLab got it too
    try:
        return _wait(proc)
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gsexplore lab",
        description="JupyterLab on a notebook: as root too, headless too, news and update checks off. "
                    "Options not listed here (--LabApp.x=..., --ServerApp.x=...) go to JupyterLab.")
    p.add_argument("notebook", nargs="?", default=DEFAULT_NOTEBOOK,
                   help=f"notebook to open, relative to the folder served (default {DEFAULT_NOTEBOOK})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port on this machine (default {DEFAULT_PORT}; the next free one if it is busy)")
    p.add_argument("--ip", default="localhost", help="address to listen on (default localhost; "
                   "0.0.0.0 in a container reached through a published port)")
    p.add_argument("--root-dir", default=".", help="folder JupyterLab serves (default: the current one)")
    p.add_argument("--simple", action="store_true",
                   help="simple mode: the notebook alone, no file browser (a class's projector)")
    browser = p.add_mutually_exclusive_group()
    browser.add_argument("--no-browser", dest="browser", action="store_false", default=None,
                         help="do not open a browser (the default where there is no display)")
    browser.add_argument("--browser", dest="browser", action="store_true", help="open a browser")
    p.add_argument("--write-settings", action="store_true",
                   help="only write the environment's overrides.json (news and update checks off), then exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if args.write_settings:
        _say(f"JupyterLab news and update checks off: {write_overrides()}")
        return 0
    try:
        return launch(args.notebook or None, port=args.port, ip=args.ip, root_dir=args.root_dir,
                      browser=args.browser, simple=args.simple, extra=extra)
    except OSError as e:
        print(f"gsexplore lab: {e}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
