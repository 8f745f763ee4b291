"""TokenView: an answer's tokens coloured by certainty; hover for alternatives, click one to branch.

An anywidget (plain ES module, no build step), so it works in JupyterLab,
Notebook 7 and Voilà. Each token is coloured by the probability of the chosen
token (or by entropy: the selector at the top); hovering shows its probability,
rank, entropy and top alternatives; clicking an alternative of an answer token
continues the answer from there (`gsexplore.branch`) on the view's backend and
shows the new continuation beside the original.
"""

from __future__ import annotations

import math
from typing import Any

import anywidget
import traitlets

from ..branch import Branch, branch
from ..completion import Completion
from ..params import Params
from ..tokens import Tokens
from ._util import explain, msg, start_thread

__all__ = ["TokenView"]

_ESM = r"""
function render({ model, el }) {
  el.classList.add("gs-tokenview");
  const es = model.get("lang") === "es";
  const L = es ? {color: "Color según", prob: "probabilidad del token", entropy: "entropía",
                  hover: "Pasá el mouse por un token para ver sus alternativas; hacé clic en una para ramificar.",
                  orig: "Original", branch: "Rama", reasoning: "razonamiento", content: "respuesta",
                  rank: "rango", working: "Generando la rama…"}
               : {color: "Colour by", prob: "token probability", entropy: "entropy",
                  hover: "Hover a token to see its alternatives; click one to branch.",
                  orig: "Original", branch: "Branch", reasoning: "reasoning", content: "answer",
                  rank: "rank", working: "Generating the branch…"};
  const bar = document.createElement("div");
  bar.innerHTML = `<label style="font-size:smaller">${L.color} <select class="gs-tv-color">
    <option value="prob">${L.prob}</option><option value="entropy">${L.entropy}</option></select></label>
    <span style="color:#666;font-size:smaller;margin-left:1em">${L.hover}</span>`;
  const sel = bar.querySelector("select");
  sel.value = model.get("color_by");
  sel.onchange = () => { model.set("color_by", sel.value); model.save_changes(); };
  const body = document.createElement("div");
  const alts = document.createElement("div");
  alts.className = "gs-tv-alts";
  alts.style.cssText = "min-height:4em;margin:6px 0;padding:4px;border:1px solid #ddd;border-radius:4px;font-size:smaller";
  const branches = document.createElement("div");
  branches.className = "gs-tv-branches";
  el.append(bar, body, alts, branches);
  const hue = (t) => model.get("color_by") === "entropy"
      ? 120 * (1 - Math.min((t.entropy ?? 0) / 3, 1)) : 120 * t.p;
  const show = (t) => {
    alts.innerHTML = "";
    const head = document.createElement("div");
    head.textContent = `${JSON.stringify(t.text)}: p=${t.p.toFixed(3)} · ${L.rank} ${t.rank ?? ">" + t.top.length}`
      + (t.entropy == null ? "" : ` · H=${t.entropy.toFixed(2)}`);
    alts.append(head);
    for (const [tok, p] of t.top) {
      const b = document.createElement("button");
      b.className = "gs-tv-alt";
      b.dataset.token = tok;
      b.textContent = `${JSON.stringify(tok)} ${p.toFixed(3)}`;
      b.style.cssText = `margin:2px;background:hsl(${120 * p},75%,85%);border:1px solid #aaa;border-radius:3px`;
      b.disabled = !model.get("branchable") || t.part !== "content" || tok === t.text;
      b.onclick = () => { model.set("request", {index: t.i, token: tok, n: Date.now()}); model.save_changes(); };
      alts.append(b);
    }
  };
  const draw = () => {
    body.innerHTML = "";
    for (const part of ["reasoning", "content"]) {
      const toks = model.get("tokens").filter((t) => t.part === part);
      if (!toks.length) continue;
      const block = document.createElement("div");
      block.className = `gs-tv-${part}`;
      block.style.cssText = "font-family:monospace;line-height:1.8;margin:4px 0" +
        (part === "reasoning" ? ";color:#555;font-style:italic" : "");
      block.innerHTML = `<small style="font-family:sans-serif"><b>${L[part]}</b></small><br>`;
      for (const t of toks) {
        const s = document.createElement("span");
        s.className = "gs-tv-tok";
        s.dataset.i = t.i;
        s.textContent = t.text;
        s.style.cssText = `background:hsl(${hue(t)},75%,82%);border-radius:3px;white-space:pre-wrap;cursor:pointer`;
        s.onmouseenter = () => show(t);
        s.onclick = () => show(t);
        block.append(s);
      }
      body.append(block);
    }
  };
  const drawBranches = () => {
    branches.innerHTML = "";
    const st = model.get("status");
    if (st) { const d = document.createElement("div"); d.className = "gs-tv-status"; d.textContent = st; branches.append(d); }
    const bs = model.get("branches");
    if (!bs.length) return;
    const grid = document.createElement("div");
    grid.style.cssText = "display:grid;grid-template-columns:1fr 1fr;gap:8px";
    const cell = (title, prefix, tok, rest, cls) => {
      const d = document.createElement("div");
      d.className = cls;
      d.style.cssText = "border:1px solid #ccc;border-radius:4px;padding:4px;white-space:pre-wrap";
      const h = document.createElement("b"); h.textContent = title; d.append(h, document.createElement("br"));
      d.append(document.createTextNode(prefix));
      const m = document.createElement("mark"); m.className = "gs-tv-fork"; m.textContent = tok; d.append(m);
      const r = document.createElement("span"); r.className = "gs-tv-continuation"; r.textContent = rest; d.append(r);
      return d;
    };
    for (const b of bs) {
      grid.append(cell(L.orig, b.prefix, b.original_token, b.original_rest, "gs-tv-original"),
                  cell(`${L.branch}: ${JSON.stringify(b.token)}`, b.prefix, b.token, b.continuation, "gs-tv-branch"));
    }
    branches.append(grid);
  };
  model.on("change:tokens", draw);
  model.on("change:color_by", () => { sel.value = model.get("color_by"); draw(); });
  model.on("change:branches", drawBranches);
  model.on("change:status", drawBranches);
  draw(); drawBranches();
}
export default { render };
"""


