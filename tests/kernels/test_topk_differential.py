"""Differential test of cosine_topk / dot_topk: every backend and ISA variant
against a float64 oracle (engram.kernels.reference), on generated cases.

Each (backend, dtype, metric) test runs CASES_PER_TEST cases, so every backend
sees 4 * CASES_PER_TEST >= 10,000 cases: every dim 1..97, n 0..300 plus a few
large n, k in {0, 1, 5, n, n+3}, masks (none, random, all-zero, all-one, and
masked rows poisoned with NaN), strided / offset / byte-misaligned row views
whose unused elements are NaN (so a kernel that reads outside the view fails),
extreme magnitudes, zero rows and duplicate rows.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import engram.kernels
from engram.errors import InvalidInputError
from engram.kernels.reference import scores as oracle_scores
from engram.kernels.reference import select_topk

from . import independent
from .backends import AVAILABLE, BACKEND_KEYS, KERNEL_KEYS, LOADED, TOLERANCE, get_table

CASES_PER_TEST = 2500          # x 2 dtypes x 2 metrics = 10,000 cases per backend
DTYPES = ("float32", "float16", "int8")
METRICS = ("cosine", "dot")
F16_MAX = 65504.0




def test_every_backend_and_isa_is_listed():
    isas = engram.kernels.cpu_isas()
    expected = {f"{b}/{i}" for b in ("c", "zig") for i in isas} | {"numba", "numpy"}
    assert set(AVAILABLE) == expected
    for key in ("c/" + isas[0], "numba", "numpy"):
        assert not isinstance(AVAILABLE[key], Exception), AVAILABLE[key]


# ---------------------------------------------------------------- the checker

def check_topk(metric, q, rows, k, mask, idx, sc, tol, ties=True):
    """Assert (idx, sc) is a correct top-k of rows; return the worst normalised error.

    ties=False skips the two tie-order checks: the numpy backend ranks by its float64
    scores, so two different rows whose float32 scores are equal (cosines of [2, 3]
    and [4, 6]) may come out in either order; identical rows it keeps in index order
    (test_numpy_backend_tie_order, and independent.check_topk).
    """
    n = rows.shape[0]
    keep = np.ones(n, bool) if mask is None else np.asarray(mask).astype(bool)
    n_keep = int(keep.sum())
    assert isinstance(idx, np.ndarray) and idx.dtype == np.int64
    assert isinstance(sc, np.ndarray) and sc.dtype == np.float32
    assert idx.shape == sc.shape == (min(k, n_keep),), (idx.shape, sc.shape, k, n_keep)
    if idx.size == 0:
        return 0.0
    assert idx.min() >= 0 and idx.max() < n, idx
    assert np.unique(idx).size == idx.size, f"duplicate indices {idx}"
    assert keep[idx].all(), f"masked rows returned: {idx[~keep[idx]]}"
    assert np.isfinite(sc).all(), sc
    assert (sc[:-1] >= sc[1:]).all(), f"scores not sorted descending: {sc}"
    tied = sc[:-1] == sc[1:]
    assert not ties or (idx[:-1][tied] < idx[1:][tied]).all(), f"equal scores not by lower index first: {idx} {sc}"

    exact = oracle_scores(metric, q, rows)
    if metric == "dot":
        with np.errstate(invalid="ignore"):  # NaN-poisoned masked rows
            scale = np.maximum(1.0, np.linalg.norm(rows.astype(np.float64), axis=1)
                               * np.linalg.norm(q.astype(np.float64)))
    else:
        scale = np.ones(n)
        assert (np.abs(sc) <= 1 + tol).all(), sc
    t = tol * scale
    err = np.abs(sc.astype(np.float64) - exact[idx])
    bad = err > t[idx]
    assert not bad.any(), (f"scores off: idx {idx[bad]} got {sc[bad]} exact {exact[idx][bad]} "
                           f"(tolerance {t[idx][bad]})")
    # A correct top-k up to ties within tolerance: no unselected row may be
    # better than a selected one by more than both rows' tolerances.
    unsel = keep.copy()
    unsel[idx] = False
    if unsel.any():
        best_left = np.max(exact[unsel] - t[unsel])
        worst_taken = np.min(exact[idx] + t[idx])
        assert best_left <= worst_taken, (
            f"row {np.flatnonzero(unsel)[np.argmax(exact[unsel] - t[unsel])]} (exact {best_left}) "
            f"beats a returned row (exact + tol {worst_taken})")
    # The sorted score vector equals the oracle's top-k (the k-th best is matched).
    _, oracle_top = select_topk(exact, k, keep)
    assert np.all(np.abs(sc - oracle_top) <= t[keep].max()), (sc, oracle_top)
    # Rows with identical bytes score identically, so a tie at the k boundary
    # must keep the lower indices: no unselected duplicate below a selected one.
    if ties:
        kept = np.flatnonzero(keep)
        flat = np.ascontiguousarray(rows[kept]).view(np.dtype((np.void, rows.itemsize * rows.shape[1])))
        _, group = np.unique(flat.ravel(), return_inverse=True)
        group = group.ravel()
        sel = np.isin(kept, idx)
        max_sel = np.full(group.max() + 1, -1)
        np.maximum.at(max_sel, group[sel], kept[sel])
        min_unsel = np.full(group.max() + 1, n)
        np.minimum.at(min_unsel, group[~sel], kept[~sel])
        assert (min_unsel > max_sel).all(), "a duplicate row with a lower index was dropped for a higher one"
    if metric == "cosine":
        zero_rows = ~rows[idx].astype(np.float32).any(axis=1)
        assert (sc[zero_rows] == 0).all(), "cosine of an all-zero row must be 0"
        if not q.any():
            assert (sc == 0).all()
    return float(np.max(err / scale[idx]))


# ---------------------------------------------------------------- case generation

KINDS = ("normal", "rowscale", "ints", "dups", "zeros", "large", "tiny")
KIND_P = (0.30, 0.15, 0.13, 0.14, 0.12, 0.08, 0.08)
LAYOUTS = ("contig", "wide", "step", "offset", "bytes", "wide_step")
LAYOUT_P = (0.40, 0.15, 0.12, 0.13, 0.10, 0.10)


def gen_values(rng, kind, dtype, metric, n, dim):
    """(q float32, rows float64 values exactly representable in dtype)."""
    f16 = dtype == "float16"
    q = rng.standard_normal(dim) * 10 ** rng.uniform(-2, 2)
    if kind == "normal":
        r = rng.standard_normal((n, dim)) * 10 ** rng.uniform(-2, 3 if f16 else 4)
    elif kind == "rowscale":
        r = rng.standard_normal((n, dim)) * 10 ** rng.uniform(-3, 3, size=(n, 1))
    elif kind == "ints":
        r = rng.integers(-3, 4, size=(n, dim)).astype(np.float64)
        q = rng.integers(-3, 4, size=dim).astype(np.float64)
    elif kind == "dups":
        pool = rng.standard_normal((max(1, n // 4), dim))
        r = pool[rng.integers(0, pool.shape[0], size=n)]
    elif kind == "zeros":
        r = rng.standard_normal((n, dim))
        r[rng.random(n) < 0.3] = 0.0
        if rng.random() < 0.2:
            q = np.zeros(dim)
    elif kind == "large":
        sign = rng.choice([-1.0, 1.0], size=(n, dim))
        if f16:   # up to the largest finite half
            r = sign * rng.uniform(1e4, F16_MAX, size=(n, dim))
        else:     # squares stay finite in f32 (see test_cosine_f32_extreme_magnitudes)
            r = sign * rng.uniform(1e14, 1e16, size=(n, dim))
    elif kind == "tiny":
        if f16:   # half subnormals: bit patterns with a zero exponent
            bits = rng.integers(1, 1024, size=(n, dim), dtype=np.uint16)
            bits |= (rng.random((n, dim)) < 0.5).astype(np.uint16) << 15
            r = bits.view(np.float16).astype(np.float64)
        elif metric == "dot":  # f32 subnormals
            r = rng.standard_normal((n, dim)) * 1e-40
        else:     # tiny but with normal squares (subnormal rows: test_cosine_f32_extreme_magnitudes)
            r = rng.standard_normal((n, dim)) * 1e-15
    else:
        raise AssertionError(kind)
    if f16:
        r = np.clip(r, -F16_MAX, F16_MAX)
    if dtype == "int8":   # the same shapes (duplicates, zero rows) quantised to the full int8 range
        peak = np.abs(r).max() if r.size else 1.0
        r = np.clip(np.rint(r / (peak if peak > 0 else 1.0) * 127), -128, 127)
    return q.astype(np.float32), r.astype(dtype)


def poison(dt):
    """A value for elements outside a view: NaN for floats; for int8, an extreme that skews results."""
    return np.nan if dt.kind == "f" else -128


def place(rng, vals, layout):
    """A view of vals in the given memory layout; elements outside the view are poisoned."""
    n, dim = vals.shape
    dt = vals.dtype
    bad = poison(dt)
    if n == 0:   # numpy >= 2.4 gives np.empty((0, dim)) zero strides: see test_empty_rows_with_zero_strides
        return np.empty((1, dim), dt)[:0]
    if layout == "contig":
        return vals.copy()
    if layout == "wide":
        extra = int(rng.integers(1, 18))
        c = int(rng.integers(0, extra + 1))
        big = np.full((n, dim + extra), bad, dt)
        view = big[:, c:c + dim]
    elif layout == "step":
        s = int(rng.integers(2, 4))
        big = np.full((n * s, dim), bad, dt)
        view = big[::s]
    elif layout == "offset":   # 1 element in (f16: an odd element offset)
        off = 1 if dt == np.float32 else int(rng.choice([1, 3, 5]))
        buf = np.full(n * dim + off, bad, dt)
        view = buf[off:].reshape(n, dim)
    elif layout == "bytes":    # not even aligned to the element size
        raw = bytearray(n * dim * dt.itemsize + 1)
        view = np.frombuffer(raw, dt, count=n * dim, offset=1).reshape(n, dim)
        assert not view.flags.aligned or dt.itemsize == 1
    elif layout == "wide_step":
        big = np.full((2 * n, dim + 3), bad, dt)
        view = big[::2, 1:dim + 1]
    else:
        raise AssertionError(layout)
    view[...] = vals
    return view


def gen_case(rng, i, dtype, metric):
    dim = 1 + i % 97
    u = rng.random()
    if u < 0.70:
        n = int(rng.integers(0, 33))
    elif u < 0.98:
        n = int(rng.integers(33, 301))
    else:
        n = int(rng.choice([1000, 2049, 4099]))
    kind = rng.choice(KINDS, p=KIND_P)
    q, vals = gen_values(rng, kind, dtype, metric, n, dim)
    rows = place(rng, vals, rng.choice(LAYOUTS, p=LAYOUT_P))
    u = rng.random()
    mask = None
    if u < 0.40:
        pass
    elif u < 0.80 or u >= 0.93:
        mask = rng.random(n) < rng.choice([0.1, 0.5, 0.9])
        if u >= 0.93 and n:  # masked rows are poisoned: a kernel must not read them
            rows[~mask] = poison(rows.dtype)
        if rng.random() < 0.5:
            mask = mask.astype(np.uint8)
    elif u < 0.87:
        mask = np.zeros(n, rng.choice([np.uint8, np.bool_]))
    else:
        mask = np.ones(n, np.uint8)
    k = int(rng.choice([0, 1, 5, n, n + 3]))
    if rng.random() < 0.3:
        k = np.int64(k)
    return q, rows, k, mask


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("key", BACKEND_KEYS)
def test_differential(key, dtype, metric):
    t = get_table(key)
    fn = t.cosine_topk if metric == "cosine" else t.dot_topk
    seed = [DTYPES.index(dtype), METRICS.index(metric), 20240611]
    rng = np.random.default_rng(seed)   # same cases for every backend
    tol = TOLERANCE["topk"][dtype]
    worst = 0.0
    for i in range(CASES_PER_TEST):
        q, rows, k, mask = gen_case(rng, i, dtype, metric)
        idx, sc = fn(q, rows, k, mask)
        try:
            worst = max(worst, check_topk(metric, q, rows, k, mask, idx, sc, tol, ties=key != "numpy"))
            if key == "numpy":       # check_topk's oracle is the numpy backend itself
                independent.check_topk(metric, q, rows, k, mask, idx, sc)
        except AssertionError as e:
            raise AssertionError(f"case {i} (seed {seed}): n={rows.shape[0]} dim={rows.shape[1]} k={k} "
                                 f"strides={rows.strides} mask={'none' if mask is None else mask.sum()}: {e}") from e
    assert worst <= tol


# ---------------------------------------------------------------- targeted cases

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("key", KERNEL_KEYS)   # numpy: next test
def test_ties_come_out_lower_index_first(key, dtype):
    t = get_table(key)
    rng = np.random.default_rng(5)
    for dim in (1, 3, 16, 17, 37, 64, 97):
        base = rng.standard_normal((4, dim))
        q = base[2].astype(np.float32)
        base[[0, 1, 3]] *= -np.sign(base[[0, 1, 3]] @ base[2])[:, None]   # row 2 is the clear best
        base = (np.clip(np.rint(base * 40), -128, 127) if dtype == "int8" else base).astype(dtype)
        rows = base[[2, 0, 2, 1, 0, 2, 3, 2, 0]]   # row 2 at 0, 2, 5, 7; row 0 at 1, 4, 8
        for fn in (t.cosine_topk, t.dot_topk):
            idx, sc = fn(q, rows, 3)
            assert idx.tolist() == [0, 2, 5], (dim, idx)
            assert sc[0] == sc[1] == sc[2]
            idx, sc = fn(q, rows, 9)
            assert idx[:4].tolist() == [0, 2, 5, 7], (dim, idx)
            mask = np.ones(9, bool)
            mask[[0, 5]] = False
            idx, _ = fn(q, rows, 2, mask)
            assert idx.tolist() == [2, 7], (dim, idx)
    # a zero query: every cosine is 0, so the order is plain index order
    rows = rng.standard_normal((50, 9)).astype(dtype)
    idx, sc = t.cosine_topk(np.zeros(9, np.float32), rows, 7)
    assert idx.tolist() == list(range(7)) and (sc == 0).all()


def test_numpy_backend_tie_order():
    # Identical rows score identically whatever their position (the reference sums
    # each row itself: BLAS rounded identical rows differently by position and
    # alignment), so they come out in index order; many dims and sizes.
    t = get_table("numpy")
    rng = np.random.default_rng(0)
    wrong = []
    for dim in range(1, 98):
        for n in (7, 16, 33):
            rows = np.repeat(rng.standard_normal((1, dim)).astype(np.float32), n, axis=0)
            q = rng.standard_normal(dim).astype(np.float32)
            for fn in (t.dot_topk, t.cosine_topk):
                idx, sc = fn(q, rows, n)
                assert (sc == sc[0]).all()
                if idx.tolist() != list(range(n)):
                    wrong.append((dim, n, idx.tolist()))
    assert not wrong, f"{len(wrong)} of {97 * 3 * 2} identical-row cases out of index order, e.g. {wrong[:3]}"


def test_empty_rows_with_ordinary_strides():
    for key in LOADED:
        t = get_table(key)
        for dt in DTYPES:
            rows = np.zeros((3, 8), dt)[:0]
            assert rows.strides == (8 * rows.itemsize, rows.itemsize)
            for fn in (t.cosine_topk, t.dot_topk):
                idx, sc = fn(np.ones(8, np.float32), rows, 5)
                assert idx.shape == sc.shape == (0,)


def test_empty_rows_with_zero_strides():
    rejected = []
    for key in LOADED:
        t = get_table(key)
        for dt in DTYPES:
            for rows in (np.zeros((0, 8), dt), np.ascontiguousarray(np.empty((0, 8), dt))):
                try:
                    idx, sc = t.dot_topk(np.ones(8, np.float32), rows, 5)
                except InvalidInputError as e:
                    rejected.append(f"{key} {dt} strides {rows.strides}: {e}")
                    continue
                assert idx.shape == sc.shape == (0,)
    assert not rejected, "\n".join(rejected)


@pytest.mark.parametrize("key", BACKEND_KEYS)
def test_all_masked_and_empty(key):
    t = get_table(key)
    q = np.ones(5, np.float32)
    rows = np.ones((7, 5), np.float32)
    for fn in (t.cosine_topk, t.dot_topk):
        for k in (0, 1, 7, 10):
            idx, sc = fn(q, rows, k, np.zeros(7, bool))
            assert idx.shape == sc.shape == (0,)
            idx, sc = fn(q, rows[:0], k)
            assert idx.shape == sc.shape == (0,)
        idx, sc = fn(q, rows, 0)
        assert idx.shape == (0,)


@pytest.mark.parametrize("key", BACKEND_KEYS)
def test_large_dims_against_oracle(key):
    """A few wide rows (every SIMD block and tail size at scale) on top of dim 1..97."""
    t = get_table(key)
    rng = np.random.default_rng(11)
    for dim in (128, 255, 384, 1000, 1537):
        for dtype in DTYPES:
            rows = place(rng, rng.standard_normal((64, dim)).astype(dtype), "offset")
            q = rng.standard_normal(dim).astype(np.float32)
            for metric, fn in (("cosine", t.cosine_topk), ("dot", t.dot_topk)):
                idx, sc = fn(q, rows, 10)
                # measured worst 1.4e-7 up to dim 1537: the same table holds
                check_topk(metric, q, rows, 10, None, idx, sc, TOLERANCE["topk"][dtype], ties=key != "numpy")
                if key == "numpy":
                    independent.check_topk(metric, q, rows, 10, None, idx, sc, what=f"dim {dim} {dtype}")


# f32 rows whose squares leave the f32 range: cosine is scale-invariant, so
# these rows have ordinary cosines, which a kernel squaring in float32 would lose
# (overflow to 0 or NaN above ~1.8e19, underflow below ~1e-19).


def _extreme_case(scale):
    rng = np.random.default_rng(3)
    rows = (rng.standard_normal((40, 16)) * scale).astype(np.float32)
    q = rng.standard_normal(16).astype(np.float32)
    if scale > 1:
        q *= np.float32(scale)
    return q, rows


@pytest.mark.parametrize("scale", [1e20, 1e-24, 1e-40])
def test_cosine_f32_extreme_magnitudes_numpy(scale):
    """The float64 backend gets these right, so the cases themselves are sound."""
    q, rows = _extreme_case(scale)
    idx, sc = get_table("numpy").cosine_topk(q, rows, 5)
    check_topk("cosine", q, rows, 5, None, idx, sc, TOLERANCE["topk"]["float32"], ties=False)
    independent.check_topk("cosine", q, rows, 5, None, idx, sc)


@pytest.mark.parametrize("scale", [1e20, 1e-24, 1e-40])
def test_cosine_f32_extreme_magnitudes(scale):
    q, rows = _extreme_case(scale)
    wrong = []
    for key in LOADED:
        if key == "numpy":
            continue
        idx, sc = get_table(key).cosine_topk(q, rows, 5)
        try:
            check_topk("cosine", q, rows, 5, None, idx, sc, TOLERANCE["topk"]["float32"])
        except AssertionError:
            wrong.append(f"{key}: scores {sc.tolist()}")
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------- properties

def _elements(dtype):
    if dtype == "int8":
        return st.integers(-128, 127)
    if dtype == "float16":   # every finite half, subnormals included
        return st.floats(-F16_MAX, F16_MAX, width=16)
    # f32 without magnitudes whose squares underflow (test_cosine_f32_extreme_magnitudes has those)
    return st.floats(-1e4, 1e4, width=32).map(lambda x: 0.0 if abs(x) < 1e-12 else x)


@st.composite
def topk_case(draw, dtype):
    dim = draw(st.integers(1, 40))
    n = draw(st.integers(0, 60))
    rows = draw(hnp.arrays(dtype, (n, dim), elements=_elements(dtype)))
    if n and draw(st.booleans()):   # duplicates
        rows = rows[draw(hnp.arrays(np.int64, n, elements=st.integers(0, n - 1)))]
    if n == 0:   # hnp gives (0, dim) zero strides: see test_empty_rows_with_zero_strides
        rows = np.empty((1, dim), dtype)[:0]
    q = draw(hnp.arrays(np.float32, dim, elements=st.floats(-1e3, 1e3, width=32)
                        .map(lambda x: 0.0 if abs(x) < 1e-12 else x)))
    k = draw(st.integers(0, n + 3))
    mask = draw(st.none() | hnp.arrays(np.bool_, n))
    perm = np.asarray(draw(st.permutations(range(n))), np.int64)
    return q, rows, k, mask, perm


# One example is checked on every backend (generation dominates the cost), so
# each backend sees 4 x 150 = 600 examples.
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=150, deadline=None, database=None)
@given(data=st.data())
def test_property_matches_oracle_and_permutation_invariant(dtype, metric, data):
    q, rows, k, mask, perm = data.draw(topk_case(dtype))
    pmask = None if mask is None else mask[perm]
    prows = rows[perm] if rows.shape[0] else rows
    for key in LOADED:
        t = get_table(key)
        fn = t.cosine_topk if metric == "cosine" else t.dot_topk
        idx, sc = fn(q, rows, k, mask)
        check_topk(metric, q, rows, k, mask, idx, sc, TOLERANCE["topk"][dtype], ties=key != "numpy")
        # permuting the rows (and the mask with them): each row's score depends
        # only on its own bytes, so the score vector is bit-identical
        pidx, psc = fn(q, prows, k, pmask)
        check_topk(metric, q, prows, k, pmask, pidx, psc, TOLERANCE["topk"][dtype], ties=key != "numpy")
        if key == "numpy":           # check_topk's oracle is the numpy backend itself
            independent.check_topk(metric, q, rows, k, mask, idx, sc)
            independent.check_topk(metric, q, prows, k, pmask, pidx, psc)
        np.testing.assert_array_equal(psc, sc, err_msg=key)
