"""KernelTable._rescore (recall's exact re-scoring of an approximate index's candidates)
on every backend: each candidate's score is what the same backend's scan gives its row,
the numpy oracle agrees within the top-k tolerance, and what must be skipped is skipped:
ids outside the node records, forgotten memories, a record whose row is not its own (a
memory moving between tiers), rows past the published count, a tier with no table."""
from __future__ import annotations

import numpy as np
import pytest

from engram.layout import NODE_HOT_DTYPE

from .backends import BACKEND_KEYS, get_table

TIER_AT = NODE_HOT_DTYPE.fields["tier"][1]
FLAGS_AT = NODE_HOT_DTYPE.fields["flags"][1]
FORGOTTEN = 0x4
DIM = 37              # not a multiple of any vector width: the kernels' tails run too
DTYPES = (np.float32, np.float16, np.int8)


def _space(n_nodes=60, seed=0):
    """Node records spread over three tier tables (rows padded past dim, as the shared tables are)."""
    rng = np.random.default_rng(seed)
    hot = np.zeros(n_nodes, NODE_HOT_DTYPE)
    hot["tier"] = rng.integers(0, 3, n_nodes)
    node_row = np.zeros(n_nodes, np.uint32)
    tables = []
    for t, dt in enumerate(DTYPES):
        mine = np.flatnonzero(hot["tier"] == t)
        rows = np.zeros((len(mine) + 5, DIM + 11), dt)
        data = rng.standard_normal((len(mine) + 5, DIM)) * (40 if dt == np.int8 else 1)
        rows[:, :DIM] = data.astype(dt)
        row_node = np.full(len(mine) + 5, 0xFFFFFFFF, np.uint32)
        order = rng.permutation(len(mine))
        row_node[order] = mine
        node_row[mine] = order
        norm = np.linalg.norm(rows[:, :DIM].astype(np.float64), axis=1).astype(np.float32)
        tables.append([rows[:, :DIM], row_node, norm, len(mine)])
    return hot, node_row, tables


@pytest.mark.parametrize("key", BACKEND_KEYS)
def test_scores_are_the_scan_s_own_and_the_oracle_agrees(key):
    t, oracle = get_table(key), get_table("numpy")
    hot, node_row, tables = _space()
    q = np.random.default_rng(7).standard_normal(DIM).astype(np.float32)
    ids = np.random.default_rng(8).permutation(hot.shape[0]).astype(np.int64)
    got_ids, got_sc, got_tier = t._rescore("cosine", q, ids, hot, TIER_AT, FLAGS_AT, FORGOTTEN, node_row,
                                           tuple(map(tuple, tables)))
    assert got_ids.tolist() == ids.tolist()          # every one scored, in the order given
    assert got_tier.tolist() == hot["tier"][ids].tolist()
    for i, s, tier in zip(got_ids, got_sc, got_tier):
        rows, _, norm, _ = tables[tier]
        r = node_row[i]
        _, want = t._topk("cosine", q, rows[r:r + 1], 1, None, norm[r:r + 1])
        assert s == want[0]                          # bit for bit: recall merges them with the scan's
    o_ids, o_sc, _ = oracle._rescore("cosine", q, ids, hot, TIER_AT, FLAGS_AT, FORGOTTEN, node_row,
                                     tuple(map(tuple, tables)))
    assert o_ids.tolist() == got_ids.tolist()
    np.testing.assert_allclose(got_sc, o_sc, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("key", BACKEND_KEYS)
def test_what_must_not_be_scored_is_skipped(key):
    t = get_table(key)
    hot, node_row, tables = _space(seed=1)
    q = np.random.default_rng(3).standard_normal(DIM).astype(np.float32)
    n = hot.shape[0]
    forgotten, moving, unpublished = 4, 9, 12
    hot["flags"][forgotten] |= FORGOTTEN
    tier = hot["tier"][moving]
    node_row[moving] = (node_row[moving] + 1) % tables[tier][3]      # points at another memory's row
    u_tier = hot["tier"][unpublished]
    tables[u_tier][3] = int(node_row[unpublished])                   # its row is past the published count
    published_before = [i for i in range(n) if hot["tier"][i] == u_tier and node_row[i] >= tables[u_tier][3]]
    ids = np.array([-1, n, n + 1000, *range(n)], np.int64)
    got_ids, _, _ = t._rescore("cosine", q, ids, hot, TIER_AT, FLAGS_AT, FORGOTTEN, node_row, tuple(map(tuple, tables)))
    skipped = {forgotten, moving, *published_before}
    assert got_ids.tolist() == [i for i in range(n) if i not in skipped]
    # a tier without a table scores none of its memories
    no_warm = (tuple(tables[0]), None, tuple(tables[2]))
    got_ids, _, got_tier = t._rescore("cosine", q, np.arange(n, dtype=np.int64), hot, TIER_AT, FLAGS_AT,
                                      FORGOTTEN, node_row, no_warm)
    assert 1 not in got_tier.tolist() and len(got_ids) == sum(1 for i in range(n) if hot["tier"][i] != 1
                                                                 and i not in skipped)
    # nothing asked, nothing scored
    assert t._rescore("cosine", q, np.zeros(0, np.int64), hot, TIER_AT, FLAGS_AT, FORGOTTEN, node_row,
                      tuple(map(tuple, tables)))[0].shape == (0,)