def _token_dicts(toks: Tokens) -> list[dict[str, Any]]:
    return [{"i": t.index, "text": t.text, "p": t.prob, "rank": t.rank, "entropy": t.entropy, "part": t.part,
             "top": [[a, math.exp(lp)] for a, lp in t.top]} for t in toks]


class TokenView(anywidget.AnyWidget):
    """A completion's tokens, coloured by probability or entropy; alternatives on hover; branching on click.

    ``backend`` (the one that answered, or any other) enables branching; ``params``
    overrides the completion's own for the branches.
    """

    _esm = _ESM
    tokens = traitlets.List().tag(sync=True)
    color_by = traitlets.Unicode("prob").tag(sync=True)
    lang = traitlets.Unicode("es").tag(sync=True)
    branchable = traitlets.Bool(False).tag(sync=True)
    request = traitlets.Dict().tag(sync=True)
    branches = traitlets.List().tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)

    def __init__(self, completion: Completion, backend: Any = None, params: Params | None = None, *,
                 color_by: str = "prob", lang: str = "es") -> None:
        if not completion.logprobs:
            raise ValueError("the completion has no logprobs: ask with logprobs=True, top_logprobs=5")
        if color_by not in ("prob", "entropy"):
            raise ValueError(f"color_by must be 'prob' or 'entropy', not {color_by!r}")
        self.completion, self.backend, self.params = completion, backend, params
        self.view = Tokens(completion)
        self.results: list[Branch] = []
        super().__init__(tokens=_token_dicts(self.view), color_by=color_by, lang=lang,
                         branchable=backend is not None)
        self.observe(self._on_request, names="request")

    def choose(self, index: int, token: str) -> Branch:
        """Branch at token ``index`` with ``token`` (what a click does), wait, and show it."""
        if self.backend is None:
            raise ValueError("TokenView(completion, backend) needs a backend to branch")
        b = branch(self.backend, self.completion, index, token, self.params)
        self.results.append(b)
        orig = self.view[index]
        rest = "".join(t.text for t in self.view[index + 1:] if t.part == "content")
        self.branches = [*self.branches, {"index": index, "prefix": b.prefix, "token": token,
                                          "continuation": b.continuation, "original_token": orig.text,
                                          "original_rest": rest}]
        return b

    def _on_request(self, change: dict[str, Any]) -> None:
        req = change["new"]
        if not req:
            return

        def work() -> None:
            self.status = msg("ui.branching", self.lang)
            try:
                self.choose(int(req["index"]), str(req["token"]))
                self.status = ""
            except Exception as exc:  # shown in the view; the kernel stays responsive
                self.status = explain(exc, self.lang)

        start_thread(work, "gs-tokenview-branch")  # never block the kernel's loop while generating
