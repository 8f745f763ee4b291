"""The one parameter model: every request parameter is declared here, once.

Validation, the JSON on the wire, the local backend's mapping, the widget panels,
the sweep grid and the DataFrame columns all read `Params` and its `ParamSpec`s.
Adding a parameter is one `_p(...)` line below.

Every field defaults to ``None``, which means "not sent: the server's default
applies". Ranges follow vLLM's own validation (vllm/sampling_params.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ParamsError

Group = Literal["sampling", "output", "guided", "advanced"]
GROUPS: tuple[Group, ...] = ("sampling", "output", "guided", "advanced")
GUIDED_KINDS = ("guided_json", "guided_regex", "guided_choice", "guided_grammar")


@dataclass(frozen=True)
class ParamSpec:
    """What panels, sweeps and docs need to know about one parameter."""

    name: str
    kind: str  # float | int | bool | str | json | list[int] | list[str] | str|list[str]
    group: Group
    help_es: str
    help_en: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    ui_min: float | None = None  # slider range, where the useful values are
    ui_max: float | None = None
    step: float | None = None
    server_default: Any = None  # what vLLM does when the field is not sent
    choices: tuple[str, ...] | None = None

    def help(self, lang: str = "es") -> str:
        """The help text in Spanish ("es") or English ("en")."""
        return self.help_es if lang == "es" else self.help_en

    @property
    def numeric(self) -> bool:
        return self.kind in ("float", "int")


def _p(
    group: Group,
    kind: str,
    es: str,
    en: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    ui: tuple[float, float, float] | None = None,
    default: Any = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """Declare one field: pydantic does type and range checks, the rest is metadata."""
    meta = dict(group=group, kind=kind, es=es, en=en, ui=ui, server_default=default, choices=choices)
    return Field(default=None, ge=ge, gt=gt, le=le, description=en, json_schema_extra={"gs": meta})


JSONDict = dict[str, Any]


class Params(BaseModel):
    """Generation parameters of one Chat Completions request (immutable, validated).

    >>> p = Params(temperature=0.7, top_k=20, max_tokens=128)
    >>> p.replace(guided_choice=["sí", "no"]).to_request()["guided_choice"]
    ['sí', 'no']
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=False)

    # --- sampling ---------------------------------------------------------
    temperature: float | None = _p(
        "sampling", "float",
        "Temperatura: valores altos dan salidas más variadas; 0 elige siempre el token más probable.",
        "Temperature: higher values give more varied outputs; 0 always picks the most likely token.",
        ge=0, ui=(0.0, 2.0, 0.05), default=1.0)
    top_p: float | None = _p(
        "sampling", "float",
        "Top-p (núcleo): solo se consideran los tokens más probables cuya probabilidad acumulada llega a p.",
        "Top-p (nucleus): only the most likely tokens whose cumulative probability reaches p are kept.",
        gt=0, le=1, ui=(0.05, 1.0, 0.05), default=1.0)
    top_k: int | None = _p(
        "sampling", "int",
        "Limita la selección al top-k tokens más probables (0 o -1: sin límite).",
        "Limits the choice to the k most likely tokens (0 or -1: no limit).",
        ge=-1, ui=(-1, 200, 1), default=-1)
    min_p: float | None = _p(
        "sampling", "float",
        "Probabilidad mínima, relativa a la del token más probable, para que un token pueda elegirse.",
        "Minimum probability, relative to the most likely token's, for a token to be eligible.",
        ge=0, le=1, ui=(0.0, 1.0, 0.01), default=0.0)
    repetition_penalty: float | None = _p(
        "sampling", "float",
        "Penaliza la repetición de tokens (del prompt y de la salida); 1 = sin penalización.",
        "Penalises repeating tokens (from the prompt and the output); 1 = no penalty.",
        gt=0, ui=(0.5, 2.0, 0.05), default=1.0)
    presence_penalty: float | None = _p(
        "sampling", "float",
        "Penaliza los tokens que ya aparecieron en la salida, una vez.",
        "Penalises tokens that already appeared in the output, once.",
        ge=-2, le=2, ui=(-2.0, 2.0, 0.1), default=0.0)
    frequency_penalty: float | None = _p(
        "sampling", "float",
        "Penaliza los tokens según cuántas veces aparecieron en la salida.",
        "Penalises tokens by how often they appeared in the output.",
        ge=-2, le=2, ui=(-2.0, 2.0, 0.1), default=0.0)
    seed: int | None = _p(
        "sampling", "int",
        "Semilla aleatoria: la misma semilla y la misma petición dan la misma salida (-1: ninguna).",
        "Random seed: the same seed and request give the same output (-1: none).",
        ge=-1, ui=(-1, 10_000, 1), default=None)
    n: int | None = _p(
        "sampling", "int",
        "Cantidad de respuestas a generar para el mismo mensaje.",
        "Number of answers to generate for the same message.",
        ge=1, ui=(1, 8, 1), default=1)
    use_beam_search: bool | None = _p(
        "sampling", "bool",
        "Usa búsqueda por haces para la generación.",
        "Use beam search (n is the beam width).", default=False)
    length_penalty: float | None = _p(
        "sampling", "float",
        "Penaliza o favorece secuencias largas (solo con búsqueda por haces).",
        "Penalises or favours long sequences (beam search only).",
        ui=(-2.0, 2.0, 0.1), default=1.0)
    logit_bias: dict[int, float] | None = _p(
        "sampling", "json",
        "Suma un sesgo al logit de tokens concretos: {id_de_token: sesgo} (entre -100 y 100).",
        "Adds a bias to the logit of given tokens: {token_id: bias} (clamped to -100..100).")
    allowed_token_ids: list[int] | None = _p(
        "sampling", "list[int]",
        "Solo permite estos tokens en la generación.",
        "Only these token ids may be generated.")

    # --- output and stopping ---------------------------------------------
    max_tokens: int | None = _p(
        "output", "int",
        "Máximo de tokens a generar.",
        "Maximum number of tokens to generate.",
        ge=1, ui=(1, 2048, 1), default=None)
    min_tokens: int | None = _p(
        "output", "int",
        "Mínimo de tokens a generar.",
        "Minimum number of tokens to generate (end-of-sequence and stop tokens are blocked until then).",
        ge=0, ui=(0, 512, 1), default=0)
    stop: Union[str, list[str], None] = _p(
        "output", "str|list[str]",
        "Texto(s) donde se detiene la generación.",
        "String(s) that stop the generation.")
    stop_token_ids: list[int] | None = _p(
        "output", "list[int]",
        "IDs de tokens donde detener la generación.",
        "Token ids that stop the generation.")
    include_stop_str_in_output: bool | None = _p(
        "output", "bool",
        "Incluye el string de parada en la salida.",
        "Include the stop string in the output.", default=False)
    ignore_eos: bool | None = _p(
        "output", "bool",
        "Ignora el token de fin de secuencia.",
        "Ignore the end-of-sequence token and keep generating.", default=False)
    skip_special_tokens: bool | None = _p(
        "output", "bool",
        "Omite tokens especiales en la salida.",
        "Leave special tokens out of the output text.", default=True)
    spaces_between_special_tokens: bool | None = _p(
        "output", "bool",
        "Añade espacios entre tokens especiales.",
        "Put spaces between special tokens in the output text.", default=True)
    logprobs: bool | None = _p(
        "output", "bool",
        "Devuelve la log-probabilidad de cada token generado.",
        "Return the log-probability of each generated token.", default=False)
    top_logprobs: int | None = _p(
        "output", "int",
        "Cuántas alternativas más probables devolver por token (0 a 20; requiere logprobs).",
        "How many most likely alternatives to return per token (0 to 20; needs logprobs).",
        ge=0, le=20, ui=(0, 20, 1), default=0)
    prompt_logprobs: int | None = _p(
        "output", "int",
        "Devuelve logprobs de los tokens del prompt.",
        "Return the logprobs of the prompt tokens (with this many alternatives each).",
        ge=0, le=20, ui=(0, 20, 1), default=None)
    return_tokens_as_token_ids: bool | None = _p(
        "output", "bool",
        "Si se usa con logprobs, representa tokens como token_id:{token_id}.",
        "With logprobs, show tokens as 'token_id:{id}'.", default=False)
    stream: bool | None = _p(
        "output", "bool",
        "Envía la respuesta token a token (eventos SSE).",
        "Stream the answer token by token (server-sent events).", default=False)

    # --- guided decoding --------------------------------------------------
    guided_json: Union[JSONDict, str, None] = _p(
        "guided", "json",
        "Fuerza la salida a seguir un esquema JSON.",
        "Force the output to follow a JSON schema.")
    guided_regex: str | None = _p(
        "guided", "str",
        "Fuerza la salida a seguir un patrón regex.",
        "Force the output to match a regular expression.")
    guided_choice: list[str] | None = _p(
        "guided", "list[str]",
        "La salida será exactamente una de las opciones.",
        "The output will be exactly one of the options.")
    guided_grammar: str | None = _p(
        "guided", "str",
        "Fuerza la salida a seguir una gramática libre de contexto.",
        "Force the output to follow a context-free grammar (GBNF or Lark).")
    response_format: JSONDict | None = _p(
        "guided", "json",
        "Especifica el formato de salida ({'type': 'json_object'}, {'type': 'json_schema'} o {'type': 'text'}).",
        "Output format: {'type': 'json_object'}, {'type': 'json_schema', 'json_schema': {...}} or {'type': 'text'}.")
    guided_decoding_backend: str | None = _p(
        "guided", "str",
        "Backend de decodificación guiada ('outlines' o 'lm-format-enforcer').",
        "Guided decoding engine to ask the server for ('outlines', 'lm-format-enforcer', 'xgrammar', 'guidance').")
    guided_whitespace_pattern: str | None = _p(
        "guided", "str",
        "Patrón de espacios para decodificación guiada.",
        "Whitespace pattern allowed between JSON tokens in guided decoding.")

    # --- advanced ---------------------------------------------------------
    model: str | None = _p(
        "advanced", "str",
        "Modelo a usar (por defecto, el del backend).",
        "Model to use (default: the backend's).")
    chat_template_kwargs: JSONDict | None = _p(
        "advanced", "json",
        "Argumentos para la plantilla de chat, p. ej. {'enable_thinking': False} apaga el razonamiento de Qwen3.",
        "Chat template arguments, e.g. {'enable_thinking': False} turns Qwen3's thinking off.")
    add_generation_prompt: bool | None = _p(
        "advanced", "bool",
        "Agrega al prompt el inicio del turno del asistente (lo normal); apagalo para continuar un mensaje final.",
        "Append the start of the assistant's turn to the prompt (the usual); off to continue a final message.",
        default=True)
    continue_final_message: bool | None = _p(
        "advanced", "bool",
        "Continúa el último mensaje (del asistente) en vez de empezar uno nuevo; requiere add_generation_prompt=False.",
        "Continue the last (assistant) message instead of starting a new one; needs add_generation_prompt=False.",
        default=False)
    add_special_tokens: bool | None = _p(
        "advanced", "bool",
        "Añade tokens especiales al prompt.",
        "Add special tokens (such as BOS) to the prompt on top of the chat template's.", default=False)
    truncate_prompt_tokens: int | None = _p(
        "advanced", "int",
        "Trunca el prompt a este número de tokens (se conservan los últimos).",
        "Truncate the prompt to this many tokens (the last ones are kept).",
        ge=1, ui=(1, 4096, 1), default=None)
    priority: int | None = _p(
        "advanced", "int",
        "Prioridad de la petición (solo para modelos que lo soportan).",
        "Request priority (only where the server schedules by priority).", default=0)
    user: str | None = _p(
        "advanced", "str",
        "Quién envía la petición (el campo `user` de OpenAI); en una clase sin claves, el nombre del alumno.",
        "Who sends the request (OpenAI's `user` field); in a class without keys, the student's name.")
    logits_processors: list[Any] | None = _p(
        "advanced", "json",
        "Lista de procesadores de logits a aplicar durante el muestreo.",
        "Logits processors to apply during sampling (names known to the server).")
    tools: list[JSONDict] | None = _p(
        "advanced", "json",
        "Herramientas (funciones) que el modelo puede llamar: [{'type': 'function', 'function': {'name': ..., "
        "'parameters': {...}}}]; la plantilla de chat las muestra al modelo.",
        "Tools (functions) the model may call: [{'type': 'function', 'function': {'name': ..., "
        "'parameters': {...}}}]; the chat template shows them to the model.")
    tool_choice: Union[str, JSONDict, None] = _p(
        "advanced", "json",
        "Si el modelo debe llamar una herramienta: 'none', 'auto', 'required' o "
        "{'type': 'function', 'function': {'name': ...}}.",
        "Whether the model must call a tool: 'none', 'auto', 'required' or "
        "{'type': 'function', 'function': {'name': ...}} (the last two constrain the output).")
    extra_body: JSONDict | None = _p(
        "advanced", "json",
        "Campos extra que se envían tal cual en la petición.",
        "Extra fields sent verbatim in the request body.")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _params_error(exc, data) from None

    # --- cross-field rules (vLLM's), checked after the per-field ones ---------
    @model_validator(mode="after")
    def _check(self) -> Params:
        _check_combinations(self)
        return self

    # --- the public surface -----------------------------------------------
    @classmethod
    def specs(cls) -> tuple[ParamSpec, ...]:
        """Metadata of every parameter, in declaration order."""
        return _specs()

    @classmethod
    def spec(cls, name: str) -> ParamSpec:
        """Metadata of one parameter; ParamsError for an unknown name."""
        for s in _specs():
            if s.name == name:
                return s
        raise ParamsError(f"unknown parameter {name!r}; known: {', '.join(cls.names())}", field=name)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Names of every parameter, in declaration order."""
        return tuple(s.name for s in _specs())

    def replace(self, **changes: Any) -> Params:
        """A copy with some fields changed (validated); a value of None unsets the field."""
        data = self.set_fields()
        data.update(changes)
        return Params(**{k: v for k, v in data.items() if v is not None})

    def set_fields(self) -> dict[str, Any]:
        """The fields the user set, as Python values."""
        return {k: getattr(self, k) for k in self.model_fields_set if getattr(self, k) is not None}

    def to_request(self, spelling: Literal["guided", "structured_outputs"] = "guided") -> dict[str, Any]:
        """JSON-ready request fields: only what is set; extra_body merged in verbatim.

        ``spelling="structured_outputs"`` writes the guided constraint the way
        vLLM >= 0.11 expects it (guided_* were removed in 0.12).
        """
        out: dict[str, Any] = {}
        for name in self.names():
            value = getattr(self, name)
            if value is None or name == "extra_body":
                continue
            if name == "logit_bias":
                value = {str(k): v for k, v in value.items()}
            out[name] = value
        if spelling == "structured_outputs":
            out = _to_structured_outputs(out)
        out.update(self.extra_body or {})
        return out

    @classmethod
    def from_request(cls, body: dict[str, Any]) -> Params:
        """Params from a request body; messages and stream_options are left out, unknown keys go to extra_body."""
        known = set(cls.names())
        data = {k: v for k, v in body.items() if k in known and v is not None}
        extra = {k: v for k, v in body.items() if k not in known and k not in _NOT_PARAMS}
        if "structured_outputs" in extra:
            data.update(_from_structured_outputs(extra.pop("structured_outputs")))
        if extra:
            data["extra_body"] = {**extra, **(data.get("extra_body") or {})}
        return cls(**data)

    def to_row(self) -> dict[str, Any]:
        """One column per parameter for DataFrames; lists and dicts as JSON text."""
        row: dict[str, Any] = {}
        for name in self.names():
            v = getattr(self, name)
            row[name] = json.dumps(v, ensure_ascii=False, sort_keys=True) if isinstance(v, (dict, list)) else v
        return row

    @property
    def guided_kind(self) -> str | None:
        """Which constraint is active: guided_json/regex/choice/grammar, json_object, or None."""
        for k in GUIDED_KINDS:
            if getattr(self, k) is not None:
                return k
        rf = self.response_format or {}
        if rf.get("type") == "json_schema":
            return "guided_json"
        if rf.get("type") == "json_object":
            return "json_object"
        return None

    @property
    def enable_thinking(self) -> bool | None:
        """Qwen3's thinking switch from chat_template_kwargs, None when not set."""
        return (self.chat_template_kwargs or {}).get("enable_thinking")

    def __hash__(self) -> int:
        return hash(self.cache_key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Params) and self.cache_key() == other.cache_key()

    def cache_key(self) -> str:
        """Canonical JSON of what is set: equal requests give equal keys."""
        return json.dumps(self.to_request(), sort_keys=True, ensure_ascii=False, default=str)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.names() if k in self.set_fields())
        return f"Params({inner})"

    __str__ = __repr__


