"""The batched engine: many sequences in one llama.cpp context, each with vLLM's meaning.

Real llama.cpp on the offline models; what a user relies on: a seeded request gives
the same tokens alone and batched, n > 1 and sweeps evaluate a prompt once,
cancelling frees a slot at once, priority orders the queue, a long prompt does not
stall running sequences, one choice's failure leaves the others intact, too-long
requests fail with a clear error. Tests hold an engine and step it (``step_now``),
then read the plans (``StepPlan``): who was admitted where, which rows decoded,
which chunks and copies were made. Nothing here waits on the clock.
"""
from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

import gsexplore as gs
from gsexplore.backends.llama.sequence import SeqState
from gsexplore.backends.llama.step import StepPlan
from gsexplore.backends.local import LocalBackend
from gsexplore.backends.local import backend as backend_module
from gsexplore.errors import EngineError, ParamsError

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

    def make(n_ctx: int = 512, **kw) -> LocalBackend:
        made.append(LocalBackend(str(demo_model_path), n_ctx=n_ctx, shared=False, **kw))
        return made[-1]

    yield make
    for b in made:
        b.close()


def _ids(c: gs.Completion) -> list[int]:
    return c.info["token_ids"]


def _run(b: LocalBackend, *handles, max_steps: int = 5000) -> list[StepPlan]:
    """Step a held engine until every handle is done; the plans of those steps."""
    plans = []
    while not all(h.done for h in handles):
        plans.append(b._engine.step_now())
        assert len(plans) < max_steps, "the engine made no progress"
    return plans


def _seqs(h) -> list:
    return h.engine_request.seqs


def test_sixteen_seeded_requests_batched_equal_each_alone(demo16):
    params = [gs.Params(temperature=0.9, top_p=0.95, seed=100 + i, max_tokens=24) for i in range(16)]
    alone = [_ids(demo16.chat(p_, pp)) for p_, pp in zip(PROMPTS, params)]
    plans: list[StepPlan] = []
    demo16._engine.on_plan = plans.append

    async def together() -> list[gs.Completion]:
        return await asyncio.gather(*[demo16.achat(p_, pp) for p_, pp in zip(PROMPTS, params)])

    try:
        batched = asyncio.run(together())
    finally:
        demo16._engine.on_plan = None
    assert [_ids(c) for c in batched] == alone
    assert max(p.n_tokens for p in plans) >= 16         # they really ran in one batch
    assert len(plans) < 16 * 24 / 4                     # far fewer steps than one at a time


def test_n_choices_evaluate_the_prompt_once_and_copy_it(private):
    b = private(slots=4)  # an empty cache
    eng = b._engine
    q = "Write a short poem about a lighthouse on a cold night."
    P = len(b.prompt_token_ids(q))
    params = gs.Params(seed=7, max_tokens=12, min_tokens=3, temperature=1.0)
    with eng.held():
        h = b.submit(q, params.replace(n=4))
        s0, s1, s2, s3 = _seqs(h)
        first = eng.step_now()
        # one choice enters and evaluates the whole prompt; the others wait for it
        assert [(a.seq, a.reused, a.copied_from, a.cached) for a in first.admissions] == [(s0, 0, None, False)]
        assert [(c.seq, c.start, c.n, c.offset) for c in first.prefill] == [(s0, 0, P, 0)]
        assert first.decode == () and first.n_tokens == P
        second = eng.step_now()
        # the other three copy its cells and draw from its saved logits: nothing evaluated again
        slot0 = first.admissions[0].slot
        assert [(a.seq, a.reused, a.copied_from, a.cached) for a in second.admissions] == [
            (s, P, slot0, True) for s in (s1, s2, s3)]
        assert second.copies == tuple((slot0, a.slot, P) for a in second.admissions)
        assert second.prefill == () and second.decode_rows == ((s0, 0),)
        assert all(s.state is SeqState.DECODE for s in (s0, s1, s2, s3))
        third = eng.step_now()
        assert third.decode == (s0, s1, s2, s3) and third.n_tokens == 4
        _run(b, h)
        c = h.result()
        assert len(c.choices) == 4
        assert c.info["prompt_tokens_evaluated"] == P           # once, not 4 times
        assert len({tuple(_ids(ch)) for ch in c.choices}) > 1   # each choice draws with its own seed

        # the same prompt again: an exact prefix hit decodes nothing for the prompt
        again = b.submit(q, params)
        hit = eng.step_now()
        assert [(a.seq, a.reused, a.cached) for a in hit.admissions] == [(_seqs(again)[0], P, True)]
        assert hit.prefill == () and hit.n_tokens == 0
        _run(b, again)
        assert again.result().info["prompt_tokens_evaluated"] == 0
        assert _ids(again.result()) == _ids(c.choices[0])

    b.clear_cache()
    cold = b.chat(q, params)
    assert cold.info["prompt_tokens_evaluated"] == P and _ids(cold) == _ids(again.result())


