"""How panels look: the shared CSS, the panel root box, red errors and amber warnings."""

from __future__ import annotations

import html
from collections.abc import Sequence

import ipywidgets as W

esc = html.escape


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
.gs-param-row { flex-wrap: nowrap !important; max-width: 100%; overflow: hidden; align-items: center; }
.gs-param-row > * { min-width: 0; }
.gs-param-name { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; display: block; line-height: 1.2; }
.gs-param-row .widget-html-content { white-space: nowrap; }
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
.gs-history-tab table.dataTable th, .gs-history-tab table.dataTable td { white-space: nowrap; }
.gs-panel-root .widget-accordion { margin-bottom: 2px; }
.gs-next-tokens td, .gs-next-tokens th { white-space: nowrap; padding: 1px 6px; }
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




def note_html(message: str | None) -> str:
    """A grey-blue note: advice the user expects (not an error, not a warning)."""
    if not message:
        return ""
    return (f'<div class="gs-note" style="color:#1f4e79;background:#eef4fa;padding:4px 8px;border-radius:4px;'
            f'white-space:pre-wrap;overflow-wrap:anywhere">ℹ {esc(str(message))}</div>')
