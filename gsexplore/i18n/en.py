"""The message catalogue in English: one entry per stable key.

Keep the sections in the same order as the other language's file; a test checks both have the same keys.
"""
from __future__ import annotations

MESSAGES: dict[str, str] = {
    # --- params and validation ---------------------------------------------------------------
    # --- remote backend and server errors ------------------------------------------------------
    # --- models and loading --------------------------------------------------------------------
    # --- guided checks -------------------------------------------------------------------------
    # --- sweeps: plan, progress, outcome -------------------------------------------------------
    "sweep.plan": "sweep {id}: {todo} requests to run{in_store} = {settings} settings x {prompts} prompts x {backends} backend(s) x {repeats} repeats; ~{ptok} prompt tokens, {ctok} completion tokens",
    "sweep.plan_in_store": " ({done} of {total} already in the store)",
    "sweep.plan_ctok_max": "<= {n}",
    "sweep.plan_ctok_unknown": "? (max_tokens not set)",
    "sweep.outcome_ok": "{ok} of {total} requests succeeded",
    "sweep.outcome_failed": "{ok} of {total} requests succeeded, {failed} failed: {first}",
    "sweep.outcome_first": "{type}{status}: {message}",
    "sweep.outcome_none": "no request finished",
    "sweep.interrupted": "sweep interrupted: {done} of {todo} requests finished, {remaining} remain; {how}",
    "sweep.resume_store": "run the same sweep with store={store!r} again to resume",
    "sweep.resume_hint": "pass store='results.parquet' to make a sweep resumable",
    # --- batch files ---------------------------------------------------------------------------
    "batch.exported": "{n} requests written to {path} (~{ptok} prompt tokens, {ctok} completion tokens); the import reads {plan}",
    "batch.imported": "{rows} rows imported from {lines} lines of {file} ({skipped} already in the store, {unknown} with an unknown custom_id, {incomplete} incomplete)",
    "batch.unknown_ids": "{n} custom_id(s) of {file} are in no plan of this store and were not imported: {ids}",
    "batch.run_done": "{n} requests run ({failed} failed), {skipped} already in {out}",
    # --- statistics and comparisons ------------------------------------------------------------
    # --- panels --------------------------------------------------------------------------------
    # --- classroom -----------------------------------------------------------------------------
}
