"""Sweeps past one machine: export a sweep as a batch file, run it, import the results (gsexplore.batch).

The end-to-end test runs the same seeded sweep online through `gsexplore serve` and as a
batch file through `gsexplore batch run`, both on the demo model, and compares the rows.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from pathlib import Path

import httpx
import pytest

from gsexplore.backends.remote import RemoteBackend
from gsexplore.batch import load_batch
from gsexplore.cli import main as cli
from gsexplore.errors import ParamsError
from gsexplore.params import Params
from gsexplore.store import Store, load, read_meta
from gsexplore.sweep import SweepFailed, plan, sweep
from gsexplore.sweep.api import done_keys
from gsexplore.sweep.outcome import outcome_line


def _serve(backends, **kw):
    """`gsexplore serve` in this process on 127.0.0.1 (the one place that knows where the server lives)."""
    from gsexplore.serve import ServerThread, create_app

    return ServerThread(create_app(backends, **kw))


PROMPTS = [{"id": "cap-cl", "prompt": "¿Cuál es la capital de Chile?", "expected": "Santiago"},
           {"id": "color", "prompt": "Name a colour."}]
GRID = {"temperature": [0.5, 1.0, 1.5]}


@pytest.fixture(scope="module")
def demo_local():
    """The demo model as `--model demo --n-ctx 2048` loads it (its default system prompt included)."""
    from gsexplore.backends.local import LocalBackend

    b = LocalBackend("demo", n_ctx=2048)
    yield b
    b.close()


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_exported_batch_run_locally_and_imported_matches_the_online_sweep(demo_local, tmp_path):
    base = Params(max_tokens=8)
    with _serve([demo_local], served_model_names=["demo"]) as srv:
        remote = RemoteBackend(srv.url, model="demo", max_retries=0)
        online = sweep(remote, PROMPTS, grid=GRID, repeats=4, base=base, store=str(tmp_path / "online.parquet"),
                       progress=False)
        remote.close()
    assert len(online) == 24 and online.error_type.isna().all()

    # export: one line per (cell, repeat), the body RemoteBackend sends, custom_id = cell id + repeat
    sp = plan(remote, PROMPTS, grid=GRID, repeats=4, base=base)
    requests = tmp_path / "requests.jsonl"
    e = sp.to_batch(requests, progress=False)
    lines = _lines(requests)
    assert e.n_requests == len(lines) == 24 and Path(e.plan).name == "requests.plan.jsonl"
    by_id = {x["custom_id"]: x for x in lines}
    for cell in sp.cells:
        line = by_id[f"{cell.cell_id}-{cell.repeat}"]
        assert line["method"] == "POST" and line["url"] == "/v1/chat/completions"
        assert line["body"] == remote.request_body(cell.prompt.messages, cell.params)
        assert line["body"]["seed"] == cell.params.seed

    # run on the local engine with vLLM's interface, then again: nothing left to run
    results = tmp_path / "results.jsonl"
    argv = ["batch", "run", "-i", str(requests), "-o", str(results), "--model", "demo", "--n-ctx", "2048",
            "--no-progress"]
    assert cli(argv) == 0
    out = _lines(results)
    assert len(out) == 24 and {x["custom_id"] for x in out} == set(by_id)
    assert all(set(x) == {"id", "custom_id", "response", "error"} and x["response"]["status_code"] == 200
               and x["response"]["body"]["object"] == "chat.completion" for x in out)
    assert cli(argv) == 0 and len(_lines(results)) == 24

    # import: the same columns, and the same answers for the same seeded requests
    store = tmp_path / "batch.parquet"
    df = load_batch(results, store=store, plan=requests, progress=False)
    assert list(df.columns) == list(online.columns) and len(df) == 24
    key = ["cell_id", "repeat", "seed", "choice"]
    both = online.merge(df, on=key, suffixes=("_online", "_batch"))
    assert len(both) == 24 and both.seed.notna().all()
    for col in ["content", "finish_reason", "completion_tokens", "prompt_tokens", "temperature", "prompt_id",
                "backend", "model", "expected", "sweep_id"]:
        assert both[f"{col}_online"].tolist() == both[f"{col}_batch"].tolist(), col
    assert df.attrs["outcome"] == {"total": 24, "ok": 24, "failed": 0, "by_type": {}, "first_error": None}

    # provenance: the results file, its sha256, the engine and model its lines report
    rec = read_meta(store)[sp.sweep_id]["batches"][0]
    assert rec["file"] == "results.jsonl" and rec["sha256"] == hashlib.sha256(results.read_bytes()).hexdigest()
    assert rec["engine"] == "gsexplore" and rec["models"] == {"demo": 24} and rec["imported"] == 24

    # importing twice adds nothing; the sweep run afterwards finds every request done
    again = load_batch(results, store=store, plan=requests, progress=False)
    assert again.attrs["batch"]["imported"] == 0 and again.attrs["batch"]["skipped"] == 24
    assert len(load(store, latest=False)) == 24
    assert plan(remote, PROMPTS, grid=GRID, repeats=4, base=base, done=done_keys(Store(store))).n_todo == 0


def test_batch_run_writes_refused_requests_as_failed_lines(demo_local, tmp_path):
    from gsexplore.batch import run_file

    body = {"model": "demo", "messages": [{"role": "user", "content": "hola"}], "max_tokens": 2}
    bad = [{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {**body, "model": "nope"}},
           {"custom_id": "b", "method": "POST", "url": "/v1/embeddings", "body": body},
           {"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": {**body, "top_p": 7}},
           {"custom_id": "d", "method": "POST", "url": "/v1/chat/completions", "body": body}]
    requests = tmp_path / "r.jsonl"
    requests.write_text("".join(json.dumps(x) + "\n" for x in bad), encoding="utf-8")
    counts = run_file(requests, tmp_path / "o.jsonl", demo_local, served_names=["demo"], progress=False)
    assert counts == {"ran": 4, "failed": 3, "skipped": 0}
    out = {x["custom_id"]: x for x in _lines(tmp_path / "o.jsonl")}
    assert out["a"]["response"]["status_code"] == 404 and "`nope` does not exist" in out["a"]["error"]["error"]["message"]
    assert out["b"]["response"]["status_code"] == 400 and out["b"]["response"]["body"] is None
    assert out["c"]["response"]["status_code"] == 400 and out["c"]["error"]["error"]["param"] == "top_p"
    assert out["d"]["response"]["status_code"] == 200 and out["d"]["response"]["body"]["choices"]


# --------------------------------------------------------------------------
# results in vLLM's and OpenAI's exact output formats (no model needed)


def _vllm_body(model: str, content: str) -> dict:
    """A ChatCompletionResponse as vLLM serialises it (vllm/entrypoints/openai/protocol.py)."""
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": 1765000000,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "reasoning_content": None, "content": content,
                                                 "tool_calls": []},
                         "logprobs": None, "finish_reason": "stop", "stop_reason": None}],
            "usage": {"prompt_tokens": 12, "total_tokens": 14, "completion_tokens": 2,
                      "prompt_tokens_details": None},
            "prompt_logprobs": None, "kv_transfer_params": None}


def _vllm_line(cid: str, body: dict | None = None, status: int = 200, error=None) -> dict:
    """A BatchRequestOutput line (id, custom_id, response {status_code, request_id, body}, error)."""
    return {"id": f"vllm-{uuid.uuid4().hex}", "custom_id": cid,
            "response": {"status_code": status, "request_id": f"vllm-batch-{uuid.uuid4().hex}", "body": body},
            "error": error}


@pytest.fixture()
def exported(tmp_path):
    remote = RemoteBackend("http://127.0.0.1:9/v1", model="Qwen/Qwen3-1.7B")  # never contacted
    sp = plan(remote, ["¿Llueve?", "¿Hace frío?"], grid={"temperature": [0.2, 0.9]}, repeats=2,
              base=Params(max_tokens=5, guided_choice=["sí", "no"]))
    requests = tmp_path / "requests.jsonl"
    sp.to_batch(requests, spelling="structured_outputs", progress=False)
    return sp, requests


def test_a_vllm_results_file_imports_with_errors_and_unknown_ids(exported, tmp_path):
    sp, requests = exported
    lines = _lines(requests)
    assert all(x["body"]["structured_outputs"] == {"choice": ["sí", "no"]} for x in lines)
    ids = [x["custom_id"] for x in lines]
    out = [_vllm_line(cid, _vllm_body("Qwen/Qwen3-1.7B", "sí" if i % 2 else "quizás")) for i, cid in enumerate(ids[:5])]
    out.append(_vllm_line(ids[5], status=400, error={"error": {"message": "max_tokens is too large", "type":
                                                               "BadRequestError", "param": "max_tokens", "code": 400}}))
    out.append(_vllm_line(ids[6], status=400, error="Request must not be sent in stream mode"))
    out.append({"id": "batch_req_1", "custom_id": ids[7], "response": None,  # OpenAI's error file
                "error": {"code": "batch_expired", "message": "This request could not be executed before the "
                                                              "completion window expired."}})
    out.append(_vllm_line("not-from-this-sweep-0", _vllm_body("Qwen/Qwen3-1.7B", "x")))
    random.Random(0).shuffle(out)  # output files are in any order
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(x) + "\n" for x in out), encoding="utf-8")

    with pytest.warns(UserWarning, match="not-from-this-sweep-0"):
        df = load_batch(results, store=tmp_path / "s.parquet", plan=requests, progress=False)
    assert len(df) == 8 and set(df.cell_id) == {c.cell_id for c in sp.cells}
    ok = df[df.error_type.isna()]
    assert len(ok) == 5 and set(ok.model) == {"Qwen/Qwen3-1.7B"} and ok.latency_s.isna().all()
    assert (ok.guided_valid == (ok.content == "sí")).all()  # checked on import, as online
    assert ok.completion_tokens.eq(2).all() and ok.temperature.isin([0.2, 0.9]).all()
    errs = df[df.error_type.notna()].set_index(df[df.error_type.notna()].cell_id + "-"
                                                + df[df.error_type.notna()].repeat.astype(str))
    assert errs.loc[ids[5], "error_type"] == "BadRequestError"
    assert errs.loc[ids[5], "error_message"].startswith("HTTP 400: max_tokens is too large (param: max_tokens)")
    assert "stream mode" in errs.loc[ids[6], "error_message"]
    assert errs.loc[ids[7], "error_type"] == "APIError" and "batch_expired" in errs.loc[ids[7], "error_message"]
    b = df.attrs["batch"]
    assert b["unknown_custom_ids"] == ["not-from-this-sweep-0"] and b["engines"] == {"vllm": 7, "openai": 1}
    assert df.attrs["outcome"]["failed"] == 3 and df.attrs["outcome"]["first_error"]["type"] in {
        "BadRequestError", "APIError"}
    assert df.seed.notna().all() and df.seed.nunique() == 8  # every row keeps its derived seed
    # every parameter column as the sweep planned it (the plan file round-trips the Params)
    planned = sp.to_frame().merge(df, on=["cell_id", "repeat", "seed"], suffixes=("", "_imported"))
    assert len(planned) == 8
    for name in Params.names():
        if name not in ("model", "seed"):  # model: the one that answered; seed: the join key
            assert planned[name].astype(str).tolist() == planned[f"{name}_imported"].astype(str).tolist(), name


def test_a_truncated_results_file_imports_its_complete_lines_and_twice_adds_nothing(exported, tmp_path):
    sp, requests = exported
    ids = [x["custom_id"] for x in _lines(requests)]
    text = "".join(json.dumps(_vllm_line(cid, _vllm_body("Qwen/Qwen3-1.7B", "no"))) + "\n" for cid in ids)
    results = tmp_path / "results.jsonl"
    results.write_text(text[: len(text) - 40], encoding="utf-8")  # a job cut short mid-line
    store = tmp_path / "s.jsonl"
    df = load_batch(results, store=store, plan=requests, progress=False)
    assert len(df) == 7 and df.attrs["batch"]["incomplete"] == 1
    results.write_text(text, encoding="utf-8")  # the job finished: only the last request is new
    df = load_batch(results, store=store, plan=requests, progress=False)
    assert len(df) == 8 and df.attrs["batch"]["imported"] == 1 and df.attrs["batch"]["skipped"] == 7
    load_batch(results, store=store, plan=requests, progress=False)
    assert len(load(store, latest=False)) == 8


def test_the_store_remembers_the_export_and_a_missing_plan_is_named(tmp_path):
    remote = RemoteBackend("http://127.0.0.1:9/v1", model="m")
    store = tmp_path / "study.parquet"
    df = sweep(remote, "hola", grid={"top_k": [5, 50]}, repeats=3, base=Params(max_tokens=4), store=store,
               to_batch=tmp_path / "req.jsonl", progress=False)
    assert len(df) == 6 and df.attrs["batch_export"]["n_requests"] == 6
    ids = [x["custom_id"] for x in _lines(tmp_path / "req.jsonl")]
    results = tmp_path / "res.jsonl"
    results.write_text("".join(json.dumps(_vllm_line(c, _vllm_body("m", "ok"))) + "\n" for c in ids))
    got = load_batch(results, store=store, progress=False)  # the plan file found through the store's meta
    assert len(got) == 6 and got.error_type.isna().all()
    with pytest.raises(ParamsError, match="plan="):
        load_batch(results, store=tmp_path / "other.parquet", progress=False)


# --------------------------------------------------------------------------
# outcome first (issue 23): the facts a panel shows, and a sweep that failed entirely


def _unauthorized(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    if body.get("temperature") == 0.5:
        return httpx.Response(200, json=_vllm_body("m", "ok"))
    return httpx.Response(401, json={"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                               "param": None, "code": "invalid_api_key"}})


def test_outcome_counts_requests_and_an_all_failed_sweep_raises_after_saving(tmp_path, monkeypatch, capsys):
    key = "sk-clave-secreta-123456"
    b = RemoteBackend("http://127.0.0.1:9/v1", api_key=key, model="m", max_retries=0,
                      async_transport=httpx.MockTransport(_unauthorized))
    df = sweep(b, "hola", grid={"temperature": [0.5, 1.0]}, repeats=2, progress=False)
    o = df.attrs["outcome"]
    assert {k: o[k] for k in ("total", "ok", "failed", "by_type")} == {
        "total": 4, "ok": 2, "failed": 2, "by_type": {"AuthenticationError": 2}}
    assert o["first_error"] == {"type": "AuthenticationError", "status": 401, "code": "invalid_api_key",
                                "message": "HTTP 401: Incorrect API key provided"}
    assert outcome_line(o, "es").startswith("2 de 4 bien, 2 con error: Clave inválida")
    assert outcome_line(o, "en").startswith("2 of 4 fine, 2 failed: Invalid key")

    store = tmp_path / "s.jsonl"
    with pytest.raises(SweepFailed, match="all 2 requests") as info:
        sweep(b, "hola", grid={"temperature": [1.0]}, repeats=2, progress=False, store=store)
    assert info.value.outcome["failed"] == 2 and info.value.outcome["ok"] == 0
    assert key not in str(info.value) and key not in json.dumps(info.value.outcome)
    assert len(load(store)) == 2 and load(store).error_type.eq("AuthenticationError").all()  # saved first
    kept = sweep(b, "hola", grid={"temperature": [1.0]}, repeats=2, progress=False, on_error="keep")
    assert kept.attrs["outcome"]["ok"] == 0 and len(kept) == 2
    # outside a notebook the outcome is a line on stdout, in the user's language
    monkeypatch.setenv("GSEXPLORE_LANG", "es")
    sweep(b, "hola", grid={"temperature": [0.5, 1.0]}, progress=True, on_error="keep")
    assert "1 de 2 bien, 1 con error: Clave inválida" in capsys.readouterr().out
    b.close()


def test_the_plan_line_is_in_the_users_language():
    sp = plan(RemoteBackend("http://127.0.0.1:9/v1", model="m"), ["a", "b"], grid={"top_k": [5, 50]}, repeats=10,
              base=Params(max_tokens=1000))
    assert "40 peticiones para correr = 2 combinaciones × 2 prompts" in sp.describe("es")
    assert "hasta 40.000 tokens generados" in sp.describe("es")
    assert "40 requests to run = 2 settings x 2 prompts" in sp.describe("en") and "<= 40,000" in sp.describe("en")
