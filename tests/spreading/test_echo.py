"""The echo bound (issue 18; csrc/kernels/spread.c): activation that comes back to a node
around a cycle never lifts it above decay x the largest activation fired in that hop, so a
dense cluster cannot raise its members to their seed's level however large it is, and
spreading deeper adds nothing once every member is reached. Through the public API
(space.spread, space.recall), on cliques like benches/quality/echo.py's, with every kernel
backend for the split hop. Without the bound every member of these cliques reaches 1.0."""
import numpy as np
import pytest

import engram
from engram.kernels.spreadrun import CsrGraph
from engram.recall.pipeline import seed_activation
from tests.kernels.backends import BACKEND_KEYS, get_table


def clique(eng, n: int, w: float):
    mem = eng.space(f"clique-{n}")
    ids = mem.remember(np.random.default_rng(n).standard_normal((n, 8)).astype(np.float32))
    src, dst = np.meshgrid(ids, ids, indexing="ij")
    off = src != dst
    mem.link(src[off], dst[off], np.full(int(off.sum()), w, np.float32))
    mem.compact()
    return mem, ids


@pytest.mark.parametrize("fan", ["none", "source"])
@pytest.mark.parametrize("seed_act", [1.0, 0.5])
def test_a_clique_does_not_lift_its_members_to_the_seed(fan, seed_act):
    with engram.Engine(dim=8, workers=0) as eng:
        mem, ids = clique(eng, 200, 1.0)
        seed = int(ids[0])
        sums = {}
        for depth in (1, 2, 4, 16):
            got, act = mem.spread({seed: seed_act}, max_depth=depth, fan=fan)
            assert got.size == 200
            a = dict(zip(got.tolist(), act.tolist()))
            members = np.array([a[int(i)] for i in ids[1:]])
            assert a[seed] == pytest.approx(seed_act), (fan, depth)       # nothing comes back to the seed
            assert members.max() < seed_act, (fan, depth, members.max())  # 1.0 without the bound
            sums[depth] = float(act.sum())
        # hop 1 reaches every member; what the cycles return after it adds nothing
        assert sums[16] == pytest.approx(sums[1], rel=1e-6), sums


def test_recall_keeps_each_seed_where_its_own_match_put_it():
    """In recall (the query is a member's own vector, so it is the strongest seed, and ten
    more members are seeds): what comes back around the clique lifts no seed above the
    larger of its own match's activation and decay x the strongest activation fired (1.0
    here: the members the twenty seeds all link to converge to the clamp at hop 1, which
    is fan-in, not an echo). Without the bound every seed ends at 1.0."""
    with engram.Engine(dim=8, workers=0) as eng:
        mem, ids = clique(eng, 200, 1.0)
        cfg = mem.configure_recall()
        res = mem.recall(mem.get([int(ids[0])]).vectors[0], k=10, budget_ms=None)
        assert int(res.ids[0]) == int(ids[0])
        seeds = res.origin == "seed"
        a0 = seed_activation(res.similarity[seeds].astype(np.float64), cfg)
        assert seeds.sum() >= 5
        assert (res.activation[seeds] <= np.maximum(a0, cfg.spread.decay) + 1e-6).all(), (res.activation, a0)


@pytest.mark.parametrize("key", BACKEND_KEYS)
def test_a_split_hop_keeps_the_whole_frontiers_ceiling(key):
    """A hop split in two parts (eg_spread_fire) and in gathered batches (eg_spread_merge)
    holds echoes to the ceiling of the whole frontier, not of its part: the same result
    as the unsplit hop. The strongest node fires in the first part only."""
    t = get_table(key)
    n = 40
    a, b = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    keep = a != b
    offsets = np.zeros(n + 1, np.uint64)
    offsets[1:] = np.cumsum(keep.sum(axis=1))
    g = CsrGraph(offsets, b[keep].astype(np.uint32), np.full(int(keep.sum()), 0.9, np.float32))
    seeds = np.arange(n, dtype=np.uint32)
    acts = np.linspace(0.05, 0.6, n).astype(np.float32)[::-1].copy()    # the strongest first
    whole = t.spread_graph(g, seeds, acts, max_depth=1, decay=0.7, threshold=0.0, cycle_penalty=0.5)
    for split in ("parts", "batches"):
        with t.spread_run(g, seeds, acts, decay=0.7, threshold=0.0, cycle_penalty=0.5) as run:
            nodes, fire = run.begin_split()
            if split == "parts":
                run.fire_part(0, 5)
                run.fire_part(5, n)
            else:
                acc = t.gather_acc(n)
                for lo, hi in ((0, 5), (5, n)):
                    v, s = np.empty(n, np.uint32), np.empty(n, np.float32)
                    got = run.gather(nodes[lo:hi].copy(), fire[lo:hi].copy(), acc, v, s)
                    run.merge(v[:got], s[:got])
            run.end_split()
            res = run.result()
        np.testing.assert_allclose(res[1], whole[1], rtol=1e-6, err_msg=f"{key} {split}")
        # every seed ends at most at the ceiling 0.7 x 0.6 = 0.42 or where it began
        assert (res[1] <= np.maximum(acts, np.float32(0.7) * np.float32(0.6)) + 1e-7).all(), key
