"""The widget panels at the Python level: set widget values and press buttons as a user would.

Widgets work without a kernel (ipywidgets uses a dummy comm), so every panel is
built, driven and checked here; `tests/test_browser.py` checks the real page.
Generation uses the tiny random-weight Qwen3 model (real tokenizer and template,
noise for output) and, where timing must be controlled, a slow in-process backend.
"""

from __future__ import annotations

import asyncio
import html
import json
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

import gsexplore as gs
from gsexplore import panels, sampling
from gsexplore.backends.base import Backend, Delta, MessagesLike, merge_params, to_messages
from gsexplore.completion import Completion, Usage
from gsexplore.errors import ParamsError
from gsexplore.panels._util import all_widgets
from gsexplore.params import GROUPS, Params

NO_THINK = {"enable_thinking": False}


# --------------------------------------------------------------------------- backends


@pytest.fixture(scope="module")
def tiny() -> Backend:
    """The tiny Qwen3 model (built once in the gsexplore cache)."""
    from gsexplore.backends.local import LocalBackend

    return LocalBackend.tiny(n_ctx=2048)


class SlowBackend(Backend):
    """A deterministic backend that streams one word per `delay` seconds (for Stop and progress)."""

    name = "slow"
    model = "slow-model"

    def __init__(self, words: int = 200, delay: float = 0.01, reasoning: str = "pienso",
                 top_logprobs: list[tuple[str, float]] | None = None) -> None:
        self.words = words
        self.delay = delay
        self.reasoning = reasoning
        self.top_logprobs = top_logprobs
        self.calls = 0

    def _text(self, p: Params) -> str:
        if p.guided_choice:
            return p.guided_choice[0]
        n = min(self.words, p.max_tokens or self.words)
        return " ".join(f"palabra{i}" for i in range(n))

    def _completion(self, msgs: list[dict[str, Any]], p: Params, latency: float) -> Completion:
        text = self._text(p)
        lp = None
        if p.logprobs and self.top_logprobs:
            lp = [{"token": self.top_logprobs[0][0], "logprob": self.top_logprobs[0][1],
                   "top_logprobs": [{"token": tok, "logprob": v} for tok, v in self.top_logprobs]}]
        n = len(text.split())
        return Completion(content=text, reasoning_content=self.reasoning or None, finish_reason="stop",
                          usage=Usage(7, n, 7 + n, 1 if self.reasoning else 0), latency_s=latency,
                          backend=self.name, model=self.model, params=p, messages=msgs, logprobs=lp)

    def events(self, messages: MessagesLike, params: Params, *, streaming: bool) -> Iterator[Delta]:
        msgs = to_messages(messages)
        self.calls += 1
        t0 = time.perf_counter()
        if not streaming:
            time.sleep(self.delay)
            yield Delta("done", completion=self._completion(msgs, params, self.delay))
            return
        if self.reasoning:
            yield Delta("reasoning", self.reasoning)
        for i, w in enumerate(self._text(params).split(" ")):
            time.sleep(self.delay)
            yield Delta("content", w if i == 0 else " " + w)
        yield Delta("done", completion=self._completion(msgs, params, time.perf_counter() - t0))

    async def achat(self, messages: MessagesLike, params: Params | None = None, **kw: Any) -> Completion:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return self._completion(to_messages(messages), merge_params(params, kw), self.delay)


def _wait_for(cond: Any, timeout: float = 20.0) -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


# --------------------------------------------------------------------------- ParamsPanel


def test_params_panel_is_generated_from_the_specs() -> None:
    panel = panels.ParamsPanel()
    assert list(panel.controls) == [s.name for s in Params.specs()]  # every parameter, in order, once
    for spec in Params.specs():
        c = panel.controls[spec.name]
        assert c.spec is spec
        assert not c.is_set
        if spec.kind == "bool":  # one control: "not sent (the server's default)", yes, no
            assert c.input.value == "unset" and [v for _, v in c.input.options] == ["unset", "true", "false"]
            assert c.input.options[0][0].startswith("— (lo decide el servidor: ")  # a visible label, not blank
            assert c.set_box not in all_widgets(c.row)
        else:
            assert c.input.disabled  # unset = server default, greyed out
        if spec.numeric and spec.ui_min is not None:
            assert (c.slider.min, c.slider.max, c.slider.step) == (spec.ui_min, spec.ui_max, spec.step)
        if spec.server_default is not None and spec.numeric:
            assert float(c.input.value) == spec.server_default  # the number box shows the default as text
    assert panel.params == Params()
    assert len(panel.sections) == len(GROUPS)  # one accordion each: several open at once
    assert [a.titles[0] for a in panel.sections] == ["Muestreo", "Salida y parada", "Decodificación guiada", "Avanzado"]


def test_params_panel_groups_lang_and_tooltips() -> None:
    panel = panels.ParamsPanel(groups=("sampling",), lang="en")
    assert {Params.spec(n).group for n in panel.controls} == {"sampling"}
    temp = Params.spec("temperature")
    assert panel.controls["temperature"].slider.tooltip == temp.help_en
    es = panels.ParamsPanel(groups=("sampling", "output"))
    assert es.controls["temperature"].slider.tooltip == temp.help_es
    with pytest.raises(ParamsError, match="unknown parameter groups"):
        panels.ParamsPanel(groups=("sampling", "nope"))


