"""What every panel shares: the display plumbing, UI strings, data files, threads, figures."""

from __future__ import annotations

import html
import io
import os
import threading
import warnings
from collections.abc import Sequence
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
    "server": ("servidor", "server"),
    "unset": ("— (lo decide el servidor: {default})", "— (the server decides: {default})"),
    "yes": ("sí", "yes"),
    "no": ("no", "no"),
    "history": ("Historial", "History"),
    "stale": ("Respuesta anterior: no corresponde a los parámetros actuales (la ejecución fue rechazada).",
              "Previous answer: it does not match the current parameters (the run was refused)."),
    "repeat": ("repetición", "repeat"),
    "by_values": ("por valores", "by values"),
    "by_cell": ("por celda", "by cell"),
    "no_rows": ("ninguna fila con esos valores", "no row with those values"),
    "empty": ("(vacío)", "(empty)"),
    "unset_value": ("(sin fijar)", "(not set)"),
    "plan": ("{n} peticiones × hasta {max_tokens} tokens = hasta {total} tokens",
             "{n} requests × up to {max_tokens} tokens = up to {total} tokens"),
    "plan_detail": ("{settings} combinaciones × {prompts} prompts × {backends} backend(s) × {repeats} repeticiones",
                    "{settings} settings × {prompts} prompts × {backends} backend(s) × {repeats} repeats"),
    "eta": ("tiempo estimado: {eta} (a {speed:.0f} tokens/s, medido en este backend)",
            "estimated time: {eta} (at {speed:.0f} tokens/s, measured on this backend)"),
    "eta_unknown": ("tiempo estimado: se mide con la primera respuesta",
                    "estimated time: measured with the first answer"),
    "kind": ("tipo de gráfico", "plot kind"),
    "no_data": ("El gráfico y la tabla aparecen cuando hay resultados.", "The plot and table appear once there are results."),
    "finished": ("Listo: {n} filas en {s:.1f} s", "Done: {n} rows in {s:.1f} s"),
    "running_sweep": ("Ejecutando: {done} / {n}", "Running: {done} / {n}"),
    "warning": ("Aviso", "Warning"),
}

#: Column labels of the result tables (sweep, history).
COLUMNS: dict[str, tuple[str, str]] = {
    "backend": ("backend", "backend"), "model": ("modelo", "model"), "prompt": ("prompt", "prompt"),
    "repeat": ("repetición", "repeat"), "content": ("respuesta", "answer"),
    "finish_reason": ("motivo de fin", "finish reason"), "completion_tokens": ("tokens generados", "tokens"),
    "latency_s": ("latencia (s)", "latency (s)"), "error_type": ("error", "error"),
    "run": ("ejecución", "run"), "stopped": ("detenida", "stopped"), "reasoning_content": ("razonamiento", "reasoning"),
}