_NOT_PARAMS = {"messages", "stream_options", "prompt"}


@cache
def _specs() -> tuple[ParamSpec, ...]:
    specs = []
    for name, f in Params.model_fields.items():
        gs = f.json_schema_extra["gs"]  # type: ignore[index]
        lo = hi = None
        excl = False
        for m in f.metadata:
            if getattr(m, "ge", None) is not None:
                lo = m.ge
            if getattr(m, "gt", None) is not None:
                lo, excl = m.gt, True
            if getattr(m, "le", None) is not None:
                hi = m.le
        ui = gs["ui"] or (None, None, None)
        specs.append(ParamSpec(
            name=name, kind=gs["kind"], group=gs["group"], help_es=gs["es"], help_en=gs["en"],
            minimum=lo, maximum=hi, exclusive_minimum=excl,
            ui_min=ui[0], ui_max=ui[1], step=ui[2],
            server_default=gs["server_default"], choices=gs["choices"]))
    return tuple(specs)


def _allowed(name: str) -> str:
    s = Params.spec(name)
    parts = [s.kind]
    if s.minimum is not None:
        parts.append(f"{'>' if s.exclusive_minimum else '>='} {s.minimum:g}")
    if s.maximum is not None:
        parts.append(f"<= {s.maximum:g}")
    return " ".join(parts)


