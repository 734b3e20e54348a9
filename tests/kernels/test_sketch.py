"""The sketch's scan kernel (engram.h's eg_sketch_topk) on every backend and ISA variant:
bit for bit what the numpy oracle gives, which is itself checked against Python integers;
bad arguments are refused with the name of what is wrong."""
from __future__ import annotations

import numpy as np
import pytest

from engram.errors import InvalidInputError

from .backends import BACKEND_KEYS, get_table

#: below, at and past the AVX2 loop's 32- and 64-byte steps, and the sizes recall uses
DIMS = (1, 5, 31, 32, 33, 64, 95, 128, 384, 767)


def _case(n: int, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    rows = rng.integers(-127, 128, (n, dim)).astype(np.int8)
    q = rng.integers(-127, 128, dim).astype(np.int8)
    scale = rng.random(n).astype(np.float32)
    scale[rng.random(n) < 0.1] = 0.0            # hidden rows score 0
    return q, rows, scale


def test_the_oracle_is_the_integer_dot_product_times_the_scale():
    q, rows, scale = _case(200, 33, 1)
    want = [float(np.float32(sum(int(a) * int(b) for a, b in zip(q, r))) * s) for r, s in zip(rows, scale)]
    order = sorted(range(200), key=lambda i: (-want[i], i))[:15]
    idx, sc = get_table("numpy").sketch_topk(q, rows, scale, 15)
    assert idx.tolist() == order
    assert sc.tolist() == [np.float32(want[i]) for i in order]


@pytest.mark.parametrize("key", BACKEND_KEYS)
@pytest.mark.parametrize("dim", DIMS)
def test_every_backend_matches_the_oracle_bit_for_bit(key, dim):
    t, oracle = get_table(key), get_table("numpy")
    for n, k in ((1, 1), (7, 10), (300, 64), (2000, 16)):
        q, rows, scale = _case(n, dim, n * 1000 + dim)
        got, want = t.sketch_topk(q, rows, scale, k), oracle.sketch_topk(q, rows, scale, k)
        assert got[0].tolist() == want[0].tolist(), (key, n, dim)
        assert got[1].tolist() == want[1].tolist(), (key, n, dim)


@pytest.mark.parametrize("key", BACKEND_KEYS)
def test_the_extremes_do_not_overflow_and_ties_go_to_the_lower_row(key):
    t = get_table(key)
    dim = 767                                          # 767 x 127 x 127 fills most of an int32's
    rows = np.full((6, dim), 127, np.int8)             # way in pair sums of the SIMD kernels
    rows[1] = -127
    rows[3, ::2] = -127
    q = np.full(dim, -127, np.int8)
    idx, sc = t.sketch_topk(q, rows, np.ones(6, np.float32), 6)
    assert idx.tolist() == [1, 3, 0, 2, 4, 5]
    assert sc[0] == np.float32(dim * 127 * 127)
    assert sc[2] == sc[3] == sc[4] == sc[5] == np.float32(-dim * 127 * 127)


@pytest.mark.parametrize("key", BACKEND_KEYS)
def test_strided_rows_are_read_as_rows(key):
    """The sketch file's rows are contiguous, but a view with a longer row stride is valid."""
    t = get_table(key)
    q, rows, scale = _case(500, 40, 3)
    wide = np.zeros((500, 64), np.int8)
    wide[:, :40] = rows
    got = t.sketch_topk(q, wide[:, :40], scale, 20)
    want = get_table("numpy").sketch_topk(q, rows, scale, 20)
    assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()


@pytest.mark.parametrize("key", BACKEND_KEYS)
def test_bad_arguments_name_what_is_wrong(key):
    t = get_table(key)
    q, rows, scale = _case(10, 8, 4)
    with pytest.raises(InvalidInputError, match="2-D int8"):
        t.sketch_topk(q, rows.astype(np.float32), scale)
    with pytest.raises(InvalidInputError, match="query must be int8 of length 8"):
        t.sketch_topk(q[:7], rows, scale)
    with pytest.raises(InvalidInputError, match="query must be int8"):
        t.sketch_topk(q.astype(np.int16), rows, scale)
    with pytest.raises(InvalidInputError, match="row_scale must be float32 with one value per row"):
        t.sketch_topk(q, rows, scale[:9])
    with pytest.raises(InvalidInputError, match="k must be"):
        t.sketch_topk(q, rows, scale, -1)
    assert t.sketch_topk(q, rows[:0], scale[:0], 5)[0].shape == (0,)
    assert t.sketch_topk(q, rows, scale, 0)[0].shape == (0,)
    assert t.sketch_topk(q, rows, scale, 50)[0].shape == (10,)     # k past n: every row, ranked
