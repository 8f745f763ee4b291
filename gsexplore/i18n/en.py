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
    "stats.family": "Holm family: {n} comparisons ({metrics}; {by} = {levels} against {baseline}).",
    "stats.underpowered": ("{by}={level} vs {baseline}, {metric}: diff {diff} is not significant at n={n} "
                           "(p_adj={p}); about {per} repeats per setting in each of the {strata} strata "
                           "({total} per setting) would detect it with {power} power."),
    "stats.mixed_few": ("model='mixed' with {k} strata: the variance between prompts can hardly be estimated "
                        "and p comes out too optimistic; a claim about \"prompts like these\" needs more prompts "
                        "(5 or more)."),
    "agreement.no_prompt_logprobs": ("{backend} returned no prompt_logprobs: it cannot score a given text "
                                     "(teacher forcing). Use a backend that returns them (LocalBackend, vLLM, "
                                     "gsexplore serve); llama-server and OpenAI do not offer them."),
    "agreement.summary_title": "Agreement of {a} and {b}: KL per position ({n} positions)",
    "agreement.rest_bucket": ("the mass outside both top-{top} lists counts as one bucket (\"rest\"); a token one side does "
                                "not list gets that side's smallest listed probability (an upper bound)"),
    "agreement.sweep_title": "Does the conclusion transfer? {metric}: {b} minus {a} per cell (Holm over {n})",
    "agreement.interaction": ("Interaction {by} x backend on {metric}: p = {p} (does the effect of {by} "
                              "differ between backends?)"),
    # --- panels --------------------------------------------------------------------------------
    # --- classroom -----------------------------------------------------------------------------
    "class.title": "The class",
    "class.col.student": "Student",
    "class.col.waiting": "Waiting",
    "class.col.running": "Generating",
    "class.col.finished": "Finished",
    "class.col.tokens": "Tokens",
    "class.col.last_latency_s": "Last latency (s)",
    "class.col.last_ttft_s": "First token (s)",
    "class.col.errors": "Errors",
    "class.totals": "The whole class ({students} students)",
    "class.empty": "Nobody has sent a request yet.",
    "class.plot.empty": "When answers arrive, this shows what the class tried.",
    "class.plot.title": "What the class tried ({x}) and what came back ({metric})",
    "class.plot.x": "Parameter:",
    "class.plot.metric": "Metric:",
    "class.updated": "Updated at",
    "class.offline": "Cannot reach the server; retrying.",
    "class.loading": "Loading…",
    "class.key_prompt": "Paste the teacher's key (--admin-key-file):",
    "class.key_button": "Enter",
    "class.panel.error": "The server answered {status}: {message}",
    "class.panel.unreachable": "Cannot reach {url}: {error}",
    "class.panel.stopped": "Refresh stopped.",
}