#: pydantic error types that mean "outside the range" (the others mean "not of this type")
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def shown(value: Any, limit: int = 80) -> str:
    """A value the way the user wrote it: text as is (no repr, no doubled backslashes), the rest as JSON."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool) or value is None:
        text = json.dumps(value)
    elif isinstance(value, float):
        text = f"{value:g}" if value == value and abs(value) != float("inf") else str(value)
    elif isinstance(value, int):
        text = str(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _params_error(exc: ValidationError, data: dict[str, Any]) -> ParamsError:
    err = exc.errors()[0]
    loc = [str(x) for x in err.get("loc", ())]
    field = loc[0] if loc else None
    if err["type"] == "extra_forbidden":
        from difflib import get_close_matches

        close = get_close_matches(field or "", Params.names(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return ParamsError(f"unknown parameter {field!r}{hint}", field=field, value=data.get(field or ""),
                           key="unknown", close=close[0] if close else None)
    if err["type"] == "value_error" and not field:
        # raised by _check_combinations: its ParamsError is the cause
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, ParamsError):
            return cause
        return ParamsError(err["msg"].removeprefix("Value error, "))
    value = data.get(field) if field else None
    msg = err["msg"].removeprefix("Value error, ")
    key = "range" if err["type"] in _RANGE_ERRORS else "type"
    return ParamsError(f"{field}={shown(value)} is not allowed: {msg} (allowed: {_allowed(field)})",
                       field=field, value=value, key=key, typed=shown(value))


def _fail(field: str, value: Any, why: str, key: str | None = None, show: bool = True, **ctx: Any) -> None:
    head = f"{field}={shown(value)}" if show else field
    raise ParamsError(f"{head} is not allowed: {why}", field=field, value=value, key=key,
                      typed=shown(value), **ctx)


def _check_combinations(p: Params) -> None:
    if p.max_tokens is not None and p.min_tokens is not None and p.min_tokens > p.max_tokens:
        _fail("min_tokens", p.min_tokens, f"must be <= max_tokens ({p.max_tokens})", "min_gt_max",
              max_tokens=p.max_tokens)
    if p.top_logprobs and not p.logprobs:
        _fail("top_logprobs", p.top_logprobs, "needs logprobs=True", "needs_logprobs")
    if p.prompt_logprobs is not None and p.stream:
        _fail("prompt_logprobs", p.prompt_logprobs, "cannot be combined with stream=True", "no_stream")
    if p.allowed_token_ids is not None and len(p.allowed_token_ids) == 0:
        _fail("allowed_token_ids", [], "must not be empty", "empty_ids")
    for name in ("allowed_token_ids", "stop_token_ids"):
        ids = getattr(p, name) or []
        if any(i < 0 for i in ids):
            _fail(name, ids, "token ids must be >= 0", "negative_ids")
    if isinstance(p.stop, list) and any(s == "" for s in p.stop) or p.stop == "":
        _fail("stop", p.stop, "stop strings must not be empty", "empty_stop")
    if p.continue_final_message and p.add_generation_prompt is not False:
        # vLLM refuses both at once, and its add_generation_prompt defaults to True
        _fail("continue_final_message", True, "needs add_generation_prompt=False (vLLM refuses both)", "continue")
    if p.use_beam_search and p.stream:
        _fail("use_beam_search", True, "cannot be combined with stream=True", "no_stream")
    _check_guided(p)
    _check_tools(p)


def _check_tools(p: Params) -> None:
    """vLLM's tool rules: function tools with names; a forced choice names a given tool, alone."""
    for i, t in enumerate(p.tools or ()):
        fn = t.get("function") if isinstance(t, dict) else None
        if t.get("type", "function") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str) \
                or not fn["name"]:
            _fail("tools", p.tools, f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ..., ...}}}}")
        params = fn.get("parameters")
        if params is not None:
            _check_schema("tools", params)
    tc = p.tool_choice
    if tc is None:
        return
    names = [t["function"]["name"] for t in p.tools or ()]
    if isinstance(tc, str):
        if tc not in ("none", "auto", "required"):
            _fail("tool_choice", tc, "must be 'none', 'auto', 'required' or {'type': 'function', "
                                     "'function': {'name': ...}}")
        if tc != "none" and not names:
            _fail("tool_choice", tc, "needs tools (vLLM: when using `tool_choice`, `tools` must be set)")
    else:
        fn = tc.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if tc.get("type", "function") != "function" or not isinstance(name, str):
            _fail("tool_choice", tc, "a named choice is {'type': 'function', 'function': {'name': ...}}")
        if name not in names:
            _fail("tool_choice", tc, f"tool {name!r} is not in tools ({', '.join(names) or 'none given'})")
    if (tc == "required" or isinstance(tc, dict)) and p.guided_kind is not None:
        _fail("tool_choice", tc, f"a forced tool call constrains the output; {p.guided_kind} cannot be added")


