"""Fair share per sender and exact preemption in the engine (a classroom on one machine).

Real llama.cpp on the demo model, stepped by hand (``held`` + ``step_now``); the
assertions read the plans: who was admitted, who was preempted from which slot,
who came back by a restore of its saved KV cells. The sender is ``Params.user``.
Raw prompts that start with different words share no cached prefix, so several
can be admitted in one step. Every sequence here stays under 256 KV cells (past
that, an f16 cache alone and in a batch may take different attention paths on CPU).
"""
from __future__ import annotations

import pytest

import gsexplore as gs
from gsexplore.backends.llama.scheduler import MIN_RUN_STEPS
from gsexplore.backends.llama.sequence import SeqState
from gsexplore.backends.llama.step import StepPlan
from gsexplore.backends.local import LocalBackend

WORDS = ["Apples", "Bridges", "Clouds", "Deserts", "Engines", "Forests", "Glaciers", "Harbors", "Islands",
         "Jungles", "Kettles", "Lanterns"]


@pytest.fixture
def private(demo_model_path):
    """Private demo models with an empty cache, freed after the test."""
    made: list[LocalBackend] = []

    def make(slots: int) -> LocalBackend:
        made.append(LocalBackend(str(demo_model_path), n_ctx=256, slots=slots, shared=False))
        return made[-1]

    yield make
    for b in made:
        b.close()


def _long(n: int = 60, **kw) -> gs.Params:
    return gs.Params(temperature=0.8, seed=3, max_tokens=n, min_tokens=n, ignore_eos=True, **kw)


def _send(b: LocalBackend, sender: str | None, word: str, params: gs.Params):
    return b.submit(None, params.replace(user=sender), prompt=f"{word} are interesting because")


def _seq(h):
    (s,) = h.engine_request.seqs
    return s


def _run(b: LocalBackend, *handles, max_steps: int = 2000) -> list[StepPlan]:
    plans = []
    while not all(h.done for h in handles):
        plans.append(b._engine.step_now())
        assert len(plans) < max_steps, "the engine made no progress"
    return plans


def _senders(plan: StepPlan) -> list[str]:
    return [a.seq.req.sender for a in plan.admissions]


def test_waiting_work_is_admitted_round_robin_across_senders(private):
    b = private(slots=6)
    eng = b._engine
    with eng.held():
        hs = {who: [_send(b, who, WORDS[3 * i + j], _long(8)) for j in range(3)]
              for i, who in enumerate(("ana", "beto", "carla"))}
        first = eng.step_now()
        # FIFO would give ana all three of hers first; fair share alternates
        assert _senders(first) == ["ana", "beto", "carla"] * 2
        assert [a.seq for a in first.admissions] == [_seq(hs[w][j]) for j in range(2) for w in hs]
        assert first.preemptions == ()
        _run(b, *(h for v in hs.values() for h in v))
    assert all(h.result().usage.completion_tokens == 8 for v in hs.values() for h in v)


def test_a_sender_over_its_share_gets_no_slot_while_another_waits(private):
    b = private(slots=4)
    eng = b._engine
    with eng.held():
        ana = [_send(b, "ana", w, _long(40)) for w in WORDS[:3]]
        assert len(eng.step_now().admissions) == 3                  # alone: every slot may be hers
        more = _send(b, "ana", WORDS[3], _long(4))                  # arrives first ...
        beto = [_send(b, "beto", w, _long(4)) for w in WORDS[4:6]]  # ... but ana holds 3 of 4 > share 2
        plan = eng.step_now()
        assert [a.seq for a in plan.admissions] == [_seq(beto[0])]
        assert _seq(more).state is SeqState.WAITING
        _run(b, *ana, more, *beto)
    assert all(h.result().finish_reason == "length" for h in (*ana, more, *beto))


def test_a_newcomer_preempts_the_newest_sequence_of_the_sender_holding_every_slot(private):
    b = private(slots=3)
    eng = b._engine
    with eng.held():
        ana = [_send(b, "ana", w, _long(60)) for w in WORDS[:3]]
        eng.step_now()
        assert all(_seq(h).state is SeqState.DECODE for h in ana)    # ana holds every slot
        newest = _seq(ana[2])
        slot = newest.slot.id
        beto = _send(b, "beto", WORDS[5], gs.Params(temperature=0, max_tokens=6, user="beto"))
        plans = []
        while not plans or not plans[-1].preemptions:
            plans.append(eng.step_now())
            assert len(plans) <= MIN_RUN_STEPS + 1, "the newcomer waited too long"
        (pre,) = plans[-1].preemptions
        assert pre.seq is newest and pre.slot == slot
        assert pre.tokens == len(newest.req.prompt_ids) + len(newest.out_ids) - 1  # all but the undecoded one
        assert pre.saved.nbytes > 0 and newest.saved is pre.saved
        # in the same step the newcomer takes that slot; the others of ana go on decoding
        assert [(a.seq, a.slot) for a in plans[-1].admissions] == [(_seq(beto), slot)]
        assert newest not in plans[-1].decode and _seq(ana[0]) in plans[-1].decode
        rest = _run(b, *ana, beto)
    (back,) = [a for p in rest for a in p.restores]
    assert back.seq is newest and back.restore is pre.saved and pre.saved.data is None  # host copy freed
    assert not [p for p in rest if p.preemptions]                        # not thrown out again
    assert all(h.result().usage.completion_tokens == 60 for h in ana)
    assert beto.result().usage.completion_tokens == 6
    assert eng.stats["preemptions"] == eng.stats["restores"] == 1


