"""The one table of allowed errors for the kernel tests (re-exported by tests/kernels/backends.py).

Every backend is compared with the one oracle, the numpy backend
(engram/kernels/reference.py: float64, rounded once to float32 on the way out),
and that oracle with tests/kernels/independent.py. TOLERANCE[operation] is one
number or tuple where every backend family gets the same, a dict by family
("c", "zig", "numba", "numpy": family(key)) where they differ, a dict by row
dtype for top-k, or a dict of named terms where a bound has more than two. Each entry says where its number comes from; "measured" is the
worst case the named test sees on every backend and ISA variant of this machine.

Integer results (CRC32C, touched nodes, hops, top-k indices) are compared exactly
and have no entry.
"""

U = 2.0 ** -24      # float32 unit roundoff: half an ulp of 1, relative
KERNELS = ("c", "zig", "numba")     # the float32 kernel families; numpy is the float64 oracle


def family(key: str) -> str:
    """The backend family of a key such as "c/avx2" or "numba"."""
    return key.split("/")[0]


def by_family(kernels, numpy=None) -> dict:
    """One value for the float32 kernel families, another (or none) for numpy."""
    out = dict.fromkeys(KERNELS, kernels)
    if numpy is not None:
        out["numpy"] = numpy
    return out


TOLERANCE = {
    # ------------------------------------------------------------------ spreading
    # (rel, abs): |got - exact| <= rel * exact + abs, exact = the oracle's float64 activation.
    #
    # Every activation is a clamped sum of non-negative terms, each a product of
    # non-negative factors, so nothing cancels and float32 errors stay relative.
    # Per hop a fired activation picks up the rounding of decay to float32 (the
    # same sign every hop), of fire*decay, of *w and of *penalty -- ~4 u, with
    # u = 2**-24 = 6e-8 -- and each addition one more u (clamping to 1 only
    # shrinks the error). For the differential cases (hop <= 6) that is ~25 u =
    # 1.5e-6 plus the additions; measured over the 10,000 cases: 3.9e-7 (6.5 u),
    # identical for every c/zig/numba variant (the decay rounding accounts for
    # most of it: 6 hops x 6e-8). 2e-6 (34 u) keeps a 5x margin while any logic
    # error (a missed or doubled contribution, a wrong penalty) is >= 1e-3.
    # abs only absorbs float32 underflow (contributions below 1e-38). numpy is
    # the oracle rounded once to float32: half an ulp (U = 5.96e-8).
    "spread": by_family((2e-6, 1e-30), numpy=(6e-8, 1e-30)),
    # The hypothesis graphs (test_property_invariants) go deeper (hops up to 23
    # through 24 nodes, up to 73 edges into one node), so the per-hop error above
    # grows ~4x: 5x "spread". numpy there meets independent.py ("oracle spread").
    "spread deep": by_family((5 * 2e-6, 1e-30)),
    # Spreading over fan-discounted weights (test_fan_backends.py): weights are
    # weights, so the rounding is that of "spread"; measured 2.3e-7 on hub graphs.
    # numpy there meets independent.py ("oracle spread").
    "spread fan": by_family((2e-6, 1e-30)),
    # Split hops (test_spread_split.py): the float32 kernels' rounding, summed in
    # another order per batch; numpy here runs float32 steps too
    # (engram/kernels/spread_steps.py), so it gets the kernels' value, not half an
    # ulp. Measured 3.6e-7 for every backend, numpy included.
    "spread split": by_family((2e-6, 1e-30), numpy=(2e-6, 1e-30)),
    # spread_run's steps against a whole spread of the same table
    # (test_spread_run_steps_equal_whole_spreads). The kernels' whole spread is
    # their seeding plus the same hop kernel in a loop (eg_spread calls
    # eg_spread_hop; numba's and the table's loop call the same step), so the two
    # are bit-identical (measured: 0 on every c/zig/numba variant): exact. (It
    # was 2e-6, which let the step path round differently from the whole spread,
    # e.g. decay rounded one ulp apart, pass unseen.) numpy: float32 steps against
    # its float64 whole spread (the oracle): absolute, measured 1.2e-7 (2 ulp at 0.5).
    "spread run": by_family((0.0, 0.0), numpy=(0.0, 5e-6)),
    # The kernels compare a contribution with the threshold in float32, the
    # oracle in float64: a case whose float64 contribution lies within this
    # relative distance of the threshold may legitimately decide differently. A
    # float32 contribution is off by what an activation is ("spread": measured
    # 3.9e-7), so 1e-5 is a 25x margin. (Such cases are still compared; only a
    # mismatch in one of them is forgiven: so far 0 in 40,000 cases.)
    "spread near tie": 1e-5,
    # check_penalty_zero: a kernel's activation against the float32 sum of its own
    # contributions, recomputed from its output. Summing k non-negative terms
    # rounds by <= (k - 1) u of the sum; (2k + 2) u also covers a compiler fusing
    # a product into the sum (fma). abs: float32 underflow.
    "spread float32 sum": {"per term": 2 * U, "extra": 2 * U, "abs": 1e-30},

    # ------------------------------------------------------------------ top-k
    # Allowed error of a returned score against the exact (float64) score, per row
    # dtype, relative to the input scale: |got - exact| <= tol * max(1, |q| |r|)
    # for dot and <= tol for cosine (whose exact value is in [-1, 1]). Every family
    # alike. The kernels accumulate in float32 (f16 rows are widened exactly, so
    # both dtypes behave alike). Measured worst case over the whole generated suite
    # (10,000 cases per backend, dim <= 97, all backends): float32 2.1e-7,
    # float16 2.2e-7 -- so the requested 1e-6 holds with ~4.5x margin; up to dim
    # 1537 (test_large_dims_against_oracle) 1.4e-7.
    "topk": {"float32": 1e-6, "float16": 1e-6, "int8": 1e-6},
    # Batches of queries (test_topk_batch.py): the sorted scores against the
    # oracle's, absolute, times max(1, the largest |exact score| of the query) for
    # dot (one scale for all rows, coarser than "topk"'s per-row |q| |r|); 4x the
    # "topk" value. Measured, normalised so: 3.7e-7 (numba, int8 dot), c/zig <= 1.9e-7.
    "topk batch": 4e-6,
    # Cosine with given norms= (test_cosine_with_precomputed_norms): absolute, on
    # scores up to 2 in magnitude (the "fake" norms are 0.5x..2x the true ones);
    # the same 4e-6 as "topk batch". Measured 1.7e-7.
    "topk norms": 4e-6,

    # ------------------------------------------------------------------ decay
    # (rel, abs): |got - oracle| <= rel * (1 + |x|) * |oracle| + abs, x the exponent
    # (a / tau; beta log1p(a); a / tau_fast: test_decay_crc.exponent). float32
    # evaluation of exp(x) carries the rounding of x itself, so the relative error
    # grows with |x| (exp's condition number). Every family alike. Measured: 0.48
    # of this bound (c, zig, numba), 0.06 (numpy). abs: results below float32's
    # normal range (1.2e-38), where the kernels may flush to zero.
    "decay": (1e-6, 1e-37),
    # The worst relative error over a curve's ~1,470 cases (relative to
    # max(|oracle|, 1e-30)). For a two-component curve at large ages the bound above reaches
    # 1e-3 relative (its |x| is a / tau_fast while the slow term dominates), so
    # this one is the tighter there. Measured 7.2e-6 (c, zig), 3.7e-6 (numba).
    "decay worst": 1e-4,
    # test_decay_is_monotone_in_age: how far a later age may rise above an earlier
    # one, relative (a vectorised float32 exp need not be monotone to the ulp).
    # Measured: 0 (no rise at all over 300,000 sorted ages, every curve and backend).
    "decay monotone": 1e-6,

    # ------------------------------------------------------------------ the oracle itself
    # The numpy backend against tests/kernels/independent.py, both float64, so
    # only the numpy backend's one rounding to float32 (half an ulp, U; 1.01 U for
    # the float64 ops before it) and float64 summation order differ.
    # spread: (rel, abs), as "spread".
    "oracle spread": (1.01 * U, 1e-30),
    # top-k: each score within rel * |exact| + scale * max(1, |q| |r|) + abs (the
    # float64 sums of numpy and math.fsum differ by ~1e-16 of the scale); two
    # different rows may swap only when their exact scores are within swap * scale.
    "oracle topk": {"rel": 1.01 * U, "scale": 1e-13, "abs": 1e-44, "swap": 1e-12},
    # decay: rel * exact + exponent * (1 + |x|) * exact + abs (numpy's exp against
    # math.exp, float64 both: the rounding of x grows with |x| as above).
    "oracle decay": {"rel": 1.01 * U, "exponent": 1e-13, "abs": 1e-45},
}

