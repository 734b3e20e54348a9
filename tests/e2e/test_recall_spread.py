"""Recall with spreading through the public API: results equal an independent
numpy reference pipeline, origins and hops are right, budgets give partial and
fallback results, and bad input changes nothing."""
import math

import numpy as np
import pytest

import engram
from engram import errors
from engram.config import RecallConfig
from engram.kernels import reference
from engram.recall.budget import LatencyPredictor

DIM = 32
N = 600


def reference_recall(vecs, conf, offsets, targets, weights, q, k, cfg=RecallConfig()):
    """The pipeline of engram/recall/pipeline.py written plainly: float64 cosine, top 2k seeds,
    logistic activation, the oracle spread, score = (a0 + lambda (act - a0)) x
    confidence (retention ~ 1: every memory was accessed moments ago), ties by id."""
    cos = vecs @ q / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(q))
    seeds = np.lexsort((np.arange(len(cos)), -cos))[:max(k, cfg.seed_factor * k)]
    act0 = 1.0 / (1.0 + np.exp(-cfg.sigmoid_steepness * (cos[seeds] - cfg.sigmoid_midpoint)))
    nodes, act, hops = reference.spread(offsets, targets, weights, seeds.astype(np.uint32), act0.astype(np.float32),
                                        cfg.spread.max_depth, cfg.spread.decay, cfg.spread.threshold,
                                        cfg.spread.cycle_penalty)
    a0 = np.zeros(nodes.shape[0])
    for j, s in enumerate(seeds.tolist()):           # each seed's own match
        a0[nodes == s] = act0[j]
    score = (a0 + cfg.spread_weight * (act - a0)) * conf[nodes]
    order = np.lexsort((nodes, -score))[:k]
    return nodes[order], act[order], hops[order], score[order]


@pytest.fixture
def world():
    rng = np.random.default_rng(11)
    vecs = rng.standard_normal((N, DIM)).astype(np.float32)
    # clusters: each memory's neighbours are near it, so spreading finds related ones
    src = rng.integers(0, N, 3000)
    dst = (src + rng.integers(1, 6, 3000)) % N
    w = rng.uniform(0.3, 1.0, 3000).astype(np.float32)
    conf = rng.uniform(0.5, 1.0, N).astype(np.float32)
    with engram.Engine(dim=DIM, workers=0) as eng:
        mem = eng.space("spread-test")
        mem.remember(vecs[:400], confidence=conf[:400])
        mem.remember(vecs[400:], confidence=conf[400:], tier="warm")
        mem.link(src, dst, w)
        yield mem, vecs, conf, rng


def csr_of(mem):
    """The CSR recall spreads over: the weights of the space's fan mode (engram/cognition/fan.py;
    tests/e2e/test_fan.py checks them against an independent computation)."""
    g = mem._reader.links(mem.configure_recall().fan).csr
    return g.offsets, g.targets, g.weights


def test_recall_equals_the_numpy_reference_pipeline(world):
    mem, vecs, conf, rng = world
    stored = vecs.copy()
    stored[400:] = stored[400:].astype(np.float16).astype(np.float32)
    mem.recall(vecs[0], k=5)                  # compacts the pending links
    offsets, targets, weights = csr_of(mem)
    spread_seen = 0
    for i in range(40):
        q = vecs[rng.integers(0, N)] + 0.5 * rng.standard_normal(DIM).astype(np.float32)
        res = mem.recall(q, k=10, budget_ms=None)
        ids, act, hops, score = reference_recall(stored.astype(np.float64), conf, offsets, targets, weights,
                                                 q.astype(np.float64), 10)
        assert res.ids.tolist() == ids.tolist(), i
        np.testing.assert_allclose(res.activation, act, rtol=0, atol=1e-6)
        np.testing.assert_allclose(res.scores, score, rtol=1e-5, atol=1e-6)
        assert res.hops.tolist() == hops.astype(int).tolist()
        assert [o == "seed" for o in res.origin] == [h == 0 for h in hops]
        assert not res.partial and not res.fallback
        spread_seen += int((hops > 0).sum())
    assert spread_seen >= 10        # the comparison covered memories reached by spreading


def test_spreading_brings_back_what_similarity_misses():
    rng = np.random.default_rng(3)
    with engram.Engine(dim=DIM, workers=0) as eng:
        mem = eng.space()
        v = rng.standard_normal((50, DIM)).astype(np.float32)
        ids = mem.remember(v, content=[f"m{i}" for i in range(50)])
        mem.link(ids[0], ids[49], 1.0)          # 49 is unlike the query but associated with 0
        res = mem.recall(v[0], k=3, budget_ms=None)     # spreading itself, whatever the load
        assert res.ids[0] == 0 and res.origin[0] == "seed" and res.hops[0] == 0
        j = res.ids.tolist().index(49)
        assert res.origin[j] == "spread" and res.hops[j] == 1 and math.isnan(res.similarity[j])
        assert res.content[j] == "m49"
        decay = RecallConfig().spread.decay            # one hop over a link of weight 1, fan 1
        np.testing.assert_allclose(res.activation[j], min(res.activation[0] * decay, 1.0), rtol=1e-6)
        assert 49 not in mem.recall(v[0], k=3, spread=False).ids
        assert set(res.timings) >= {"scan_ms", "spread_ms", "rank_ms", "total_ms"}
        assert res.spreading["hops"] >= 1 and res.spreading["touched"] >= 2


