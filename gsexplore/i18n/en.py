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
    # --- panels --------------------------------------------------------------------------------
    # --- classroom -----------------------------------------------------------------------------
}
