"""The sketch's scan kernel (engram.h's eg_sketch_topk: rows of 4-bit codes, two a byte)
on every backend and ISA variant: bit for bit what the numpy oracle gives, which is
itself checked against Python integers; bad arguments are refused with the name of what
is wrong."""
from __future__ import annotations

import numpy as np
import pytest

from engram.errors import InvalidInputError

from .backends import BACKEND_KEYS, get_table

#: row bytes below, at and past the AVX2 loop's 32- and 64-byte steps, and the sizes recall
#: uses (192: 384-d, 384: 768-d)
DIMS = (1, 5, 31, 32, 33, 64, 95, 128, 192, 384, 767)


def _case(n: int, dim: int, seed: int):
    """n rows of ``dim`` bytes (any codes: 0, which quantize never writes, included) and a
    query of 2 x dim in int8's whole range."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 256, (n, dim)).astype(np.uint8)
    q = rng.integers(-128, 128, 2 * dim).astype(np.int8)
    scale = rng.random(n).astype(np.float32)
    scale[rng.random(n) < 0.1] = 0.0            # hidden rows score 0
    return q, rows, scale


def test_the_oracle_is_the_integer_dot_product_times_the_scale():
    q, rows, scale = _case(200, 33, 1)

    def value(r, j):                                   # element j of a row: its nibble - 8
        return (int(r[j]) & 15 if j < 33 else int(r[j - 33]) >> 4) - 8
    want = [float(np.float32(sum(int(q[j]) * value(r, j) for j in range(66))) * s) for r, s in zip(rows, scale)]
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
    dim = 767                                          # the SIMD kernels' int16 lanes each sum four
    rows = np.full((6, dim), 0x00, np.uint8)           # products of 15 x 128 before they widen
    rows[1] = 0xFF                                     # every element 15 - 8 = 7
    rows[3, ::2] = 0xFF
    q = np.full(2 * dim, -128, np.int8)
    idx, sc = t.sketch_topk(q, rows, np.ones(6, np.float32), 6)
    assert idx.tolist() == [0, 2, 4, 5, 3, 1]          # all -8 against -128 scores highest
    assert sc[0] == np.float32(2 * dim * 128 * 8)
    assert sc[0] == sc[1] == sc[2] == sc[3]
    assert sc[5] == np.float32(-2 * dim * 128 * 7)


@pytest.mark.parametrize("key", BACKEND_KEYS)
def test_strided_rows_are_read_as_rows(key):
    """The sketch file's rows are contiguous, but a view with a longer row stride is valid."""
    t = get_table(key)
    q, rows, scale = _case(500, 40, 3)
    wide = np.zeros((500, 64), np.uint8)
    wide[:, :40] = rows
    got = t.sketch_topk(q, wide[:, :40], scale, 20)
    want = get_table("numpy").sketch_topk(q, rows, scale, 20)
    assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()


@pytest.mark.parametrize("key", BACKEND_KEYS)
def test_bad_arguments_name_what_is_wrong(key):
    t = get_table(key)
    q, rows, scale = _case(10, 8, 4)
    with pytest.raises(InvalidInputError, match="2-D uint8"):
        t.sketch_topk(q, rows.astype(np.int8), scale)
    with pytest.raises(InvalidInputError, match="2-D uint8"):
        t.sketch_topk(q[:0], rows[:, :0], scale)
    with pytest.raises(InvalidInputError, match="query must be int8 of length 16"):
        t.sketch_topk(q[:8], rows, scale)
    with pytest.raises(InvalidInputError, match="query must be int8"):
        t.sketch_topk(q.astype(np.int16), rows, scale)
    with pytest.raises(InvalidInputError, match="row_scale must be float32 with one value per row"):
        t.sketch_topk(q, rows, scale[:9])
    with pytest.raises(InvalidInputError, match="k must be"):
        t.sketch_topk(q, rows, scale, -1)
    assert t.sketch_topk(q, rows[:0], scale[:0], 5)[0].shape == (0,)
    assert t.sketch_topk(q, rows, scale, 0)[0].shape == (0,)
    assert t.sketch_topk(q, rows, scale, 50)[0].shape == (10,)     # k past n: every row, ranked
