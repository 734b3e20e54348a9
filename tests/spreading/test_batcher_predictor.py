"""AdaptiveBatcher and LatencyPredictor on their own: convergence, damping,
the update interval, and prediction error on the hops of real spreads with a
cost that no linear model fits exactly."""
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


class _FeatureRecorder:
    """Stands in for the predictor in budgeted_spread: keeps each hop's features."""
    ready = True

    def __init__(self):
        self.hops = []

    def predict_hop(self, x):
        return 0.0

    def hop_model(self):
        return np.zeros(0)          # no prediction

    def observe_hop(self, x, ns, predicted=0.0):
        self.hops.append(x)

    def observe_hops(self, log):           # the hops the C loop ran: rows of 7 features, ns, guess
        self.hops.extend(tuple(row[:7]) for row in log.tolist())

    def observe_request(self, predicted_ns, hop_ns):
        pass


@pytest.fixture(scope="module")
def spread_workload():
    """The hops of 600 real spreads through the kernels over a random graph (50,000
    nodes, 2..14 links each), from 1..40 seeds, 2..4 hops deep: what the predictor is
    asked about, with the frontier sizes that spreading really produces."""
    import engram.kernels
    from engram.kernels.spreadrun import CsrGraph, SpreadParams
    from engram.recall.spreading import budgeted_spread
    rng = np.random.default_rng(5)
    n = 50_000
    degree = rng.integers(2, 15, n).astype(np.int64)
    offsets = np.zeros(n + 1, np.uint64)
    offsets[1:] = np.cumsum(degree)
    m = int(offsets[-1])
    graph = CsrGraph(offsets, rng.integers(0, n, m).astype(np.uint32), rng.uniform(0.2, 1.0, m).astype(np.float32))
    kern = engram.kernels.backend()
    requests = []
    for _ in range(600):
        seeds = rng.choice(n, int(rng.integers(1, 41)), replace=False)
        rec = _FeatureRecorder()
        budgeted_spread(kern, graph, degree, seeds, rng.uniform(0.3, 1.0, seeds.shape[0]).astype(np.float32),
                   SpreadParams(max_depth=int(rng.integers(2, 5))), predictor=rec, batch_size=256)
        requests.append(rec.hops)
    return requests


def _hop_cost(x, rng, shared: bool) -> float:
    """Not a linear function of the features: a fixed cost, 40 ns per frontier node, and
    per edge 6 ns rising towards 12 ns as the hop's working set outgrows the caches
    (10 towards 20 ns once another tenant ``shared`` them); 8% lognormal noise, and 2%
    of hops stalled 2-6x (a shared machine)."""
    nodes, edges = x[4], x[5]
    per_edge = (10 + 10 * edges / (edges + 10_000)) if shared else (6 + 6 * edges / (edges + 20_000))
    ns = (1500 + 40 * nodes + edges * per_edge) * rng.lognormal(0, 0.08)
    return ns * rng.uniform(2, 6) if rng.random() < 0.02 else ns


def _request_errors(predictor, requests) -> np.ndarray:
    """|predicted - actual| / actual of each request's hops, after the first 40 (warm-up);
    the predictor sees each hop's features, guesses, and then learns its cost. A third
    of the way in, another tenant starts sharing the caches: the costs change."""
    rng = np.random.default_rng(1)
    errors = []
    for i, hops in enumerate(requests):
        predicted = actual = 0.0
        for x in hops:
            guess = predictor.predict_hop(x)
            ns = _hop_cost(x, rng, shared=i >= len(requests) // 3)
            predictor.observe_hop(x, ns, guess)
            predicted += guess
            actual += ns
        predictor.observe_spread(LatencyPredictor.spread_features(20, 100, 4, 0.0, 256), actual, None)
        predictor.observe_request(predicted, actual)
        if i >= 40:
            errors.append(abs(predicted - actual) / actual)
    return np.asarray(errors)


def _accurate(errors) -> bool:
    """Half the requests within 20%, and 90% within a factor of 2 (error under 1)."""
    return float(np.median(errors)) < 0.2 and float(np.percentile(errors, 90)) < 1.0


class _MeanPredictor(LatencyPredictor):
    """Broken on purpose: every hop is predicted to take the mean of the hops seen."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.total, self.n = 0.0, 0

    def observe_hop(self, x, ns, predicted=0.0):
        super().observe_hop(x, ns, predicted)
        self.total, self.n = self.total + ns, self.n + 1

    def predict_hop(self, x):
        return self.total / self.n if self.ready and self.n else 0.0


class _ZeroPredictor(LatencyPredictor):
    """Broken on purpose: predicts nothing."""

    def predict_hop(self, x):
        return 0.0


def test_predictor_learns_hop_costs_of_real_spreads_that_no_linear_model_fits_exactly(spread_workload):
    """The hop model is linear in its features; the cost here is not (_hop_cost), it
    changes a third of the way in, and the frontiers are those of real spreads (1 to
    ~100,000 edges a hop). After warm-up, half the requests are predicted within 20% and
    90% within a factor of 2. Measured: median error 0.11-0.13, 90th percentile ~0.55;
    the mean of past hops is off by ~1.5x at the median, and a model fitted once and
    never refitted by 0.32."""
    p = LatencyPredictor(warmup=20)
    errors = _request_errors(p, spread_workload)
    assert errors.size == len(spread_workload) - 40 and _accurate(errors), \
        (np.median(errors), np.percentile(errors, 90), (errors < 0.2).mean())
    assert p.stats.summary()["requests"] >= errors.size       # its own error record saw them too


@pytest.mark.parametrize("broken", [_ZeroPredictor, _MeanPredictor], ids=["zero", "mean"])
def test_the_accuracy_check_fails_predictors_that_ignore_the_features(spread_workload, broken):
    errors = _request_errors(broken(warmup=20), spread_workload)
    assert not _accurate(errors), (np.median(errors), np.percentile(errors, 90))


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