def test_params_panel_set_values_and_observe() -> None:
    panel = panels.ParamsPanel(Params(temperature=0.7))
    changes: list[Params] = []
    panel.observe(lambda ch: changes.append(ch["new"]), names="value")
    names: list[str] = []
    panel.observe(lambda ch: names.append(ch["name"]))  # plain observe(callback): only `value` fires
    c = panel.controls["top_k"]
    c.set_box.value = True                     # tick: the server default is now sent
    assert panel.params == Params(temperature=0.7, top_k=-1)
    c.slider.value = 20                        # slider drives the text box
    assert c.text.value == "20" and panel.params.top_k == 20
    c.text.value = "500"                       # beyond the slider: the text box holds it
    assert panel.params.top_k == 500 and c.slider.value == c.slider.max
    panel.controls["temperature"].set_box.value = False   # untick: not sent
    assert panel.params == Params(top_k=500)
    assert panel.controls["temperature"].input.disabled
    assert float(panel.controls["temperature"].input.value) == Params.spec("temperature").server_default
    assert changes[-1] == Params(top_k=500) and len(changes) == 4 and names == ["value"] * 4
    # typing into an unset parameter sets it
    panel.controls["max_tokens"].text.value = "64"
    assert panel.controls["max_tokens"].set_box.value and panel.params.max_tokens == 64


def test_params_panel_invalid_value_shows_error_and_keeps_last_valid() -> None:
    panel = panels.ParamsPanel(Params(top_p=0.9))
    panel.controls["top_p"].text.value = "0"
    assert panel.params == Params(top_p=0.9)
    assert panel.error and "top_p" in panel.error
    assert "color:#c62828" in panel.message.value and "top_p: escribiste 0, pero tiene que ser" in panel.message.value
    panel.controls["top_p"].text.value = "0.5"
    assert panel.error is None and panel.message.value == ""
    assert panel.params == Params(top_p=0.5)
    # cross-field rule: min_tokens > max_tokens
    panel.set_value("max_tokens", 10)
    panel.set_value("min_tokens", 20)
    assert "min_tokens" in panel.error and panel.params.min_tokens is None


def test_params_panel_json_and_list_kinds() -> None:
    panel = panels.ParamsPanel()
    panel.controls["logit_bias"].input.value = '{"12": 3'
    assert "el JSON no se puede leer" in panel.error and panel.params == Params()
    assert "logit_bias" in panel.controls["logit_bias"].message.value  # said next to the field, not far below
    panel.controls["logit_bias"].input.value = '{"12": 3}'
    assert panel.params.logit_bias == {12: 3.0}
    panel.controls["stop"].input.value = '["fin", "\\n"]'
    assert panel.params.stop == ["fin", "\n"]
    panel.controls["stop"].input.value = "FIN"
    assert panel.params.stop == "FIN"
    panel.controls["guided_choice"].input.value = "sí\nno\n"
    assert panel.params.guided_choice == ["sí", "no"]
    panel.controls["allowed_token_ids"].input.value = "1, 2, 3"
    assert panel.params.allowed_token_ids == [1, 2, 3]
    panel.controls["chat_template_kwargs"].input.value = '{"enable_thinking": false}'
    assert panel.params.enable_thinking is False
    panel.controls["ignore_eos"].input.value = "true"
    assert panel.params.ignore_eos is True
    panel.controls["ignore_eos"].input.value = "unset"
    assert panel.params.ignore_eos is None


def test_params_panel_set_loads_and_round_trips() -> None:
    p = Params(temperature=1.3, top_k=7, stop=["a", "b"], logit_bias={5: -2.0}, max_tokens=99,
               chat_template_kwargs=NO_THINK, ignore_eos=True, guided_regex="[0-9]+")
    panel = panels.ParamsPanel()
    panel.set(p)
    assert panel.params == p
    assert panel.controls["temperature"].slider.value == pytest.approx(1.3)
    assert json.loads(panel.controls["logit_bias"].input.value) == {"5": -2.0}
    # a panel showing only some groups keeps the others as they were given
    part = panels.ParamsPanel(p, groups=("sampling",))
    part.set_value("temperature", 0.2)
    assert part.params == p.replace(temperature=0.2)
    with pytest.raises(ParamsError, match="not shown"):
        part.set_value("max_tokens", 3)


# --------------------------------------------------------------------------- GuidedPanel


def test_guided_panel_kinds_validation_and_update() -> None:
    g = panels.GuidedPanel()
    assert all(v is None for v in g.params_update().values())
    assert "Sin restricción" in g.active.value
    g.kind.value = "guided_choice"
    g.choices.value = "sí\nno"
    assert g.params_update()["guided_choice"] == ["sí", "no"]
    assert "guided_choice" in g.active.value
    g.kind.value = "guided_regex"
    g.regex.value = "(a"
    assert "no compila" in g.error and g.params.guided_choice == ["sí", "no"]  # last valid kept
    g.regex.value = "[0-9]{3}"
    assert g.error is None and g.params == Params(guided_regex="[0-9]{3}")
    upd = g.params_update()
    assert upd["guided_choice"] is None and upd["guided_regex"] == "[0-9]{3}"
    g.kind.value = "guided_json"
    g.schema.value = '{"type": "object"'
    assert "el JSON no se puede leer" in g.error
    g.schema.value = '{"type": "objetc"}'
    assert "el esquema JSON no es válido" in g.error
    g.schema.value = '{"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}'
    assert g.error is None and g.params.guided_json["required"] == ["n"]
    g.try_text.value = '{"n": 3}'
    assert "✔" in g.try_result.value
    g.try_text.value = '{"n": "tres"}'
    assert "✘" in g.try_result.value
    g.kind.value = "json_object"
    assert g.params.response_format == {"type": "json_object"}
    g.kind.value = "none"
    assert g.params == Params()


