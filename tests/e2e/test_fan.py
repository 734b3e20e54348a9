"""The fan effect: discounted weights computed at compaction match an independent
computation, spreading with each mode equals the oracle over those weights, and a
hub stops swamping recall."""
import math

import numpy as np
import pytest

import engram
from engram import errors
from engram.config import FAN_MODES as MODES
from engram.config import RecallConfig
from engram.kernels import reference


def independent_fan(src, dst, w, n):
    out_deg = np.bincount(src, minlength=n)
    in_deg = np.bincount(dst, minlength=n)
    d = lambda f: 1.0 / (1.0 + math.log(max(f, 1)))
    return {"source": [wi * d(out_deg[s]) for s, wi in zip(src, w)],
            "target": [wi * d(in_deg[t]) for t, wi in zip(dst, w)],
            "both": [wi * d(out_deg[s]) * d(in_deg[t]) for s, t, wi in zip(src, dst, w)]}


@pytest.fixture
def hubby():
    """A hub (node 0) linked from and to everything, plus a chain 1 -> 2 -> 3."""
    rng = np.random.default_rng(4)
    n = 60
    with engram.Engine(dim=8, workers=0) as eng:
        mem = eng.space("fan-test")
        v = rng.standard_normal((n, 8))
        mem.remember(v)
        others = np.arange(1, n)
        mem.link(others, 0, 0.9)
        mem.link(0, others, 0.9)
        mem.link([1, 2], [2, 3], [0.8, 0.8])
        mem.compact()
        yield mem, v


def test_discounted_weights_match_an_independent_computation(hubby):
    mem, v = hubby
    csr = mem._store.csr()
    o, t, w = csr["offsets"], csr["targets"], csr["weights"]
    src = np.repeat(np.arange(o.shape[0] - 1), np.diff(o.astype(np.int64)))
    want = independent_fan(src, t.astype(np.int64), w.astype(np.float64), o.shape[0] - 1)
    for i, mode in enumerate(("source", "target", "both")):
        np.testing.assert_allclose(csr["fan"][i], want[mode], rtol=1e-6)
    hub_out = csr["fan"][0][int(o[0]):int(o[1])]
    assert np.allclose(hub_out, 0.9 / (1 + math.log(59)), rtol=1e-6)     # the hub's 59 links, discounted


@pytest.mark.parametrize("mode", MODES)
def test_spread_with_each_mode_equals_the_oracle_over_its_weights(hubby, mode):
    mem, v = hubby
    g = mem._reader.links(mode).csr
    ids, act = mem.spread({1: 1.0}, fan=mode)
    sp = RecallConfig().spread                       # the space's defaults
    nodes, ref, _ = reference.spread(g.offsets, g.targets, g.weights, np.array([1], np.uint32),
                                     np.ones(1, np.float32), sp.max_depth, sp.decay, sp.threshold, sp.cycle_penalty)
    order = np.lexsort((nodes, -ref))
    assert ids.tolist() == nodes[order].tolist()
    np.testing.assert_allclose(act, ref[order], atol=1e-6)


def test_the_fan_effect_keeps_a_hub_from_swamping_recall(hubby):
    mem, v = hubby
    plain = dict(zip(*mem.spread({1: 1.0}, fan="none")))
    fanned = dict(zip(*mem.spread({1: 1.0}, fan="both")))
    # without the fan effect the hub outranks 1's own association (2); with it, not
    assert plain[0] > plain[2]
    assert fanned[2] > fanned[0]
    # in recall, the hub collects activation from every seed and sits right under the
    # direct match (or under one more seed: since the echo ceiling what the hub sends back
    # lifts no seed past 0.9 of it, so a seed can keep its own higher activation);
    # discounted by its fan it drops out of the top
    rank = lambda res: list(res.ids).index(0) if 0 in res.ids else len(res.ids)
    mem.configure_recall(spread_weight=1.0)          # rank by raw activation: the hub's effect shows
    plain_res = mem.recall(v[1], k=5)
    assert rank(plain_res) <= 2 and plain_res.ids[0] == 1         # the hub in the top three
    mem.configure_recall(fan="both")
    fan_res = mem.recall(v[1], k=5)
    assert fan_res.ids[0] == 1 and rank(fan_res) > 2


def test_a_strong_direct_match_is_never_displaced_by_what_it_spread_to(hubby):
    """A memory reached only by spreading scores at most lambda = spread_weight (0.9 by
    default, docs/recall.md), so the direct match (activation ~1) stays first, and its
    own score only grows with what spreading adds. Here 1's opposite (never a seed) is
    linked from every seed of a query for 1: spreading drives its activation to the
    clamp, so it scores the bound itself."""
    from engram.recall.pipeline import seed_activation
    mem, v = hubby
    lam = RecallConfig().spread_weight
    seeds = mem.recall(v[1], k=10, spread=False).ids
    echo = int(mem.remember(-v[1:2])[0])
    mem.link(seeds[seeds != 0], echo, 1.0)
    res = mem.recall(v[1], k=10, budget_ms=None)
    assert not res.fallback and res.ids[0] == 1 and res.origin[0] == "seed"
    spread_only = {i: s for i, s, o, sim in zip(res.ids.tolist(), res.scores.tolist(), res.origin, res.similarity)
                   if o == "spread" and np.isnan(sim)}
    assert echo in spread_only and res.activation[res.ids.tolist().index(echo)] == 1.0
    assert all(s <= lam + 1e-6 for s in spread_only.values())
    assert spread_only[echo] >= lam * 0.999          # confidence 1, retention ~1: at the bound
    alone = mem.recall(v[1], k=5, spread=False)
    a0 = float(seed_activation(np.array([alone.scores[0]]), RecallConfig())[0])
    assert res.scores[0] >= a0 * 0.999


def test_bad_fan_modes_are_refused(hubby):
    mem, v = hubby
    with pytest.raises(errors.InvalidInputError, match="fan must be one of"):
        mem.configure_recall(fan="hubs")
    with pytest.raises(errors.InvalidInputError, match="fan must be one of"):
        mem.spread({1: 1.0}, fan="everything")


def test_fan_interference_is_counted_per_directly_matched_memory_with_several_links():
    rng = np.random.default_rng(4)
    with engram.Engine(dim=8, workers=0) as eng:
        mem = eng.space("fan-count")
        v = rng.standard_normal((40, 8))
        mem.remember(v)
        mem.link(np.arange(1, 40), 0, 0.9)
        mem.link(0, np.arange(1, 40), 0.9)
        mem.compact()
        mem.configure_recall(fan="none")
        count = lambda: eng._metrics_seg.totals()["engram_interference_total"].get("fan-count", {}).get("fan", 0)
        mem.recall(v[1], k=5, budget_ms=None)                  # fan="none": nothing counted
        assert count() == 0
        mem.configure_recall(fan="both")
        r = mem.recall(v[0], k=5, budget_ms=None)
        want = int(np.count_nonzero(mem._store.hot()["edge_count"][r.ids[r.hops == 0]] > 1))
        assert want >= 1 and count() == want                   # the hub, matched directly, has 39 links
