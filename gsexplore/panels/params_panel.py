"""ParamsPanel: every request parameter as a widget, generated from `Params.specs()`.

Each parameter gets a "set" checkbox (unticked = not sent, the server's default
applies, shown greyed out) and an input chosen by its kind. Every change is
validated by `Params` itself; `.params` is always the last valid `Params` and the
error of an invalid edit is shown in red until it is fixed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import ipywidgets as W
import traitlets

from ..errors import ParamsError
from ..params import GROUPS, Params, ParamSpec
from ..params_text import parse_number, parse_text
from ._i18n import number
from ._util import Panel, error_html, esc, explain, msg, panel_root, warning_html

__all__ = ["ParamsPanel", "value_widget", "parse_text", "parse_number", "format_text"]

_FLOAT_LIMIT = 1e9
_INT_LIMIT = 2**53 - 1  # what a JavaScript number holds exactly


def _decimals(step: float | None) -> int:
    if not step or step >= 1:
        return 0
    return max(0, -math.floor(math.log10(step) + 1e-9))


def _start_value(spec: ParamSpec) -> Any:
    """What an unset numeric input shows: the server default, else 0 or the top of the useful range."""
    if spec.server_default is not None:
        return spec.server_default
    lo, hi = spec.ui_min, spec.ui_max
    if lo is not None and hi is not None:
        return 0 if lo <= 0 <= hi else hi
    return spec.minimum if spec.minimum is not None else 0


def value_widget(spec: ParamSpec, lang: str = "es", **kw: Any) -> W.Widget:
    """A slider for a numeric parameter, over its useful (ui) range and step."""
    cls = W.FloatSlider if spec.kind == "float" else W.IntSlider
    args: dict[str, Any] = dict(min=spec.ui_min, max=spec.ui_max, step=spec.step or 1,
                                value=_start_value(spec), description=spec.name,
                                tooltip=spec.help(lang), continuous_update=False,
                                style={"description_width": "140px"}, layout=W.Layout(width="420px"))
    if spec.kind == "float":
        args["readout_format"] = f".{_decimals(spec.step)}f"
    args.update(kw)
    w = cls(**args)
    w.add_class(f"gs-slider-{spec.name}")
    return w


def format_text(spec: ParamSpec, value: Any) -> str:
    """How a value of a json/list/str-or-list parameter is written in its text box."""
    if value is None:
        return ""
    if spec.kind == "str|list[str]" and isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError:
            return value
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str):  # guided_json given as JSON text
        return value
    indent = 2 if isinstance(value, dict) and len(json.dumps(value)) > 60 else None
    return json.dumps(value, ensure_ascii=False, indent=indent)


#: ParamsError keys about a combination of fields: a field alone cannot show them
_CROSS_FIELD = frozenset({"min_gt_max", "needs_logprobs", "no_stream", "continue", "one_guided"})

_UNSET = "unset"  # a boolean's "not sent" option


def _fmt_number(spec: ParamSpec, v: Any) -> str:
    """A number as its box shows it: 0.8, not 0.8000000000000002; ints without a decimal point."""
    if v is None:
        return ""
    if spec.kind == "int":
        return str(int(v))
    d = max(_decimals(spec.step), 2)
    text = f"{float(v):.{d}f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


class _Control:
    """The widgets of one parameter: its name, a "set" checkbox (not for booleans) and its input(s).

    Numbers are typed in a text box that keeps exactly what was typed: a value that is not
    allowed stays visible, in red, with the message under it, and is not sent.
    """

    def __init__(self, spec: ParamSpec, lang: str, changed: Any) -> None:
        self.spec = spec
        self.lang = lang
        self._changed = changed
        self._sync = False
        help_text = spec.help(lang)
        self.set_box = W.Checkbox(value=False, description="", indent=False,
                                  tooltip=f"{help_text}\n\n{msg('ui.set_tip', lang)}",
                                  layout=W.Layout(width="22px", min_width="22px", margin="0 4px 0 0"))
        self.set_box.add_class(f"gs-set-{spec.name}")
        self.name_label = W.HTML(f'<span class="gs-param-name" title="{esc(spec.name)}: {esc(help_text)}">'
                                 f"{esc(spec.name)}</span>",
                                 layout=W.Layout(flex="1 1 auto", min_width="0", margin="0"))
        self.slider: W.Widget | None = None
        self.text: W.Widget | None = None
        parts: list[W.Widget] = []
        k = spec.kind
        self.is_bool = k == "bool"
        if k in ("float", "int"):
            if spec.ui_min is not None and spec.ui_max is not None:
                # no readout: the number box beside it is the readout, and takes values beyond the slider
                self.slider = value_widget(spec, lang, description="", readout=False,
                                           layout=W.Layout(width="auto", flex="1 1 90px", min_width="40px"))
                parts.append(self.slider)
            self.text = W.Text(value=_fmt_number(spec, _start_value(spec)), continuous_update=False,
                               tooltip=help_text, layout=W.Layout(width="64px", flex="0 0 64px"))
            parts.append(self.text)
            self.input = self.text
        elif k == "bool":
            default = spec.server_default
            shown = msg("ui.yes" if default else "ui.no", lang) if default is not None else msg("ui.server", lang)
            # one control: "not sent" (the server's default, named), yes or no
            # (ipywidgets shows a Dropdown whose value is None as empty: the options are strings)
            self.input = W.Dropdown(options=[(msg("ui.unset", lang).format(default=shown), _UNSET),
                                             (msg("ui.yes", lang), "true"), (msg("ui.no", lang), "false")],
                                    value=_UNSET, tooltip=help_text,
                                    layout=W.Layout(width="auto", flex="1 1 120px", min_width="100px"))
            parts.append(self.input)
        elif k == "str" and spec.choices:
            self.input = W.Dropdown(options=list(spec.choices), tooltip=help_text,
                                    layout=W.Layout(width="auto", flex="1 1 120px", min_width="100px"))
            parts.append(self.input)
        elif k == "str":
            self.input = W.Text(value="", continuous_update=True, tooltip=help_text,
                                layout=W.Layout(flex="1 1 140px", width="auto", min_width="100px"))
            parts.append(self.input)
        else:  # json, list[...], str|list[str]: typed as text, parsed on every change
            rows = 3 if k == "json" else 1
            self.input = W.Textarea(value="", rows=rows, continuous_update=True, tooltip=help_text,
                                    placeholder=_placeholder(k),
                                    layout=W.Layout(flex="1 1 140px", width="auto", min_width="100px"))
            parts.append(self.input)
        self.input.add_class(f"gs-input-{spec.name}")
        default = spec.server_default
        full = msg("ui.server_decides", lang) if default is None else json.dumps(default)
        short = msg("ui.server", lang) if default is None else json.dumps(default)
        self.default_label = W.HTML(
            f'<span style="color:#888;font-size:smaller;white-space:nowrap" '
            f'title="{esc(msg("ui.default", lang))}: {esc(full)}">({esc(short)})</span>',
            layout=W.Layout(margin="0 0 0 4px", flex="0 0 auto"))
        name_box = W.HBox([self.name_label] if self.is_bool else [self.set_box, self.name_label],
                          layout=W.Layout(width="160px", flex="0 1 160px", min_width="90px", align_items="center"))
        tail = [] if self.is_bool else [self.default_label]
        # label, control and default on one line: the controls shrink instead of wrapping
        self.row = W.HBox([name_box, *parts, *tail],
                          layout=W.Layout(align_items="center", flex_flow="row nowrap", width="auto"))
        self.row.add_class("gs-param-row")
        self.row.add_class(f"gs-param-{spec.name}")
        self.message = W.HTML("", layout=W.Layout(margin="0 0 2px 0"))
        self.message.add_class(f"gs-message-{spec.name}")
        self.box = W.VBox([self.row, self.message], layout=W.Layout(width="auto"))
        self.set_box.observe(self._on_set, "value")
        if self.slider is not None:
            self.slider.observe(self._on_slider, "value")
        self.input.observe(self._on_input, "value")
        self._show_default()
        self._enable(False)

    # --- reading and writing ------------------------------------------------
    @property
    def is_set(self) -> bool:
        if self.is_bool:
            return self.input.value != _UNSET
        return bool(self.set_box.value)

    def read(self) -> Any:
        """The value to send (ParamsError, naming what was typed, when it cannot be read)."""
        k = self.spec.kind
        v = self.input.value
        if k in ("float", "int"):
            return parse_number(self.spec, v)
        if k == "bool":
            return v == "true"
        if k == "str":
            return v
        return parse_text(self.spec, v)

    def load(self, value: Any) -> None:
        """Show value as set, or None as unset (greyed out at the server default)."""
        self._sync = True
        try:
            if self.is_bool:
                self.input.value = _UNSET if value is None else ("true" if value else "false")
            elif value is None:
                self.set_box.value = False
                self._show_default()
            else:
                self.set_box.value = True
                self._write(value)
            self._enable(value is not None)
        finally:
            self._sync = False

    def mark(self, error: str | None, warning: str | None = None) -> None:
        """Show this control's own message under it; red border while its value is not allowed."""
        target = self.input
        if error:
            target.add_class("gs-invalid")
            self.message.value = error_html(error)
        else:
            target.remove_class("gs-invalid")
            self.message.value = warning_html(warning) if warning else ""

    def _write(self, value: Any) -> None:
        if self.spec.kind in ("float", "int"):
            self.input.value = _fmt_number(self.spec, value)
            self._slider_follow()
        elif self.spec.kind in ("bool", "str"):
            self.input.value = value
        else:
            self.input.value = format_text(self.spec, value)

    def _show_default(self) -> None:
        k = self.spec.kind
        if k in ("float", "int"):
            self.input.value = _fmt_number(self.spec, _start_value(self.spec))
            self._slider_follow()

    def _slider_follow(self) -> None:
        if self.slider is None:
            return
        try:
            v = parse_number(self.spec, self.input.value)
        except ParamsError:
            return  # the box says what was typed; the slider stays where it was
        was, self._sync = self._sync, True
        try:
            self.slider.value = min(max(v, self.slider.min), self.slider.max)
        finally:
            self._sync = was

    def _enable(self, on: bool) -> None:
        if self.is_bool:
            return  # always editable: its first option is "not sent"
        for w in (self.slider, self.input):
            if w is not None:
                w.disabled = not on

    # --- events ---------------------------------------------------------------
    def _on_set(self, change: dict[str, Any]) -> None:
        if self._sync:
            return
        self._enable(change["new"])
        if not change["new"]:
            self._sync = True
            try:
                self._show_default()
            finally:
                self._sync = False
        self._changed()

    def _on_slider(self, change: dict[str, Any]) -> None:
        if self._sync:
            return
        self.input.value = _fmt_number(self.spec, change["new"])  # the text box holds the value; it fires _on_input

    def _on_input(self, change: dict[str, Any]) -> None:
        if self._sync:
            return
        self._slider_follow()
        if not self.is_bool and not self.is_set:
            self.set_box.value = True  # editing a value means sending it; fires _on_set
            return
        self._changed()


