"""GuidedPanel: write a guided-decoding constraint (JSON schema, regex, choices, grammar) and check it.

One constraint at a time, as vLLM allows. Each edit is validated by `Params` (and,
where `gsexplore.guided` can compile constraints, by it too); a text box checks any
text against the active constraint with `gsexplore.guided.check`.
"""

from __future__ import annotations

import json
from typing import Any

import ipywidgets as W
import traitlets

from ..completion import Completion
from ..errors import GSExploreError, ParamsError
from ..params import GUIDED_KINDS, Params
from ._util import Panel, data_files, error_html, esc, explain, msg, panel_root, start_thread
from .params_panel import ParamsPanel

__all__ = ["GuidedPanel", "KINDS", "check_text"]

#: What the selector offers: vLLM's four guided_* kinds and response_format json_object.
KINDS = (*GUIDED_KINDS, "json_object")
#: Guided fields the selector owns; the rest of the guided group goes to the options panel.
_OWNED = (*GUIDED_KINDS, "response_format")
_NONE = "none"


def check_text(output: Completion | str, params: Params | None = None) -> tuple[bool | None, str]:
    """Whether an output satisfies its constraint, with gsexplore.guided.check: (ok, reason).

    ok is None without a constraint; a cut answer (finish_reason "length", Stop)
    counts as ok when it is a valid prefix, as guided.Validity.ok says.
    """
    if isinstance(output, str):
        output = Completion(content=output, params=params if params is not None else Params())
    elif params is not None:
        output = Completion(content=output.content, finish_reason=output.finish_reason,
                            stop_reason=output.stop_reason, params=params)
    if output.params.guided_kind is None:
        return None, ""
    try:
        from ..guided import check
    except ImportError:
        return None, "gsexplore.guided is not available"
    res = check(output)
    ok = getattr(res, "ok", getattr(res, "valid", None))
    return ok, str(getattr(res, "reason", "") or "")


_warming: list[Any] = []


def _warm_jsonschema() -> None:
    """Import jsonschema (1.5-3 s here) once, in the background: the first check of an answer does not wait."""
    if not _warming:
        _warming.append(start_thread(lambda: __import__("jsonschema"), "gsexplore-import-jsonschema"))


def _compile_check(params: Params) -> None:
    """Deeper checks than Params (a grammar that does not parse...), where gsexplore.guided offers them."""
    try:
        from .. import guided
    except ImportError:
        return
    fn = getattr(guided, "validate", None) or getattr(guided, "validate_constraint", None)
    if fn is not None:
        fn(params)


