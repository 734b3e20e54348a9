"""The budgeted scan (KernelTable._topk_until: recall's similarity scan under a deadline)
on every backend: with time to spare it equals one _topk over every row; with the
deadline already passed it scans exactly the first chunk; chunks' results merge best
first with equal scores by lower row, masks and norms offset with their chunk."""
from __future__ import annotations

import time

import numpy as np
import pytest

from .backends import BACKEND_KEYS, get_table

FAR = 1 << 62          # a deadline that never comes
SIZES = (1, 2, 3, 5, 7, 97, 1000)


def _rows(n, dim, dtype, seed):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(dtype)


@pytest.mark.parametrize("key", BACKEND_KEYS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_with_time_to_spare_it_is_one_scan_of_every_row(key, dtype):
    t = get_table(key)
    for n in SIZES:
        rows = _rows(n, 13, dtype, n)
        q = np.random.default_rng(n + 1).standard_normal(13).astype(np.float32)
        mask = (np.arange(n) % 4 != 1).astype(np.uint8)
        norms = np.linalg.norm(rows.astype(np.float32), axis=1).astype(np.float32)
        for k in (1, 5, n + 3):
            for chunk in (1, 3, 64, n + 1):
                for m, nr in ((None, None), (mask, norms)):
                    want = t._topk("cosine", q, rows, k, m, nr)
                    idx, sc, scanned = t._topk_until("cosine", q, rows, k, m, nr, FAR, chunk)
                    assert scanned == n
                    np.testing.assert_array_equal(idx, want[0], err_msg=f"n={n} k={k} chunk={chunk}")
                    np.testing.assert_allclose(sc, want[1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("key", BACKEND_KEYS)
def test_past_the_deadline_only_the_first_chunk_is_scanned(key):
    t = get_table(key)
    rows = _rows(500, 8, np.float32, 0)
    q = rows[400].copy()                     # its best match is past the first chunk
    idx, sc, scanned = t._topk_until("cosine", q, rows, 3, None, None, 0, 100)
    assert scanned == 100
    np.testing.assert_array_equal(idx, t._topk("cosine", q, rows[:100], 3, None, None)[0])
    idx, _, scanned = t._topk_until("cosine", q, rows, 3, None, None, time.perf_counter_ns() + 10**10, 100)
    assert scanned == 500 and idx[0] == 400


@pytest.mark.parametrize("key", BACKEND_KEYS)
def test_equal_scores_across_chunks_keep_the_lower_row(key):
    t = get_table(key)
    rows = _rows(50, 6, np.float32, 1)
    for r in (3, 17, 18, 40):                # the same vector in several chunks of 7
        rows[r] = rows[0]
    idx, sc, _ = t._topk_until("cosine", rows[0].copy(), rows, 4, None, None, FAR, 7)
    assert idx.tolist() == [0, 3, 17, 18]
    idx, _, _ = t._topk_until("cosine", rows[0].copy(), rows, 5, None, None, FAR, 7)
    assert idx.tolist() == [0, 3, 17, 18, 40]


@pytest.mark.parametrize("key", BACKEND_KEYS)
def test_empty_and_k_zero(key):
    t = get_table(key)
    rows = _rows(0, 4, np.float32, 0)
    q = np.ones(4, np.float32)
    idx, sc, scanned = t._topk_until("cosine", q, rows, 3, None, None, FAR, 8)
    assert idx.shape == sc.shape == (0,) and scanned == 0
