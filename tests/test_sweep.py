"""gs.sweep: expansion and validation, end to end on the real tiny and demo models, resume after
a crash, force, error recording against a real `gsexplore serve`, and rate-limit backoff."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import gsexplore.accessor  # noqa: F401
from gsexplore.backends.base import Backend, Delta
from gsexplore.errors import APIError, ParamsError, RateLimitError
from gsexplore.params import Params
from gsexplore.prompts import load_prompts
from gsexplore.row import completion_row
from gsexplore.store import ROW_COLUMNS, load
from gsexplore.sweep import derive_seed, expand, plan, sweep

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------
# expansion and validation (no model needed)


@pytest.fixture(autouse=True)
def _english(monkeypatch):
    """These tests read the English catalogue (`gsexplore.i18n`); Spanish is the default."""
    monkeypatch.setenv("GSEXPLORE_LANG", "en")


def test_grid_is_the_cartesian_product():
    out = expand(grid={"temperature": [0, 1], "top_k": [5, 50, 100]}, base=Params(max_tokens=8))
    assert [s for s, _ in out] == [{"temperature": t, "top_k": k} for t in (0, 1) for k in (5, 50, 100)]
    assert all(p.max_tokens == 8 for _, p in out)


def test_zip_is_parallel_and_checks_lengths():
    out = expand(zip={"temperature": [0.1, 0.9], "top_p": [1.0, 0.5]})
    assert [s for s, _ in out] == [{"temperature": 0.1, "top_p": 1.0}, {"temperature": 0.9, "top_p": 0.5}]
    with pytest.raises(ParamsError, match=r"same length \(temperature: 2, top_p: 3\)"):
        expand(zip={"temperature": [0, 1], "top_p": [1, 0.9, 0.8]})
    # grid x zip
    out = expand(grid={"top_k": [5, 50]}, zip={"temperature": [0.1, 0.9], "top_p": [1.0, 0.5]})
    assert len(out) == 4


def test_samples_are_seeded_and_typed():
    spec = {"n": 30, "seed": 3, "ranges": {"temperature": (0, 2), "top_k": [5, 50, 100], "max_tokens": (8, 16),
                                            "min_p": {"loguniform": [0.01, 0.2]}}}
    a, b = expand(samples=spec), expand(samples=spec)
    assert [s for s, _ in a] == [s for s, _ in b]  # same seed, same draws
    temps = [s["temperature"] for s, _ in a]
    assert all(isinstance(t, float) and 0 <= t <= 2 for t in temps) and len(set(temps)) > 10
    assert all(s["top_k"] in (5, 50, 100) for s, _ in a)
    assert all(isinstance(s["max_tokens"], int) and 8 <= s["max_tokens"] <= 16 for s, _ in a)
    assert all(0.01 <= s["min_p"] <= 0.2 for s, _ in a)
    other = expand(samples={**spec, "seed": 4})
    assert [s for s, _ in other] != [s for s, _ in a]
    # YAML spelling: {uniform: [lo, hi]}
    u = expand(samples={"n": 3, "ranges": {"temperature": {"uniform": [0, 1]}}})
    assert len(u) == 3 and all(0 <= s["temperature"] <= 1 for s, _ in u)


def test_unknown_names_get_a_suggestion():
    with pytest.raises(ParamsError, match=r"unknown parameter 'temprature' in grid; did you mean 'temperature'"):
        expand(grid={"temprature": [0, 1]})
    with pytest.raises(ParamsError, match=r"'top_kk' in zip; did you mean 'top_k'"):
        expand(zip={"top_kk": [1]})
    with pytest.raises(ParamsError, match=r"in samples; did you mean 'min_p'"):
        expand(samples={"n": 2, "ranges": {"min_pp": (0, 1)}})
    with pytest.raises(ParamsError, match="stream"):
        expand(grid={"stream": [True]})


def test_every_invalid_combination_is_reported_before_running():
    with pytest.raises(ParamsError) as err:
        expand(grid={"temperature": [-1, 0.5, -2], "top_p": [0.5, 1.5]})
    msg = str(err.value)
    assert msg.startswith("5 invalid setting(s) of 6")  # only (0.5, 0.5) is valid
    assert "temperature=-1, top_p=0.5" in msg and "temperature=-2, top_p=1.5" in msg
    assert "temperature=0.5, top_p=1.5" in msg
    # cross-field rules too: min_tokens > max_tokens
    with pytest.raises(ParamsError, match="min_tokens"):
        expand(grid={"min_tokens": [4, 64]}, base=Params(max_tokens=16))
    with pytest.warns(UserWarning, match="1 invalid setting"):
        ok = expand(grid={"min_tokens": [4, 64]}, base=Params(max_tokens=16), on_invalid="skip")
    assert [s for s, _ in ok] == [{"min_tokens": 4}]


class Echo(Backend):
    """A backend that answers with its seed (not a model: for plan and store mechanics), as a server would."""

    name = "echo"
    model = "echo-1"
    remote = True

    def __init__(self, fail: dict[str, Any] | None = None) -> None:
        self.calls: list[Params] = []
        self.fail = fail or {}

    def _answer(self, messages, params):
        from gsexplore.completion import Completion, Usage

        self.calls.append(params)
        for k, v in self.fail.items():
            if getattr(params, k) == v:
                raise APIError("boom", status=500)
        return Completion(content=f"seed {params.seed}", finish_reason="stop", usage=Usage(3, 2, 5),
                          latency_s=0.001, backend=self.name, model=self.model, params=params,
                          messages=messages)

    def events(self, messages, params, *, streaming):
        yield Delta("done", completion=self._answer(messages, params))

    async def achat(self, messages, params=None, **kw):
        return self._answer(messages, params)


def test_plan_counts_seeds_and_ids(tmp_path):
    sp = plan(Echo(), ["hola", "chau"], grid={"temperature": [0, 1]}, repeats=3, base=Params(max_tokens=10),
              seed=5)
    assert len(sp.cells) == 12 and len(sp.todo) == 12
    assert sp.completion_tokens_max == 120
    assert sp.prompt_tokens_est > 0
    c = sp.cells[0]
    assert c.params.seed == derive_seed(c.cell_id, 0, 5)
    assert len({x.params.seed for x in sp.cells}) == 12  # each repeat its own seed
    assert len({x.cell_id for x in sp.cells}) == 4  # repeats share the cell id
    again = plan(Echo(), ["hola", "chau"], grid={"temperature": [0, 1]}, repeats=3, base=Params(max_tokens=10),
                 seed=5)
    assert [x.cell_id for x in again.cells] == [x.cell_id for x in sp.cells] and again.sweep_id == sp.sweep_id
    # a seed the user fixed is kept for every repeat
    fixed = plan(Echo(), "hola", grid={"temperature": [0, 1]}, repeats=2, base=Params(seed=42))
    assert {x.params.seed for x in fixed.cells} == {42}
    df = sweep(Echo(), "hola", grid={"top_k": [5, 50]}, repeats=2, dry_run=True, progress=False)
    assert len(df) == 4 and df["content"].isna().all() and df.attrs["plan"]["requests"] == 4


def test_a_playground_row_and_a_sweep_row_of_one_completion_agree():
    from gsexplore.completion import Completion, Usage
    from gsexplore.row import OUTCOME, ROW_COLUMNS
    from gsexplore.sweep.rows import base_row, rows_ok

    sp = plan(Echo(), "hola", grid={"temperature": [0.7]}, base=Params(max_tokens=10, top_k=5), seed=1)
    cell = sp.cells[0]
    lp = [{"token": "a", "logprob": -0.5, "top_logprobs": [{"token": "a", "logprob": -0.5},
                                                           {"token": "b", "logprob": -1.2}]}]
    c = Completion(content="hola", reasoning_content="pienso", finish_reason="stop", stop_reason=7,
                   usage=Usage(3, 2, 5, 1), logprobs=lp, latency_s=0.5, ttft_s=0.1, backend="echo",
                   model="echo-1", params=cell.params, messages=cell.prompt.messages, index=0,
                   info={"guided_semantics": "xgrammar"})
    playground = completion_row(c)
    swept = rows_ok(base_row(sp.sweep_id, cell), cell.params, c, None, "run")[0]
    shared = [k for k in playground if k in swept]
    assert set(OUTCOME) <= set(shared) and "temperature" in shared and "top_k" in shared
    assert {k: playground[k] for k in shared} == {k: swept[k] for k in shared}
    assert playground["stop_reason"] == "7" and playground["mean_entropy"] is not None
    assert set(swept) <= set(ROW_COLUMNS)


def test_prompts_in_every_shape():
    ps = load_prompts(["hola", [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                       {"id": "x", "prompt": "p", "expected": ["a", "b"]}])
    assert [p.id for p in ps] == ["p00", "p01", "x"]
    assert ps[1].text == "u" and ps[2].expected_text() == '["a", "b"]'
    caps = load_prompts("capitales_es")
    assert len(caps) >= 10 and all(p.expected for p in caps)
    assert load_prompts(str(ROOT / "data/prompts/basics_en.jsonl"))[0].id == "capital-france"
    assert load_prompts("¿Qué hora es?")[0].text == "¿Qué hora es?"
    with pytest.raises(ParamsError, match="not found"):
        load_prompts("nope.jsonl")
    with pytest.raises(ParamsError, match="duplicate prompt id"):
        load_prompts([{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}])


def test_retries_are_the_backends_and_sweep_retries_pass_through(tmp_path):
    """429s are retried by RemoteBackend's policy alone; ``sweep(retries=)`` sets how many times."""
    import httpx

    from gsexplore.backends.remote import RemoteBackend

    sent: dict[tuple, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        key = (body.get("temperature"), body.get("top_k"), body.get("seed"))
        sent[key] = sent.get(key, 0) + 1
        if body.get("top_k") == 50:
            return httpx.Response(500, json={"error": {"message": "boom", "type": "InternalServerError",
                                                       "code": 500}})
        if body.get("temperature") == 2 or (body.get("temperature") == 1 and sent[key] <= 2):
            return httpx.Response(429, headers={"Retry-After": "0"},
                                  json={"error": {"message": "slow down", "type": "RateLimitError", "code": 429}})
        return httpx.Response(200, json={"id": "x", "object": "chat.completion", "model": "m", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})

    b = RemoteBackend("http://127.0.0.1:9/v1", api_key="k", model="m", max_retries=0, backoff_s=0.001,
                      async_transport=httpx.MockTransport(handler))
    grid = {"temperature": [0, 1, 2], "top_k": [5, 50]}
    df = sweep(b, "hola", grid=grid, repeats=2, progress=False, store=str(tmp_path / "s.jsonl"), retries=3,
               backoff=0.001)
    assert len(df) == 12
    ok = df[df.error_type.isna()]
    assert set(zip(ok.temperature, ok.top_k)) == {(0.0, 5), (1.0, 5)}  # t=1 recovered after two 429s
    errs = df[df.error_type.notna()]
    assert set(errs.error_type) == {"ServerError", "RateLimitError"}
    assert (errs[(errs.temperature == 2) & (errs.top_k == 5)].error_type == "RateLimitError").all()
    assert df.attrs["errors"] == 8
    # each request was sent 1 + retries times at most: one retry policy, not the sweep's on top of it
    assert max(sent.values()) == 4 and all(n == 4 for (t, k, _), n in sent.items() if t == 2 or k == 50)
    # retries=0 passes through too: a 429 is the row's error at once
    sent.clear()
    df0 = sweep(b, "hola", grid={"temperature": [1]}, progress=False, retries=0, on_error="keep")
    assert df0.error_type.tolist() == ["RateLimitError"] and list(sent.values()) == [1]
    assert b.retry.max_retries == 0  # the backend itself is unchanged
    b.close()
    # rerun against a recovered server: only the failed requests are sent again
    sent.clear()
    fine = RemoteBackend("http://127.0.0.1:9/v1", api_key="k", model="m", async_transport=httpx.MockTransport(
        lambda r: handler(r) if json.loads(r.content).get("temperature") == 0 and json.loads(r.content).get(
            "top_k") == 5 else httpx.Response(200, json={"choices": [{"message": {"content": "ok"},
                                                                      "finish_reason": "stop"}]})))
    df2 = sweep(fine, "hola", grid=grid, repeats=2, progress=False, store=str(tmp_path / "s.jsonl"))
    assert sum(sent.values()) == 0 and df2.error_type.isna().all() and len(df2) == 12
    fine.close()
    with pytest.raises(APIError, match="boom"):
        sweep(Echo(fail={"top_k": 50}), "x", grid={"top_k": [5, 50]}, on_error="raise", progress=False)


def test_interrupt_in_the_async_part_returns_finished_rows(tmp_path):
    class Stops(Echo):
        async def achat(self, messages, params=None, **kw):
            if len(self.calls) == 3:
                raise KeyboardInterrupt
            return self._answer(messages, params)

    with pytest.warns(UserWarning, match="3 of 6 requests finished, 3 remain"):
        df = sweep(Stops(), "hola", grid={"temperature": [0, 1, 2]}, repeats=2, concurrency=1, progress=False,
                   store=str(tmp_path / "a.jsonl"))
    assert len(df) == 3 and df.attrs["interrupted"]
    b = Echo()
    assert len(sweep(b, "hola", grid={"temperature": [0, 1, 2]}, repeats=2, progress=False,
                     store=str(tmp_path / "a.jsonl"))) == 6
    assert len(b.calls) == 3


def test_cancel_event_and_on_result_for_panels():
    import threading

    cancel = threading.Event()
    seen = []

    def on_result(rows):
        seen.extend(rows)
        if len(seen) == 2:
            cancel.set()  # a "stop" button

    class Local(Echo):
        name, remote = "local", False  # one slot: one request at a time

    with pytest.warns(UserWarning, match="2 of 4 requests finished"):
        df = sweep(Local(), "hola", grid={"temperature": [0, 1]}, repeats=2, progress=False, cancel=cancel,
                   on_result=on_result)
    assert len(df) == 2 and sorted(r["row_id"] for r in seen) == sorted(df.row_id)


def test_guided_validity_is_recorded():
    class Says(Echo):
        def _answer(self, messages, params):
            c = super()._answer(messages, params)
            c.content = "sí" if params.temperature == 0 else "quizás"
            return c

    df = sweep(Says(), "¿Llueve?", grid={"temperature": [0, 1]}, base=Params(guided_choice=["sí", "no"]),
               progress=False)
    assert df.set_index("temperature")["guided_valid"].to_dict() == {0.0: True, 1.0: False}
    assert df.gs.summary(by="temperature", metrics="validity_rate")["mean"].tolist() == [1.0, 0.0]


def test_jupyter_like_running_loop():
    """Inside a running event loop (Jupyter) the async part runs on its own loop in a thread."""
    import asyncio

    async def notebook_cell():
        return sweep(Echo(), ["a", "b"], grid={"temperature": [0, 1]}, progress=False)

    df = asyncio.run(notebook_cell())
    assert len(df) == 4 and df.error_type.isna().all()


# --------------------------------------------------------------------------
# end to end on the real models

NO_THINK = {"chat_template_kwargs": {"enable_thinking": False}}


@pytest.fixture(scope="module")
def demo(demo_backend):
    return demo_backend  # tests/conftest.py: loaded once per session


@pytest.fixture(scope="module")
def tiny(tiny_backend):
    return tiny_backend


class Wrapped(Backend):
    """A real backend, counting calls; raises KeyboardInterrupt on call number `interrupt_at` (a crash)."""

    def __init__(self, inner: Backend, interrupt_at: int | None = None, slots: int | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.slots = inner.slots if slots is None else slots
        self.interrupt_at = interrupt_at
        self.calls: list[tuple[str, Params]] = []

    def _count(self, messages, params) -> None:
        self.calls.append((messages[-1]["content"], params))
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt

    def events(self, messages, params, *, streaming):
        self._count(messages, params)
        return self.inner.events(messages, params, streaming=streaming)

    def aevents(self, messages, params, *, streaming):
        self._count(messages, params)
        return self.inner.aevents(messages, params, streaming=streaming)

    def info(self):
        return self.inner.info()


def test_local_sweep_end_to_end(demo, tmp_path):
    prompts = [{"id": "fr", "prompt": "What is the capital of France? One word.", "expected": "Paris"},
               "Name a color."]
    b = Wrapped(demo)
    df = sweep(b, prompts, grid={"temperature": [0.0, 1.0]}, repeats=2, base=Params(max_tokens=5),
               store=str(tmp_path / "r.parquet"), progress=False, seed=1)
    assert len(df) == 8 and list(df.columns) == ROW_COLUMNS
    assert df.error_type.isna().all() and (df.backend == "local").all()
    assert (df.model == demo.model).all() and set(df.prompt_id) == {"fr", "p01"}
    assert (df.max_tokens == 5).all() and df.top_k.isna().all()  # every parameter has its column
    assert df.completion_tokens.gt(0).all() and df.latency_s.gt(0).all() and df.tokens_per_s.gt(0).all()
    assert df.seed.nunique() == 8  # each repeat its own recorded seed
    assert str(df.seed.dtype) == "Int64" and str(df.repeat.dtype) == "Int64"
    greedy = df[df.temperature == 0].groupby("prompt_id")["content"].nunique()
    assert (greedy == 1).all()  # temperature 0: the repeats agree
    assert df[df.prompt_id == "fr"].expected.eq("Paris").all()
    # the local order keeps one prompt's settings together (prefix KV-cache reuse)
    asked = [m for m, _ in b.calls]
    assert asked == sorted(asked, key=lambda m: asked.index(m)) and len(set(asked)) == 2
    assert asked[:4].count(asked[0]) == 4
    # a row can be reproduced from its recorded parameters
    row = df[df.temperature == 1.0].iloc[0]
    again = demo.chat(json.loads(row["messages"]), Params(temperature=1.0, max_tokens=5, seed=int(row["seed"])))
    assert again.content == row["content"]
    a = df.attrs
    assert a["versions"]["llama_cpp"] and a["versions"]["gsexplore"]
    assert a["backends"][0]["file"].endswith(".gguf") and a["varied"] == ["temperature"]
    assert a["sweep"]["grid"] == {"temperature": [0.0, 1.0]} and a["plan"]["requests"] == 8
    assert a["plan"]["completion_tokens_max"] == 40
    # the store holds the same rows
    stored = load(tmp_path / "r.parquet")
    assert sorted(stored.row_id) == sorted(df.row_id)
    assert not (tmp_path / "r.parquet.journal.jsonl").exists()  # compacted
    assert stored.attrs["sweeps"][df.attrs["sweep_id"]]["varied"] == ["temperature"]


def test_rows_record_the_messages_sent_including_a_backend_system_prompt(demo):
    from gsexplore.backends.local import LocalBackend

    b = LocalBackend(demo.path, n_ctx=demo.n_ctx, system_prompt="Sé breve.")  # shares the loaded model
    df = sweep(b, ["Hola"], base=Params(max_tokens=2), progress=False)
    assert json.loads(df.messages[0]) == [{"role": "system", "content": "Sé breve."},
                                          {"role": "user", "content": "Hola"}]
    assert df.prompt[0] == "Hola"


def _count_keys(df: pd.DataFrame) -> pd.Series:
    return df.groupby(["cell_id", "repeat", "seed"]).size()


def test_interrupted_sweep_resumes_without_loss_or_repeats(tiny, tmp_path):
    store = str(tmp_path / "s.parquet")
    args = dict(prompts=["uno", "dos", "tres"], grid={"temperature": [0.5, 1.0]}, repeats=2,
                base=Params(max_tokens=3, **NO_THINK), store=store, progress=False)
    crashing = Wrapped(tiny, interrupt_at=6, slots=1)  # one at a time: 5 finish first
    with pytest.warns(UserWarning, match=r"interrupted: 5 of 12 requests finished, 7 remain; run the same sweep"):
        part = sweep(crashing, **args)
    assert len(part) == 5 and part.attrs["interrupted"] and part.attrs["remaining"] == 7
    first = set(load(store).row_id)
    assert len(first) == 5  # every finished row is on disk
    b = Wrapped(tiny)
    full = sweep(b, **args)
    assert len(b.calls) == 7  # only what was missing
    assert len(full) == 12 and (_count_keys(full) == 1).all()
    everything = load(store, latest=False)
    assert len(everything) == 12 and (_count_keys(everything) == 1).all()  # none repeated
    assert first <= set(everything.row_id)  # none lost
    # resume again: nothing to do
    b2 = Wrapped(tiny)
    again = sweep(b2, **args)
    assert b2.calls == [] and sorted(again.row_id) == sorted(full.row_id)
    # force: everything runs again; the store keeps both attempts, the result the new one
    b3 = Wrapped(tiny)
    forced = sweep(b3, **args, force=True)
    assert len(b3.calls) == 12 and len(forced) == 12
    assert set(forced.row_id).isdisjoint(full.row_id)
    assert len(load(store, latest=False)) == 24 and len(load(store)) == 12
    # the same seeds: a forced rerun reproduces the rows
    merged = forced.merge(full, on=["cell_id", "repeat"], suffixes=("", "_old"))
    assert (merged.seed == merged.seed_old).all() and (merged.content == merged.content_old).all()


CHILD = textwrap.dedent("""
    import sys, time
    from gsexplore.backends.local import LocalBackend
    from gsexplore.params import Params
    from gsexplore.sweep import sweep

    class Slow(LocalBackend):  # the real model, slowed down so the kill lands part way
        def submit(self, *a, **k):
            time.sleep(0.03)
            return super().submit(*a, **k)

    sweep(Slow(sys.argv[2], n_ctx=int(sys.argv[3])), [f"prompt {i}" for i in range(10)], grid={"temperature": [0.3, 0.6, 0.9, 1.2]},
          repeats=2, base=Params(max_tokens=4, chat_template_kwargs={"enable_thinking": False}),
          store=sys.argv[1], progress=False)
""")


def test_killed_process_loses_no_finished_row(tiny, tmp_path):
    store = tmp_path / "k.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(store), str(tiny.path), str(tiny.n_ctx)],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if store.exists() and store.read_text().count("\n") >= 10:
                break
            if proc.poll() is not None:
                pytest.fail("the child finished before it could be killed: " + proc.stderr.read().decode())
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a crash may leave one cut line: skipped with a warning
        killed = load(store)
    n_done = len(killed)
    assert 10 <= n_done < 80
    b = Wrapped(tiny)
    df = sweep(b, [f"prompt {i}" for i in range(10)], grid={"temperature": [0.3, 0.6, 0.9, 1.2]}, repeats=2,
               base=Params(max_tokens=4, **NO_THINK), store=str(store), progress=False)
    assert len(b.calls) == 80 - n_done
    assert len(df) == 80 and (_count_keys(df) == 1).all()
    assert set(killed.row_id) <= set(df.row_id)
    assert len(load(store, latest=False)) == 80


def test_remote_sweep_against_gsexplore_serve_records_errors(tiny, tmp_path):
    from gsexplore.backends.remote import RemoteBackend
    from gsexplore.serve import ServerThread, create_app

    key = "clave-secreta-de-prueba-123"
    app = create_app([tiny], api_keys={key}, served_model_names=["tiny"])
    with ServerThread(app) as srv:
        remote = RemoteBackend(srv.url, api_key=key, model="tiny", max_retries=0)
        # model "nope" is a real 404 from the server: those cells fail, the rest finish
        df = sweep([remote, tiny], ["hola", "chau"], grid={"model": [None, "nope"], "temperature": [0.7, 1.3]},
                   repeats=2, base=Params(max_tokens=3, **NO_THINK), store=str(tmp_path / "m.jsonl"),
                   progress=False, concurrency=4)
        remote.close()
    # the local backend refuses model="nope" before generating (ParamsError): recorded too
    assert len(df) == 2 * 2 * 2 * 2 * 2
    ok = df[df.error_type.isna()]
    bad = df[df.error_type.notna()]
    assert len(ok) == 16 and ok.model.isin(["tiny", tiny.model]).all()
    assert set(ok.backend) == {"remote", "local"}
    assert (bad.model == "nope").all() and len(bad) == 16
    assert set(bad[bad.backend == "remote"].error_type) <= {"BadRequestError", "ModelNotFoundError"}
    assert "nope" in bad[bad.backend == "remote"].error_message.iloc[0]
    assert set(bad[bad.backend == "local"].error_type) == {"ParamsError"}
    assert ok.content.notna().all() and ok.completion_tokens.eq(3).all()
    # the key is nowhere: not in rows, attrs, or any file of the store
    assert key not in df.to_json(date_format="iso") and key not in json.dumps(df.attrs, default=str)
    assert all(key not in json.dumps(i) for i in df.attrs["backends"])
    for f in tmp_path.iterdir():
        assert key not in f.read_text(errors="replace"), f


def test_gs_sweep_stays_the_function_whatever_is_imported_first():
    # the module gsexplore.sweep shares the function's name; importing it first (the panels
    # and the CLI do) must not turn `gs.sweep(...)` into "'module' object is not callable"
    code = ("import gsexplore.panels.sweep_builder, gsexplore.sweep_cli, gsexplore as gs; "
            "import gsexplore.sweep; print(type(gs.sweep).__name__, gs.sweep.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    kind, module = out.stdout.split()
    assert kind == "function" and module.startswith("gsexplore.sweep")