def _placeholder(kind: str) -> str:
    return {"json": '{"clave": "valor"}', "list[int]": "1, 2, 3", "list[str]": "una opción por línea",
            "str|list[str]": 'texto  o  ["a", "b"]'}.get(kind, "")


class ParamsPanel(Panel):
    """Widgets for the parameters of the chosen groups; `.params` is always a valid Params.

    >>> panel = ParamsPanel(Params(temperature=0.7), groups=("sampling",))
    >>> panel.observe(lambda change: print(change["new"]), names="value")
    >>> panel.set_value("top_k", 20)
    Params(temperature=0.7, top_k=20)
    """

    value = traitlets.Instance(Params)
    #: the refusal of the values as they are now ("" when they are valid); changes on every edit
    problem = traitlets.Unicode("")

    def __init__(self, params: Params | None = None,
                 groups: Iterable[str] = GROUPS, lang: str = "es",
                 exclude: Iterable[str] = ()) -> None:
        groups = tuple(groups)
        unknown = set(groups) - set(GROUPS)
        if unknown:
            raise ParamsError(f"unknown parameter groups {sorted(unknown)}; known: {', '.join(GROUPS)}")
        super().__init__(value=Params())
        self.lang = lang
        self.groups = groups
        self._exclude = set(exclude)
        self._loading = False
        self._error: str | None = None
        self._hidden: dict[str, Any] = {}
        self._warnings: list[str] = []
        self.limits: dict[str, int] = {}
        self.controls: dict[str, _Control] = {}
        sections = []
        for g in groups:
            rows = []
            for spec in Params.specs():
                if spec.group != g or spec.name in self._exclude:
                    continue
                c = _Control(spec, lang, self._recompute)
                self.controls[spec.name] = c
                rows.append(c.box)
            sections.append(W.VBox(rows, layout=W.Layout(width="auto")))
        # one accordion per group: several can be open at once
        self.sections = [W.Accordion([box], titles=(msg(f"ui.{g}", lang),), selected_index=0 if i == 0 else None,
                                     layout=W.Layout(width="auto"))
                         for i, (g, box) in enumerate(zip(groups, sections))]
        self.accordion = W.VBox(self.sections, layout=W.Layout(width="auto"))
        self.message = W.HTML("")
        self.message.add_class("gs-params-error")
        self.widget = panel_root("gs-params-panel", [self.accordion, self.message], width="auto")
        self.set(params if params is not None else Params())

    # --- public surface ---------------------------------------------------------
    @property
    def params(self) -> Params:
        """The last valid Params (what the widgets show, unless an error is displayed)."""
        return self.value

    @property
    def error(self) -> str | None:
        """The validation message of the current edit, None when it is valid."""
        return self._error

    @property
    def warnings(self) -> list[str]:
        """Warnings about values that are allowed but unusual (temperature above 2...)."""
        return list(self._warnings)

    def set_limits(self, vocab_size: int | None = None, n_ctx: int | None = None) -> None:
        """The model's vocabulary and context, for the warnings on top_k and max_tokens."""
        self.limits = {k: int(v) for k, v in (("vocab_size", vocab_size), ("n_ctx", n_ctx)) if v}
        self._recompute()

    def set(self, params: Params) -> None:
        """Load params into the widgets (fields not shown here are kept as they are)."""
        if not isinstance(params, Params):
            raise ParamsError(f"params must be a gsexplore.Params, not {type(params).__name__}")
        fields = params.set_fields()
        self._loading = True
        try:
            for name, c in self.controls.items():
                c.load(fields.get(name))
        finally:
            self._loading = False
        self._hidden = {k: v for k, v in fields.items() if k not in self.controls}
        self._recompute()

    def set_value(self, name: str, value: Any) -> None:
        """Set one parameter as if typed (None unsets it); the panel validates it."""
        c = self.controls.get(name)
        if c is None:
            Params.spec(name)  # an unknown name raises with the list of known ones
            raise ParamsError(f"{name!r} is not shown in this panel (groups {self.groups})", field=name)
        self._loading = True
        try:
            c.load(value)
        finally:
            self._loading = False
        self._recompute()

    def __repr__(self) -> str:
        return f"ParamsPanel({self.value!r}, groups={self.groups}, error={self._error!r})"

    # --- validation -------------------------------------------------------------
    def _recompute(self) -> None:
        if self._loading:
            return
        data = dict(self._hidden)
        bad: dict[str, str] = {}
        for name, c in self.controls.items():
            if c.is_set:
                try:
                    data[name] = c.read()
                except ParamsError as e:
                    bad[name] = explain(e, self.lang)
        # every field on its own first, so every invalid field is marked at once
        for name in self.controls:
            if name in data and name not in bad:
                try:
                    Params(**{name: data[name]})
                except ParamsError as e:
                    if e.key not in _CROSS_FIELD:
                        bad[name] = self._explain_typed(e)
        error: str | None = None
        p: Params | None = None
        if not bad:
            try:
                p = Params(**data)
            except ParamsError as e:
                error = self._explain_typed(e)
                if e.field in self.controls:
                    bad[e.field] = error
        if bad:
            error = "\n".join(dict.fromkeys(bad.values()))
        warns = self._check_unusual(p) if p is not None else {}
        for name, c in self.controls.items():
            c.mark(bad.get(name), warns.get(name))
        self._warnings = list(warns.values())
        self._error = error
        self.problem = error or ""
        self.message.value = error_html(error) if error else ""
        if p is not None:
            self.value = p

    def _explain_typed(self, e: ParamsError) -> str:
        c = self.controls.get(e.field or "")
        if c is not None and c.spec.kind in ("float", "int"):
            e.ctx["typed"] = c.input.value.strip()  # as typed, not as Python reads it
        return explain(e, self.lang)

    def _check_unusual(self, p: Params) -> dict[str, str]:
        """Values vLLM allows that are seldom meant: {field: warning}."""
        out: dict[str, str] = {}
        lang = self.lang
        if p.temperature is not None and p.temperature > 2:
            out["temperature"] = msg("params.warn_temperature", lang, typed=_fmt_number(Params.spec("temperature"),
                                                                                  p.temperature))
        vocab = self.limits.get("vocab_size")
        if vocab and p.top_k is not None and p.top_k > vocab:
            out["top_k"] = msg("params.warn_top_k", lang, typed=p.top_k, vocab=number(vocab, lang))
        n_ctx = self.limits.get("n_ctx")
        if n_ctx and p.max_tokens is not None and p.max_tokens > n_ctx:
            out["max_tokens"] = msg("params.warn_max_tokens", lang, typed=p.max_tokens, n_ctx=number(n_ctx, lang))
        return out