def test_recall_sees_links_made_moments_ago_and_never_forgotten_memories(world):
    mem, vecs, conf, rng = world
    far = int(np.argmin(vecs @ vecs[7]))
    mem.link(7, far, 1.0)
    assert far in mem.recall(vecs[7], k=20).ids.tolist()
    mem.forget([far])
    res = mem.recall(vecs[7], k=20)
    assert far not in res.ids.tolist()
    ids, act = mem.spread({7: 1.0})
    assert far not in ids.tolist()


def test_recall_updates_access(world):
    mem, vecs, *_ = world
    before = mem.get(3)
    res = mem.recall(vecs[3], k=4)
    after = mem.get(res.ids)
    assert after.access_count[0] == before.access_count[0] + 1
    assert after.last_access_ns[0] >= before.last_access_ns[0]


def test_spread_alone(world):
    mem, vecs, *_ = world
    mem.compact()
    ids, act = mem.spread({5: 1.0}, max_depth=2, decay=0.5)
    o, t, w = csr_of(mem)
    nodes, ref_act, _ = reference.spread(o, t, w, np.array([5], np.uint32), np.ones(1, np.float32), 2, 0.5, 0.01, 0.5)
    order = np.lexsort((nodes, -ref_act))
    assert ids.tolist() == nodes[order].tolist()
    np.testing.assert_allclose(act, ref_act[order], atol=1e-6)
    assert ids[0] == 5 and act[0] == 1.0
    ids2, _ = mem.spread([5])                  # ids alone: activation 1.0 each
    assert ids2[0] == 5


def test_a_budget_spent_before_spreading_falls_back_to_similarity():
    """As the README says: a budget gone before spreading starts is a fallback (similarity
    alone), whether or not the predictor has history yet; partial is for hops cut short."""
    rng = np.random.default_rng(5)
    with engram.Engine(dim=DIM, workers=0) as eng:
        mem = eng.space()
        v = rng.standard_normal((100, DIM)).astype(np.float32)
        ids = mem.remember(v)
        mem.link(ids[:-1], ids[1:], 0.9)
        res = mem.recall(v[0], k=5, budget_ms=1e-6)     # fresh predictor: no estimate yet
        assert res.fallback and not res.partial
        assert list(res.origin) == ["seed"] * len(res)
        assert res.scores.tolist() == res.similarity.tolist()
        for i in range(30):                              # history: the predictor becomes ready
            mem.recall(v[i], k=5)
        res = mem.recall(v[0], k=5, budget_ms=1e-6)
        assert res.fallback and not res.partial
        assert res.scores.tolist() == res.similarity.tolist()
        assert mem.recall(v[0], k=5, budget_ms=1000).fallback is False


def test_partial_stops_at_the_hop_the_predictor_says_would_overrun():
    import time

    import engram.kernels
    from engram.kernels.spreadrun import CsrGraph, SpreadParams
    from engram.recall.spreading import budgeted_spread
    rng = np.random.default_rng(9)
    pred = LatencyPredictor(warmup=0)
    for _ in range(200):                      # a machine where hop h costs 0.4 s x h
        h = int(rng.integers(1, 5))
        x = LatencyPredictor.hop_features(256, h, rng.uniform(), rng.integers(1, 100), rng.integers(1, 500))
        pred.observe_hop(x, 0.4e9 * h)
    pred.spreads_seen = 1
    n = 50
    g = CsrGraph(np.arange(n + 1, dtype=np.uint64), (np.arange(n, dtype=np.uint32) + 1) % n, np.ones(n, np.float32))
    deg = np.ones(n, np.int64)
    out = budgeted_spread(engram.kernels.backend(), g, deg, np.array([0]), np.ones(1, np.float32), SpreadParams(),
                     deadline_ns=time.perf_counter_ns() + int(1.0e9), predictor=pred)
    assert out.partial and out.hops_run == 2, (out.partial, out.hops_run)
    assert out.nodes.tolist() == [0, 1, 2]


