"""What every panel shares: the Panel base class, the repository's data files, figures as PNG.

Messages come from `gsexplore.i18n` (see `_i18n`), looks from `_style`, threads from `_runner`.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import ipywidgets as W
import traitlets

from ._i18n import column, explain, msg
from ._runner import BackgroundRun, start_thread
from ._style import error_html, esc, note_html, panel_root, warning_html

__all__ = ["BackgroundRun", "Panel", "all_widgets", "column", "data_dir", "data_files", "error_html", "esc",
           "explain", "figure_png", "msg", "note_html", "panel_root", "start_thread", "warning_html"]


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


def figure_png(fig: Any) -> bytes:
    """A matplotlib Figure as PNG bytes (for an ipywidgets.Image)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # tokens in scripts the default font lacks (CJK...) draw as boxes: not worth a warning each
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


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
