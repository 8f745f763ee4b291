"""Guided decoding: llguidance constraints on the local backend, validity checks for both backends.

Real llama.cpp on the tiny Qwen3 (152k vocabulary, random weights: every allowed
token is about as likely as any other, the hardest case for a constraint) and on
the demo model (SmolLM2, real answers). The invariant everywhere: an output that
finished ("stop") satisfies its constraint in full; an output cut by max_tokens
is a valid prefix of one that does.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from gsexplore import guided
from gsexplore.completion import Completion
from gsexplore.errors import GSExploreError, ParamsError, UnsupportedParam
from gsexplore.params import Params
from gsexplore.row import completion_row

# Python warns about "[[]" and "&&" in classes, which the Python -> Rust regex tests use on purpose
pytestmark = pytest.mark.filterwarnings("ignore:Possible (nested set|set):FutureWarning")

DATA = Path(__file__).resolve().parent.parent / "data"
NO_THINK = {"enable_thinking": False}
THINK_END = 151668  # Qwen3's </think>
PROMPT = "Responde en el formato pedido. / Answer in the requested format."
DEMO_PROMPT = "Answer in the requested format, please."


# --------------------------------------------------------------------------- fixtures

def _backend(request, name: str, which: str):
    try:  # the shared conftest fixture when there is one
        return request.getfixturevalue(name)
    except Exception:
        from gsexplore.backends.local import LocalBackend

        return LocalBackend(which, n_ctx=2048, n_threads=2)


@pytest.fixture(scope="module")
def tiny(request):
    return _backend(request, "tiny_backend", "tiny-qwen3")


@pytest.fixture(scope="module")
def demo(request):
    return _backend(request, "demo_backend", "demo")


@pytest.fixture(scope="module")
def tiny_tok(tiny):
    return guided.tokenizer_for(tiny.llama)


@pytest.fixture(scope="module")
def demo_tok(demo):
    return guided.tokenizer_for(demo.llama)


def assert_honoured(c: Completion) -> None:
    """Every choice: finished -> valid in full; cut by max_tokens -> a valid prefix."""
    for ch in c.choices:
        v = guided.check(ch)
        assert v.kind is not None
        if ch.finish_reason == "length":
            assert v.is_prefix, (ch.content, v)
            assert v.ok
        else:
            assert ch.finish_reason == "stop"
            assert v.valid, (ch.content, v)
            assert ch.info.get("constraint_accepting") is True
        assert ch.info["guided_engine"] == "llguidance"
        assert ch.info["guided_semantics"] == guided.engine_info(ch.params)["guided_semantics"]
        if ch.finish_reason == "stop":  # in the language of the backend asked for (xgrammar's by default)
            assert guided.accepts(ch.params, ch.content), (ch.content, ch.info["guided_semantics"])


# --------------------------------------------------------------------------- JSON schemas

def _s(props: dict, required=None, **kw) -> dict:
    return {"type": "object", "properties": props, "required": list(required if required is not None else props),
            "additionalProperties": False, **kw}


INLINE_SCHEMAS = {
    "boolean": {"type": "boolean"},
    "enum_es": {"enum": ["rojo", "verde", "azul", "año", "él"]},
    "int_range": {"type": "integer", "minimum": -5, "maximum": 37},
    "number_range": {"type": "number", "minimum": 0, "maximum": 1},
    "const_or_null": {"anyOf": [{"const": "ñandú"}, {"type": "null"}]},
    "short_string": {"type": "string", "maxLength": 6},
    "string_pattern": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
    "flat_object": _s({"a": {"type": "integer", "minimum": 0, "maximum": 9}, "b": {"type": "boolean"}}),
    "optional_keys": _s({"id": {"type": "integer", "minimum": 1, "maximum": 99},
                         "tag": {"enum": ["x", "y"]}, "ok": {"type": "boolean"}}, required=["id"]),
    "nested": _s({"p": _s({"q": _s({"r": {"enum": [1, 2, 3]}})})}),
    "array_bounds": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9},
                     "minItems": 2, "maxItems": 3},
    "array_of_objects": {"type": "array", "minItems": 1, "maxItems": 2,
                         "items": _s({"k": {"enum": ["a", "b"]}, "v": {"type": "integer", "minimum": 0,
                                                                       "maximum": 5}})},
    "tuple_like": {"type": "array", "prefixItems": [{"type": "boolean"}, {"enum": ["sí", "no"]}],
                   "items": False},
    "refs": {"$defs": {"pt": _s({"x": {"type": "integer", "minimum": 0, "maximum": 9},
                                 "y": {"type": "integer", "minimum": 0, "maximum": 9}})},
             **_s({"from": {"$ref": "#/$defs/pt"}, "to": {"$ref": "#/$defs/pt"}})},
    "anyof_objects": {"anyOf": [_s({"kind": {"const": "a"}, "n": {"type": "integer", "minimum": 0,
                                                                  "maximum": 3}}),
                                _s({"kind": {"const": "b"}, "s": {"type": "string", "maxLength": 3}})]},
    "nullable_union": {"type": ["integer", "null"], "minimum": 0, "maximum": 10},
    "enum_mixed": {"enum": [1, "dos", True, None, 4.5]},
    "date_format": {"type": "string", "format": "date"},
    "any_object_small": _s({"nota": {"type": "string", "maxLength": 4}}, required=[]),
    "oneof": {"oneOf": [{"type": "integer", "minimum": 100, "maximum": 200}, {"enum": ["ninguno"]}]},
}
FILE_SCHEMAS = {p.stem: json.loads(p.read_text()) for p in sorted((DATA / "schemas").glob("*.json"))}
SCHEMAS = {**INLINE_SCHEMAS, **FILE_SCHEMAS}


def test_there_are_enough_schemas():
    assert len(SCHEMAS) >= 20
    assert {"persona", "receta", "evento"} <= set(FILE_SCHEMAS)


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_json_schema_tiny_qwen3(tiny, name):
    schema = SCHEMAS[name]
    p = Params(guided_json=schema, max_tokens=24, seed=7, n=2, chat_template_kwargs=NO_THINK)
    c = tiny.chat(PROMPT, p)
    assert len(c.choices) == 2
    assert_honoured(c)


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_json_schema_demo(demo, name):
    schema = SCHEMAS[name]
    # alternate the two spellings: guided_json (str or dict) and the json_schema response_format
    if hash(name) % 2:
        p = Params(response_format={"type": "json_schema", "json_schema": {"name": name, "schema": schema}},
                   max_tokens=32, seed=3, temperature=0.7)
    else:
        p = Params(guided_json=json.dumps(schema), max_tokens=32, seed=3, temperature=0.7)
    c = demo.chat(DEMO_PROMPT, p)  # one prompt: the backend evaluates it once for all tests
    assert_honoured(c)


def test_demo_finishes_real_json(demo):
    """With a real model most outputs finish; they all validate with jsonschema."""
    schema = FILE_SCHEMAS["persona"]
    c = demo.chat("Inventa una persona.", Params(guided_json=schema, max_tokens=60, n=2, seed=11,
                                                 temperature=0.8))
    finished = [ch for ch in c.choices if ch.finish_reason == "stop"]
    assert finished
    import jsonschema

    for ch in finished:
        jsonschema.validate(json.loads(ch.content), schema)
    assert_honoured(c)


def test_json_object_response_format(tiny, demo):
    for be, mt in ((tiny, 16), (demo, 40)):
        c = be.chat("Un objeto JSON.", Params(response_format={"type": "json_object"}, max_tokens=mt, seed=5,
                                             chat_template_kwargs=NO_THINK))
        assert c.content.lstrip().startswith("{")
        assert_honoured(c)


def test_response_format_text_is_unconstrained(tiny):
    c = tiny.chat(PROMPT, Params(response_format={"type": "text"}, max_tokens=4, seed=1))
    assert "guided_engine" not in c.info
    assert guided.check(c).valid is None


def test_whitespace_pattern(tiny):
    schema = INLINE_SCHEMAS["flat_object"]
    base = Params(guided_json=schema, max_tokens=20, seed=2, n=2, chat_template_kwargs=NO_THINK)
    flexible = tiny.chat(PROMPT, base)
    # random weights pick whitespace tokens as often as anything else: flexible JSON is full of it
    assert any(re.search(r"[\n\t]", ch.content or "") for ch in flexible.choices)
    tight = tiny.chat(PROMPT, base.replace(guided_whitespace_pattern="[ ]?"))
    for ch in tight.choices:
        assert not re.search(r"[\n\t\r]|  ", ch.content or ""), ch.content
    assert_honoured(tight)


def test_whitespace_pattern_needs_json(tiny):
    with pytest.raises(UnsupportedParam, match="guided_whitespace_pattern"):
        tiny.chat(PROMPT, Params(guided_regex="[a-z]+", guided_whitespace_pattern=" *"))


# --------------------------------------------------------------------------- regexes

REGEXES = [
    r"[0-9]{3}-[a-z]{2,4}",
    r"(sí|no|quizás)",
    r"\d+(\.\d{1,2})?",
    r"[A-Z][a-záéíóúñ]{1,8}",
    r"(?i)hola|chau",
    r"#[0-9a-fA-F]{6}",
    r"\w+@\w+\.(com|ar|cl)",
    r"(19|20)\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])",
    r"[^\n]{1,12}\.",
    r"(ab|cd){2,3}e?",
    r"\s?[+-]?\d{1,3}",
    r"^[a-z]{1,4}$",
    r"[[]x[]]\Z",  # Python-only spellings: a bare "[" in a class, \Z
]


@pytest.mark.parametrize("rx", REGEXES)
def test_regex_both_models(tiny, demo, rx):
    c = tiny.chat(PROMPT, Params(guided_regex=rx, max_tokens=16, seed=1, n=2, chat_template_kwargs=NO_THINK))
    assert_honoured(c)
    for ch in c.choices:
        if ch.finish_reason == "stop":
            assert re.fullmatch(rx, ch.content)
    c = demo.chat(DEMO_PROMPT, Params(guided_regex=rx, max_tokens=16, seed=1, temperature=0.7))
    assert_honoured(c)


# --------------------------------------------------------------------------- choices

CHOICES = ["sí", "no", "tal vez", "Buenos Aires", 'dice "hola"', "a\\b", "línea\nnueva", "señor/ñandú"]


def test_choice_accents_and_multitoken(tiny, demo):
    seen = set()
    for seed in range(6):
        c = tiny.chat(PROMPT, Params(guided_choice=CHOICES, max_tokens=12, seed=seed, n=2,
                                     chat_template_kwargs=NO_THINK))
        assert_honoured(c)
        for ch in c.choices:
            assert ch.finish_reason == "stop" and ch.content in CHOICES
            seen.add(ch.content)
    assert len(seen) >= 3  # random weights reach many options, multi-token ones included
    c = demo.chat("¿Cuál es la capital de Argentina?", Params(guided_choice=CHOICES, max_tokens=12, temperature=0))
    assert c.content in CHOICES and c.finish_reason == "stop"
    assert c.content == "Buenos Aires"


def test_choice_multitoken_options_are_several_tokens(tiny):
    ids = tiny.llama.tokenize("Buenos Aires".encode(), add_bos=False, special=False)
    assert len(ids) >= 2


# --------------------------------------------------------------------------- grammars

FILE_GRAMMARS = {p.name: p.read_text() for p in sorted((DATA / "grammars").iterdir())}
INLINE_GRAMMARS = {
    "yesno.gbnf": 'root ::= ("sí" | "no") "!"?',
    "kv.gbnf": 'root ::= pair ("," pair)*\npair ::= key "=" val\nkey ::= [a-z]{1,3}\nval ::= [0-9]{1,2}',
    "abc.lark": 'start: "a" b+ "c"\nb: "b" | "B"',
    "list.lark": 'start: "[" item ("," item)* "]"\nitem: /[0-9]{1,2}/',
}
GRAMMARS = {**FILE_GRAMMARS, **INLINE_GRAMMARS}


def test_there_are_enough_grammars():
    kinds = {guided.grammar_format(g) for g in GRAMMARS.values()}
    assert len(GRAMMARS) >= 5 and kinds == {"gbnf", "lark"}


@pytest.mark.parametrize("name", list(GRAMMARS))
def test_grammar_both_models(tiny, demo, name):
    g = GRAMMARS[name]
    assert guided.grammar_format(g) == ("gbnf" if name.endswith(".gbnf") else "lark")
    c = tiny.chat(PROMPT, Params(guided_grammar=g, max_tokens=20, seed=4, n=2, chat_template_kwargs=NO_THINK))
    assert_honoured(c)
    c = demo.chat(DEMO_PROMPT, Params(guided_grammar=g, max_tokens=24, seed=4, temperature=0.7))
    assert_honoured(c)


# --------------------------------------------------------------------------- composition

def test_seed_reproducible_and_n(tiny, demo):
    p = Params(guided_json=INLINE_SCHEMAS["array_of_objects"], max_tokens=30, seed=42, n=2,
               chat_template_kwargs=NO_THINK)
    a, b = tiny.chat(PROMPT, p), tiny.chat(PROMPT, p)
    assert [ch.content for ch in a.choices] == [ch.content for ch in b.choices]
    assert a.choices[0].content != a.choices[1].content  # choices draw independently
    other = tiny.chat(PROMPT, p.replace(seed=43))
    assert [ch.content for ch in other.choices] != [ch.content for ch in a.choices]
    assert_honoured(a)
    p = Params(guided_regex=r"[a-z]{2,8}", max_tokens=12, seed=5, n=2, temperature=1.0)
    assert demo.chat("word", p).content == demo.chat("word", p).content


def test_max_tokens_cut_is_prefix(tiny, demo):
    schema = FILE_SCHEMAS["receta"]
    for mt in (1, 3, 7):
        c = tiny.chat(PROMPT, Params(guided_json=schema, max_tokens=mt, seed=mt, chat_template_kwargs=NO_THINK))
        assert c.finish_reason == "length"
        v = guided.check(c)
        assert v.cut and v.is_prefix and v.ok and not v.valid
        c = demo.chat("Una receta.", Params(guided_json=schema, max_tokens=mt + 5, seed=mt))
        assert_honoured(c)


def test_temperature_zero_and_high(tiny, demo):
    p = Params(guided_choice=["uno", "dos", "tres"], max_tokens=8, temperature=0, chat_template_kwargs=NO_THINK)
    a, b = tiny.chat(PROMPT, p), tiny.chat(PROMPT, p.replace(seed=99))
    assert a.content == b.content and a.content in ("uno", "dos", "tres")
    c = demo.chat("Count.", Params(guided_regex=r"[0-9]{1,3}( [0-9]{1,3}){0,3}", max_tokens=20,
                                   temperature=1.8, seed=1, n=2))
    assert_honoured(c)


def test_stop_strings(demo, tiny):
    p = Params(guided_json=FILE_SCHEMAS["persona"], stop=['"edad"'], max_tokens=60, seed=3, temperature=0.7)
    c = demo.chat("Una persona.", p)
    assert c.finish_reason == "stop" and c.stop_reason == '"edad"'
    v = guided.check(c)
    assert v.cut and v.is_prefix and v.ok and v.valid is False
    assert '"edad"' not in c.content
    c = tiny.chat(PROMPT, Params(guided_regex=r"(ab|cd)+x", stop=["cd"], include_stop_str_in_output=True,
                                 max_tokens=16, seed=1, n=2, chat_template_kwargs=NO_THINK))
    for ch in c.choices:
        v = guided.check(ch)
        assert v.ok and v.is_prefix


def test_min_tokens(tiny):
    p = Params(guided_regex=r"[a-z]+", min_tokens=6, max_tokens=10, seed=2, n=2, chat_template_kwargs=NO_THINK)
    c = tiny.chat(PROMPT, p)
    for ch in c.choices:
        assert len(ch.info["token_ids"]) >= 6
    assert_honoured(c)


def test_allowed_token_ids_and_logit_bias_compose(tiny):
    """allowed_token_ids and the grammar intersect: only "no" survives both."""
    no_ids = tiny.llama.tokenize(b"no", add_bos=False, special=False)
    eos = tiny.llama.token_eos()
    p = Params(guided_choice=["sí", "no", "nunca"], allowed_token_ids=[*no_ids, eos], max_tokens=5, seed=1,
               chat_template_kwargs=NO_THINK)
    for seed in range(3):
        c = tiny.chat(PROMPT, p.replace(seed=seed))
        assert c.content == "no" and c.finish_reason == "stop"
    si = tiny.llama.tokenize("sí".encode(), add_bos=False, special=False)
    c = tiny.chat(PROMPT, Params(guided_choice=["sí", "no"], logit_bias={si[0]: 30}, max_tokens=5, seed=1,
                                 chat_template_kwargs=NO_THINK))
    assert c.content == "sí"


def test_guided_decoding_backend_is_kept(tiny):
    p = Params(guided_choice=["a", "b"], guided_decoding_backend="xgrammar", max_tokens=3, seed=1,
               chat_template_kwargs=NO_THINK)
    c = tiny.chat(PROMPT, p)
    assert c.params.guided_decoding_backend == "xgrammar"
    assert c.info["guided_engine"] == "llguidance" and c.info["guided_semantics"] == "xgrammar"
    assert completion_row(c)["guided_decoding_backend"] == "xgrammar"
    assert completion_row(c)["guided_semantics"] == "xgrammar"
    g = tiny.chat(PROMPT, p.replace(guided_decoding_backend="guidance"))
    assert g.info["guided_semantics"] == "guidance" and completion_row(g)["guided_semantics"] == "guidance"


def test_streaming_with_constraint(tiny):
    p = Params(guided_choice=["Buenos Aires", "Montevideo"], max_tokens=8, seed=3, chat_template_kwargs=NO_THINK)
    deltas = list(tiny.stream(PROMPT, p))
    text = "".join(d.text for d in deltas if d.kind == "content")
    done = deltas[-1].completion
    assert text == done.content and done.content in ("Buenos Aires", "Montevideo")


# --------------------------------------------------------------------------- Qwen3 thinking

def test_thinking_constraint_applies_after_think_end(tiny):
    """Thinking on: </think> forced first (bias), then the content is constrained."""
    p = Params(guided_choice=["sí", "no"], logit_bias={THINK_END: 100}, max_tokens=10, seed=1, n=2)
    c = tiny.chat(PROMPT, p)
    for ch in c.choices:
        assert ch.info["token_ids"][0] == THINK_END
        assert not ch.reasoning_content
        assert ch.content in ("sí", "no") and ch.finish_reason == "stop"
    assert_honoured(c)


def test_thinking_is_not_constrained(tiny):
    """Thinking on: the reasoning is free text (a token the grammar forbids is drawn there)."""
    zzz = tiny.llama.tokenize(b" zzz", add_bos=False, special=False)[0]
    piece = tiny.llama.detokenize([zzz]).decode()
    p = Params(guided_choice=["sí", "no"], logit_bias={zzz: 100}, max_tokens=4, seed=1)
    c = tiny.chat(PROMPT, p)
    assert c.info["token_ids"] == [zzz] * 4  # a token the grammar forbids, drawn 4 times
    assert (piece * 4).strip() in c.reasoning_content and not c.content
    v = guided.check(c)
    assert v.cut and v.ok


def test_thinking_off_constrains_from_first_token(tiny):
    zzz = tiny.llama.tokenize(b" zzz", add_bos=False, special=False)[0]
    p = Params(guided_choice=["sí", "no"], logit_bias={zzz: 100, THINK_END: 100}, max_tokens=6, seed=1,
               chat_template_kwargs=NO_THINK)
    c = tiny.chat(PROMPT, p)
    assert zzz not in c.info["token_ids"] and THINK_END not in c.info["token_ids"]
    assert c.content in ("sí", "no") and not c.reasoning_content


def test_constraint_waits_for_think_end_unit(tiny, tiny_tok):
    """compile_constraint on its own decides as vLLM: from the prompt's last think tag."""
    assert (tiny_tok.think_start, tiny_tok.think_end) == (151667, THINK_END)
    p = Params(guided_choice=["sí", "no"])
    on = tiny.prompt_token_ids(PROMPT, p)
    off = tiny.prompt_token_ids(PROMPT, p.replace(chat_template_kwargs=NO_THINK))
    assert guided.compile_constraint(p, tiny_tok, prompt_tokens=off).active
    c = guided.compile_constraint(p, tiny_tok, prompt_tokens=on)
    assert not c.active and c.starts_after_token == THINK_END
    assert c.mask().all() and c.eos_allowed and not c.is_stopped()
    free = tiny.llama.tokenize(b" anything goes", add_bos=False, special=False)
    c.consume_tokens([tiny_tok.think_start, *free])  # reasoning: nothing reaches the grammar
    assert not c.active
    c.consume(THINK_END)
    assert c.active and not c.eos_allowed
    allowed = c.allowed_ids()
    assert 0 < len(allowed) < 50
    si = tiny.llama.tokenize("sí".encode(), add_bos=False, special=False)
    c.consume_tokens(si)
    assert c.is_accepting() and c.is_stopped() and c.eos_allowed
    assert list(c.allowed_ids()) == [tiny.llama.token_eos()]
    # without prompt tokens: enable_thinking decides
    assert not guided.compile_constraint(p, tiny_tok).active
    assert guided.compile_constraint(p.replace(chat_template_kwargs=NO_THINK), tiny_tok).active
    assert guided.is_reasoning_end([1, THINK_END, 2], 151667, THINK_END)
    assert not guided.is_reasoning_end([THINK_END, 151667, 5], 151667, THINK_END)


