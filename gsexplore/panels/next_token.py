"""NextTokenExplorer: how temperature, top_k, top_p, min_p and repetition_penalty reshape the next token.

The model's distribution for the first token of the answer is computed once
(local: the full logits; remote: the 20 most likely tokens from a one-token
request with top_logprobs=20); every slider move recomputes vLLM's pipeline with
`gsexplore.sampling.stages` and shows which tokens survive each stage and with what
probability they are then drawn. Labels are in Spanish by default: it is for class.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as W
import numpy as np
import traitlets

from .. import sampling
from ..backends.base import Backend, MessagesLike, to_messages
from ..backends.capabilities import NextTokenLogits, Tokenizer
from ..params import Params
from ._util import Panel, error_html, esc, figure_png, msg, panel_root
from ._i18n import number
from .params_panel import value_widget

__all__ = ["NextTokenExplorer", "KNOBS"]

#: The knobs the explorer teaches, in vLLM's order of application.
KNOBS = ("repetition_penalty", "temperature", "min_p", "top_k", "top_p")
_STAGE_OF = {"repetition_penalty": "penalties", "temperature": "temperature", "min_p": "min_p",
             "top_k": "top_k", "top_p": "top_p"}
_REMOTE_TOP = 20  # vLLM's maximum top_logprobs


def _p(x: float) -> str:
    """A probability for the table: 3 decimals, or scientific notation when that would show 0.000."""
    return f"{x:.3f}" if x >= 0.0005 or x == 0 else f"{x:.1e}"


def show_token(s: str) -> str:
    """A token made visible: spaces as ␣, newlines and tabs escaped."""
    return s.replace(" ", "␣").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r") or "∅"


class NextTokenExplorer(Panel):
    """Bars of the next-token distribution before and after each sampling knob.

    `value` is the Params of the knobs; `.stages` the `sampling.stages` result,
    `.survivors` the tokens that can still be drawn with their probabilities.
    """

    value = traitlets.Instance(Params)

    def __init__(self, backend: Backend, prompt: MessagesLike, top_n: int = 15, lang: str = "es",
                 params: Params | None = None, base: Params | None = None) -> None:
        super().__init__(value=Params())
        self.backend = backend
        self.lang = lang
        # the whole first-token distribution needs a backend that offers it; otherwise the top 20 logprobs
        self.remote = backend.remote or not isinstance(backend, NextTokenLogits)
        self.base = base if base is not None else self._default_base()
        start = params.set_fields() if params is not None else {}
        self.sliders: dict[str, W.Widget] = {}
        for name in KNOBS:
            spec = Params.spec(name)
            w = value_widget(spec, lang)
            w.value = start.get(name, spec.server_default)
            w.observe(self._recompute, "value")
            self.sliders[name] = w
        if self.remote:
            rp = self.sliders["repetition_penalty"]
            rp.disabled = True
            rp.tooltip = msg("ui.nt_no_penalty", lang)
        self.top_n = W.IntSlider(value=top_n, min=3, max=40, description=msg("ui.nt_top_n", lang),
                                 continuous_update=False, style={"description_width": "140px"})
        self.top_n.observe(self._recompute, "value")
        self.prompt = W.Text(value=prompt if isinstance(prompt, str) else "", description="prompt",
                             continuous_update=False, layout=W.Layout(width="100%"),
                             style={"description_width": "140px"})
        self.prompt.add_class("gs-next-prompt")
        self._messages = to_messages(prompt)
        self.prompt.observe(self._on_prompt, "value")
        self.summary = W.HTML("")
        self.summary.add_class("gs-next-summary")
        self.table = W.HTML("")
        self.table.add_class("gs-next-table")
        self.image = W.Image(format="png")
        self.message = W.HTML("")
        note = msg("ui.nt_order", lang)
        if self.remote:
            note += msg("ui.nt_remote_top", lang, n=_REMOTE_TOP)
        for w in (*self.sliders.values(), self.top_n):
            w.layout = W.Layout(width="auto", min_width="0")
        # knobs in two columns, plot beside the table: the whole explorer fits a 800 px high screen
        knobs = W.GridBox([*self.sliders.values(), self.top_n],
                          layout=W.Layout(grid_template_columns="repeat(auto-fill, minmax(320px, 1fr))",
                                          grid_gap="0 12px", width="auto"))
        self.image.layout = W.Layout(max_width="100%", max_height="430px", flex="0 1 auto")
        self.widget = panel_root("gs-next-token", [
            self.prompt, W.HTML(f'<span style="color:#555">{esc(note)}</span>'),
            knobs, self.message, self.summary,
            W.HBox([self.image, W.Box([self.table], layout=W.Layout(flex="1 1 300px", min_width="0",
                                                                    max_height="430px", overflow="auto"))],
                   layout=W.Layout(flex_flow="row wrap", align_items="flex-start", grid_gap="8px"))])
        self.stages: list[sampling.Stage] = []
        self.refresh()

    # --- public surface ------------------------------------------------------------------
    @property
    def params(self) -> Params:
        """The knobs as Params."""
        return self.value

    @property
    def probs(self) -> np.ndarray:
        """The final distribution the next token is drawn from (over `token_ids`)."""
        return self.stages[-1].probs

    @property
    def survivors(self) -> list[tuple[str, float]]:
        """(token, probability) of every token that can still be drawn, most likely first."""
        p = self.probs
        ids = np.flatnonzero(p > 0)
        ids = ids[np.argsort(-p[ids], kind="stable")]
        return [(self.token(int(i)), float(p[i])) for i in ids]

    def set(self, **knobs: Any) -> None:
        """Move knobs programmatically: explorer.set(temperature=0.5, top_k=10)."""
        for name, v in knobs.items():
            if name not in self.sliders:
                raise KeyError(f"{name!r} is not a knob here; knobs: {', '.join(KNOBS)}")
            self.sliders[name].value = v

    def refresh(self) -> None:
        """Ask the backend for the next-token distribution of the prompt again, then redraw."""
        try:
            self._fetch()
        except Exception as e:  # shown in the panel; the explorer stays usable
            self.message.value = error_html(f"{type(e).__name__}: {e}")
            raise
        self.message.value = ""
        self._recompute()

    def token(self, i: int) -> str:
        """The text of token i (an index into `logits`)."""
        s = self._names.get(i)
        if s is None:
            s = self._names[i] = self._decode(self._ids[i])
        return s

    def __repr__(self) -> str:
        return f"NextTokenExplorer({self.backend!r}, {self.prompt.value!r}, {self.value!r})"

    # --- model access ---------------------------------------------------------------------------
    def _default_base(self) -> Params:
        # Qwen3 would first write <think>: ask for the first token of the answer itself
        return Params(chat_template_kwargs={"enable_thinking": False})

    def _fetch(self) -> None:
        msgs = self._messages
        if not self.remote:
            b: Any = self.backend
            self.logits = np.asarray(b.next_token_logits(msgs, self.base), dtype=np.float64)
            self._ids = np.arange(self.logits.size)
            self.prompt_ids = list(b.prompt_token_ids(msgs, self.base))
            self._names: dict[int, str] = {}
            return
        c = self.backend.chat(msgs, self.base.replace(max_tokens=1, logprobs=True, top_logprobs=_REMOTE_TOP,
                                                       temperature=1.0))
        entries = (c.logprobs or [{}])[0].get("top_logprobs") or []
        if not entries:
            raise RuntimeError("the server returned no top_logprobs")
        self.logits = np.array([float(e["logprob"]) for e in entries], dtype=np.float64)
        self._ids = np.arange(len(entries))
        self._names = {i: str(e.get("token", "")) for i, e in enumerate(entries)}
        self.prompt_ids = []

    def _decode(self, tok: int) -> str:
        b = self.backend
        return b.token_text(int(tok)) if isinstance(b, Tokenizer) else str(tok)

    # --- computing and drawing ---------------------------------------------------------------------
    def _knobs(self) -> dict[str, Any]:
        k = {name: w.value for name, w in self.sliders.items()}
        if self.remote:
            k["repetition_penalty"] = 1.0
        return k

    def _recompute(self, change: Any = None) -> None:
        if not hasattr(self, "logits"):
            return
        k = self._knobs()
        self.value = Params(**k)
        self.stages = sampling.stages(self.logits, temperature=k["temperature"], top_k=k["top_k"],
                                      top_p=k["top_p"], min_p=k["min_p"],
                                      repetition_penalty=k["repetition_penalty"], prompt_ids=self.prompt_ids)
        self._draw()

    def _draw(self) -> None:
        lang = self.lang
        raw = self.stages[0].probs
        final = self.probs
        n = min(int(self.top_n.value), raw.size)
        top = np.argsort(-raw, kind="stable")[:n]
        alive = int(np.isfinite(self.stages[-1].logits).sum())
        best = int(np.argmax(final))
        self.summary.value = (
            esc(msg("ui.nt_alive", lang, alive=number(alive, lang), total=number(raw.size, lang)))
            + f"<code>{esc(show_token(self.token(best)))}</code> (p = {number(float(final[best]), lang, digits=3)})")
        # table: one row per token, one column per stage that is active
        by_name = {s.name: s for s in self.stages}
        stage_cols = [s for s in ("penalties", "temperature", "min_p", "top_k", "top_p") if s in by_name]
        head = ("<tr><th>token</th><th>p " + msg("ui.original", self.lang) + "</th>"
                + "".join(f"<th>{esc(msg(f'ui.stage.{s}', lang))}</th>" for s in stage_cols)
                + "<th>p final</th></tr>")
        rows = []
        for i in top:
            cells = [f"<td><code>{esc(show_token(self.token(int(i))))}</code></td>", f"<td>{_p(raw[i])}</td>"]
            gone = False
            for s in stage_cols:
                if np.isfinite(by_name[s].logits[i]):
                    cells.append(f'<td style="text-align:center">{_p(by_name[s].probs[i])}</td>')
                elif not gone:  # the stage that removed it
                    gone = True
                    cells.append('<td style="text-align:center;color:#c62828" title="'
                                 + esc(msg("ui.removed", self.lang)) + '">✗</td>')
                else:
                    cells.append('<td style="text-align:center;color:#bbb">—</td>')
            fp = final[i]
            cells.append(f'<td><b>{_p(fp)}</b></td>' if fp > 0 else '<td style="color:#c62828">0</td>')
            rows.append(f'<tr style="{"" if fp > 0 else "color:#999"}">' + "".join(cells) + "</tr>")
        self.table.value = ('<table class="gs-next-tokens" style="font-size:12px;border-collapse:collapse">'
                            + head + "".join(rows) + "</table>")
        self.image.value = self._figure(top, raw, final)

    def _figure(self, top: np.ndarray, raw: np.ndarray, final: np.ndarray) -> bytes:
        from matplotlib.figure import Figure

        labels = [show_token(self.token(int(i))) for i in top]
        y = np.arange(len(top))[::-1]
        fig = Figure(figsize=(4.0, min(4.3, 0.22 * len(top) + 0.9)), layout="constrained")
        ax = fig.add_subplot()
        ax.barh(y + 0.2, raw[top], height=0.4, color="#b0bec5", label=msg("ui.original", self.lang))
        colors = ["#1976d2" if final[i] > 0 else "#ef9a9a" for i in top]
        ax.barh(y - 0.2, final[top], height=0.4, color=colors, label=msg("ui.final", self.lang))
        for yy, i in zip(y, top):
            if final[i] == 0:
                ax.text(0, yy - 0.2, " ✗ " + msg("ui.removed", self.lang), va="center", color="#c62828", fontsize=8)
        ax.set_yticks(y, labels, fontsize=9)
        ax.set_xlabel(msg("ui.prob", self.lang))
        ax.set_xlim(0, max(1e-9, float(max(raw[top].max(), final[top].max()))) * 1.1)
        ax.set_title(msg("ui.nt_title", self.lang))
        ax.legend(loc="lower right", fontsize=8)
        return figure_png(fig)

    def _on_prompt(self, change: dict[str, Any]) -> None:
        if not (change["new"] or "").strip():
            self.message.value = error_html(msg("params.empty_prompt", self.lang))  # the bars stay those of the last prompt
            return
        self._messages = to_messages(change["new"])
        try:
            self.refresh()
        except Exception:  # noqa: BLE001 - already shown in the panel
            pass
