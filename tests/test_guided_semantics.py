"""Guided decoding means what vLLM's backend makes it mean: xgrammar by default, guidance when asked.

The case table (tests/guided_cases.py, each case with its source) runs through
``guided.accepts`` under both semantics; the generation check draws 200+ seeded
outputs on the tiny Qwen3 (random weights: every allowed token about as likely,
so the mask is the only thing keeping Unicode digits and extra keys out) and
checks each finished one with an independent Python model of xgrammar's language.
"""
from __future__ import annotations

import json
import re

import pytest

from gsexplore import guided
from gsexplore.errors import ParamsError, UnsupportedParam
from gsexplore.params import Params

from guided_cases import CASES, OBJ

pytestmark = pytest.mark.filterwarnings("ignore::gsexplore.guided.GuidedWarning",
                                        "ignore:Possible (nested set|set):FutureWarning")
NO_THINK = {"enable_thinking": False}


def _accepts(fields: dict, text: str, backend: str | None) -> bool | str:
    try:
        return guided.accepts(Params(**fields, guided_decoding_backend=backend), text)
    except ParamsError:
        return "error"


def test_the_table_is_big_and_sourced():
    assert len(CASES) >= 60
    assert all(src for *_, src in CASES)
    assert sum(xg != gd for _, _, xg, gd, _ in CASES) >= 25  # where the two languages differ


@pytest.mark.parametrize("fields, text, xg, gd, src", CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_case_table(fields, text, xg, gd, src):
    assert _accepts(fields, text, None) == xg, src
    assert _accepts(fields, text, "auto") == xg, src
    assert _accepts(fields, text, "guidance") == gd, src
    if "fallback" in src or src.startswith("VL") and "->" in src:
        with pytest.raises(ParamsError, match="xgrammar cannot compile it"):  # vLLM: 400
            guided.accepts(Params(**fields, guided_decoding_backend="xgrammar"), text)
    else:
        assert _accepts(fields, text, "xgrammar") == xg, src


def test_semantics_and_fallback_are_reported():
    assert guided.engine_info(Params(guided_regex=r"\d+")) == {"guided_engine": "llguidance",
                                                               "guided_semantics": "xgrammar"}
    info = guided.engine_info(Params(guided_regex=r"(?i)sí"))
    assert info["guided_semantics"] == "guidance" and "(?i" in info["guided_fallback"]
    info = guided.engine_info(Params(guided_json={"type": "array", "uniqueItems": True}))
    assert info["guided_semantics"] == "guidance" and "uniqueItems" in info["guided_fallback"]
    assert guided.engine_info(Params(guided_choice=["a"], guided_decoding_backend="guidance"))[
        "guided_semantics"] == "guidance"
    assert guided.engine_info(Params(guided_grammar='start: "a"'))["guided_semantics"] == "guidance"
    assert guided.engine_info(Params()) == {}
    assert guided.accepts(Params(), "anything")


@pytest.mark.parametrize("backend", ["outlines", "lm-format-enforcer"])
def test_unreproduced_backends_are_unsupported(backend):
    with pytest.raises(UnsupportedParam, match=f"guided_decoding_backend.*{backend}"):
        guided.validate(Params(guided_regex="a", guided_decoding_backend=backend))
    # no constraint: the field means nothing to reproduce
    assert guided.validate(Params(guided_decoding_backend=backend)) is None


def test_unknown_backend_is_a_params_error():
    with pytest.raises(ParamsError, match="guided_decoding_backend"):
        guided.validate(Params(guided_regex="a", guided_decoding_backend="xgramar"))


def test_xgrammar_letter_escapes_warn():
    with pytest.warns(guided.GuidedWarning, match=r"\\Z as the letter Z"):
        guided.validate(Params(guided_regex=r"fin\Z"))


def test_check_uses_the_backend_language():
    """check() of a regex is the engine's judgement; of a JSON schema, jsonschema's (the user's schema)."""
    p = Params(guided_regex=r"\d{3}")
    assert guided.check_text("١٢٣", p).valid is False
    assert guided.check_text("١٢٣", p.replace(guided_decoding_backend="guidance")).valid is True
    assert guided.check_text('{"a": 1, "c": 2}', Params(guided_json=OBJ)).valid is True


# --------------------------------------------------------------------------- generation

# (constraint, an independent Python model of xgrammar's language for it)
_ASCII_S = "[ \t\n\r\f\v\u00a0]"
REGEX_MODELS = [
    (r"\d{3}-\d{4}", r"[0-9]{3}-[0-9]{4}"),
    (r"\w{1,4}\s\w{1,3}", rf"[a-zA-Z0-9_]{{1,4}}{_ASCII_S}[a-zA-Z0-9_]{{1,3}}"),
    (r"[^\d\s]{1,3}!", rf"[^0-9 \t\n\r\f\v\u00a0]{{1,3}}!"),
    (r"a.c", r"a[\s\S]c"),
    (r"\D\S", r"[^0-9][^ \t\n\r\f\v\u00a0]"),
]
SCHEMAS = [  # closed by strict mode: the Python model adds additionalProperties: false
    {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}},
     "required": ["a"]},
    {"type": "object", "properties": {"k": {"enum": ["x", "y"]}, "n": {"type": "boolean"}}},
    {"type": "object", "properties": {"p": {"type": "string", "pattern": "^\\d{2}$"}}, "required": ["p"]},
]


def _closed(schema: dict) -> dict:
    return {**schema, "additionalProperties": False}


def test_every_finished_output_is_in_xgrammar_language(tiny_backend):
    import jsonschema

    runs = 0
    finished = 0
    for i, (rx, model) in enumerate(REGEX_MODELS):
        for seed in range(5):
            c = tiny_backend.chat("x", Params(guided_regex=rx, max_tokens=8, seed=100 * i + seed, n=6,
                                              chat_template_kwargs=NO_THINK))
            for ch in c.choices:
                runs += 1
                assert ch.info["guided_semantics"] == "xgrammar"
                if ch.finish_reason == "stop":
                    finished += 1
                    assert re.fullmatch(model, ch.content), (rx, ch.content)
    for i, schema in enumerate(SCHEMAS):
        for seed in range(6):
            c = tiny_backend.chat("x", Params(guided_json=schema, max_tokens=14, seed=7 * i + seed, n=6,
                                              chat_template_kwargs=NO_THINK))
            for ch in c.choices:
                runs += 1
                if ch.finish_reason == "stop":
                    finished += 1
                    jsonschema.validate(json.loads(ch.content), _closed(schema))
                    if "p" in schema["properties"]:
                        assert re.fullmatch("[0-9]{2}", json.loads(ch.content)["p"])
    assert runs >= 200
    assert finished >= 100, finished