# --------------------------------------------------------------------------- the Constraint itself

def test_tokenizer_cached_and_sized(tiny, tiny_tok, demo_tok):
    assert guided.tokenizer_for(tiny.llama) is tiny_tok
    assert tiny_tok.n_vocab == 151936 and demo_tok.n_vocab == 49152
    assert demo_tok.think_end is None and not demo_tok.has_reasoning


def test_mask_apply_allowed_agree_and_padding_never_allowed(tiny, tiny_tok):
    p = Params(guided_json=FILE_SCHEMAS["receta"], chat_template_kwargs=NO_THINK)
    c = guided.compile_constraint(p, tiny_tok)
    text = '{"titulo": "Tortilla", "porciones": 4, "dificultad": "fácil", "ingredientes": []'
    toks = tiny.llama.tokenize(text.encode(), add_bos=False, special=False)
    rng = np.random.default_rng(0)
    for t in toks[:12]:
        m = c.mask()
        assert m.shape == (151936,) and m.dtype == bool
        assert not m[151669:].any()  # [PAD...] ids: empty in llama.cpp, never allowed
        logits = rng.standard_normal(151936).astype(np.float32)
        out = c.apply(logits.copy())
        assert np.array_equal(np.isfinite(out), m)
        assert np.array_equal(out[m], logits[m])
        assert np.array_equal(c.allowed_ids(), np.flatnonzero(m))
        assert m[t]
        c.consume(t)


