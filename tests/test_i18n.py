"""One catalogue, in Spanish and English: same keys and fields; errors said by type, status and code;
every panel rendered in Spanish shows no English sentence of the project; no language ternaries left."""

from __future__ import annotations

import html
import re
import string
from pathlib import Path
from typing import Any

import httpx
import pytest

import gsexplore as gs
from gsexplore import errors as E
from gsexplore import panels
from gsexplore.i18n import LANGUAGES, explain, explain_row, msg, number, outcome_text
from gsexplore.i18n import en, es
from gsexplore.params import Params
from gsexplore.serve import ServerThread, create_app

ROOT = Path(__file__).resolve().parents[1]

#: Words of the project's English messages that Spanish text never uses (a small vocabulary check).
ENGLISH = re.compile(r"\b(the|is|are|not|must|should|could|you|your|write|allowed|requests|settings|repeats|"
                     r"found|missing|invalid|running|done|does|cannot|already|between|empty|only|left|"
                     r"estimated|measured|answer|when|with|from|of)\b", re.IGNORECASE)


def english_in(text: str) -> list[str]:
    """The English words of ``text`` (code and tokens in <code>/<pre> excluded)."""
    text = re.sub(r"<(code|pre|script|style)\b.*?</\1>", " ", text, flags=re.S | re.I)
    text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    return ENGLISH.findall(text)


def _fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


# --- the catalogue ------------------------------------------------------------------------------------
def test_both_languages_have_the_same_keys_and_fields() -> None:
    assert set(es.MESSAGES) == set(en.MESSAGES)
    for key in es.MESSAGES:
        assert _fields(es.MESSAGES[key]) == _fields(en.MESSAGES[key]), key


def test_sections_are_in_the_same_order_in_both_files() -> None:
    def sections(path: Path) -> list[str]:
        return re.findall(r"# --- ([a-z ,:]+?) -", path.read_text())

    assert sections(ROOT / "gsexplore/i18n/es.py") == sections(ROOT / "gsexplore/i18n/en.py")


def test_numbers_as_each_language_writes_them() -> None:
    assert number(2285, "es") == "2.285" and number(49152, "es") == "49.152"
    assert number(2285, "en") == "2,285" and number(0.73, "es", digits=2) == "0,73"


def test_no_inline_language_ternaries_in_the_parts_that_show_messages() -> None:
    files = [*ROOT.glob("gsexplore/panels/*.py"), *ROOT.glob("gsexplore/i18n/*.py"),
             ROOT / "gsexplore/params_text.py", ROOT / "gsexplore/sweep_spec.py"]
    pattern = re.compile(r"""if (es|lang == ["']es["']|self\.lang == ["']es["']) else|\[0 if (es|lang)""")
    found = [f"{p.name}:{i}" for p in files for i, line in enumerate(p.read_text().splitlines(), 1)
             if pattern.search(line) and "``" not in line]  # a docstring naming what is forbidden
    assert not found, found


# --- errors, by what they are -----------------------------------------------------------------------
@pytest.mark.parametrize("exc, expected", [
    (E.AuthenticationError("missing or invalid API key", status=401), "Clave inválida"),
    (E.AuthenticationError("forbidden", status=403), "Acceso denegado (HTTP 403)"),
    (E.BadRequestError("The model `qwen9` does not exist.", status=404,
                       body={"error": {"type": "NotFoundError", "param": "model", "code": 404,
                                       "message": "The model `qwen9` does not exist."}}), "«qwen9»"),
    (E.BadRequestError("Not Found", status=404, body={"error": {"type": "NotFoundError"}}), "revisá la URL base"),
    (E.RateLimitError("busy", status=429, retry_after=3), "probá de nuevo en 3 s"),
    (E.APITimeoutError("read timeout"), "Tiempo agotado"),
    (E.APIConnectionError("could not connect"), "No se pudo conectar"),
    (E.ServerError("boom", status=503), "El servidor falló (HTTP 503)"),
    (E.ModelNotFoundError("model file not found: /x.gguf"), "No se encontró el modelo"),
    (E.UnsupportedParam("logprobs", "remote"), "no puede usar el parámetro «logprobs»"),
    (E.EngineError("llama_decode failed"), "El motor local"),
])
def test_library_errors_are_said_in_spanish_by_type_and_status(exc: Exception, expected: str) -> None:
    said = explain(exc, "es")
    assert expected in said and not english_in(said), said
    assert str(exc) and not english_in(explain(exc, "es"))  # the library's own str() stays English for logs


def test_params_errors_by_key_name_the_field_and_echo_what_was_typed() -> None:
    with pytest.raises(gs.ParamsError) as info:
        Params(temperature=-3)
    said = explain(info.value, "es")
    assert said.startswith("temperature: escribiste -3, pero tiene que ser un número ≥ 0"), said
    with pytest.raises(gs.ParamsError) as info:
        Params(guided_json={"type": "strng"})
    assert "no es válido" in explain(info.value, "es") and "strng" in explain(info.value, "es")