class GuidedPanel(Panel):
    """Editors for one guided constraint; `.params_update()` is what the Playground merges.

    >>> g = GuidedPanel()
    >>> g.kind.value = "guided_choice"; g.choices.value = "sí\\nno"
    >>> g.params_update()["guided_choice"]
    ['sí', 'no']
    """

    value = traitlets.Dict()

    def __init__(self, params: Params | None = None, lang: str = "es") -> None:
        super().__init__(value={})
        self.lang = lang
        _warm_jsonschema()
        self._loading = False
        self._error: str | None = None
        opts = [(msg("ui.none", lang), _NONE)] + [(msg(f"ui.guided.{k}", lang), k) for k in KINDS]
        self.kind = W.ToggleButtons(options=opts, value=_NONE, style={"button_width": "auto"})
        self.kind.add_class("gs-guided-kind")

        def tip(name: str) -> str:
            return Params.spec(name).help(lang)

        # JSON schema
        self.schema_files = data_files("schemas", "*.json")
        self.schema_example = W.Dropdown(options=[("—", "")] + [(n, n) for n in self.schema_files],
                                         description=msg("ui.example", lang))
        self.schema = W.Textarea(rows=10, continuous_update=True, tooltip=tip("guided_json"),
                                 placeholder='{"type": "object", "properties": {"nombre": {"type": "string"}}}',
                                 layout=W.Layout(width="auto"))
        # regex
        self.regex = W.Text(continuous_update=True, tooltip=tip("guided_regex"),
                            placeholder=r"(sí|no)\.", layout=W.Layout(width="auto"))
        # choices
        self.choices = W.Textarea(rows=5, continuous_update=True, tooltip=tip("guided_choice"),
                                  placeholder=msg("ui.choices_hint", lang), layout=W.Layout(width="auto"))
        # grammar
        self.grammar_files = data_files("grammars", "*.gbnf", "*.lark", "*.ebnf", "*.cfg", "*.txt")
        self.grammar_example = W.Dropdown(options=[("—", "")] + [(n, n) for n in self.grammar_files],
                                          description=msg("ui.example", lang))
        self.grammar = W.Textarea(rows=10, continuous_update=True, tooltip=tip("guided_grammar"),
                                  placeholder='root ::= "sí" | "no"', layout=W.Layout(width="auto"))
        for w, name in ((self.schema, "json"), (self.regex, "regex"), (self.choices, "choice"),
                        (self.grammar, "grammar")):
            w.add_class(f"gs-guided-{name}")

        def help_html(name: str) -> W.HTML:
            return W.HTML(f'<span style="color:#555">{esc(tip(name))}</span>')

        full = W.Layout(width="auto")
        self.editors = W.Stack([
            W.HTML(""),  # no constraint: the line below says so, once
            W.VBox([help_html("guided_json"), self.schema_example, self.schema], layout=full),
            W.VBox([help_html("guided_regex"), self.regex], layout=full),
            W.VBox([help_html("guided_choice"), self.choices], layout=full),
            W.VBox([help_html("guided_grammar"), self.grammar_example, self.grammar], layout=full),
            W.VBox([help_html("response_format"), W.HTML("<code>{\"type\": \"json_object\"}</code>")]),
        ], selected_index=0, layout=full)
        self.options = ParamsPanel(groups=("guided",), exclude=_OWNED, lang=lang)
        self.active = W.HTML("")
        self.active.add_class("gs-guided-active")
        self.message = W.HTML("")
        self.try_text = W.Text(description=msg("ui.try_text", lang), continuous_update=True,
                               style={"description_width": "auto"}, layout=W.Layout(width="auto"))
        self.try_result = W.HTML("")
        options_box = W.Accordion([self.options.widget], titles=(msg("ui.advanced", lang),), selected_index=None)
        self.kind.layout = W.Layout(width="auto")
        self.widget = panel_root("gs-guided-panel", [self.kind, self.editors, self.message, self.active,
                                 W.VBox([self.try_text, self.try_result]), options_box], width="auto")

        self.kind.observe(self._changed, "value")
        for w in (self.schema, self.regex, self.choices, self.grammar):
            w.observe(self._changed, "value")
        self.options.observe(self._changed, "value")
        self.schema_example.observe(lambda c: self._load_example(c, self.schema_files, self.schema), "value")
        self.grammar_example.observe(lambda c: self._load_example(c, self.grammar_files, self.grammar), "value")
        self.try_text.observe(lambda c: self._check_try(), "value")
        self.set(params if params is not None else Params())

    # --- public surface -----------------------------------------------------------
    def params_update(self) -> dict[str, Any]:
        """Every guided field: the active one with its value, the others None (unset by Params.replace)."""
        return dict(self.value)

    @property
    def params(self) -> Params:
        """The constraint alone, as Params."""
        return Params(**{k: v for k, v in self.value.items() if v is not None})

    @property
    def error(self) -> str | None:
        """The validation message of the current edit, None when it is valid."""
        return self._error

    def set(self, params: Params) -> None:
        """Show the constraint of params (a json_schema response_format is shown as a schema)."""
        from ..params import schema_of

        self._loading = True
        try:
            kind = params.guided_kind or _NONE
            if kind == "guided_json":
                schema = schema_of(params)
                self.schema.value = json.dumps(schema, ensure_ascii=False, indent=2)
            elif kind == "guided_regex":
                self.regex.value = params.guided_regex or ""
            elif kind == "guided_choice":
                self.choices.value = "\n".join(params.guided_choice or [])
            elif kind == "guided_grammar":
                self.grammar.value = params.guided_grammar or ""
            self.kind.value = kind
            self.options.set(Params(**{k: v for k, v in params.set_fields().items()
                                       if k in self.options.controls}))
        finally:
            self._loading = False
        self._changed()

    def __repr__(self) -> str:
        active = {k: v for k, v in self.value.items() if v is not None}
        return f"GuidedPanel({active!r}, error={self._error!r})"

    # --- internals ------------------------------------------------------------------
    def _load_example(self, change: dict[str, Any], files: dict[str, Any], editor: W.Widget) -> None:
        name = change["new"]
        if name:
            editor.value = files[name].read_text(encoding="utf-8")

    def _read(self) -> dict[str, Any]:
        kind = self.kind.value
        upd: dict[str, Any] = {k: None for k in _OWNED}
        if kind == "guided_json":
            try:
                upd["guided_json"] = json.loads(self.schema.value)
            except json.JSONDecodeError as e:
                raise ParamsError(f"guided_json: invalid JSON: {e}", field="guided_json", key="json_invalid",
                                  line=e.lineno, col=e.colno) from None
        elif kind == "guided_regex":
            if not self.regex.value:  # an empty regex would force an empty answer: surely not meant yet
                raise ParamsError("guided_regex: write a regular expression", field="guided_regex",
                                  key="regex_empty")
            upd["guided_regex"] = self.regex.value
        elif kind == "guided_choice":
            upd["guided_choice"] = [ln.strip() for ln in self.choices.value.splitlines() if ln.strip()]
        elif kind == "guided_grammar":
            upd["guided_grammar"] = self.grammar.value
        elif kind == "json_object":
            upd["response_format"] = {"type": "json_object"}
        opts = self.options.params.set_fields()
        for name in self.options.controls:
            upd[name] = opts.get(name)
        return upd

    def _changed(self, change: dict[str, Any] | None = None) -> None:
        if self._loading:
            return
        kind = self.kind.value
        self.editors.selected_index = 0 if kind == _NONE else 1 + KINDS.index(kind)
        try:
            upd = self._read()
            p = Params(**{k: v for k, v in upd.items() if v is not None})
            _compile_check(p)
        except (GSExploreError, ValueError) as e:
            self._error = explain(e, self.lang)
            self.message.value = error_html(self._error)
            # the last valid constraint still applies to the next run, but this editor's is not it:
            # say nothing about "no constraint" under an invalid schema
            self.active.value = ""
            self.try_result.value = ""
            return
        self._error = self.options.error
        self.message.value = error_html(self._error)
        self.value = upd
        self.active.value = self._describe(p)
        self._check_try()

    def _describe(self, p: Params) -> str:
        kind = p.guided_kind
        if kind is None:
            return f'<span style="color:#555">{esc(msg("ui.no_constraint", self.lang))}</span>'
        if kind == "json_object":
            shown = json.dumps(p.response_format)
            name = "response_format"
        else:
            name = kind
            v = getattr(p, kind)
            shown = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        if len(shown) > 160:
            shown = shown[:157] + "…"
        return (f'<b>{esc(msg("ui.active", self.lang))}:</b> <code>{esc(name)}</code> = '
                f'<code style="white-space:pre-wrap">{esc(shown)}</code>')

    def _check_try(self) -> None:
        text = self.try_text.value
        if not text:
            self.try_result.value = ""
            return
        try:
            valid, why = check_text(text, self.params)
            why = "" if valid else why
        except Exception as e:  # a checker failure is shown, not raised into the widget
            self.try_result.value = error_html(explain(e, self.lang))
            return
        if valid is None:
            self.try_result.value = ""  # "no constraint" is already said once, above
        elif valid:
            self.try_result.value = f'<span style="color:#2e7d32">✔ {esc(msg("ui.valid", self.lang))}</span>'
        else:
            self.try_result.value = (f'<span style="color:#c62828">✘ {esc(msg("ui.not_valid", self.lang))}'
                                     f'{": " + esc(why) if why else ""}</span>')