# --- the message catalogue: every error and warning the panels show -----------------------
# Params, the guided compiler and the sweep planner raise ParamsError with a `key` and the values
# that fill it in (`ctx`); this table says it in the panel's language, naming the field and what
# the user typed, as typed. Spanish in "vos", as the rest of the panels.
_MSG: dict[str, tuple[str, str]] = {
    "range": ("{field}: escribiste {typed}, pero tiene que ser {allowed}.",
              "{field}: you wrote {typed}, but it must be {allowed}."),
    "type": ("{field}: escribiste {typed}, pero tiene que ser {allowed}.",
             "{field}: you wrote {typed}, but it must be {allowed}."),
    "unknown": ("«{field}» no es un parámetro{hint}", "{field!r} is not a parameter{hint}"),
    "unknown_hint": ("; ¿quisiste decir «{close}»?", "; did you mean {close!r}?"),
    "min_gt_max": ("min_tokens: escribiste {typed}, pero no puede superar max_tokens ({max_tokens}).",
                   "min_tokens: you wrote {typed}, but it cannot exceed max_tokens ({max_tokens})."),
    "needs_logprobs": ("top_logprobs: necesita logprobs activado (sí).", "top_logprobs: needs logprobs on (yes)."),
    "no_stream": ("{field}: no se puede combinar con stream.", "{field}: cannot be combined with stream."),
    "empty_ids": ("{field}: la lista no puede estar vacía.", "{field}: the list must not be empty."),
    "negative_ids": ("{field}: escribiste {typed}, pero los ids de token tienen que ser ≥ 0.",
                     "{field}: you wrote {typed}, but token ids must be ≥ 0."),
    "empty_stop": ("stop: los textos de parada no pueden estar vacíos.", "stop: stop strings must not be empty."),
    "continue": ("continue_final_message: necesita add_generation_prompt en «no» (vLLM rechaza los dos juntos).",
                 "continue_final_message: needs add_generation_prompt off (vLLM refuses both)."),
    "rf_type": ("response_format: el tipo tiene que ser 'text', 'json_object' o 'json_schema'.",
                "response_format: the type must be 'text', 'json_object' or 'json_schema'."),
    "rf_schema": ("response_format: json_schema necesita {{\"name\": ..., \"schema\": {{...}}}}.",
                  "response_format: json_schema needs {{\"name\": ..., \"schema\": {{...}}}}."),
    "one_guided": ("Solo una restricción guiada a la vez: {others} están activas.",
                   "Only one guided constraint at a time: {others} are set."),
    "json_invalid": ("{field}: el JSON no se puede leer (línea {line}, columna {col}).",
                     "{field}: the JSON cannot be read (line {line}, column {col})."),
    "schema_object": ("{field}: un esquema JSON tiene que ser un objeto {{...}}.",
                      "{field}: a JSON schema must be an object {{...}}."),
    "schema_invalid": ("{field}: el esquema JSON no es válido en «{where}»: el valor {bad} no está permitido ahí.",
                       "{field}: the JSON schema is not valid at {where!r}: the value {bad} is not allowed there."),
    "regex": ("{field}: la expresión regular «{typed}» no compila: {reason} (posición {pos}).",
              "{field}: the regular expression {typed} does not compile: {reason} (position {pos})."),
    "regex_empty": ("guided_regex: escribí una expresión regular.", "guided_regex: write a regular expression."),
    "choice_empty": ("guided_choice: escribí al menos una opción.", "guided_choice: write at least one option."),
    "choice_bad": ("guided_choice: las opciones tienen que ser textos no vacíos.",
                   "guided_choice: options must be non-empty strings."),
    "grammar_empty": ("guided_grammar: la gramática está vacía.", "guided_grammar: the grammar is empty."),
    "grammar_invalid": ("guided_grammar: la gramática no es válida: {detail}",
                        "guided_grammar: the grammar is not valid: {detail}"),
    "empty_value": ("{field}: está vacío; escribí un valor o desmarcalo.", "{field}: empty; write a value or untick it."),
    "invalid_settings": ("{n_bad} de {n_total} combinaciones no son válidas:\n{items}",
                         "{n_bad} of {n_total} settings are not valid:\n{items}"),
    "no_setting": ("Ninguna combinación válida para ejecutar.", "No valid setting to run."),
    "no_values": ("{field}: sin valores; escribilos separados por comas.",
                  "{field}: no values; write them separated by commas."),
    "empty_between_commas": ("{field}: hay un valor vacío entre comas.", "{field}: an empty value between commas."),
    "json_list": ("{field}: escribí una lista JSON de valores, por ejemplo [[1, 2], [3]].",
                  "{field}: write a JSON list of values, e.g. [[1, 2], [3]]."),
    "no_prompts": ("Sin prompts: escribí uno por línea o elegí un archivo.",
                   "No prompts: write one per line or choose a file."),
    "needs_max_tokens": ("max_tokens: un barrido necesita un límite de tokens por respuesta; escribí uno (por ejemplo 64).",
                         "max_tokens: a sweep needs a token limit per answer; write one (e.g. 64)."),
    "empty_prompt": ("Escribí un prompt primero.", "Write a prompt first."),
    "no_message": ("Escribí un mensaje primero.", "Type a message first."),
    "already_running": ("Ya hay una ejecución en curso: tocá Detener o esperá.",
                        "A run is already in progress: press Stop or wait."),
    "warn_temperature": ("temperature {typed}: es mayor que 2; la salida suele volverse ruido. Podés usarla, pero que sea a propósito.",
                         "temperature {typed}: above 2 the output usually turns into noise. You can use it, on purpose."),
    "warn_top_k": ("top_k {typed}: supera el vocabulario del modelo ({vocab} tokens); equivale a sin límite.",
                   "top_k {typed}: exceeds the model's vocabulary ({vocab} tokens); same as no limit."),
    "warn_max_tokens": ("max_tokens {typed}: supera el contexto del modelo ({n_ctx} tokens); la respuesta se cortará antes.",
                        "max_tokens {typed}: exceeds the model's context ({n_ctx} tokens); the answer stops earlier."),
}

_KIND_WORDS = {"float": ("un número", "a number"), "int": ("un número entero", "a whole number"),
               "bool": ("sí o no", "yes or no"), "str": ("un texto", "a text"), "json": ("un objeto JSON", "a JSON object"),
               "list[int]": ("una lista de números enteros", "a list of whole numbers"),
               "list[str]": ("una lista de textos", "a list of texts"),
               "str|list[str]": ("un texto o una lista de textos", "a text or a list of texts")}

#: Python's regex messages, in Spanish (the rest are shown as Python says them).
_REGEX_ES = {"missing ), unterminated subpattern": "falta cerrar un paréntesis «)»",
             "unbalanced parenthesis": "sobra un paréntesis «)»",
             "unterminated character set": "falta cerrar un corchete «]»",
             "nothing to repeat": "no hay nada antes para repetir",
             "multiple repeat": "hay dos repeticiones seguidas",
             "missing ), unterminated name": "falta cerrar un nombre de grupo"}