def test_consuming_a_forbidden_token_raises(tiny, tiny_tok):
    c = guided.compile_constraint(Params(guided_choice=["sí", "no"]), tiny_tok, reasoning=False)
    x = tiny.llama.tokenize(b"x", add_bos=False, special=False)[0]
    assert not c.mask()[x]
    with pytest.raises(GSExploreError, match="guided decoding .*guided_choice"):
        c.consume(x)


def test_fork_is_independent(tiny, tiny_tok):
    c = guided.compile_constraint(Params(guided_regex="(ab)+c"), tiny_tok, reasoning=False)
    a = tiny.llama.tokenize(b"ab", add_bos=False, special=False)
    c.consume_tokens(a)
    d = c.fork()
    d.consume_tokens(tiny.llama.tokenize(b"c", add_bos=False, special=False))
    assert d.is_accepting() and not c.is_accepting()


def test_compiled_grammars_are_cached(tiny_tok):
    p = Params(guided_json=FILE_SCHEMAS["evento"])
    guided.compile_constraint(p, tiny_tok, reasoning=False)
    n = len(guided._MATCHERS)
    c1 = guided.compile_constraint(p, tiny_tok, reasoning=False)
    c2 = guided.compile_constraint(p, tiny_tok, reasoning=False)
    assert len(guided._MATCHERS) == n and c1._m is not c2._m


