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
    # --- panels --------------------------------------------------------------------------------
    # --- classroom -----------------------------------------------------------------------------
}