def allowed_text(field: str, lang: str = "es") -> str:
    """What a parameter accepts, from its spec: 'un número entero ≥ -1', 'un número > 0 y ≤ 1'."""
    from ..params import Params

    s = Params.spec(field)
    es = lang == "es"
    words = _KIND_WORDS.get(s.kind, (s.kind, s.kind))[0 if es else 1]
    bounds = []
    if s.minimum is not None:
        bounds.append(f"{'>' if s.exclusive_minimum else '≥'} {s.minimum:g}")
    if s.maximum is not None:
        bounds.append(f"≤ {s.maximum:g}")
    return words + (" " + (" y " if es else " and ").join(bounds) if bounds else "")


def msg(key: str, lang: str = "es", **ctx: Any) -> str:
    """One message of the catalogue, filled in."""
    es, en = _MSG[key]
    return (es if lang == "es" else en).format(**ctx)


def explain(exc: BaseException, lang: str = "es") -> str:
    """An error as the panels show it: from the catalogue when it has a key, in the panel's language."""
    key = getattr(exc, "key", None)
    field = getattr(exc, "field", None)
    ctx = dict(getattr(exc, "ctx", None) or {})
    if key is None and field == "guided_grammar" and "grammar" in str(exc):
        key, ctx = "grammar_invalid", {"detail": _grammar_detail(str(exc), lang)}
    if key is None or key not in _MSG:
        return str(exc)
    ctx.setdefault("typed", "")
    ctx["field"] = field or ""
    if key in ("range", "type"):
        ctx["allowed"] = allowed_text(field, lang) if field else ""
    if key == "unknown":
        ctx["hint"] = msg("unknown_hint", lang, close=ctx["close"]) if ctx.get("close") else "."
    if key == "one_guided":
        ctx["others"] = (" y " if lang == "es" else " and ").join(ctx.get("others") or [])
    if key == "regex" and lang == "es":
        ctx["reason"] = _REGEX_ES.get(str(ctx.get("reason")), ctx.get("reason"))
    if key == "invalid_settings":
        ctx["items"] = "\n".join(f"  {where}: {explain(sub, lang)}" for where, sub in ctx.get("items") or [])
    try:
        return msg(key, lang, **ctx)
    except (KeyError, IndexError):
        return str(exc)


def _grammar_detail(text: str, lang: str) -> str:
    detail = text.split(": ", 1)[-1]
    if lang == "es":
        import re

        detail = re.sub(r"Expected (.+?) at line (\d+)", r"se esperaba \1 en la línea \2", detail)
    return detail


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
    return (f'<div class="gs-error" role="alert" style="color:#c62828;white-space:pre-wrap;'
            f'overflow-wrap:anywhere">⚠ {esc(str(message))}</div>')


def warning_html(message: str | None) -> str:
    """An amber warning: the value is allowed, and unusual."""
    if not message:
        return ""
    return (f'<div class="gs-warning" style="color:#8a5a00;white-space:pre-wrap;'
            f'overflow-wrap:anywhere">⚠ {esc(str(message))}</div>')


#: CSS every panel shares: rows wrap instead of scrolling sideways, long names break, invalid inputs are red.
CSS = """<style>
.gs-panel-root, .gs-panel-root * { box-sizing: border-box; }
.gs-panel-root { max-width: 100%; overflow-x: hidden; }
.gs-param-row { flex-wrap: wrap !important; max-width: 100%; overflow: hidden; align-items: center; }
.gs-param-name { overflow-wrap: anywhere; word-break: break-word; line-height: 1.2; }
.gs-invalid input, .gs-invalid textarea, input.gs-invalid, textarea.gs-invalid {
  border: 2px solid #c62828 !important; color: #c62828 !important; background: #fff5f5 !important; }
.gs-warn input { border: 2px solid #d89c00 !important; }
.gs-guided-kind, .gs-guided-kind > div { flex-wrap: wrap !important; }
.gs-guided-kind .widget-toggle-button { margin-bottom: 2px; }
.gs-panel-root .widget-text, .gs-panel-root .widget-textarea, .gs-panel-root .widget-dropdown { max-width: 100%; }
.gs-panel-root .widget-label { overflow: hidden; text-overflow: ellipsis; }
.gs-table-wrap { max-width: 100%; overflow-x: hidden; }
.gs-table-wrap table { table-layout: fixed; width: 100%; }
.gs-table-wrap td, .gs-table-wrap th { overflow-wrap: anywhere; vertical-align: top; }
</style>"""


def css_widget() -> W.HTML:
    """The shared CSS, as a widget to put first in a panel's box."""
    return W.HTML(CSS, layout=W.Layout(height="0px", margin="0", padding="0", overflow="hidden"))


def panel_root(name: str, children: Sequence[W.Widget], *, box: type[W.Box] = W.VBox,
               css: bool = True, **layout: str) -> W.Box:
    """A panel's outermost box: the shared CSS first (unless ``css`` is False), then ``children``.

    It carries the classes ``name`` and ``gs-panel-root`` (what the shared CSS styles);
    ``layout`` holds ``ipywidgets.Layout`` fields (none: the box's default layout).
    """
    root = box([css_widget(), *children] if css else list(children), layout=W.Layout(**layout))
    root.add_class(name)
    root.add_class("gs-panel-root")
    return root


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


def tf(key: str, lang: str = "es", **values: Any) -> str:
    """A UI string with its blanks filled in."""
    return t(key, lang).format(**values)