def test_padded_vocabulary(demo):
    """A model vocabulary larger than the tokenizer's: the tail is never allowed."""
    tok = guided.tokenizer_for(demo.llama)
    big = guided.GuidedTokenizer(ll=tok.ll, n_vocab=tok.n_vocab + 100, eos_ids=tok.eos_ids, key="padded")
    c = guided.compile_constraint(Params(guided_regex="[a-z ]+"), big)
    m = c.mask()
    assert m.shape == (tok.n_vocab + 100,) and not m[tok.n_vocab:].any() and m.any()
    logits = np.zeros(tok.n_vocab + 100, dtype=np.float32)
    c.apply(logits)
    assert np.isneginf(logits[tok.n_vocab:]).all()


# --------------------------------------------------------------------------- bad constraints

@pytest.mark.parametrize("params, field, words", [
    (dict(guided_json={"type": "array", "uniqueItems": True}), "guided_json", "uniqueItems"),
    (dict(guided_json={"type": "integer", "minimum": 5, "maximum": 3}), "guided_json", "minimum"),
    (dict(guided_json={"$ref": "#/$defs/nada"}), "guided_json", "/$defs/nada"),
    (dict(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"not": {}}}}),
     "response_format", "not"),
    (dict(guided_regex=r"a(?=b)"), "guided_regex", "look-around"),
    (dict(guided_regex=r"(a)\1"), "guided_regex", "backreferences"),
    (dict(guided_regex=r"\bword"), "guided_regex", "regex"),
    (dict(guided_grammar='start: a b\na: "x"\n'), "guided_grammar", "line 1, column 8"),
    (dict(guided_grammar='start: "a" | \n bar'), "guided_grammar", "line 2"),
    (dict(guided_grammar='root ::= "a" ('), "guided_grammar", "line 1"),
    (dict(guided_grammar="root ::= foo"), "guided_grammar", "foo"),
    (dict(guided_json={"type": "object", "properties": {"a": {"type": "integer"}}},
          guided_whitespace_pattern="a(?=b)"), "guided_json", "look-around"),
])
def test_bad_constraints_raise_before_generation(tiny, monkeypatch, params, field, words):
    from gsexplore.backends.llama.engine import Engine

    def boom(*a, **k):
        raise AssertionError("generation started")

    monkeypatch.setattr(Engine, "submit", boom)
    p = Params(**params, max_tokens=4)
    with pytest.raises(ParamsError) as e:
        guided.validate(p)
    assert e.value.field == field and words in str(e.value)
    with pytest.raises(ParamsError, match=re.escape(words)):
        tiny.chat(PROMPT, p)


