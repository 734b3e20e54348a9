"""AdaptiveBatcher and LatencyPredictor on their own: convergence, damping,
the update interval, and prediction error on a workload with a known cost model."""
import numpy as np
import pytest

from engram.errors import InvalidInputError
from engram.recall.budget import AdaptiveBatcher, LatencyPredictor, OnlineLinear, Topology, topology

TOPOLOGIES = [
    Topology(cores=2, l1d=48 << 10, l2=2 << 20, l3=480 << 20),      # this CI machine's kind
    Topology(cores=1, l1d=32 << 10, l2=256 << 10, l3=8 << 20),
    Topology(cores=16, l1d=32 << 10, l2=1 << 20, l3=32 << 20),
    Topology(cores=128, l1d=64 << 10, l2=4 << 20, l3=256 << 20),
]


def test_topology_probe_reads_this_machine():
    t = topology()
    assert t.cores >= 1 and t.l1d >= 4096 and t.l2 >= t.l1d


def test_topology_probe_defaults_without_sysfs(tmp_path):
    t = Topology.probe(str(tmp_path))
    assert (t.l1d, t.l2, t.l3) == (32 << 10, 1 << 20, 8 << 20)


@pytest.mark.parametrize("topo", TOPOLOGIES, ids=lambda t: f"{t.cores}c-{t.l2 >> 10}K")
@pytest.mark.parametrize("shift", [None, 0.25, 4.0])
def test_batch_size_converges_within_three_updates_and_stays(topo, shift):
    """From the topology's size, or one 4x off (a workload that changed), the size
    reaches the target in at most 3 damped steps and then holds."""
    target = AdaptiveBatcher(topo).target()
    b = AdaptiveBatcher(topo, initial=None if shift is None else int(target * shift))
    sizes = [b.update() for _ in range(3)]
    assert sizes[-1] == target, (shift, sizes, target)
    later = [b.update() for _ in range(50)]
    assert set(later) == {target}                 # stable once there
    assert b.changes <= 3


def test_batch_size_is_a_power_of_two_in_range_and_follows_topology():
    sizes = [AdaptiveBatcher(t).target() for t in TOPOLOGIES]
    for s in sizes:
        assert 16 <= s <= 4096 and s & (s - 1) == 0
    assert sizes[1] < sizes[0] < sizes[3]          # more cache and cores: larger units of work


def test_heavier_nodes_get_smaller_batches():
    b = AdaptiveBatcher(TOPOLOGIES[0])
    assert b.target(edges_per_node=64) < b.target(edges_per_node=2)


def test_at_most_one_change_per_interval():
    b = AdaptiveBatcher(TOPOLOGIES[0], interval=500)
    seen = []
    for i in range(2000):
        seen.append(b.observe(frontier_nodes=100, frontier_edges=100 * 40))
    changes = [i for i in range(1, len(seen)) if seen[i] != seen[i - 1]]
    assert changes, "the batch size never moved toward its target"
    assert all(c % 500 == 499 for c in changes), changes
    assert all(b2 - a2 >= 500 for a2, b2 in zip(changes, changes[1:]))


def test_batcher_rejects_bad_settings():
    with pytest.raises(InvalidInputError):
        AdaptiveBatcher(TOPOLOGIES[0], damping=0)
    with pytest.raises(InvalidInputError):
        AdaptiveBatcher(TOPOLOGIES[0], interval=0)


def test_online_linear_recovers_a_linear_model():
    rng = np.random.default_rng(0)
    m = OnlineLinear(3, refit=8)
    w = np.array([5.0, 2.0, -0.5])
    for _ in range(400):
        x = (1.0, rng.uniform(0, 100), rng.uniform(0, 10))
        m.observe(x, float(np.dot(w, x)))
    np.testing.assert_allclose(m.w, w, rtol=1e-2, atol=0.2)


def test_predictor_error_under_20pct_for_95pct_of_requests_on_a_noisy_linear_workload():
    """Hops cost 2 us + 9 ns per frontier edge, with 5% multiplicative noise (what a
    shared machine looks like); after warm-up, 95% of requests are predicted within 20%."""
    rng = np.random.default_rng(1)
    p = LatencyPredictor(warmup=20)
    for req in range(1500):
        predicted = actual = 0.0
        frontier = int(rng.integers(5, 40))
        for hop in range(1, 5):
            edges = frontier * int(rng.integers(2, 8))
            x = LatencyPredictor.hop_features(256, hop, 0.5, frontier, edges)
            guess = p.predict_hop(x)
            ns = (2000 + 9 * edges) * rng.lognormal(0, 0.05)
            p.observe_hop(x, ns)
            predicted += guess
            actual += ns
            frontier = edges // 2
        p.observe_spread(LatencyPredictor.spread_features(20, 100, 4, 0.5, 256), actual, None)
        p.observe_request(predicted, actual)
    s = p.stats.summary()
    assert s["requests"] > 1000 and s["within_20pct"] >= 0.95, s


def test_predictor_says_nothing_before_warmup():
    p = LatencyPredictor(warmup=5)
    x = LatencyPredictor.hop_features(256, 1, 0, 10, 100)
    p.observe_hop(x, 1e6)
    assert p.predict_hop(x) == 0.0 and not p.ready
    for _ in range(5):
        p.observe_spread(LatencyPredictor.spread_features(1, 1, 4, 0, 256), 1e6, None)
    assert p.ready and p.predict_hop(x) > 0


def test_predictor_learns_what_a_split_hop_saves():
    """Hops cost 2 us + 9 ns per edge, and a split hop moves half its edges to a helper
    at 6 ns of overhead per moved edge (so it saves 3 ns each): mixed in one stream, the
    model must price split and whole hops apart, within 5% (one price for both is 8-10% off)."""
    rng = np.random.default_rng(2)
    p = LatencyPredictor(warmup=5)
    cost = lambda edges, helpers: 2000 + 9 * edges - 3 * edges * helpers / (helpers + 1)
    for i in range(3000):
        edges, helpers = int(rng.integers(1_000, 200_000)), int(rng.integers(0, 2))
        x = LatencyPredictor.hop_features(256, 4, 0.5, edges // 8, edges, helpers)
        p.observe_hop(x, cost(edges, helpers) * rng.lognormal(0, 0.02))
        if i < 10:
            p.observe_spread(LatencyPredictor.spread_features(20, 100, 4, 0.5, 256), 1e6, None)
    for helpers in (0, 1):
        x = LatencyPredictor.hop_features(256, 4, 0.5, 12_500, 100_000, helpers)
        assert abs(p.predict_hop(x) / cost(100_000, helpers) - 1) < 0.05, helpers
