"""The message catalogue in Spanish (vos, as the seed: «Podés enviar»): one entry per stable key.

Keep the sections in the same order as the other language's file; a test checks both have the same keys.
"""
from __future__ import annotations

MESSAGES: dict[str, str] = {
    # --- params and validation ---------------------------------------------------------------
    # --- remote backend and server errors ------------------------------------------------------
    # --- models and loading --------------------------------------------------------------------
    # --- guided checks -------------------------------------------------------------------------
    # --- sweeps: plan, progress, outcome -------------------------------------------------------
    # --- batch files ---------------------------------------------------------------------------
    # --- statistics and comparisons ------------------------------------------------------------
    # --- panels --------------------------------------------------------------------------------
    # --- classroom -----------------------------------------------------------------------------
    "class.title": "La clase",
    "class.col.student": "Alumno",
    "class.col.waiting": "Esperando",
    "class.col.running": "Generando",
    "class.col.finished": "Terminadas",
    "class.col.tokens": "Tokens",
    "class.col.last_latency_s": "Última latencia (s)",
    "class.col.last_ttft_s": "Primer token (s)",
    "class.col.errors": "Errores",
    "class.totals": "Toda la clase ({students} alumnos)",
    "class.empty": "Todavía nadie envió una petición.",
    "class.plot.empty": "Cuando lleguen respuestas, acá vas a ver qué probó la clase.",
    "class.plot.title": "Qué probó la clase ({x}) y qué volvió ({metric})",
    "class.plot.x": "Parámetro:",
    "class.plot.metric": "Métrica:",
    "class.updated": "Actualizado a las",
    "class.offline": "No se puede conectar con el servidor; reintentando.",
    "class.loading": "Cargando…",
    "class.key_prompt": "Pegá la clave de docente (--admin-key-file):",
    "class.key_button": "Entrar",
    "class.panel.error": "El servidor respondió {status}: {message}",
    "class.panel.unreachable": "No se puede conectar con {url}: {error}",
    "class.panel.stopped": "Actualización detenida.",
}