def test_empty_choice_and_invalid_schema_are_params_errors():
    with pytest.raises(ParamsError, match="guided_choice"):
        Params(guided_choice=[])
    with pytest.raises(ParamsError, match="guided_json"):
        Params(guided_json={"type": "strin"})
    with pytest.raises(ParamsError, match="guided_regex"):
        Params(guided_regex="(")


# --------------------------------------------------------------------------- python -> rust regex

@pytest.mark.parametrize("py, rust", [
    (r"\d+\Z", r"\d+\z"),
    (r"a{,3}", r"a{0,3}"),
    (r"a{2,}b{3}", r"a{2,}b{3}"),
    (r"x{y", r"x\{y"),
    (r"[[]", r"[\[]"),
    (r"[]a]", r"[]a]"),
    (r"[^]a[]", r"[^]a\[]"),
    (r"[a&&b~~c]", r"[a&\&b~\~c]"),
    (r"[!--]", r"[!-\-]"),
    (r"\N{LATIN SMALL LETTER N WITH TILDE}", r"\x{f1}"),
    (r"[\]\[]\\Z", r"[\]\[]\\Z"),
])
def test_python_regex_to_rust(py, rust):
    assert guided.python_regex_to_rust(py) == rust
    assert guided.validate(Params(guided_regex=py)) is not None


