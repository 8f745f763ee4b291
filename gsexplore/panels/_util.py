"""What every panel shares: the display plumbing, UI strings, data files, threads, figures."""

from __future__ import annotations

import html
import io
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

import ipywidgets as W
import traitlets

esc = html.escape

# UI strings of the panels themselves (parameter help lives in Params, not here).
_UI: dict[str, tuple[str, str]] = {
    "sampling": ("Muestreo", "Sampling"),
    "output": ("Salida y parada", "Output and stopping"),
    "guided": ("Decodificación guiada", "Guided decoding"),
    "advanced": ("Avanzado", "Advanced"),
    "default": ("por defecto", "default"),
    "server_decides": ("lo decide el servidor", "the server decides"),
    "set_tip": ("Marcar para enviar este parámetro; sin marcar se usa el valor por defecto del servidor.",
                "Tick to send this parameter; unticked, the server's default applies."),
    "invalid_json": ("JSON inválido", "invalid JSON"),
    "run": ("Ejecutar", "Run"),
    "stop": ("Detener", "Stop"),
    "clear": ("Nueva conversación", "New conversation"),
    "system": ("Sistema", "System"),
    "user": ("Usuario", "User"),
    "assistant": ("Asistente", "Assistant"),
    "reasoning": ("Razonamiento", "Reasoning"),
    "answer": ("Respuesta", "Answer"),
    "params": ("Parámetros", "Parameters"),
    "code": ("Código", "Code"),
    "guided_tab": ("Guiado", "Guided"),
    "copy": ("Copiar", "Copy"),
    "backend": ("Backend", "Backend"),
    "no_backend": ("Sin backend: conectá uno en la sección Backend.", "No backend: connect one in the Backend section."),
    "running": ("Generando…", "Generating…"),
    "stopped": ("Detenido por el usuario", "Stopped by the user"),
    "connect": ("Conectar", "Connect"),
    "load": ("Cargar", "Load"),
    "connecting": ("Conectando…", "Connecting…"),
    "loading": ("Cargando el modelo…", "Loading the model…"),
    "none": ("ninguna", "none"),
    "active": ("Restricción activa", "Active constraint"),
    "no_constraint": ("Sin restricción: la salida es libre.", "No constraint: the output is free."),
    "example": ("Ejemplo", "Example"),
    "choices_hint": ("Una opción por línea", "One option per line"),
    "try_text": ("Probar un texto", "Try a text"),
    "valid": ("válido", "valid"),
    "not_valid": ("no cumple la restricción", "does not satisfy the constraint"),
    "vary": ("Parámetros a variar", "Parameters to vary"),
    "values": ("valores", "values"),
    "prompts": ("Prompts (uno por línea)", "Prompts (one per line)"),
    "prompt_file": ("Archivo de prompts", "Prompt file"),
    "repeats": ("Repeticiones", "Repeats"),
    "requests": ("peticiones", "requests"),
    "fixed": ("Parámetros fijos (base)", "Fixed parameters (base)"),
    "store": ("Guardar en (opcional)", "Store in (optional)"),
    "metric": ("Métrica (y)", "Metric (y)"),
    "x": ("Eje x", "x axis"),
    "hue": ("Color", "Colour"),
    "token": ("token", "token"),
    "prob": ("probabilidad", "probability"),
    "original": ("original", "original"),
    "final": ("final (se muestrea de aquí)", "final (sampled from here)"),
    "survives": ("sobrevive", "survives"),
    "removed": ("eliminado", "removed"),
    "cell": ("Celda", "Cell"),
    "content": ("Contenido", "Content"),
}


def t(key: str, lang: str = "es") -> str:
    """A UI string in Spanish ("es") or English ("en")."""
    es, en = _UI[key]
    return es if lang == "es" else en


def data_dir() -> Path:
    """The repository's data/ folder (GSEXPLORE_DATA overrides it)."""
    env = os.environ.get("GSEXPLORE_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "data"


def data_files(sub: str, *patterns: str) -> dict[str, Path]:
    """{file name: path} of data/<sub>/ files matching the glob patterns, sorted by name."""
    folder = data_dir() / sub
    out: dict[str, Path] = {}
    if folder.is_dir():
        for pat in patterns:
            for p in folder.glob(pat):
                if p.is_file():
                    out[p.name] = p
    return dict(sorted(out.items()))


def error_html(message: str | None) -> str:
    """A red validation message (empty string when there is none)."""
    if not message:
        return ""
    return f'<div class="gs-error" style="color:#c62828;white-space:pre-wrap">⚠ {esc(str(message))}</div>'


def figure_png(fig: Any) -> bytes:
    """A matplotlib Figure as PNG bytes (for an ipywidgets.Image)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # tokens in scripts the default font lacks (CJK...) draw as boxes: not worth a warning each
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def start_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """Run target in a daemon thread, so the kernel's event loop stays free."""
    th = threading.Thread(target=target, name=name, daemon=True)
    th.start()
    return th


class BackgroundRun:
    """The Run / Stop / wait lifecycle of a panel whose work runs in a thread.

    The panel sets ``last_error`` when the work fails and ``value`` when it ends;
    the work watches ``_stop`` (set by ``stop()``).
    """

    value: Any
    last_error: BaseException | None

    def _init_run(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error = None

    @property
    def running(self) -> bool:
        """Whether the work is in progress."""
        return self._thread is not None and self._thread.is_alive()

    def _start(self, work: Callable[[], None], name: str, wait: bool) -> Any:
        """Run ``work`` in a thread; return the thread, or with ``wait`` the value (re-raising its error)."""
        self._stop.clear()
        self.last_error = None
        self._thread = start_thread(work, name)
        if not wait:
            return self._thread
        self._thread.join()
        if self.last_error is not None:
            raise self.last_error
        return self.value

    def stop(self) -> None:
        """Ask the work to stop (what the Stop button does); what finished is kept."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for the work in progress and return ``value``."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.value


class Panel(traitlets.HasTraits):
    """A model object with a `.widget` view; displays as that widget in notebooks."""

    widget: W.Widget

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def close(self) -> None:
        """Close the widget view (frees its comm)."""
        self.widget.close()


def all_widgets(w: W.Widget) -> list[W.Widget]:
    """w and every widget below it (children, titles' widgets), depth first."""
    out = [w]
    for child in getattr(w, "children", ()) or ():
        out.extend(all_widgets(child))
    return out