def test_guided_panel_grammar_and_examples_from_data() -> None:
    g = panels.GuidedPanel(lang="en")
    assert g.schema_files and g.grammar_files  # data/schemas/*.json, data/grammars/*
    name = next(iter(g.schema_files))
    g.kind.value = "guided_json"
    g.schema_example.value = name
    assert json.loads(g.schema.value) == json.loads(g.schema_files[name].read_text(encoding="utf-8"))
    assert g.error is None and g.params.guided_json
    g.kind.value = "guided_grammar"
    g.grammar.value = 'root ::= "sí" | ('
    assert g.error  # llguidance (gsexplore.guided.validate) rejects it
    g.grammar.value = 'root ::= "sí" | "no"'
    assert g.error is None and g.params.guided_grammar.startswith("root")
    for gname in g.grammar_files:
        g.grammar_example.value = gname
        assert g.error is None, (gname, g.error)


def test_guided_panel_set_from_params() -> None:
    g = panels.GuidedPanel(Params(guided_choice=["a", "b"]))
    assert g.kind.value == "guided_choice" and g.choices.value == "a\nb"
    g.set(Params(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string"}}}))
    assert g.kind.value == "guided_json" and json.loads(g.schema.value) == {"type": "string"}


# --------------------------------------------------------------------------- BackendPanel


def _state_text(widget: Any) -> str:
    return json.dumps([w.get_state() for w in all_widgets(widget)], default=str)


def test_backend_panel_remote_never_exposes_the_key() -> None:
    secret = "sk-test-SECRET-0123456789"
    bp = panels.BackendPanel(mode="remote")
    got: list[Any] = []
    bp.observe(lambda ch: got.append(ch["new"]), names="backend")
    bp.url.value = "http://127.0.0.1:9"
    bp.api_key.value = secret                      # what the browser sends when the field loses focus
    assert bp.api_key.value == ""                  # taken out of the widget at once
    assert secret not in _state_text(bp.widget) and secret not in repr(bp)
    bp.connect_button.click()
    bp._thread.join(10)
    b = bp.backend
    assert b is not None and got == [b] and b.name == "remote"
    assert b._secret == secret                     # the key lives in the backend only
    assert secret not in _state_text(bp.widget)
    assert secret not in repr(bp) and secret not in repr(b) and secret not in bp.info.value
    assert secret not in json.dumps(vars(bp), default=repr)
    assert "127.0.0.1:9" in bp.info.value


def test_backend_panel_local_tiny_and_errors(tiny: Backend) -> None:
    bp = panels.BackendPanel(mode="local")
    bp.source.value = "tiny-qwen3"
    b = bp.connect(wait=True)
    assert b.name == "local" and "vocab_size" in bp.info.value and "151936" in bp.info.value
    bp.source.value = "path"
    bp.path.value = "/no/such/model.gguf"
    with pytest.raises(gs.ModelNotFoundError):
        bp.connect(wait=True)
    assert "No se encontró el modelo «/no/such/model.gguf»" in bp.status.value  # in Spanish, naming what was typed
    assert "ModelNotFoundError" not in bp.status.value and bp.backend is b  # the previous one stays


# --------------------------------------------------------------------------- Playground


def test_playground_runs_the_tiny_model(tiny: Backend) -> None:
    pg = panels.Playground(tiny, Params(max_tokens=12, chat_template_kwargs=NO_THINK), user="Hola")
    runs: list[Completion] = []
    pg.observe(lambda ch: runs.append(ch["new"]), names="value")
    c = pg.run(wait=True)
    assert c.content and c.finish_reason == "length" and c.usage.completion_tokens == 12
    assert "gs-answer-text" in pg.answer.value and c.content[:5].replace("<", "&lt;")[:1] in pg.answer.value
    assert "finish_reason: <b>length</b>" in pg.stats.value and "12 de respuesta" in pg.stats.value
    assert "latencia" in pg.stats.value
    h = pg.history
    assert len(h) == 1 and h.loc[0, "content"] == c.content and h.loc[0, "max_tokens"] == 12
    assert not h.loc[0, "stopped"] and runs == [c]
    # the turn joined the conversation; the message box is empty for the next one
    assert pg.user.value == "" and "Hola" in pg.chat.value
    assert [m["role"] for m in pg.messages()] == ["user"]  # empty box: regenerate the last answer


def test_playground_reasoning_is_shown_apart(tiny: Backend) -> None:
    # Thinking on: the tiny model never writes </think>, so its whole output is reasoning (vLLM 0.33).
    pg = panels.Playground(tiny, Params(max_tokens=10, temperature=1.0), user="Hola")
    c = pg.run(wait=True)
    assert c.reasoning_content
    assert "<pre" in pg.reasoning.value and pg.reasoning_box.selected_index is None  # collapsed
    assert pg.reasoning_box.titles[0].startswith("Razonamiento")
    assert pg.history.loc[0, "reasoning_content"] == c.reasoning_content


def test_playground_buttons_multi_turn_and_regenerate() -> None:
    slow = SlowBackend(words=5, delay=0.001)
    pg = panels.Playground(slow, Params(max_tokens=5), system="Sé breve.", user="Primera")
    pg.run_button.click()
    pg.wait(10)
    assert pg.value.content == "palabra0 palabra1 palabra2 palabra3 palabra4"
    assert pg.reasoning.value and "pienso" in pg.reasoning.value
    pg.user.value = "Segunda"
    sent = pg.messages()
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    pg.run_button.click()
    pg.wait(10)
    assert json.loads(pg.history.loc[1, "messages"]) == sent
    # empty box: the last answer again, with the parameters as they are now
    pg.params_panel.set_value("max_tokens", 2)
    pg.run_button.click()
    pg.wait(10)
    assert json.loads(pg.history.loc[2, "messages"]) == sent and pg.value.content == "palabra0 palabra1"
    assert len(pg.history) == 3 and pg.history["run"].tolist() == [1, 2, 3]
    pg.clear_button.click()
    assert pg.messages() == [{"role": "system", "content": "Sé breve."}] and pg.chat.value == ""


def test_playground_stop() -> None:
    slow = SlowBackend(words=2000, delay=0.005)
    pg = panels.Playground(slow, user="Larga")
    pg.run_button.click()
    assert pg.running and pg.stop_button.disabled is False and pg.run_button.disabled
    _wait_for(lambda: "palabra3" in pg.answer.value)
    pg.stop_button.click()
    c = pg.wait(10)
    assert not pg.running and c.finish_reason == "abort"
    assert 0 < len(c.content.split()) < 2000
    assert pg.history.loc[0, "stopped"] and "Detenido" in pg.stats.value
    assert pg.user.value == "Larga"  # a stopped run does not end the turn
    assert pg.stop_button.disabled and not pg.run_button.disabled


def test_playground_stop_on_the_tiny_model(tiny: Backend) -> None:
    pg = panels.Playground(tiny, Params(max_tokens=2000, chat_template_kwargs=NO_THINK, ignore_eos=True),
                           user="Hola")
    pg.run()
    _wait_for(lambda: len(pg.answer.value) > 200 or not pg.running)
    assert pg.running, pg.message.value
    pg.stop()
    c = pg.wait(30)
    assert c.finish_reason == "abort" and pg.history.loc[0, "stopped"]
    # the model is free again: a new run works
    pg.params_panel.set_value("max_tokens", 4)
    assert pg.run(wait=True).usage.completion_tokens == 4


def test_playground_params_errors_and_code() -> None:
    slow = SlowBackend(words=3, delay=0)
    pg = panels.Playground(slow, Params(temperature=0.7), user="¿Sí o no?")
    pg.params_panel.controls["temperature"].slider.value = 1.25
    assert pg.params.temperature == 1.25
    body = pg.request_body()
    assert body["temperature"] == 1.25 and body["messages"][-1]["content"] == "¿Sí o no?"
    for name, w in pg.code.items():
        assert "1.25" in w.value and "GS_API_KEY" in w.value, name
    # guided constraint from its own tab, merged into the request, checked after the run
    pg.guided_panel.kind.value = "guided_choice"
    pg.guided_panel.choices.value = "sí\nno"
    assert pg.params.guided_choice == ["sí", "no"] and "guided_choice" in pg.code["cURL"].value
    c = pg.run(wait=True)
    assert c.content == "sí" and "✔" in pg.stats.value and pg.history.loc[0, "guided_valid"]
    # invalid value: Run refuses, the button shows why
    pg.params_panel.controls["top_p"].text.value = "0"
    with pytest.raises(ParamsError):
        pg.run(wait=True)
    pg.run_button.click()
    assert "top_p" in pg.message.value and not pg.running
    assert "gs-stale-note" in pg.stale.value  # the answer shown is marked as not this request's
    pg.params_panel.controls["top_p"].text.value = "0.9"
    assert pg.error is None


def test_playground_without_backend_connects_from_its_panel(tiny: Backend) -> None:
    pg = panels.Playground(params=Params(max_tokens=3, chat_template_kwargs=NO_THINK), user="Hola")
    pg.run_button.click()
    assert "backend" in pg.message.value.lower()
    pg.backend_panel.mode.value = "local"
    pg.backend_panel.source.value = "tiny-qwen3"
    pg.backend_panel.connect(wait=True)
    assert pg.backend is not None and pg.run(wait=True).usage.completion_tokens == 3


def test_playground_code_uses_the_remote_backend_url() -> None:
    from gsexplore.backends.remote import RemoteBackend

    secret = "sk-should-never-appear-42"
    b = RemoteBackend(base_url="http://127.0.0.1:9/v1", api_key=secret, model="m1",
                      guided_spelling="structured_outputs")
    pg = panels.Playground(b, Params(guided_regex="[ab]"), user="x")
    for w in pg.code.values():
        assert "http://127.0.0.1:9/v1/chat/completions" in w.value and secret not in w.value
        assert "structured_outputs" in w.value and "m1" in w.value
    assert secret not in _state_text(pg.widget) and secret not in repr(pg)


# --------------------------------------------------------------------------- SweepBuilder


def test_sweep_values_parsing() -> None:
    from gsexplore.panels.sweep_builder import parse_values

    assert parse_values(Params.spec("temperature"), "0, 0.5, 1") == [0.0, 0.5, 1.0]
    assert parse_values(Params.spec("top_k"), "5, 50, -1") == [5, 50, -1]
    assert parse_values(Params.spec("ignore_eos"), "true, no") == [True, False]
    assert parse_values(Params.spec("guided_choice"), '[["sí", "no"], ["a", "b"]]') == [["sí", "no"], ["a", "b"]]
    assert parse_values(Params.spec("stop"), "fin, FIN") == ["fin", "FIN"]
    with pytest.raises(ParamsError, match="temperature=x is not allowed"):
        parse_values(Params.spec("temperature"), "0, x")
    with pytest.raises(ParamsError, match="not an integer"):
        parse_values(Params.spec("top_k"), "1.5")
    with pytest.raises(ParamsError, match="no values"):
        parse_values(Params.spec("top_k"), " ")


def test_sweep_builder_grid_and_count() -> None:
    sb = panels.SweepBuilder([SlowBackend(), SlowBackend()], base=Params(max_tokens=8), prompts=["a", "b", "c"])
    assert sb.max_tokens.value == "8"
    opts = list(sb.vary.options)
    kinds = [Params.spec(n).kind for n in opts]
    assert kinds.index("bool") > max(i for i, k in enumerate(kinds) if k in ("float", "int"))  # numeric first
    assert set(opts) == set(Params.names()) - {"stream"}
    assert sb.request_count == 6 and "6 peticiones" in sb.count.value
    sb.vary.value = ("temperature", "top_k")
    assert sb.value_inputs["temperature"].value == "0; 1; 2"  # a suggestion from the slider range
    sb.value_inputs["temperature"].value = "0, 0.7"
    sb.value_inputs["top_k"].value = "5, 50, -1"
    sb.repeats.value = "4"
    assert sb.grid == {"temperature": [0.0, 0.7], "top_k": [5, 50, -1]}
    assert sb.request_count == 2 * 3 * 3 * 2 * 4 and f"{2 * 3 * 3 * 2 * 4} peticiones" in sb.count.value
    sb.value_inputs["top_k"].value = "5, -7"
    assert "top_k" in sb.error and sb.run_button.disabled and "color:#c62828" in sb.message.value
    sb.value_inputs["top_k"].value = "5, x"
    assert sb.error == "top_k: escribiste x, pero tiene que ser un número entero ≥ -1."
    sb.vary.value = ("temperature",)
    assert sb.error is None and not sb.run_button.disabled and sb.request_count == 2 * 3 * 2 * 4
    sb.prompt_set.value = "capitales_es"
    assert sb.prompts.disabled and sb.prompt_list == "capitales_es" and sb.prompts.value


def test_sweep_builder_runs_a_tiny_sweep(tiny: Backend) -> None:
    sb = panels.SweepBuilder(tiny, base=Params(max_tokens=6, chat_template_kwargs=NO_THINK),
                             prompts=["Hola", "Chau"])
    sb.set_values("temperature", [0, 1.0])
    sb.repeats.value = "2"
    assert sb.request_count == 8
    sb.run_button.click()
    df = sb.wait(120)
    assert isinstance(df, pd.DataFrame) and len(df) == 8 and df["error_type"].isna().all()
    assert sorted(df["temperature"].unique()) == [0.0, 1.0]
    assert sb.progress.value == 8 and sb.progress.bar_style == "success"
    assert len(sb.table.df) == 8 and len(sb.plot_image.value) > 1000
    assert sb.x.value == "temperature" and sb.y.value == "distinct_2"
    sb.y.value = "n_tokens"
    sb.kind.value = "box"
    assert sb.plot_message.value == ""
    assert df["backend"].eq("local").all() and df["model"].str.startswith("tiny-qwen3").all()


def test_sweep_builder_stop_keeps_finished_rows(tmp_path: Any) -> None:
    slow = SlowBackend(delay=0.05)
    store = tmp_path / "s.jsonl"
    sb = panels.SweepBuilder(slow, base=Params(max_tokens=3), prompts=["a"], store=str(store))
    sb.set_values("seed", list(range(40)))
    assert sb.request_count == 40
    sb.run()
    _wait_for(lambda: sb.progress.value >= 2)
    sb.stop_button.click()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = sb.wait(30)
    assert df is not None and 0 < len(df) < 40 and df.attrs["interrupted"]
    assert sb.progress.bar_style == "warning" and "Detenido" in sb.message.value
    # resume from the store: the finished rows are not asked again
    before = slow.calls
    sb.run(wait=True)
    assert len(sb.df) == 40 and slow.calls - before == 40 - len(df)


# --------------------------------------------------------------------------- NextTokenExplorer


def test_next_token_explorer_local(tiny: Backend) -> None:
    nt = panels.NextTokenExplorer(tiny, "El cielo es", top_n=10)
    assert nt.logits.shape == (151936,) and len(nt.image.value) > 1000
    assert "de 151.936 tokens" in nt.summary.value
    for name in panels.next_token.KNOBS:
        spec = Params.spec(name)
        s = nt.sliders[name]
        assert (s.min, s.max, s.step) == (spec.ui_min, spec.ui_max, spec.step)
    nt.sliders["top_k"].value = 1
    assert len(nt.survivors) == 1
    assert nt.survivors[0][1] == pytest.approx(1.0)
    assert nt.survivors[0][0] == nt.token(int(np.argmax(nt.logits)))
    assert nt.table.value.count("✗") == 9  # the other nine shown tokens are removed at top_k
    nt.sliders["top_k"].value = -1
    nt.sliders["temperature"].value = 0.5
    ref = sampling.stages(nt.logits, temperature=0.5, top_k=-1, top_p=1.0, min_p=0.0, repetition_penalty=1.0,
                          prompt_ids=nt.prompt_ids)
    np.testing.assert_allclose(nt.probs, ref[-1].probs)
    hot = nt.probs.max()
    nt.sliders["temperature"].value = 2.0
    assert nt.probs.max() < hot  # a higher temperature flattens the distribution
    nt.set(top_p=0.05, temperature=1.0)
    assert 1 <= len(nt.survivors) < 151936
    assert nt.params == Params(temperature=1.0, top_k=-1, top_p=0.05, min_p=0.0, repetition_penalty=1.0)
    nt.set(top_p=1.0, repetition_penalty=2.0)
    assert nt.prompt_ids and nt.stages[1].name == "penalties"
    seen = np.array(sorted(set(nt.prompt_ids)))
    assert not np.allclose(nt.stages[1].logits[seen], nt.logits[seen])


def test_next_token_explorer_remote_uses_top_logprobs() -> None:
    tops = [(" azul", -0.5), (" gris", -1.5), (" claro", -2.0), (" rojo", -4.0)]
    fake = SlowBackend(delay=0, top_logprobs=tops)
    nt = panels.NextTokenExplorer(fake, "El cielo es", lang="en")
    assert [tok for tok, _ in nt.survivors] == [tok for tok, _ in tops]
    assert nt.sliders["repetition_penalty"].disabled and "20 most likely" in nt.widget.children[2].value
    nt.set(top_k=2)
    assert [tok for tok, _ in nt.survivors] == [" azul", " gris"]
    p = np.exp([-0.5, -1.5])
    assert nt.survivors[0][1] == pytest.approx(p[0] / p.sum())


# --------------------------------------------------------------------------- Compare


def _fake_sweep_df() -> pd.DataFrame:
    from gsexplore.sweep import sweep

    return sweep(SlowBackend(delay=0, words=3), ["uno", "dos"],
                 grid={"temperature": [0.0, 1.0], "max_tokens": [1, 3]}, repeats=2, progress=False)


def test_compare_shows_the_chosen_cells() -> None:
    df = _fake_sweep_df()
    cmp = panels.Compare(df)
    assert cmp.keys == ["prompt", "temperature", "max_tokens"]
    cmp.select(0, prompt="uno", temperature=0.0, max_tokens=1)
    cmp.select(1, prompt="dos", temperature=1.0, max_tokens=3)
    a = df[(df.prompt == "uno") & (df.temperature == 0.0) & (df.max_tokens == 1)]
    b = df[(df.prompt == "dos") & (df.temperature == 1.0) & (df.max_tokens == 3)]
    assert cmp.value == [[a.cell_id.iloc[0]], [b.cell_id.iloc[0]]]
    assert len(cmp.rows(0)) == 2 and len(cmp.rows(1)) == 2
    html = cmp.output.value
    assert "palabra0 palabra1 palabra2" in html and "temperature=1," in html and "pienso" in html
    assert html.count("<details>") == 4  # reasoning of 2 repeats x 2 cells, collapsible
    cmp.select(0, cell_id=b.cell_id.iloc[0])
    assert cmp.mode.value == "cell_id" and cmp.value[0] == [b.cell_id.iloc[0]]
    with pytest.raises(KeyError):
        cmp.select(0, temperature=0.3)


# --------------------------------------------------------------------------- display


def test_panels_display_as_their_widget(tiny: Backend) -> None:
    for panel in (panels.ParamsPanel(), panels.GuidedPanel(), panels.BackendPanel(),
                  panels.Playground(SlowBackend()), panels.SweepBuilder(SlowBackend(), prompts=["x"])):
        bundle = panel._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.widget.model_id
        assert type(panel).__name__ in repr(panel)


# --------------------------------------------------------------------------- issue 14: no friction in class


def test_params_panel_never_changes_a_value_silently() -> None:
    panel = panels.ParamsPanel(Params(temperature=0.7, top_k=20, top_p=0.9))
    for name, typed, expected in (
            ("top_k", "2.5", "top_k: escribiste 2.5, pero tiene que ser un número entero ≥ -1."),
            ("top_p", "5", "top_p: escribiste 5, pero tiene que ser un número > 0 y ≤ 1."),
            ("temperature", "-3", "temperature: escribiste -3, pero tiene que ser un número ≥ 0.")):
        c = panel.controls[name]
        c.text.value = typed
        assert c.text.value == typed                      # shown as typed, not rounded or clamped
        assert panel.error == expected and html.escape(expected) in c.message.value  # said next to the field
        assert "gs-invalid" in c.text._dom_classes        # the box turns red
        assert panel.params == Params(temperature=0.7, top_k=20, top_p=0.9)  # and nothing else is sent
        c.load(getattr(Params(temperature=0.7, top_k=20, top_p=0.9), name))
        panel._recompute()
        assert panel.error is None and "gs-invalid" not in c.text._dom_classes
    # allowed but unusual: sent as typed, with a visible warning
    panel.controls["temperature"].text.value = "99"
    assert panel.params.temperature == 99 and panel.error is None
    assert panel.warnings and "mayor que 2" in panel.controls["temperature"].message.value
    panel.set_limits(vocab_size=1000, n_ctx=512)
    panel.controls["top_k"].text.value = "5000"
    panel.set_value("max_tokens", 4096)
    assert "vocabulario" in panel.controls["top_k"].message.value
    assert "contexto" in panel.controls["max_tokens"].message.value
    assert panel.params.top_k == 5000 and panel.params.max_tokens == 4096


def test_messages_are_spanish_in_vos_and_echo_what_was_typed() -> None:
    from gsexplore.panels._util import explain

    g = panels.GuidedPanel()
    g.kind.value = "guided_regex"
    g.regex.value = r"(\d{4}-\d{2"
    assert r"«(\d{4}-\d{2}»" not in g.error and r"«(\d{4}-\d{2»" in g.error  # as typed: no doubled backslashes
    assert "\\\\" not in g.message.value and "falta cerrar un paréntesis" in g.error
    g.kind.value = "guided_json"
    g.schema.value = '{"type": "objetc", "properties": {"a": {"type": "string"}}}'
    assert "{'type'" not in g.error and '"properties"' not in g.error  # no dict dumped
    assert "Sin restricción" not in g.active.value and "Sin restricción" not in g.try_result.value
    # the sweep planner's summary of bad settings, in Spanish, each named
    with pytest.raises(ParamsError) as info:
        gs.sweep(SlowBackend(delay=0), ["a"], grid={"top_p": [0.5, 5]}, dry_run=True)
    text = explain(info.value)
    assert text.startswith("1 de 2 combinaciones no son válidas") and "top_p: escribiste 5" in text
    english = ("is not allowed", "Input should", "invalid", "does not compile", "setting(s)")
    assert not any(w in text for w in english)
    sb = panels.SweepBuilder(SlowBackend(delay=0), prompts=["a"])
    sb.set_values("top_p", "0.5, 5")
    assert sb.error.startswith("1 de 2 combinaciones") and "color:#c62828" in sb.message.value


def test_guided_panel_says_no_constraint_once() -> None:
    g = panels.GuidedPanel()
    shown = " ".join(w.value for w in all_widgets(g.widget) if isinstance(getattr(w, "value", None), str))
    assert shown.count("Sin restricción") == 1
    g.kind.value = "guided_json"
    g.schema.value = "{"
    assert g.error and g.active.value == ""  # no "no constraint" under an invalid schema


def test_sweep_builder_always_has_a_token_limit_and_shows_no_plot_before_data(capsys: Any) -> None:
    sb = panels.SweepBuilder(SlowBackend(delay=0), prompts=["a", "b"])
    assert sb.max_tokens.value == "64" and sb.base.max_tokens == 64  # visible default
    assert "2 peticiones × hasta 64 tokens = hasta 128 tokens" in sb.count.value
    assert sb.results.layout.display == "none" and sb.plot_image.value == b""  # no broken image, no error
    assert "gs-error" not in sb.message.value
    sb.max_tokens.value = ""
    assert sb.error.startswith("max_tokens: un barrido necesita") and sb.run_button.disabled
    with pytest.raises(ParamsError):
        sb.run(wait=True)
    sb.max_tokens.value = "8"
    df = sb.run(wait=True)
    assert (df["max_tokens"] == 8).all()
    assert not sb.run_button.disabled and sb.stop_button.disabled  # ready for the next run
    assert sb.results.layout.display == "" and sb.placeholder.layout.display == "none"
    labels = [label for label, _ in sb.y.options]
    assert len(labels) == len(set(labels))  # one "tokens generados"
    headers = list(sb.table.df.columns)
    assert "respuesta" in headers and "repetición" in headers and "content" not in headers
    assert sorted(sb.table.df["repetición"]) == [1, 1]
    assert "tokens/s" in sb.count.value and "tiempo estimado" in sb.count.value  # measured now
    sb.table.selected_rows = [0]
    assert "palabra0" in sb.row_detail.value  # the full text on demand
    err = capsys.readouterr().err
    assert "sweep" not in err and "requests" not in err  # nothing on stderr


def test_sweep_builder_stop_is_fast_on_the_tiny_model(tiny: Backend) -> None:
    sb = panels.SweepBuilder(tiny, base=Params(chat_template_kwargs=NO_THINK, ignore_eos=True), prompts=["Hola"])
    sb.max_tokens.value = "1500"
    sb.set_values("seed", list(range(6)))
    sb.run()
    time.sleep(1.5)  # requests are in the engine, decoding
    assert sb.running
    t0 = time.perf_counter()
    sb.stop_button.click()
    sb.wait(30)
    took = time.perf_counter() - t0
    assert not sb.running and took < 2.0, took
    assert "Detenido" in sb.message.value and sb.progress.bar_style == "warning"


def test_compare_keeps_choices_and_writes_settings_as_people_do() -> None:
    from gsexplore.sweep import sweep

    df = sweep(SlowBackend(delay=0, words=3), ["uno"], grid={"temperature": [0.7, 0.0, 1.4], "top_k": [3, 40]},
               repeats=3, progress=False)
    cmp = panels.Compare(df)
    temps = [label for label, _ in cmp.slots[0]["temperature"].options]
    assert temps == ["0", "0.7", "1.4"]                                 # sorted
    cmp.select(0, temperature=1.4, top_k=3)
    chosen = cmp.value[0]
    cmp.mode.value = "cell_id"
    assert cmp.value[0] == chosen                                        # kept across modes
    label = dict((v, k) for k, v in cmp.slots[0]["cell_id"].options)[chosen[0]]
    assert label == "temperature=1.4, top_k=3" and '"' not in label     # no hash, no quoted numbers
    cmp.mode.value = "values"
    assert cmp.value[0] == chosen
    html = cmp.output.value
    assert html.index("repetición 1") < html.index("repetición 2") < html.index("repetición 3")
    assert "#0" not in html


def test_backend_form_matches_the_backend_and_explorer_says_empty_prompt(tiny: Backend) -> None:
    bp = panels.BackendPanel(tiny)
    assert bp.n_gpu_layers.value == tiny.n_gpu_layers and bp.n_ctx.value == tiny.n_ctx
    nt = panels.NextTokenExplorer(tiny, "El cielo es", top_n=5)
    nt.prompt.value = "   "
    assert "Escribí un prompt primero." in nt.message.value


def test_playground_history_fits_its_tab() -> None:
    pg = panels.Playground(SlowBackend(words=3, delay=0), Params(max_tokens=3), user="Hola")
    pg.run(wait=True)
    table = pg.history_table.df  # itables' DataTable: sortable, text cut short
    assert "motivo de fin" in table.columns and "finish_reason" not in table.columns
    assert table["respuesta"].str.len().max() <= 60
    assert pg.tabs.titles == ("Parámetros", "Guiado", "Código", "Historial")


# --- ready for a class: outcomes first, one number reader, every problem at once ---------------------
def test_sweep_builder_says_failures_first_in_red_with_the_cause_next_to_the_answer(tiny: Backend) -> None:
    base = Params(max_tokens=2, chat_template_kwargs={"enable_thinking": False})
    sb = panels.SweepBuilder(tiny, base=base, prompts=["Hola"], grid={"max_tokens": [2, 100000]})
    df = sb.run(wait=True)
    assert len(df) == 2 and sb.outcome["ok"] == 1 and sb.outcome["failed"] == 1
    assert sb.progress.bar_style == "danger" and "gs-error" in sb.status.value  # red, never "Listo"
    assert "1 de 2 bien, 1 con error: El backend rechazó max_tokens=100000" in html.unescape(sb.status.value)
    cols = list(sb.table.df.columns)
    assert cols[cols.index("respuesta") + 1] == "error"  # the cause next to the answer, no sideways scroll
    assert sb.plot_image.layout.display == "" and len(sb.plot_image.value) > 1000  # from the row that worked


def test_sweep_builder_draws_no_plot_when_every_request_failed(tiny: Backend) -> None:
    from gsexplore.serve import ServerThread, create_app

    with ServerThread(create_app([tiny], api_keys={"clave-de-clase"})) as srv:
        wrong = gs.RemoteBackend(srv.url, api_key="otra", model="tiny-qwen3", max_retries=0)
        sb = panels.SweepBuilder(wrong, base=Params(max_tokens=2), prompts=["Hola", "Chau"])
        try:
            sb.run(wait=True)
        except gs.GSExploreError:
            pass  # gs.sweep may raise when every request failed; the panel says it all the same
    said = html.unescape(sb.status.value + sb.message.value)
    assert "Clave inválida" in said and sb.progress.bar_style == "danger", said
    assert sb.plot_image.layout.display == "none" and sb.plot_image.value == b""
    assert "Sin gráfico" in sb.plot_message.value


def test_every_box_reads_the_decimal_comma_and_refuses_what_is_ambiguous() -> None:
    sb = panels.SweepBuilder(SlowBackend(), base=Params(max_tokens=4), prompts=["a"])
    sb.set_values("temperature", "0,7")
    assert sb.grid == {"temperature": [0.7]} and sb.request_count == 1
    sb.set_values("temperature", "0,5; 0,7")
    assert sb.grid == {"temperature": [0.5, 0.7]} and sb.request_count == 2
    sb.set_values("temperature", "0,7,1")
    assert "«0,7,1» se puede leer de dos maneras" in sb.error and sb.run_button.disabled
    sb.set_values("temperature", "0.5 0.7")
    assert sb.grid == {"temperature": [0.5, 0.7]} and sb.error is None
    pp = panels.ParamsPanel(Params(), groups=("sampling",))
    pp.controls["temperature"].input.value = "0,7"  # typed, as the Playground reads it
    assert pp.params.temperature == 0.7


def test_integer_boxes_refuse_fractions_and_zero_and_all_problems_show_at_once() -> None:
    sb = panels.SweepBuilder(SlowBackend(), base=Params(max_tokens=4), prompts=["a"], grid={"temperature": [0]})
    sb.repeats.value = "2.5"
    assert "Repeticiones: escribiste 2.5, pero tiene que ser" in sb.error and sb.request_count == 0
    sb.repeats.value = "0"
    assert "Repeticiones: escribiste 0, pero tiene que ser un número entero ≥ 1" in sb.error
    sb.set_values("temperature", "x")
    assert "Repeticiones" in sb.error and "temperature: escribiste x" in sb.error  # both, at once
    sb.repeats.value = "2"
    sb.set_values("temperature", "0; 1")
    assert sb.error is None and sb.request_count == 4


def test_params_panel_marks_every_invalid_field_at_once_and_recomputes_on_each_change() -> None:
    pp = panels.ParamsPanel(Params(), groups=("sampling",))
    pp.set_value("temperature", -3)
    pp.set_value("top_p", 5)
    assert "gs-invalid" in pp.controls["temperature"].input._dom_classes
    assert "gs-invalid" in pp.controls["top_p"].input._dom_classes  # not only the first one
    assert "temperature: escribiste -3" in pp.error and "top_p: escribiste 5" in pp.error
    pp.set_value("temperature", 0.5)
    assert "temperature" not in pp.error and "top_p: escribiste 5" in pp.error
    assert "gs-invalid" not in pp.controls["temperature"].input._dom_classes


def test_playground_protects_a_class_and_its_refusal_follows_the_fields() -> None:
    pg = panels.Playground(SlowBackend(delay=0), user="Contame un chiste corto.")
    assert pg.params.max_tokens == 256 and pg.params_panel.controls["max_tokens"].input.value == "256"
    pg.params_panel.set_value("top_p", 5)
    pg.run_button.click()
    assert "top_p: escribiste 5" in pg.message.value and not pg.running
    pg.params_panel.set_value("top_p", 0.9)
    assert pg.message.value == ""  # the old refusal does not stay after the fix
    pg.params_panel.set_value("temperature", -1)
    assert pg.message.value == ""  # only a refusal on screen is recomputed; nothing was clicked


def test_backend_form_shows_the_backend_in_use_and_asks_before_switching(tiny: Backend) -> None:
    remote = gs.RemoteBackend("http://127.0.0.1:8000/v1", api_key="clave", model="Qwen/Qwen3-0.6B")
    bp = panels.BackendPanel(remote)
    assert bp.url.value == "http://127.0.0.1:8000/v1" and bp.model.value == "Qwen/Qwen3-0.6B"
    assert "En uso: remote http://127.0.0.1:8000/v1" in html.unescape(bp.in_use.value)
    bp.mode.value = "local"
    bp.source.value = "tiny-qwen3"
    bp.connect_button.click()
    assert bp.confirm.layout.display == "" and "¿Seguro?" in bp.confirm_text.value
    bp.confirm_no.click()
    assert bp.backend is remote and bp.confirm.layout.display == "none"  # the class server stays


def test_sweep_builder_and_yaml_share_one_sweep_spec(tmp_path: Any) -> None:
    from gsexplore.sweep_cli import load_config
    from gsexplore.sweep_spec import SweepSpec

    cfg_file = tmp_path / "s.yaml"
    cfg_file.write_text("backends: [tiny-qwen3]\nprompts: [Hola]\ngrid: {temperature: [0.5, 0.7]}\n"
                        "repeats: 2\nbase: {max_tokens: 8}\n")
    cfg = load_config(cfg_file)
    from_yaml = SweepSpec.from_config(cfg, cfg["prompts"])
    sb = panels.SweepBuilder(SlowBackend(), base=Params(max_tokens=8), prompts=["Hola"], repeats=2,
                             grid={"temperature": "0,5; 0,7"})
    assert sb.spec == from_yaml
