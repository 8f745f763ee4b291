"""The teacher's view: ``GET /class`` (the page) and ``GET /class/data`` (what it polls), admin keys only.

``/class`` with a student's key is a 403. Opened in a browser (no header), the
page asks for the admin key and keeps it in the tab's sessionStorage, never in
the URL (``/class#key=...`` also works: a fragment never reaches the server or
its logs); it then polls ``/class/data`` with the key as a Bearer header. The
data carries the counters, the table rendered as HTML and the plot as SVG, in
the language asked for (``?lang=en``; Spanish by default), so the notebook panel
shows the same. Plain JavaScript, no CDN: the classroom machine may be offline.
"""

from __future__ import annotations

import asyncio
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ..i18n import LANGUAGES, msg
from .classboard import PLOT_METRICS
from .classrender import metric_label, plot_svg, table_html
from .errors import Reject

if TYPE_CHECKING:
    from .app import Server

__all__ = ["ClassView", "REFRESH_MS"]

#: How often the page and the panel poll /class/data.
REFRESH_MS = 2000

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.2rem 2rem;color:#222;max-width:1200px}
h1{font-size:1.4rem;margin:.2rem 0 .8rem} .status{color:#666;font-size:.85rem}
table.gs-class{border-collapse:collapse;font-size:.9rem;margin:.6rem 0;min-width:60%}
.gs-class th,.gs-class td{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:right}
.gs-class th[scope=row],.gs-class thead th:first-child{text-align:left} .gs-class thead th{background:#f4f4f4}
.gs-class tr.busy th[scope=row]{color:#b35c00} .gs-class tfoot th,.gs-class tfoot td{font-weight:600}
.controls{margin:.6rem 0} .error{color:#b00020;font-weight:600} #login{margin:1rem 0}
.layout{display:flex;flex-wrap:wrap;gap:1.5rem;align-items:flex-start}
"""

_JS = """
const LANG = document.documentElement.lang;
const T = JSON.parse(document.getElementById('texts').textContent);
function key() {
  const h = new URLSearchParams(location.hash.slice(1)).get('key');
  if (h) { sessionStorage.setItem('gsClassKey', h); history.replaceState(null, '', location.pathname + location.search); }
  return sessionStorage.getItem('gsClassKey') || '';
}
async function refresh() {
  const x = document.getElementById('x').value, m = document.getElementById('metric').value;
  const q = new URLSearchParams({lang: LANG, metric: m}); if (x) q.set('x', x);
  const k = key(), headers = k ? {Authorization: 'Bearer ' + k} : {};
  let r;
  try { r = await fetch('/class/data?' + q, {headers}); }
  catch (e) { document.getElementById('status').textContent = T.offline; return; }
  const body = await r.json();
  const err = document.getElementById('error');
  if (!r.ok) {
    err.textContent = body.error ? body.error.message : String(r.status);
    document.getElementById('login').hidden = false;
    return;
  }
  err.textContent = ''; document.getElementById('login').hidden = true;
  document.getElementById('table').innerHTML = body.html;
  document.getElementById('plot').innerHTML = body.svg;
  const sel = document.getElementById('x');
  const have = Array.from(sel.options).map(o => o.value).join();
  if (have !== body.tried.join()) {
    sel.innerHTML = body.tried.map(t => '<option>' + t + '</option>').join('');
    if (body.x) sel.value = body.x;
  }
  document.getElementById('status').textContent = T.updated + ' ' + new Date().toLocaleTimeString(LANG);
}
document.getElementById('save').onclick = () => {
  sessionStorage.setItem('gsClassKey', document.getElementById('key').value.trim()); refresh();
};
document.getElementById('x').onchange = refresh; document.getElementById('metric').onchange = refresh;
key(); refresh(); setInterval(refresh, REFRESH);
"""


def _lang(request: Request) -> str:
    lang = request.query_params.get("lang", "es")
    if lang not in LANGUAGES:
        raise Reject(400, f"lang must be one of {', '.join(sorted(LANGUAGES))}, not {lang!r}", param="lang")
    return lang


class ClassView:
    """The /class routes of one server."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def add_routes(self, app: FastAPI) -> None:
        app.add_api_route("/class", self.server._endpoint(self.page), methods=["GET"], include_in_schema=False)
        app.add_api_route("/class/data", self.server._endpoint(self.data), methods=["GET"],
                          include_in_schema=False)

    async def page(self, request: Request) -> Response:
        """GET /class: the page (a student's key: 403; no key: the page asks for the admin's)."""
        lang = _lang(request)
        auth = request.headers.get("authorization", "")
        if auth:
            self.server.roster.require_admin(auth)
        return HTMLResponse(self.page_html(lang), headers={"Cache-Control": "no-store"})

    async def data(self, request: Request) -> Response:
        """GET /class/data: the board, its table as HTML, and the plot of ``x`` against ``metric`` as SVG."""
        self.server.roster.require_admin(request.headers.get("authorization", ""))
        lang = _lang(request)
        board = self.server.room.board
        metric = request.query_params.get("metric", PLOT_METRICS[0])
        if metric not in PLOT_METRICS:
            raise Reject(400, f"metric must be one of {', '.join(PLOT_METRICS)}, not {metric!r}", param="metric")
        tried = board.tried()
        x = request.query_params.get("x") or (tried[0] if tried else None)
        if x is not None and x not in tried:
            x = tried[0] if tried else None
        snap, recent = board.snapshot(), list(board.recent)  # copied here, drawn in a worker thread

        def draw() -> tuple[list[dict[str, Any]], str]:
            points = board.points(x, metric, recent) if x else []
            return points, plot_svg(points, x, metric, lang)

        points, svg = await asyncio.get_running_loop().run_in_executor(None, draw)
        return JSONResponse({**snap, "x": x, "metric": metric, "tried": tried, "metrics": list(PLOT_METRICS), "points": points,
                             "html": table_html(snap, lang), "svg": svg},
                            headers={"Cache-Control": "no-store"})

    def page_html(self, lang: str) -> str:
        """The page's HTML (no data in it: the script fetches /class/data)."""
        def t(key: str, **kw: Any) -> str:
            return html.escape(msg(key, lang, **kw))

        options = "".join(f"<option value='{m}'>{html.escape(metric_label(m, lang))}</option>"
                          for m in PLOT_METRICS)
        texts = json.dumps({"updated": msg("class.updated", lang), "offline": msg("class.offline", lang)})
        other = "en" if lang == "es" else "es"
        return f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{t("class.title")}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>
<body><h1>{t("class.title")} · {html.escape(Path(self.server.names[0]).name)}</h1>
<div class="status"><span id="status">{t("class.loading")}</span> ·
<a href="/class?lang={other}">{"English" if other == "en" else "Español"}</a></div>
<div id="login" hidden><label for="key">{t("class.key_prompt")}</label>
<input id="key" type="password" autocomplete="off" size="40"> <button id="save">{t("class.key_button")}</button></div>
<div id="error" class="error" role="alert"></div>
<div class="layout"><div id="table"></div>
<div><div class="controls"><label>{t("class.plot.x")} <select id="x"></select></label>
<label>{t("class.plot.metric")} <select id="metric">{options}</select></label></div>
<div id="plot"></div></div></div>
<script type="application/json" id="texts">{texts}</script>
<script>const REFRESH = {REFRESH_MS};{_JS}</script></body></html>"""