def _check_guided(p: Params) -> None:
    active = [k for k in GUIDED_KINDS if getattr(p, k) is not None]
    rf = p.response_format
    if rf is not None:
        rtype = rf.get("type")
        if rtype not in ("text", "json_object", "json_schema"):
            _fail("response_format", rf, "type must be 'text', 'json_object' or 'json_schema'", "rf_type")
        if rtype == "json_schema":
            js = rf.get("json_schema")
            if not isinstance(js, dict) or "schema" not in js and "json_schema" not in js:
                _fail("response_format", rf, "json_schema needs {'name': ..., 'schema': {...}}", "rf_schema",
                      show=False)
            _check_schema("response_format", js.get("schema", js.get("json_schema")))
        if rtype in ("json_object", "json_schema"):
            active.append("response_format")
    if len(active) > 1:
        _fail(active[1], getattr(p, active[1]),
              f"only one guided constraint at a time; {' and '.join(active)} are both set", "one_guided",
              show=False, others=list(active))
    if p.guided_json is not None:
        schema = p.guided_json
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except json.JSONDecodeError as e:
                _fail("guided_json", p.guided_json, f"not valid JSON: {e}", "json_invalid", show=False,
                      line=e.lineno, col=e.colno)
        _check_schema("guided_json", schema)
    if p.guided_regex is not None:
        _check_regex("guided_regex", p.guided_regex)
    if p.guided_choice is not None:
        if not p.guided_choice:
            _fail("guided_choice", [], "needs at least one option", "choice_empty")
        if any(not isinstance(c, str) or c == "" for c in p.guided_choice):
            _fail("guided_choice", p.guided_choice, "options must be non-empty strings", "choice_bad")
    if p.guided_grammar is not None and not p.guided_grammar.strip():
        _fail("guided_grammar", p.guided_grammar, "the grammar is empty", "grammar_empty", show=False)
    if p.guided_whitespace_pattern is not None:
        _check_regex("guided_whitespace_pattern", p.guided_whitespace_pattern)


