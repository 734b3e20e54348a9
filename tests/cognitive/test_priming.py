"""Priming (engram/cognition/priming.py) with an injected clock: the level saturates below 1
and decays to zero (properties), residuals are kept in the node records, bounded
and pruned as they decay, co-recalled links strengthen, a primed memory wins a
near-tie, priming off changes nothing, worker recalls prime the owner's records,
and bad settings are refused."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engram
from engram import errors
from engram.cognition import priming
from engram.config import RecallConfig
from engram.layout import NODE_HOT_DTYPE
from tests import linked

S = 1_000_000_000
T0 = 1_700_000_000 * S
DIM = 16


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


def records(access_count, since_access_s, residual, since_primed_s, now_ns=T0):
    hot = np.zeros(len(access_count), NODE_HOT_DTYPE)
    hot["access_count"] = access_count
    hot["last_access_ns"] = now_ns - (np.asarray(since_access_s) * S).astype(np.int64)
    hot["activation"] = residual
    hot["primed_s"] = now_ns // S - np.asarray(since_primed_s, np.int64)
    return hot


@settings(max_examples=200, deadline=None, database=None)
@given(count=st.integers(0, 50), since=st.floats(0, 1e6), residual=st.floats(0, 50), since_p=st.integers(0, 10**6),
       later=st.floats(1, 1e6))
def test_level_saturates_and_decays(count, since, residual, since_p, later):
    cfg = RecallConfig(priming=True)
    hot = records([count], [since], [residual], [since_p])
    p = priming.level(hot, np.array([0]), T0, cfg)[0]
    assert 0.0 <= p <= 1.0                                     # 1 - exp(-x) < 1, up to float32 rounding
    f = priming.boost(hot, np.array([0]), T0, cfg)[0]
    assert 1.0 <= f <= 1.0 + cfg.priming_weight + 1e-6       # priming never lifts by more than its weight
    p_later = priming.level(hot, np.array([0]), T0 + int(later * S), cfg)[0]
    assert p_later <= p + 1e-6                                 # time only lowers it
    gone = priming.level(hot, np.array([0]), T0 + int(200 * max(cfg.repetition_tau_s, cfg.semantic_tau_s) * S), cfg)
    assert gone[0] < 1e-6 * max(residual, 1.0) + 1e-6          # and it decays to zero


def test_level_is_the_saturating_sum_of_repetition_and_semantic():
    cfg = RecallConfig(priming=True, repetition_tau_s=100.0, semantic_tau_s=10.0)
    hot = records([3, 0, 2], [100, 0, 0], [0.0, 0.8, 0.4], [0, 10, 5])
    got = priming.level(hot, np.arange(3), T0, cfg)
    r = np.array([np.exp(-1.0), 0.0, 1.0])
    s = np.array([0.0, 0.8 * np.exp(-1.0), 0.4 * np.exp(-0.5)])
    np.testing.assert_allclose(got, 1 - np.exp(-(r + s)), rtol=1e-6)


def linked_space(eng, name="priming-test"):
    """300 memories, 1,500 links; the space's clock is a Clock set before anything is stored."""
    mem = eng.space(name)
    mem.clock = Clock()
    return linked.linked_space(eng, name, np.random.default_rng(0), 300, DIM, 1500, 7, (0.2, 0.9))