@pytest.mark.parametrize("kw, words", [
    ({"spread": "yes"}, ["spread", "True or False"]),
    ({"budget_ms": 0}, ["budget_ms", "> 0"]),
    ({"budget_ms": -1.0}, ["budget_ms"]),
    ({"budget_ms": float("nan")}, ["budget_ms", "finite"]),
    ({"budget_ms": True}, ["budget_ms"]),
    ({"k": 0}, ["k"]),
])
def test_bad_recall_arguments_are_refused_and_change_nothing(world, kw, words):
    mem, vecs, *_ = world
    before = mem.get(np.arange(N))
    args = {"k": 5, **kw}
    with pytest.raises(errors.InvalidInputError) as ei:
        mem.recall(vecs[0], **args)
    for w in words:
        assert w in str(ei.value)
    after = mem.get(np.arange(N))
    assert after.access_count.tolist() == before.access_count.tolist()


def test_bad_spread_seeds_are_refused(world):
    mem, *_ = world
    with pytest.raises(errors.UnknownIdError):
        mem.spread({10_000: 1.0})
    with pytest.raises(errors.InvalidInputError):
        mem.spread({3: 1.5})
    with pytest.raises(errors.InvalidInputError):
        mem.spread({3: -0.5})
    with pytest.raises(errors.InvalidInputError):
        mem.spread({3: 1.0}, decay=0)


def test_configure_recall(world):
    mem, vecs, *_ = world
    with pytest.raises(errors.InvalidInputError, match="unknown recall settings"):
        mem.configure_recall(nonsense=1)
    with pytest.raises(errors.InvalidInputError, match="decay"):
        mem.configure_recall(decay=1.5)
    with pytest.raises(errors.InvalidInputError, match="forget_tau_s"):
        mem.configure_recall(forget_tau_s=0)
    assert mem.configure_recall() == RecallConfig()            # refused changes left it alone
    cfg = mem.configure_recall(max_depth=1)
    assert cfg.spread.max_depth == 1
    assert mem.recall(vecs[0], k=50).hops.max() <= 1


def test_readers_recall_with_spreading_too(world):
    mem, vecs, *_ = world
    mem.compact()
    own = mem.recall(vecs[9], k=10, budget_ms=None)
    with engram.attach(str(mem._store.engine)) as other:
        got = other.space(mem.name).recall(vecs[9], k=10, budget_ms=None)
    assert got.ids.tolist() == own.ids.tolist()
    np.testing.assert_allclose(got.activation, own.activation, atol=1e-6)


def test_the_hot_tier_stops_at_its_budget_share_and_the_answer_says_so():
    """More rows than one scan chunk: with a budget already spent, the hot tier stops
    after its first chunk (the newest rows), recall answers from what was scanned,
    flagged partial."""
    from engram.recall.reader import scan_chunk
    from engram.store.tables import TIER_NAMES
    rng = np.random.default_rng(2)
    with engram.Engine(dim=8, workers=0) as eng:
        mem = eng.space()
        mem.remember(rng.standard_normal((1, 8)).astype(np.float32))
        chunk = scan_chunk(mem._store.tier_rows(TIER_NAMES["hot"])[0])
        n = chunk + 5000
        v = rng.standard_normal((n, 8)).astype(np.float32)
        v[0] = mem.get(0).vectors[0]
        mem.remember(v[1:])
        q = v[0]                                       # its best match is in the oldest chunk
        full = mem.recall(q, k=3, budget_ms=None)
        assert full.ids[0] == 0 and not full.partial
        cut = mem.recall(q, k=3, budget_ms=1e-6)
        assert cut.partial and cut.fallback
        assert (cut.ids >= n - chunk).all()           # only the newest chunk was scanned
        assert list(cut.origin) == ["seed"] * 3


def test_a_scan_the_budget_cuts_still_finds_the_memories_stored_last(monkeypatch):
    """With the budget gone before the scan starts, only the first chunk runs: it must be
    the newest rows, so what recall misses is old (the index takes those first), not what
    was stored a moment ago. Oldest-first scanning (the control) finds only row 0's kind."""
    from engram.recall import reader

    rng = np.random.default_rng(3)
    monkeypatch.setattr(reader, "SCAN_CHUNK_BYTES", 64 * 4 * 16)       # 64 rows of dim 16 a chunk
    monkeypatch.setattr(reader, "NEWEST_BLOCK_CHUNKS", 2)
    with engram.Engine(dim=16, workers=0, index_min_rows=None) as eng:
        mem = eng.space("newest")
        mem.remember(rng.standard_normal((2000, 16)).astype(np.float32))
        last = rng.standard_normal(16).astype(np.float32)
        (new,) = mem.remember(last[None, :]).tolist()
        r = mem.recall(last, k=5, spread=False, budget_ms=1e-6)
        assert r.partial and r.ids[0] == new
        full = mem.recall(last, k=5, spread=False, budget_ms=None)
        assert not full.partial and full.ids[0] == new
        monkeypatch.setattr(reader, "newest_first", lambda kern, q, rows, k, live, norm, until:
                            kern._topk_until("cosine", q, rows, k, live, norm, until, reader.scan_chunk(rows)))
        cut = mem.recall(last, k=5, spread=False, budget_ms=1e-6)
        assert cut.partial and new not in cut.ids.tolist()
