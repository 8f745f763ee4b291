"""The batched engine: many sequences in one llama.cpp context, each with vLLM's meaning.

Real llama.cpp on the offline models; what a user relies on: a seeded request gives
the same tokens alone and batched, n > 1 and sweeps evaluate a prompt once,
cancelling frees a slot at once, priority orders the queue, too-long requests fail
with a clear error.
"""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

import gsexplore as gs
from gsexplore.backends.local import LocalBackend
from gsexplore.errors import ParamsError

PROMPTS = [f"Tell me one fact about the number {i}." for i in range(16)]


@pytest.fixture(scope="module")
def demo16(demo_model_path):
    """The demo model with 16 slots of 512 tokens (a private copy: these tests watch its engine)."""
    with LocalBackend(str(demo_model_path), n_ctx=512, slots=16, shared=False) as b:
        yield b


@pytest.fixture
def private(demo_model_path):
    """Private demo models with an empty cache, freed after the test."""
    made: list[LocalBackend] = []

    def make(**kw) -> LocalBackend:
        made.append(LocalBackend(str(demo_model_path), n_ctx=512, shared=False, **kw))
        return made[-1]

    yield make
    for b in made:
        b.close()


def _wait_for(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _ids(c: gs.Completion) -> list[int]:
    return c.info["token_ids"]


def test_sixteen_seeded_requests_batched_equal_each_alone(demo16):
    params = [gs.Params(temperature=0.9, top_p=0.95, seed=100 + i, max_tokens=24) for i in range(16)]
    alone = [_ids(demo16.chat(p_, pp)) for p_, pp in zip(PROMPTS, params)]

    async def together() -> list[gs.Completion]:
        return await asyncio.gather(*[demo16.achat(p_, pp) for p_, pp in zip(PROMPTS, params)])

    steps0 = demo16.info()["engine_steps"]
    batched = asyncio.run(together())
    assert [_ids(c) for c in batched] == alone
    info = demo16.info()
    assert info["engine_max_batch"] >= 16              # they really ran in one batch
    assert info["engine_steps"] - steps0 < 16 * 24 / 4  # far fewer steps than one at a time


def test_n_choices_share_one_prompt_evaluation(private):
    b = private(slots=4)  # an empty cache
    q = "Write a short poem about a lighthouse on a cold night."
    n_prompt = len(b.prompt_token_ids(q))
    c = b.chat(q, n=4, seed=7, max_tokens=12, temperature=1.0)
    assert len(c.choices) == 4
    assert c.info["prompt_tokens_evaluated"] == n_prompt   # once, not 4 times
    assert len({tuple(_ids(ch)) for ch in c.choices}) > 1  # each choice draws with its own seed
    again = b.chat(q, seed=7, max_tokens=12, temperature=1.0)
    assert again.info["prompt_tokens_evaluated"] == 0      # cached from the request before
    assert _ids(again) == _ids(c.choices[0])
    b.clear_cache()
    cold = b.chat(q, seed=7, max_tokens=12, temperature=1.0)
    assert cold.info["prompt_tokens_evaluated"] == n_prompt and _ids(cold) == _ids(again)


def test_sweep_of_32_cells_over_16_slots(demo16, tmp_path):
    base = gs.Params(temperature=0.8, max_tokens=8, min_tokens=8, ignore_eos=True)
    steps0 = demo16.info()["engine_steps"]
    df = gs.sweep(demo16, ["Describe the sea in one line."], grid={}, repeats=32, base=base,
                  store=tmp_path / "s.parquet", progress=False)
    assert len(df) == 32 and df["error_type"].isna().all()
    assert (df["completion_tokens"] == 8).all()
    assert df["seed"].nunique() == 32
    steps = demo16.info()["engine_steps"] - steps0
    assert steps <= 2 * (8 + 2)            # two waves of 16, not 32 requests one after another
    # the same seeds give the same rows one at a time
    row = df.iloc[5]
    alone = demo16.chat("Describe the sea in one line.", base.replace(seed=int(row["seed"])))
    assert alone.content == row["content"]


def test_cancelling_a_stream_frees_its_slot_within_a_step(private):
    b = private(slots=2)
    long = gs.Params(temperature=0.8, seed=1, max_tokens=400, min_tokens=400, ignore_eos=True)
    first = b.submit("Count forever.", long)
    other = b.submit("Count forever too.", long)
    _wait_for(lambda: b.info()["engine_running"] == 2)
    third = b.submit("Say hi.", gs.Params(temperature=0, max_tokens=4))
    time.sleep(0.2)
    assert not third.done                               # both slots are busy
    t = time.perf_counter()
    first.cancel()
    c3 = third.result(timeout=30)                       # got the freed slot
    assert c3.finish_reason in ("stop", "length")
    c1 = first.result(timeout=5)
    assert c1.finish_reason == "abort" and 0 < c1.usage.completion_tokens < 400
    assert time.perf_counter() - t < 10
    assert not other.done                               # the other one goes on
    other.cancel()
    assert other.result(timeout=5).finish_reason == "abort"


def test_closing_a_stream_cancels_it(private):
    b = private(slots=1)
    it = b.stream("Tell me a long story.", temperature=0.8, seed=3, max_tokens=300, min_tokens=300,
                  ignore_eos=True)
    for i, _ in enumerate(it):
        if i == 3:
            break
    it.close()
    c = b.chat("Say hi.", temperature=0, max_tokens=3)  # the only slot is free again
    assert c.usage.completion_tokens >= 1


def test_two_prompts_interleave_and_match_alone(demo16):
    pa, pb = "Name three rivers.", "Name three mountains."
    params = gs.Params(temperature=0.7, seed=11, max_tokens=20, min_tokens=20, ignore_eos=True)
    alone = [demo16.chat(pa, params).content, demo16.chat(pb, params).content]
    order: list[int] = []
    lock = threading.Lock()

    def on(i: int):
        def f(ev):
            if not isinstance(ev, BaseException) and ev.kind == "content":
                with lock:
                    order.append(i)
        return f

    ha = demo16.submit(pa, params, on_event=on(0))
    hb = demo16.submit(pb, params, on_event=on(1))
    assert [ha.result(30).content, hb.result(30).content] == alone
    # deltas of both arrived before either finished: they ran side by side
    first_b, last_a = order.index(1), len(order) - 1 - order[::-1].index(0)
    assert first_b < last_a


def test_request_too_long_for_its_slot(demo16):
    long_prompt = "word " * 600
    with pytest.raises(ParamsError) as e:
        demo16.chat(long_prompt, max_tokens=4)
    msg = str(e.value)
    assert "tokens" in msg and "512" in msg and "slot" in msg
    with pytest.raises(ParamsError) as e:
        demo16.chat("Hi", max_tokens=1000)
    assert e.value.field == "max_tokens" and "512" in str(e.value)


def test_priority_orders_the_waiting_queue(private):
    b = private(slots=1)
    finished: list[str] = []
    lock = threading.Lock()

    def record(name: str):
        def f(ev):
            if isinstance(ev, BaseException) or ev.kind == "done":
                with lock:
                    finished.append(name)
        return f

    short = gs.Params(temperature=0, max_tokens=2)
    busy = b.submit("Count to fifty.", gs.Params(temperature=0, max_tokens=60, min_tokens=60, ignore_eos=True),
                    on_event=record("busy"))
    _wait_for(lambda: b.info()["engine_running"] == 1)
    hs = [b.submit(f"Say {name}.", short.replace(priority=prio), on_event=record(name))
          for name, prio in (("late", 5), ("urgent", -1), ("normal", 0), ("normal2", 0))]
    for h in [busy, *hs]:
        h.result(timeout=60)
    assert finished == ["busy", "urgent", "normal", "normal2", "late"]   # lower first, then arrival


def test_info_describes_slots_and_invariance(demo16):
    info = demo16.info()
    assert info["slots"] == 16 and info["n_ctx"] == 512
    assert "16 slots of 512 tokens" in info["kv_cache"]
    assert info["batch_invariant"].startswith("yes")


def test_next_token_logits_and_generation_share_the_engine(demo16):
    q = "What is the capital of France?"
    logits = demo16.next_token_logits(q)
    c = demo16.chat(q, temperature=0, max_tokens=1)
    assert _ids(c)[0] == int(logits.argmax())


def test_closing_a_private_model_fails_what_waits_and_frees_it(private):
    b = private(slots=1)
    long = gs.Params(temperature=0.8, seed=1, max_tokens=300, min_tokens=300, ignore_eos=True)
    running = b.submit("Count forever.", long)
    waiting = b.submit("Say hi.", gs.Params(temperature=0, max_tokens=2))
    _wait_for(lambda: b.info()["engine_running"] == 1)
    b.close()
    for h in (running, waiting):
        with pytest.raises(gs.GSExploreError, match="closed"):
            h.result(timeout=30)
    with pytest.raises(gs.GSExploreError, match="closed"):
        b.chat("Hi", max_tokens=1)
