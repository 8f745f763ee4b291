"""`make lab` as people run it: the exact command of the Makefile, headless, as root on CI.

The command is read from the Makefile with ``make -n`` (``PY`` set to this interpreter, ``PORT``
to a free port) and run in the background with a fake HOME and Jupyter folders under tmp_path and
no display. JupyterLab's application folder is this environment's, seen through a folder of links
(``JUPYTERLAB_DIR``) whose ``settings/overrides.json`` the Makefile's own set-up recipe writes, so
the test reads nothing from and writes nothing into the environment's settings.

Then: the printed URL (with its token) and the ``ssh -L`` line, ``/api/status``, notebook 00
through the contents API and its ``/lab/tree/`` page, and the notification settings as the lab
serves them (news and update checks off). The server's process group is ended at the end.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gsexplore import lab

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/00_inicio_rapido.ipynb"
URL_RE = re.compile(r"http://localhost:(\d+)/lab/tree/notebooks/00_inicio_rapido\.ipynb\?token=([\w-]+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_recipe(target: str, env: dict[str, str], **variables: str) -> list[str]:
    """The command ``make TARGET`` runs itself, its prerequisites taken as done (``make -n -o ...``)."""
    make = shutil.which("make")
    assert make, "make is missing (the README's commands need it)"
    done = ("system-deps", "setup", "doctor", ".venv/.installed")
    out = subprocess.run(
        [make, "-s", "-n", "-B", *(f"-o{t}" for t in done), target, *(f"{k}={v}" for k, v in variables.items())],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    lines = [ln for ln in out.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert lines, f"`make -n {target}` runs nothing:\n{out}"
    return shlex.split(lines[-1])  # the target's own one-line recipe comes after its prerequisites'


def _env(tmp_path: Path) -> dict[str, str]:
    """A fresh user with no display: HOME, Jupyter's folders and JupyterLab's under tmp_path."""
    for d in ("home", "config", "data", "runtime", "user-settings", "workspaces"):
        (tmp_path / d).mkdir()
    app = tmp_path / "lab-app"  # this environment's JupyterLab, its settings folder our own
    (app / "settings").mkdir(parents=True)
    for entry in lab.app_dir().iterdir():
        if entry.name != "settings":
            (app / entry.name).symlink_to(entry)
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "JUPYTER_TOKEN", "JUPYTER_TOKEN_FILE",
                        "NOTEBOOK", "LAB_ARGS", "PORT", "VENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env.update(HOME=str(tmp_path / "home"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "user-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"), JUPYTERLAB_DIR=str(app))
    return env


def _get(url: str, token: str, timeout: float = 10.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - our own local server
        return r.status, r.read()


def test_setup_writes_overrides(tmp_path: Path) -> None:
    """The Makefile's set-up recipe writes news and update checks off where JupyterLab reads them."""
    env = _env(tmp_path)
    target = Path(env["JUPYTERLAB_DIR"], "settings", "overrides.json")
    target.write_text(json.dumps({"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}}))
    cmd = _make_recipe(".venv/share/jupyter/lab/settings/overrides.json", env, PY=sys.executable)
    assert cmd[1:] == ["-m", "gsexplore.cli", "lab", "--write-settings"], cmd
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    assert json.loads(target.read_text()) == {
        "@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"},  # other overrides stay
        "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    }
    # without JUPYTERLAB_DIR, the file is the Makefile's target in the environment (.venv/share/...)
    if not os.environ.get("JUPYTERLAB_DIR"):
        assert lab.overrides_path() == Path(sys.prefix, "share", "jupyter", "lab", "settings", "overrides.json")


def test_allow_root_and_browser_only_where_they_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    """--allow-root for uid 0 alone; no display on Linux: no browser (so --no-browser)."""
    for uid, root in ((0, True), (1000, False)):
        monkeypatch.setattr(lab.os, "geteuid", lambda uid=uid: uid)
        assert ("--allow-root" in lab.jupyter_command(8888, ROOT, NOTEBOOK)) is root
    assert "--no-browser" not in lab.jupyter_command(8888, ROOT, NOTEBOOK, open_browser=True)
    if sys.platform.startswith("linux"):
        for var in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):
            monkeypatch.delenv(var, raising=False)
        assert not lab.has_browser()


class MakeLab:
    """`make lab`'s command in the background, in its own process group, output in a log file."""

    def __init__(self, tmp_path: Path) -> None:
        self.env = _env(tmp_path)
        # the set-up's recipe writes the settings, as `make lab` does before starting
        settings = _make_recipe(".venv/share/jupyter/lab/settings/overrides.json", self.env, PY=sys.executable)
        subprocess.run(settings, cwd=ROOT, env=self.env, check=True, capture_output=True)
        self.port = _free_port()
        self.cmd = _make_recipe("lab", self.env, PY=sys.executable, PORT=str(self.port))
        self.log_path = tmp_path / "make-lab.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_url(self, timeout: float = 120.0) -> tuple[str, str]:
        """The notebook's URL and token, once the launcher prints them (the server answers then)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            m = URL_RE.search(self.output())
            if m:
                return m.group(0), m.group(2)
            if self.proc.poll() is not None:
                raise AssertionError(f"`make lab` exited with {self.proc.returncode}:\n{self.output()[-4000:]}")
            time.sleep(0.5)
        raise AssertionError(f"`make lab` printed no URL in {timeout:.0f} s:\n{self.output()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group we started: launcher and JupyterLab
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[MakeLab]:
    server = MakeLab(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def test_make_lab_serves_notebook_00(make_lab: MakeLab) -> None:
    cmd = make_lab.cmd
    assert cmd[:5] == [sys.executable, "-m", "gsexplore.cli", "lab", "--port"] and cmd[-1] == NOTEBOOK, cmd
    url, token = make_lab.wait_url()
    base = f"http://localhost:{make_lab.port}"
    assert url.startswith(base + "/"), (url, make_lab.port)  # the port asked for
    out = make_lab.output()
    # headless: no browser, and the way in from a laptop
    assert f"ssh -L {make_lab.port}:localhost:{make_lab.port} " in out, out[-3000:]
    assert "Running as root is not recommended" not in out, out[-3000:]  # root (CI) starts as well

    status, body = _get(f"{base}/api/status", token)
    assert status == 200 and "started" in json.loads(body)

    status, body = _get(f"{base}/api/contents/{NOTEBOOK}?content=1", token)
    model = json.loads(body)
    assert status == 200 and model["type"] == "notebook" and model["content"]["cells"], model.get("type")

    status, body = _get(url, token)  # the page the printed URL opens
    assert status == 200 and b"<html" in body.lower()

    status, body = _get(f"{base}/lab/api/settings/{lab.NOTIFICATION_PLUGIN}", token)
    settings = json.loads(body)
    # the overrides become the schema's defaults (JupyterLab's own: "none", which asks in a toast,
    # and true); this fresh user has no settings of their own, so the defaults are what applies
    defaults = {k: v.get("default") for k, v in settings["schema"]["properties"].items()}
    assert defaults["fetchNews"] == "false" and defaults["checkForUpdates"] is False, defaults
    assert not {"fetchNews", "checkForUpdates"} & set(settings.get("settings") or {}), settings.get("settings")

    # the URL without the token is refused: the token printed is the one that counts
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"{base}/api/contents/{NOTEBOOK}", timeout=10)  # noqa: S310
