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
    # --- batch files ---------------------------------------------------------------------------
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
}
