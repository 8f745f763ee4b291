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