# --------------------------------------------------------------------------- check()

def _remote(content, finish="stop", stop_reason=None, **params):
    resp = {"id": "x", "model": "Qwen/Qwen3-1.7B", "choices": [{
        "index": 0, "message": {"role": "assistant", "content": content, "reasoning_content": "pienso"},
        "finish_reason": finish, "stop_reason": stop_reason}], "usage": {}}
    return Completion.from_response(resp, backend="remote", params=Params(**params))


PERSONA = FILE_SCHEMAS["persona"]


@pytest.mark.parametrize("text, params, finish, valid, prefix", [
    # guided_json / json_schema response_format
    ('{"nombre": "Ana", "edad": 30}', dict(guided_json=PERSONA), "stop", True, True),
    ('\n{"nombre":"Ana","edad":30,"ciudad":"Salta"}\n', dict(guided_json=PERSONA), "stop", True, True),
    ('{"nombre": "Ana", "edad": 130}', dict(guided_json=PERSONA), "stop", False, False),
    ('{"nombre": "Ana"}', dict(guided_json=PERSONA), "stop", False, False),
    ('{"nombre": "Ana", "edad": 3', dict(guided_json=PERSONA), "length", False, True),
    ('{"nombre": "Ana", "edad": 3', dict(guided_json=PERSONA), "stop", False, True),
    ('{"nombre": "Ana", "pais"', dict(guided_json=PERSONA), "length", False, False),
    ('```json\n{"nombre": "Ana", "edad": 3}\n```', dict(guided_json=PERSONA), "stop", False, False),
    ('{"sentimiento": "positivo", "confianza": 0.9}',
     dict(response_format={"type": "json_schema", "json_schema": {"name": "s", "schema":
                                                                  FILE_SCHEMAS["sentimiento"]}}),
     "stop", True, True),
    ("", dict(guided_json=PERSONA), "length", False, True),
    # json_object
    ('{"a": [1, {"b": null}]}', dict(response_format={"type": "json_object"}), "stop", True, True),
    ("[1, 2]", dict(response_format={"type": "json_object"}), "stop", False, False),
    ('{"a": [1, {"b"', dict(response_format={"type": "json_object"}), "length", False, True),
    # regex (Python semantics, full match)
    ("123-ab", dict(guided_regex=r"\d{3}-[a-z]{2}"), "stop", True, True),
    ("123-abc", dict(guided_regex=r"\d{3}-[a-z]{2}"), "stop", False, False),
    ("12", dict(guided_regex=r"\d{3}-[a-z]{2}"), "length", False, True),
    ("x", dict(guided_regex=r"\d{3}-[a-z]{2}"), "length", False, False),
    # choice
    ("Buenos Aires", dict(guided_choice=CHOICES), "stop", True, True),
    ("Buenos", dict(guided_choice=CHOICES), "length", False, True),
    ("buenos aires", dict(guided_choice=CHOICES), "stop", False, False),
    ('dice "hola"', dict(guided_choice=CHOICES), "stop", True, True),
    # grammar (llguidance over bytes)
    ("1+2*(3-4)", dict(guided_grammar=FILE_GRAMMARS["aritmetica.gbnf"]), "stop", True, True),
    ("1+2*(", dict(guided_grammar=FILE_GRAMMARS["aritmetica.gbnf"]), "length", False, True),
    ("1+a", dict(guided_grammar=FILE_GRAMMARS["aritmetica.gbnf"]), "stop", False, False),
    ("miércoles", dict(guided_grammar=FILE_GRAMMARS["fecha.lark"]), "stop", True, True),
])
def test_check_hand_written(text, params, finish, valid, prefix):
    p = Params(**params)
    v = guided.check_text(text, p, finish_reason=finish)
    assert (v.valid, v.is_prefix, v.cut) == (valid, prefix, finish == "length"), v
    assert v.kind == p.guided_kind and v.reason
    assert v.ok == (valid or (finish == "length" and prefix))
    r = guided.check(_remote(text, finish, **params))  # the same for a remote Completion
    assert (r.valid, r.is_prefix) == (valid, prefix)


