"""M:N top-k (a batch of queries): every backend equals its own 1:N answers
and the float64 oracle (the numpy backend, which is that oracle, an independent
one: tests/kernels/independent.py), for every dtype, blocking boundary and mask."""
import numpy as np
import pytest

from engram.errors import DimensionError, InvalidInputError, NonFiniteError
from engram.kernels.reference import scores, select_topk

from . import independent
from .backends import BACKEND_KEYS, LOADED, TOLERANCE, get_table

DTYPES = (np.float32, np.float16, np.int8)


def make_rows(rng, n, dim, dt):
    r = rng.standard_normal((n, dim)) * 30
    return np.clip(np.rint(r), -128, 127).astype(dt) if dt == np.int8 else r.astype(dt)


@pytest.mark.parametrize("key", BACKEND_KEYS)
@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
def test_batch_equals_oracle_and_single_queries(key, dt):
    t = get_table(key)
    rng = np.random.default_rng(17)
    # m around the 8-heap stack limit; n around the 128-row block
    for m, n, dim, k in [(1, 5, 3, 2), (2, 127, 8, 5), (8, 128, 17, 10), (9, 129, 33, 129),
                         (17, 300, 64, 7), (3, 1000, 97, 1)]:
        rows = make_rows(rng, n, dim, dt)
        qs = rng.standard_normal((m, dim)).astype(np.float32)
        mask = rng.random(n) < 0.7 if m % 2 else None
        for metric in ("cosine", "dot"):
            fn = getattr(t, f"{metric}_topk")
            idx, sc = fn(qs, rows, k, mask)
            live = n if mask is None else int(mask.sum())
            assert idx.shape == sc.shape == (m, min(k, live))
            for j in range(m):
                one_idx, one_sc = fn(qs[j], rows, k, mask)
                assert np.array_equal(idx[j], one_idx) and np.array_equal(sc[j], one_sc), (m, n, j)
                exact = scores(metric, qs[j], rows)
                _, want = select_topk(exact, k, None if mask is None else mask.astype(np.uint8))
                scale = np.abs(exact).max() if metric == "dot" else 1.0
                assert np.allclose(sc[j], want, rtol=0, atol=TOLERANCE["topk batch"] * max(scale, 1.0))
                if key == "numpy":   # the oracle above is the numpy backend itself
                    independent.check_topk(metric, qs[j], rows, k, mask, idx[j], sc[j], what=f"m={m} n={n} j={j}")


def test_batch_validation():
    t = get_table(LOADED[0])
    rows = np.ones((4, 3), np.float32)
    with pytest.raises(DimensionError):
        t.cosine_topk(np.ones((2, 4)), rows, 2)
    with pytest.raises(NonFiniteError):
        t.cosine_topk(np.array([[1.0, np.nan, 0.0]]), rows, 2)
    idx, sc = t.cosine_topk(np.ones((0, 3)), rows, 2)
    assert idx.shape == (0, 0)
    idx, sc = t.dot_topk(np.ones((2, 3)), rows, 0)
    assert idx.shape == (2, 0)


@pytest.mark.parametrize("key", BACKEND_KEYS)
@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
def test_cosine_with_precomputed_norms(key, dt):
    """norms= are used as given (the oracle divides by the same values); true norms
    give what on-the-fly norms give; one query and batches alike."""
    t = get_table(key)
    rng = np.random.default_rng(23)
    for n, dim in [(1, 1), (7, 3), (129, 17), (700, 61)]:
        rows = make_rows(rng, n, dim, dt)
        true = np.linalg.norm(rows.astype(np.float64), axis=1).astype(np.float32)
        fake = (true * rng.uniform(0.5, 2.0, n)).astype(np.float32)
        q = rng.standard_normal(dim)
        for norms in (true, fake):
            exact = scores("cosine", q, rows, norms)
            _, want = select_topk(exact, 9)
            got_i, got = t.cosine_topk(q, rows, 9, norms=norms)
            assert np.allclose(got, want, rtol=0, atol=TOLERANCE["topk norms"])
            if key == "numpy":       # the oracle above is the numpy backend itself
                independent.check_topk("cosine", q.astype(np.float32), rows, 9, None, got_i, got, norms=norms)
            qs = rng.standard_normal((3, dim))
            _, got_b = t.cosine_topk(qs, rows, 9, norms=norms)
            for j in range(3):
                _, want_j = select_topk(scores("cosine", qs[j], rows, norms), 9)
                assert np.allclose(got_b[j], want_j, rtol=0, atol=TOLERANCE["topk norms"])
        i_fly, s_fly = t.cosine_topk(q, rows, 9)
        i_pre, s_pre = t.cosine_topk(q, rows, 9, norms=true)
        assert np.allclose(s_fly, s_pre, rtol=0, atol=TOLERANCE["topk norms"])


def test_norms_validation():
    t = get_table(LOADED[0])
    rows = np.ones((4, 3), np.float32)
    with pytest.raises(InvalidInputError, match="one value per row"):
        t.cosine_topk(np.ones(3), rows, 2, norms=np.ones(3))
    with pytest.raises(NonFiniteError):
        t.cosine_topk(np.ones(3), rows, 2, norms=np.array([1, 1, np.nan, 1]))
    with pytest.raises(InvalidInputError, match=">= 0"):
        t.cosine_topk(np.ones(3), rows, 2, norms=-np.ones(4))
