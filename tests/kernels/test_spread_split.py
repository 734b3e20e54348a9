"""Split hops (eg_spread_fire, eg_spread_gather + eg_spread_merge: the
work-stealing path) in every backend against the float64 oracle: a hop's
frontier cut into random batches, each fired in place or gathered on its own
and merged, must give the oracle's nodes,
hops and activations (within the differential tolerance), whatever the cuts.
Merged in frontier order even the first-touch order is the oracle's; merged
in a shuffled order (as stolen batches come back) the same set.
"""
from __future__ import annotations

import numpy as np
import pytest

from engram.kernels.spreadrun import CsrGraph
from tests.kernels.backends import BACKEND_KEYS, TOLERANCE, family, get_table
from tests.kernels.test_spread_differential import chunk_cases, compare

CASES = 1200          # of the differential suite's first chunk, per backend


def split_spread(t, args, params, rng, shuffle: bool):
    offsets, targets, weights, seeds, seed_act = args
    n = offsets.size - 1
    g = CsrGraph(offsets, targets, weights)
    s = np.asarray(seeds).astype(np.int64)
    a = np.ones(s.size, np.float32) if seed_act is None else np.asarray(seed_act, np.float32)
    acc = np.full(max(n, 1), -1.0, np.float32)
    with t.spread_run(g, s, a, decay=params["decay"], threshold=params["threshold"],
                      cycle_penalty=params["cycle_penalty"], prefetch_distance=params["prefetch_distance"]) as run:
        for _ in range(int(params["max_depth"])):
            if not run.frontier:
                break
            nodes, fire = run.begin_split()
            cuts = np.sort(rng.integers(0, nodes.size + 1, size=int(rng.integers(0, 4))))
            bounds = list(zip([0, *cuts.tolist()], [*cuts.tolist(), nodes.size]))
            if shuffle:
                rng.shuffle(bounds)
            for lo, hi in bounds:
                if rng.random() < 0.3:         # the owner's share: fired in place
                    run.fire_part(lo, hi)
                    continue
                cap = int(weights.size) + 1
                out_v, out_s = np.empty(cap, np.uint32), np.empty(cap, np.float32)
                got = run.gather(np.ascontiguousarray(nodes[lo:hi]), np.ascontiguousarray(fire[lo:hi]),
                                 acc, out_v, out_s)
                assert got >= 0
                assert (acc == -1.0).all(), "gather must leave its accumulator untouched"
                run.merge(out_v[:got], out_s[:got])
            run.end_split()
        return run.result()


@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
@pytest.mark.parametrize("key", BACKEND_KEYS)
def test_split_hops_match_the_oracle(key, shuffle):
    t = get_table(key)
    tol = TOLERANCE["spread split"][family(key)]    # numpy here runs float32 steps, like the kernels
    rng = np.random.default_rng(7)
    checked = 0
    for i, (args, params, want) in enumerate(chunk_cases(0)[:CASES]):
        if want[3] or args[0].size < 2:      # near a threshold tie, or an empty graph
            continue
        got = split_spread(t, args, params, rng, shuffle)
        what = f"{key} case {i} {params}"
        if shuffle:
            order, w_order = np.argsort(got[0]), np.argsort(want[0])
            got = tuple(x[order] for x in got)
            want = tuple(x[w_order] for x in want[:3])
        compare(got, want, tol, what)
        checked += 1
    assert checked > CASES // 2


@pytest.mark.parametrize("key", BACKEND_KEYS)
def test_gather_out_of_space_leaves_the_accumulator_clean(key):
    t = get_table(key)
    n = 50
    offsets = np.arange(0, 2 * n + 1, 2, dtype=np.uint64)
    targets = ((np.arange(2 * n) * 7) % n).astype(np.uint32)
    g = CsrGraph(offsets, targets, np.ones(2 * n, np.float32))
    acc = np.full(n, -1.0, np.float32)
    with t.spread_run(g, np.arange(n), np.ones(n, np.float32)) as run:
        nodes, fire = run.begin_split()
        out_v, out_s = np.empty(5, np.uint32), np.empty(5, np.float32)
        assert run.gather(np.ascontiguousarray(nodes), np.ascontiguousarray(fire), acc, out_v, out_s) == -2
        assert (acc == -1.0).all()
        big_v, big_s = np.empty(2 * n, np.uint32), np.empty(2 * n, np.float32)
        got = run.gather(np.ascontiguousarray(nodes), np.ascontiguousarray(fire), acc, big_v, big_s)
        assert got == n and sorted(big_v[:got].tolist()) == list(range(n))
        # a fixed identity, not the oracle: two in-edges each, act 1 x decay 0.7 x weight 1,
        # summed: float32 0.7 is 1.7e-8 (relative) from 0.7, so 1e-6 is ~17 ulp
        np.testing.assert_allclose(big_s[:got], 2 * 0.7, rtol=1e-6)
