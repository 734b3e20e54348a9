"""Personalized PageRank (engram/recall/ppr.py, recall mode="ppr"): every kernel backend
against a dense numpy power iteration, the stopping rules, recall through the
public API in-process and through worker processes, and bad settings."""
import numpy as np
import pytest

import engram
from engram import errors
from engram.kernels.spreadrun import CsrGraph
from engram.recall.ppr import normalized, personalized_pagerank
from tests.kernels.backends import BACKEND_KEYS, get_table
from tests.linked import linked_space


def random_graph(rng, n, m):
    src = rng.integers(0, n, m)
    dst = rng.integers(0, n, m)
    order = np.argsort(src, kind="stable")
    offsets = np.zeros(n + 1, np.uint64)
    offsets[1:] = np.cumsum(np.bincount(src, minlength=n))
    return CsrGraph(offsets, dst[order].astype(np.uint32), rng.uniform(0.1, 1.0, m).astype(np.float32)[order])


def dense_ppr(g: CsrGraph, seeds, weight, restart, steps):
    """The series restart * sum_t ((1 - restart) P^T)^t s in float64, P row-normalised."""
    n = g.n_nodes
    P = np.zeros((n, n))
    for u in range(n):
        lo, hi = int(g.offsets[u]), int(g.offsets[u + 1])
        if hi > lo:
            np.add.at(P[u], g.targets[lo:hi].astype(np.int64), g.weights[lo:hi] / g.weights[lo:hi].sum())
    y = np.zeros(n)
    np.add.at(y, seeds, weight)
    y /= y.sum()
    p = np.zeros(n)
    for _ in range(steps + 1):
        p += restart * y
        y = (1 - restart) * P.T @ y
    return p


@pytest.mark.parametrize("key", BACKEND_KEYS)
def test_ppr_matches_dense_power_iteration(key):
    kern = get_table(key)
    rng = np.random.default_rng(3)
    for case in range(20):
        n = int(rng.integers(2, 60))
        g = random_graph(rng, n, int(rng.integers(0, 4 * n)))
        seeds = rng.integers(0, n, int(rng.integers(1, 5)))
        weight = rng.uniform(0.1, 1.0, seeds.size)
        restart = float(rng.uniform(0.15, 0.85))
        steps = int(rng.integers(1, 12))
        out = personalized_pagerank(kern, normalized(g), np.diff(g.offsets.astype(np.int64)), seeds, weight,
                                    restart=restart, iterations=steps, tolerance=1e-12, epsilon=1e-30)
        want = dense_ppr(g, seeds, weight, restart, out.steps)
        got = np.zeros(n)
        got[out.nodes] = out.mass
        assert len(set(out.nodes.tolist())) == out.nodes.size, "each node once"
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7, err_msg=f"{key} case {case}")
        assert out.steps <= steps
        assert (out.hops[np.isin(out.nodes, seeds)] == 0).all()


def test_stopping_rules():
    kern = get_table(BACKEND_KEYS[0])
    rng = np.random.default_rng(5)
    g = random_graph(rng, 200, 2000)
    ng, deg = normalized(g), np.diff(g.offsets.astype(np.int64))
    seeds, w = np.array([1, 2, 3]), np.ones(3)
    by_tol = personalized_pagerank(kern, ng, deg, seeds, w, restart=0.5, iterations=255, tolerance=1e-3,
                                   epsilon=1e-12)
    # after t steps what still walks is 0.5^(t+1): 0.5^10 < 1e-3 <= 0.5^9 stops it at t = 9
    assert by_tol.walking < 1e-3 and by_tol.steps == 9
    by_iter = personalized_pagerank(kern, ng, deg, seeds, w, restart=0.5, iterations=3, tolerance=1e-9,
                                    epsilon=1e-12)
    assert by_iter.steps == 3 and not by_iter.partial
    late = personalized_pagerank(kern, ng, deg, seeds, w, restart=0.5, iterations=20, tolerance=1e-9,
                                 epsilon=1e-12, deadline_ns=0)
    assert late.partial and late.steps == 0
    # the walk never leaves what it reached: mass sums to at most 1
    assert by_tol.mass.sum() <= 1.0 + 1e-5


def test_ppr_recall_in_process_and_through_workers_agree():
    rng = np.random.default_rng(9)
    answers = {}
    qs = None                                   # the same queries for both engines
    for workers in (0, 2):
        with engram.Engine(dim=24, workers=workers, routing="workers" if workers else "auto") as eng:
            mem, vecs = linked_space(eng, "ppr-test", np.random.default_rng(9), 800, 24, 4000, 9)
            cfg = mem.configure_recall(mode="ppr", fan="target", ppr_restart=0.4, spread_weight=1.0)
            assert cfg.mode == "ppr" and cfg.ppr_restart == 0.4
            if workers:
                eng.start_workers()
            if qs is None:
                qs = vecs[:10] + 0.3 * rng.standard_normal((10, 24)).astype(np.float32)
            out = []
            for q in qs:
                r = mem.recall(q, k=8, budget_ms=None)
                assert not r.fallback and len(r) == 8
                out.append((r.ids.tolist(), r.scores.tolist(), r.hops.tolist()))
            answers[workers] = out
    for a, b in zip(answers[0], answers[2]):
        assert a[0] == b[0] and a[2] == b[2]
        np.testing.assert_allclose(a[1], b[1], rtol=1e-5)
    assert any(h > 0 for _, _, hops in answers[0] for h in hops), "the walk should bring in associations"


@pytest.mark.parametrize("bad", [dict(mode="pagerank"), dict(ppr_restart=0.0), dict(ppr_restart=1.0),
                                 dict(ppr_iterations=0), dict(ppr_iterations=2.5), dict(ppr_tolerance=-1),
                                 dict(ppr_epsilon=True)])
def test_bad_ppr_settings_are_refused_and_change_nothing(bad):
    with engram.Engine(dim=8, workers=0) as eng:
        mem = eng.space("ppr-bad")
        before = mem.configure_recall()
        with pytest.raises(errors.InvalidInputError, match=next(iter(bad))):
            mem.configure_recall(**bad)
        assert mem.configure_recall() == before