def test_check_no_constraint_and_stop_string_and_rows():
    assert guided.check(_remote("hola")).valid is None
    assert guided.check(_remote("hola")).ok is None
    v = guided.check(_remote('{"nombre": "A', "stop", stop_reason='",', guided_json=PERSONA))
    assert v.cut and v.is_prefix and v.ok
    c = _remote("no", guided_choice=["sí", "no"])
    row = completion_row(c)
    assert guided.check_row(row) == guided.check(c)
    assert guided.check_row(row).to_row()["guided_ok"] is True
    with pytest.raises(ParamsError):
        guided.check("text")


def test_check_flags_unconstrained_remote_output():
    """vLLM >= 0.12 ignores guided_* fields with HTTP 200: check() makes it visible."""
    c = _remote("¡Claro! Aquí tienes una persona: Ana, 30 años.", guided_json=PERSONA)
    v = guided.check(c)
    assert v.valid is False and v.is_prefix is False and v.ok is False


# --------------------------------------------------------------------------- property-based

def _schema_and_value():
    from hypothesis import strategies as st

    leaf = st.one_of(
        st.tuples(st.integers(-50, 50), st.integers(0, 40)).flatmap(
            lambda t: st.tuples(st.just({"type": "integer", "minimum": t[0], "maximum": t[0] + t[1]}),
                                st.integers(t[0], t[0] + t[1]))),
        st.lists(st.text("abcñé ", min_size=1, max_size=5), min_size=1, max_size=4, unique=True).flatmap(
            lambda xs: st.tuples(st.just({"enum": xs}), st.sampled_from(xs))),
        st.just(({"type": "boolean"}, True)),
        st.just(({"type": "null"}, None)),
        st.integers(0, 6).flatmap(lambda n: st.tuples(st.just({"type": "string", "maxLength": n}),
                                                      st.text("xyz ñ\"\\", max_size=n))),
        st.floats(-10, 10, allow_nan=False).flatmap(
            # (+ 0.0: llguidance's number ranges do not accept "-0.0")
            lambda f: st.tuples(st.just({"type": "number", "minimum": -10, "maximum": 10}),
                                st.just(round(f, 3) + 0.0))),
    )

    def extend(children):
        obj = st.lists(st.tuples(st.text("abcdef", min_size=1, max_size=3), children, st.booleans()),
                       min_size=1, max_size=3, unique_by=lambda t: t[0]).flatmap(
            lambda items: st.just((
                {"type": "object", "properties": {k: s for k, (s, _), _ in items},
                 "required": [k for k, _, req in items if req], "additionalProperties": False},
                {k: v for k, (_, v), req in items if req})))
        arr = st.tuples(children, st.integers(0, 2), st.integers(0, 2)).flatmap(
            lambda t: st.tuples(
                st.just({"type": "array", "items": t[0][0], "minItems": t[1], "maxItems": t[1] + t[2]}),
                st.just([t[0][1]] * t[1])))
        return st.one_of(obj, arr)

    return st.recursive(leaf, extend, max_leaves=6)


def test_property_generated_schemas_check_and_prefixes():
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None,
              derandomize=True)
    @given(_schema_and_value())
    def run(sv):
        schema, value = sv
        p = Params(guided_json=schema)
        text = json.dumps(value, ensure_ascii=False)
        v = guided.check_text(text, p)
        assert v.valid and v.is_prefix, (schema, text, v)
        for i in range(len(text)):
            assert guided.check_text(text[:i], p, finish_reason="length").is_prefix, (schema, text[:i])

    run()


def test_property_generated_schemas_on_tiny(tiny):
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None,
              derandomize=True)
    @given(_schema_and_value())
    def run(sv):
        schema, _ = sv
        c = tiny.chat(PROMPT, Params(guided_json=schema, max_tokens=12, seed=1, chat_template_kwargs=NO_THINK))
        assert_honoured(c)

    run()