def _check_regex(field: str, pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as e:
        _fail(field, pattern, f"the regex does not compile: {e}", "regex", reason=e.msg, pos=e.pos)


def _check_schema(field: str, schema: Any) -> None:
    import jsonschema

    if not isinstance(schema, dict):
        _fail(field, schema, "a JSON schema must be an object", "schema_object", show=False)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        where = "/".join(str(x) for x in e.path) or "(root)"
        _fail(field, schema, f"invalid JSON schema at {where}: {e.message}", "schema_invalid", show=False,
              where=where, bad=shown(e.instance, 60))


def schema_of(p: Params) -> dict[str, Any] | None:
    """The JSON schema of a guided_json or json_schema response_format, parsed."""
    if p.guided_json is not None:
        return json.loads(p.guided_json) if isinstance(p.guided_json, str) else p.guided_json
    rf = p.response_format or {}
    if rf.get("type") == "json_schema":
        js = rf["json_schema"]
        return js.get("schema", js.get("json_schema"))
    return None


_SO_KEYS = {"guided_json": "json", "guided_regex": "regex", "guided_choice": "choice",
            "guided_grammar": "grammar", "guided_whitespace_pattern": "whitespace_pattern"}


def _to_structured_outputs(req: dict[str, Any]) -> dict[str, Any]:
    so = {_SO_KEYS[k]: req.pop(k) for k in list(req) if k in _SO_KEYS}
    req.pop("guided_decoding_backend", None)  # ignored from vLLM 0.11 on
    if so:
        req["structured_outputs"] = so
    return req


def _from_structured_outputs(so: dict[str, Any]) -> dict[str, Any]:
    back = {v: k for k, v in _SO_KEYS.items()}
    out = {back[k]: v for k, v in so.items() if k in back}
    if so.get("json_object"):
        out["response_format"] = {"type": "json_object"}
    unknown = set(so) - set(back) - {"json_object"}
    if unknown:
        raise ParamsError(f"structured_outputs keys {sorted(unknown)} are not supported; "
                          f"known: {sorted(back) + ['json_object']}", field="structured_outputs")
    return out