def test_a_recall_leaves_residuals_that_decay_and_are_pruned(monkeypatch):
    with engram.Engine(dim=DIM, workers=0) as eng:
        mem, vecs = linked_space(eng)
        mem.configure_recall(priming=True, semantic_keep=16)
        r = mem.recall(vecs[3], k=5, budget_ms=None)
        hot = mem._store.hot()
        primed = np.flatnonzero(hot["activation"] > 0)
        assert primed.size == 16 and mem._primer.primed() == 16
        assert (hot["primed_s"][primed] == T0 // S).all()
        level_now = priming.level(hot, r.ids, mem.clock(), mem.configure_recall())
        assert (level_now > 0).all()
        mem.clock.now += 3600 * S * 24                       # a day later: everything has decayed
        assert priming.level(hot, r.ids, mem.clock(), mem.configure_recall()).max() < 1e-6
        mem.recall(vecs[200], k=5, budget_ms=None)            # the next recall prunes the old residuals
        assert mem._primer.primed() == 16
        assert np.count_nonzero(hot["activation"] > 0) == 16
        monkeypatch.setattr(priming, "MAX_PRIMED", 20)        # bounded: the oldest go first
        for i in range(5):
            mem.recall(vecs[10 + 40 * i], k=5, budget_ms=None)
        assert mem._primer.primed() <= 20 and np.count_nonzero(hot["activation"] > 0) <= 20


def test_co_recalled_memories_strengthen_their_links():
    with engram.Engine(dim=DIM, workers=0) as eng:
        mem, vecs = linked_space(eng)
        mem.configure_recall(priming=True, associative_rate=0.1, associative_top=3)
        r = mem.recall(vecs[3], k=5, budget_ms=None)
        top = r.ids[:3].tolist()
        before = {(a, b): dict(zip(*[x.tolist() for x in mem.neighbors(a)])).get(b) for a in top for b in top
                  if a != b}
        mem.clock.now += S
        r2 = mem.recall(vecs[3], k=5, budget_ms=None)
        assert r2.ids[:3].tolist() == top
        mem.compact()                                          # new links were buffered: flushed here
        for (a, b), w0 in before.items():
            w = dict(zip(*[x.tolist() for x in mem.neighbors(a)]))[b]
            # a new link starts at the rate and takes a second step at the second recall; an
            # existing one took its first step in place already (w0 was read after it)
            want = 0.1 if w0 is None else w0
            want = want + 0.1 * (1 - want)
            assert w == pytest.approx(want, rel=1e-5), (a, b, w0, w)


def test_a_primed_memory_wins_a_near_tie():
    with engram.Engine(dim=DIM, workers=0) as eng:
        mem = eng.space("tie")
        mem.clock = Clock()
        base = np.zeros(DIM, np.float32)
        base[0] = 1.0
        a = base.copy()
        a[1] = 0.05
        b = base.copy()
        b[1] = -0.05
        b[2] = 0.001                                           # b a hair less similar to the query
        other = np.eye(DIM, dtype=np.float32)[5]
        ids = mem.remember(np.stack([a, b, other]))
        mem.configure_recall(priming=True, forget_tau_s=1e15)   # retention stays 1: priming alone decides
        assert mem.recall(base, k=2, budget_ms=None).ids.tolist() == [ids[0], ids[1]]
        mem.clock.now += 100_000 * S                           # that recall's priming has worn off
        mem.recall(b, k=1, spread=False)                       # b is recalled (repetition priming)
        mem.clock.now += 5 * S
        assert mem.recall(base, k=2, budget_ms=None).ids.tolist() == [ids[1], ids[0]]
        mem.configure_recall(priming=False)                    # off: similarity decides again
        assert mem.recall(base, k=2, budget_ms=None).ids.tolist() == [ids[0], ids[1]]


def test_priming_off_leaves_the_records_alone():
    with engram.Engine(dim=DIM, workers=0) as eng:
        mem, vecs = linked_space(eng)
        links = mem.stats()
        for i in range(5):
            mem.recall(vecs[i], k=5, budget_ms=None)
        hot = mem._store.hot()
        assert not hot["activation"].any() and not hot["primed_s"].any()
        assert mem.stats() == {**links, **{k: v for k, v in mem.stats().items() if k not in links}}
        assert mem._primer.primed() == 0


def test_recalls_served_by_workers_prime_the_owners_records():
    with engram.Engine(dim=DIM, workers=2, routing="workers") as eng:
        mem, vecs = linked_space(eng)
        mem.configure_recall(priming=True, semantic_keep=12)
        eng.start_workers()
        r = mem.recall(vecs[3], k=5, budget_ms=None)
        assert "worker_ms" in r.timings
        assert np.count_nonzero(mem._store.hot()["activation"] > 0) == 12


@pytest.mark.parametrize("bad", [dict(priming=1), dict(priming_weight=1.5), dict(semantic_tau_s=0),
                                 dict(repetition_tau_s=float("inf")), dict(semantic_keep=-1),
                                 dict(associative_top=True), dict(associative_rate=-0.1)])
def test_bad_priming_settings_are_refused_and_change_nothing(bad):
    with engram.Engine(dim=DIM, workers=0) as eng:
        mem = eng.space("bad-priming")
        before = mem.configure_recall()
        with pytest.raises(errors.InvalidInputError, match=next(iter(bad))):
            mem.configure_recall(**bad)
        assert mem.configure_recall() == before


def test_priming_is_counted_and_traced():
    from engram.observe.tracing import KINDS, Cursor
    with engram.Engine(dim=DIM, workers=0, trace=True) as eng:
        mem, vecs = linked_space(eng)
        mem.configure_recall(priming=True, semantic_keep=8)
        mem.recall(vecs[3], k=5, budget_ms=None)
        mem.clock.now += S
        r = mem.recall(vecs[3], k=5, budget_ms=None)          # the same answer again: repetition
        counts = eng._metrics_seg.totals()["engram_priming_total"]["priming-test"]
        assert counts["semantic"] == 16 and counts["repetition"] == 5 and counts["associative"] == 12
        ev = Cursor(eng._life.tracer.ring).read()
        ev = ev[ev["kind"] == KINDS["priming"]]
        by_code = {}
        for code, n in zip(ev["node_b"].tolist(), ev["value"].tolist()):
            by_code[code] = by_code.get(code, 0) + n
        assert by_code == {0: 5.0, 1: 16.0, 2: 12.0}
        assert int(ev["node_a"][-1]) == int(r.ids[0])


def test_the_owners_links_win_over_buffered_co_recall_links():
    with engram.Engine(dim=DIM, workers=0) as eng:
        mem, vecs = linked_space(eng)
        mem.configure_recall(priming=True, associative_rate=0.05, associative_top=3)
        r = mem.recall(vecs[3], k=5, budget_ms=None)
        a, b = r.ids[:2].tolist()
        mem.link(a, b, 0.9)                                   # the owner's own weight for the pair
        mem.compact()
        w = dict(zip(*[x.tolist() for x in mem.neighbors(a)]))[b]
        assert w == pytest.approx(0.9)                        # not the buffered co-recall weight
        mem.clock.now += S
        r2 = mem.recall(vecs[3], k=5, budget_ms=None)
        if {a, b} <= set(r2.ids[:3].tolist()):                # recalled together again: a step from 0.9
            w = dict(zip(*[x.tolist() for x in mem.neighbors(a)]))[b]
            assert w == pytest.approx(0.9 + 0.05 * 0.1, rel=1e-5)
