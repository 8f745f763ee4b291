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
    "sweep.plan": "barrido {id}: {todo} pedidos para correr{in_store} = {settings} configuraciones x {prompts} prompts x {backends} backend(s) x {repeats} repeticiones; ~{ptok} tokens de prompt, {ctok} tokens de respuesta",
    "sweep.plan_in_store": " ({done} de {total} ya están en el almacén)",
    "sweep.plan_ctok_max": "<= {n}",
    "sweep.plan_ctok_unknown": "? (no fijaste max_tokens)",
    "sweep.outcome_ok": "{ok} de {total} pedidos bien",
    "sweep.outcome_failed": "{ok} de {total} pedidos bien, {failed} con error: {first}",
    "sweep.outcome_first": "{type}{status}: {message}",
    "sweep.outcome_none": "ningún pedido terminó",
    "sweep.interrupted": "barrido interrumpido: terminaron {done} de {todo} pedidos, faltan {remaining}; {how}",
    "sweep.resume_store": "corré el mismo barrido con store={store!r} otra vez para seguir donde quedó",
    "sweep.resume_hint": "pasá store='resultados.parquet' para poder retomar un barrido",
    # --- batch files ---------------------------------------------------------------------------
    "batch.exported": "{n} pedidos escritos en {path} (~{ptok} tokens de prompt, {ctok} tokens de respuesta); la importación lee {plan}",
    "batch.imported": "{rows} filas importadas de {lines} líneas de {file} ({skipped} ya estaban en el almacén, {unknown} con un custom_id desconocido, {incomplete} incompletas)",
    "batch.unknown_ids": "{n} custom_id de {file} no están en ningún plan de este almacén y no se importaron: {ids}",
    "batch.run_done": "{n} pedidos corridos ({failed} con error), {skipped} ya estaban en {out}",
    # --- statistics and comparisons ------------------------------------------------------------
    "stats.family": "Familia de Holm: {n} comparaciones ({metrics}; {by} = {levels} contra {baseline}).",
    "stats.underpowered": ("{by}={level} contra {baseline}, {metric}: la diferencia {diff} no es significativa "
                           "con n={n} (p_adj={p}); con unas {per} repeticiones por valor en cada uno de los "
                           "{strata} estratos ({total} por valor) se detectaría con {power} de potencia."),
    "stats.mixed_few": ("model='mixed' con {k} estratos: la varianza entre prompts casi no se puede estimar y "
                        "p sale demasiado optimista; para hablar de «prompts como estos» hacen falta más prompts "
                        "(5 o más)."),
    "agreement.no_prompt_logprobs": ("{backend} no devolvió prompt_logprobs: no puede puntuar un texto dado "
                                     "(teacher forcing). Usá un backend que los devuelva (LocalBackend, vLLM, "
                                     "gsexplore serve); llama-server y OpenAI no los ofrecen."),
    "agreement.summary_title": "Acuerdo entre {a} y {b}: KL por posición ({n} posiciones)",
    "agreement.rest_bucket": ("la masa fuera del top-{top} de ambos cuenta como un solo grupo («resto»); un token que un lado "
                                "no lista recibe la menor probabilidad listada de ese lado (una cota superior)"),
    "agreement.sweep_title": "¿Se transfiere la conclusión? {metric}: {b} menos {a} por celda (Holm sobre {n})",
    "agreement.interaction": ("Interacción {by} × backend en {metric}: p = {p} (¿el efecto de {by} cambia "
                              "entre backends?)"),
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