def test_a_real_server_refusing_a_wrong_key_is_said_as_invalid_key(tiny_backend: Any) -> None:
    with ServerThread(create_app([tiny_backend], api_keys={"clave-de-clase"})) as srv:
        wrong = gs.RemoteBackend(srv.url, api_key="otra-clave", model="tiny-qwen3", max_retries=0)
        with pytest.raises(E.AuthenticationError) as info:
            wrong.chat("Hola", Params(max_tokens=2))
        assert "HTTP 401" in str(info.value)  # English for logs and API clients
        assert explain(info.value, "es").startswith("Clave inválida")
        good = gs.RemoteBackend(srv.url, api_key="clave-de-clase", model="no-such-model", max_retries=0)
        with pytest.raises(E.APIError) as info:
            good.chat("Hola", Params(max_tokens=2))
        assert "«no-such-model»" in explain(info.value, "es"), explain(info.value, "es")


def test_a_connection_refused_is_said_in_spanish() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    b = gs.RemoteBackend("http://127.0.0.1:9/v1", api_key="k", max_retries=0, transport=httpx.MockTransport(refuse))
    with pytest.raises(E.APIConnectionError) as info:
        b.chat("Hola", Params(max_tokens=2))
    assert explain(info.value, "es").startswith("No se pudo conectar")


def test_sweep_rows_and_outcome_lines_in_spanish() -> None:
    assert explain_row("AuthenticationError", "HTTP 401: missing or invalid API key", "es").startswith("Clave inválida")
    assert explain_row("ParamsError", "max_tokens=100000 is too large: each slot holds 4096", "es").startswith(
        "El backend rechazó max_tokens=100000")
    oc = {"total": 9, "ok": 7, "failed": 2, "by_type": {"AuthenticationError": 2},
          "first_error": {"type": "AuthenticationError", "status": 401, "code": None, "message": "bad key"}}
    assert outcome_text(oc, "es").startswith("7 de 9 bien, 2 con error: Clave inválida")
    assert outcome_text({"total": 2285, "ok": 2285, "failed": 0, "by_type": {}, "first_error": None}, "es",
                        3.25).startswith("2.285 de 2.285 bien en 3,2")


# --- every panel, rendered in Spanish ---------------------------------------------------------------
def visible_text(w: Any) -> str:
    """What a person reads in a widget tree: values, labels, options, titles, placeholders, tables."""
    from gsexplore.panels._util import all_widgets

    out: list[str] = []
    for x in all_widgets(w):
        if "gs-code" in getattr(x, "_dom_classes", ()) or any(c.startswith("gs-code-") for c in
                                                               getattr(x, "_dom_classes", ())):
            continue  # code snippets (curl, Python, JavaScript) are code, not prose
        for attr in ("description", "placeholder", "tooltip"):
            v = getattr(x, attr, None)
            if isinstance(v, str):
                out.append(v)
        v = getattr(x, "value", None)
        if isinstance(v, str) and not x.__class__.__name__.startswith(("Text", "Password")):
            out.append(v)
        for label in getattr(x, "_options_labels", ()) or ():
            out.append(str(label))
        for title in getattr(x, "titles", ()) or ():
            out.append(str(title or ""))
        df = getattr(x, "df", None)
        if df is not None and hasattr(df, "columns"):
            out.append(" ".join(map(str, df.columns)))
            if "error" in df.columns:
                out.extend(map(str, df["error"]))
    return "\n".join(out)


def test_every_panel_in_spanish_shows_no_english(tiny_backend: Any, tmp_path: Path) -> None:
    base = Params(max_tokens=3, chat_template_kwargs={"enable_thinking": False})
    pg = panels.Playground(tiny_backend, base, user="Hola")
    pg.run(wait=True)
    pg.params_panel.set_value("temperature", -3)  # a refusal and a warning on screen too
    pg.params_panel.set_value("top_p", 5)
    with ServerThread(create_app([tiny_backend], api_keys={"clave"})) as srv:
        wrong = gs.RemoteBackend(srv.url, api_key="otra", model="tiny-qwen3", max_retries=0)
        sb = panels.SweepBuilder(wrong, base=base, prompts=["Hola", "Chau"], grid={"temperature": [0, 1]})
        try:
            sb.run(wait=True)
        except gs.GSExploreError:
            pass  # where gs.sweep raises when every request failed, the panel says it all the same
    shown = {
        "Playground": visible_text(pg.widget),
        "SweepBuilder": visible_text(sb.widget),
        "NextTokenExplorer": visible_text(panels.NextTokenExplorer(tiny_backend, "El cielo es", top_n=5).widget),
        "GuidedPanel": visible_text(_guided_with_a_bad_regex().widget),
        "BackendPanel": visible_text(panels.BackendPanel(tiny_backend).widget),
    }
    assert "Clave inválida" in shown["SweepBuilder"]
    assert english_in(visible_text(panels.SweepBuilder(wrong, base=base, prompts=[], lang="en").widget))  # it can fail
    for name, text in shown.items():
        assert not english_in(text), (name, english_in(text), text[:3000])


def _guided_with_a_bad_regex() -> Any:
    g = panels.GuidedPanel()
    g.kind.value = "guided_regex"
    g.regex.value = r"(\d{4}-\d{2"
    assert "falta cerrar un paréntesis" in (g.error or "")
    return g


def test_every_key_formats_with_its_fields_in_both_languages() -> None:
    for lang, table in LANGUAGES.items():
        for key, template in table.items():
            fields = {f.split(".")[0].split("[")[0].split("!")[0].split(":")[0]: 1 for f in _fields(template)}
            assert isinstance(msg(key, lang, **fields), str)