def test_preempted_and_restored_gives_the_same_tokens(private):
    seeded = _long(60).replace(seed=1234, temperature=1.0, top_p=0.9, repetition_penalty=1.1)
    b = private(slots=2)
    eng = b._engine
    alone = _send(b, "ana", WORDS[8], seeded).result()
    b.clear_cache()
    with eng.held():
        filler = _send(b, "ana", WORDS[0], _long(24))
        target = _send(b, "ana", WORDS[8], seeded)                   # ana's newest: the one preempted
        eng.step_now()
        for _ in range(MIN_RUN_STEPS + 10):
            eng.step_now()
        beto = _send(b, "beto", WORDS[5], _long(30, user="beto"))
        plans = _run(b, filler, target, beto)
    (pre,) = [p for pl in plans for p in pl.preemptions]
    (back,) = [a for pl in plans for a in pl.restores]
    assert pre.seq is back.seq is _seq(target)
    assert 10 < pre.tokens - len(_seq(target).req.prompt_ids) < 59      # mid-generation
    assert back.slot != pre.slot                                         # other cells, other stream
    assert target.result().info["token_ids"] == alone.info["token_ids"]
    assert target.result().content == alone.content


def test_priority_orders_a_senders_own_requests(private):
    b = private(slots=2)
    eng = b._engine
    with eng.held():
        busy = [_send(b, who, w, _long(30)) for who, w in (("ana", WORDS[0]), ("beto", WORDS[1]))]
        eng.step_now()
        named = {name: _send(b, "ana", w, _long(3, priority=prio))
                 for (name, prio), w in zip((("late", 5), ("urgent", -1), ("normal", 0)), WORDS[2:])}
        plans = _run(b, *busy, *named.values())
    who = {id(_seq(h)): name for name, h in named.items()}
    assert [who[id(a.seq)] for p in plans for a in p.admissions] == ["urgent", "normal", "late"]
    assert not [p for p in plans if p.preemptions]                       # ana and beto hold one each: fair


def test_a_single_sender_gets_every_slot_and_is_never_preempted(private):
    b = private(slots=3)
    eng = b._engine
    with eng.held():
        hs = [_send(b, None, w, _long(10)) for w in WORDS[:5]]
        plans = _run(b, *hs)
    admitted = [a.seq for p in plans for a in p.admissions]
    assert admitted == [_seq(h) for h in hs]                             # FIFO, as before
    assert len(plans[0].admissions) == 3
    assert not [p for p in plans if p.preemptions] and eng.stats["preemptions"] == 0


def test_n_choices_count_for_their_sender(private):
    b = private(slots=4)
    eng = b._engine
    with eng.held():
        many = b.submit(None, _long(40).replace(n=4, user="ana"), prompt="Apples are interesting because")
        while not all(s.state is SeqState.DECODE for s in many.engine_request.seqs):
            eng.step_now()
        beto = _send(b, "beto", WORDS[5], _long(4))
        plans = []
        while not plans or not plans[-1].preemptions:
            plans.append(eng.step_now())
            assert len(plans) <= MIN_RUN_STEPS + 1
        (pre,) = plans[-1].preemptions
        assert pre.seq is many.engine_request.seqs[3]                    # ana's newest choice
        _run(b, many, beto)
    assert [c.finish_reason for c in many.result().choices] == ["length"] * 4


def test_cancelling_a_preempted_sequence_frees_its_saved_cells(private):
    b = private(slots=2)
    eng = b._engine
    with eng.held():
        ana = [_send(b, "ana", w, _long(80)) for w in WORDS[:2]]
        eng.step_now()
        beto = _send(b, "beto", WORDS[5], _long(40))
        plans = []
        while not plans or not plans[-1].preemptions:
            plans.append(eng.step_now())
            assert len(plans) <= MIN_RUN_STEPS + 1
        (pre,) = plans[-1].preemptions
        assert pre.seq.saved is pre.saved and pre.saved.data is not None
        victim = ana[1]
        assert pre.seq is _seq(victim)
        victim.cancel()
        after = eng.step_now()
        assert victim.done and victim.result().finish_reason == "abort"
        assert pre.seq.saved is None and pre.saved.data is None          # the host copy is gone
        assert after.restores == ()
        _run(b, ana[0], beto)
    assert eng.stats["restores"] == 0