def test_a_long_prompt_is_chunked_while_running_sequences_decode(private):
    b = private(n_ctx=2048, slots=2)
    eng = b._engine
    n_batch = eng.n_batch
    long_q = "Summarise this: " + " ".join(f"item {i}," for i in range(300))
    P = len(b.prompt_token_ids(long_q))
    assert 2 * n_batch < P < 2048 - 4
    busy_params = gs.Params(temperature=0.8, seed=5, max_tokens=30, min_tokens=30, ignore_eos=True)
    with eng.held():
        busy = b.submit("Count to thirty.", busy_params)
        eng.step_now()                                       # its prompt, then it decodes
        (runner,) = _seqs(busy)
        assert runner.state is SeqState.DECODE
        long_h = b.submit(long_q, temperature=0, max_tokens=4)
        (lng,) = _seqs(long_h)
        plans = []
        while lng.state is not SeqState.DECODE:
            plans.append(eng.step_now())
        (adm,) = plans[0].admissions
        # the template's prefix, shared with the running prompt, is copied from its slot
        assert adm.seq is lng and adm.copied_from == runner.slot.id and 0 < adm.reused < 64
        todo = P - adm.reused
        assert len(plans) == -(-todo // (n_batch - 1))       # chunks of n_batch minus the decode row
        for i, p in enumerate(plans):
            assert p.decode == (runner,)                     # it kept its pace every step
            (chunk,) = p.prefill
            assert chunk.seq is lng and chunk.offset == 1    # after the decode row
            assert chunk.start == adm.reused + i * (n_batch - 1)
            assert chunk.n == min(n_batch - 1, P - chunk.start) and p.n_tokens == 1 + chunk.n
        _run(b, busy, long_h)
    assert long_h.result().info["prompt_tokens_evaluated"] == todo
    assert _ids(busy.result()) == _ids(b.chat("Count to thirty.", busy_params))  # batched or not, the same


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


def test_cancelling_frees_its_slot_at_the_next_step(private):
    b = private(slots=2)
    eng = b._engine
    long = gs.Params(temperature=0.8, seed=1, max_tokens=400, min_tokens=400, ignore_eos=True)
    with eng.held():
        first = b.submit("Count forever.", long)
        other = b.submit("Count forever too.", long)
        while not all(s.state is SeqState.DECODE for s in (*_seqs(first), *_seqs(other))):
            eng.step_now()
        first_slot = _seqs(first)[0].slot.id
        third = b.submit("Say hi.", gs.Params(temperature=0, max_tokens=4))
        busy = eng.step_now()
        assert busy.admissions == () and len(busy.decode) == 2   # both slots are busy: it waits
        first.cancel()
        freed = eng.step_now()
        (adm,) = freed.admissions
        assert adm.seq is _seqs(third)[0] and adm.slot == first_slot   # the slot first held
        assert first.done
        c1 = first.result()
        assert c1.finish_reason == "abort" and 0 < c1.usage.completion_tokens < 400
        _run(b, third)
        assert third.result().finish_reason in ("stop", "length")
        assert not other.done                                     # the other one goes on
        other.cancel()
        _run(b, other)
    assert other.result().finish_reason == "abort"


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
    assert [ha.result().content, hb.result().content] == alone
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


def test_priority_orders_admissions(private):
    b = private(slots=1)
    eng = b._engine
    short = gs.Params(temperature=0, max_tokens=2)
    with eng.held():
        busy = b.submit("Count to fifty.", gs.Params(temperature=0, max_tokens=60, min_tokens=60, ignore_eos=True))
        eng.step_now()
        named = {name: b.submit(f"Say {name}.", short.replace(priority=prio))
                 for name, prio in (("late", 5), ("urgent", -1), ("normal", 0), ("normal2", 0))}
        plans = _run(b, busy, *named.values())
    who = {id(_seqs(h)[0]): name for name, h in named.items()}
    admitted = [who[id(a.seq)] for p in plans for a in p.admissions]
    assert admitted == ["urgent", "normal", "normal2", "late"]   # lower first, then arrival
    assert all(len(p.admissions) <= 1 for p in plans)            # one slot: one at a time


class _FailsAfter:
    """A constraint that allows everything and breaks on its ``n``-th token (a grammar engine's bug)."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def mask(self) -> np.ndarray | None:
        return None

    def consume(self, token_id: int) -> None:
        self.seen += 1
        if self.seen == self.n:
            raise RuntimeError("the grammar engine broke")

    def is_accepting(self) -> bool:
        return True

    def is_stopped(self) -> bool:
        return False


def test_one_choice_failing_leaves_its_batch_mates_intact(private, monkeypatch):
    b = private(slots=4)
    eng = b._engine
    mates = [(f"Name a colour, number {i}.", gs.Params(temperature=0.9, seed=20 + i, max_tokens=16,
                                                       min_tokens=16, ignore_eos=True)) for i in range(3)]
    alone = [_ids(b.chat(q, p)) for q, p in mates]
    b.clear_cache()
    real = backend_module.constraint_for
    monkeypatch.setattr(backend_module, "constraint_for",
                        lambda params, lm: _FailsAfter(4) if params.seed == 666 else real(params, lm))
    with eng.held():
        handles = [b.submit(q, p) for q, p in mates]
        broken = b.submit("Tell me a story.", temperature=0.9, seed=666, max_tokens=16, min_tokens=16,
                          ignore_eos=True)
        plans = _run(b, broken, *handles)
    bad = _seqs(broken)[0]
    assert any(len(p.decode) == 4 and bad in p.decode for p in plans)   # it ran in the mates' batch
    with pytest.raises(EngineError, match="choice 0 failed: RuntimeError: the grammar engine broke"):
        broken.result()
    assert bad.state is SeqState.DONE and bad.slot is None
    assert [_ids(h.result()) for h in handles] == alone                  # identical to running alone
    assert all(h.result().finish_reason == "length" for h in handles)
    assert b.chat("Say hi.", temperature=0, max_tokens=2).usage.completion_tokens >= 1  # its slot is free


def test_info_describes_slots_and_invariance(demo16):
    assert demo16.slots == 16  # the engine is made at first use
    info = demo16.info()
    assert info["slots"] == 16 and info["n_ctx"] == 512
    assert "16 slots of 512 tokens" in info["kv_cache"]
    # f16 slots of 512: a lone sequence past 256 cells takes llama.cpp's split-KV path (memory.py)
    assert info["batch_invariant"] is False and "256 tokens" in info["batch_invariant_reason"]


def test_next_token_logits_and_generation_share_the_engine(demo16):
    q = "What is the capital of France?"
    logits = demo16.next_token_logits(q)
    c = demo16.chat(q, temperature=0, max_tokens=1)
    assert _ids(c)[0] == int(logits.argmax())


def test_closing_a_private_model_fails_what_waits_and_frees_it(private):
    b = private(slots=1)
    eng = b._engine
    long = gs.Params(temperature=0.8, seed=1, max_tokens=300, min_tokens=300, ignore_eos=True)
    with eng.held():
        running = b.submit("Count forever.", long)
        waiting = b.submit("Say hi.", gs.Params(temperature=0, max_tokens=2))
        (adm,) = eng.step_now().admissions
        assert adm.seq is _seqs(running)[0]
        b.close()
    for h in (running, waiting):
        with pytest.raises(gs.GSExploreError, match="closed"):
            h.result()
    with pytest.raises(gs.GSExploreError, match="closed"):
        b.chat("Hi", max_tokens=1)


def test_draws_spread_over_threads_give_the_tokens_of_one_thread(private, monkeypatch):
    """The step's draws on helper threads (picking.py): the same tokens, and a failing draw ends only its own."""
    from gsexplore.backends.llama.picking import RowPicker
    from gsexplore.backends.llama.sampler import TokenSampler

    reqs = [(f"Name a river, number {i}.", gs.Params(temperature=1.1, top_p=0.9, min_p=0.02, seed=40 + i,
                                                     max_tokens=12, min_tokens=12, ignore_eos=True,
                                                     logprobs=True, top_logprobs=2)) for i in range(6)]
    b = private(slots=8)
    eng = b._engine
    eng._picker.close()
    eng._picker = RowPicker(0)                       # every draw on the engine's thread
    alone = [b.chat(q, p) for q, p in reqs]
    b.clear_cache()
    eng._picker = RowPicker(3)
    helpers: set[str] = set()
    real_pick = TokenSampler.pick

    def pick(self, x, constraint=None, ctx=None, idx=-1):
        helpers.add(threading.current_thread().name)
        if self.plan.base_seed == 666 and self.n_out == 5:
            raise RuntimeError("the sampler broke")
        return real_pick(self, x, constraint, ctx, idx)

    monkeypatch.setattr(TokenSampler, "pick", pick)
    with eng.held():
        handles = [b.submit(q, p) for q, p in reqs]
        broken = b.submit("Tell me a story.", reqs[0][1].replace(seed=666))
        _run(b, broken, *handles)
    eng._picker.close()
    assert any(n.startswith("gsexplore-pick") for n in helpers)     # really spread over helper threads
    with pytest.raises(EngineError, match="choice 0 failed: RuntimeError: the sampler broke"):
        broken.result()
    spread = [h.result() for h in handles]
    assert [_ids(c) for c in spread] == [_ids(c) for c in alone]
    assert [c.logprobs for c in spread] == [c.logprobs for c in alone]


def test_rows_run_in_slot_order_and_a_newcomer_fills_the_hole(private):
    """llama.cpp makes one ubatch per run of consecutive slots: the engine keeps busy slots together."""
    b = private(slots=6)                             # two empty slots beside the four busy ones
    eng = b._engine
    rows: list[list[int]] = []                       # each step's decode rows, as slot ids, when planned
    eng.on_plan = lambda p: rows.append([s.slot.id for s in p.decode])
    lengths = [12, 3, 12, 12]                        # the second finishes first and leaves a hole
    try:
        with eng.held():
            handles = [b.submit(f"Count to ten, take {i}.", temperature=0.8, seed=i, max_tokens=n,
                                min_tokens=n, ignore_eos=True) for i, n in enumerate(lengths)]
            plans = _run(b, handles[1])
            freed = next(a.slot for p in plans for a in p.admissions if a.seq is _seqs(handles[1])[0])
            busy = {s.slot.id for h in handles if not h.done for s in _seqs(h)}
            assert freed not in busy and {freed - 1, freed + 1} & busy   # a hole between busy slots
            late = b.submit("Say one word.", temperature=0.8, seed=9, max_tokens=4, min_tokens=4,
                            ignore_eos=True)
            plans += _run(b, late, *handles)
    finally:
        eng.on_plan = None
    assert next(a.slot for p in plans for a in p.admissions if a.seq is _seqs(late)[0]) == freed
    assert any(len(r) == 4 for r in rows)
    assert all(r == sorted(r) for r in rows)
