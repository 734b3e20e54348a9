"""Spread driver: calls eg_spread through its raw function pointer (see scan.pyx).

A 4-hop spread over 10K nodes takes tens of microseconds; ctypes would add
2-4 us for each of its nine arrays, so the call goes through here instead.
"""
cimport numpy as cnp
from libc.math cimport isfinite
from libc.string cimport memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t, uintptr_t

cnp.import_array()

from engram.kernels._cy.abi cimport (eg_spread_fn as spread_fn, eg_spread_gather_fn as gather_fn,
                                     eg_spread_hop_fn as hop_fn, eg_spread_merge_fn as merge_fn)


def chain(const uint32_t[:] nxt, uint32_t head, uint64_t n):
    """The indices (u32) of n linked records from ``head``, each record naming the next in
    ``nxt`` (the shared pool's links): a walk in C, bounds-checked, for a worker's answer."""
    out = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>n], cnp.NPY_UINT32, 0)
    cdef uint32_t[:] o = out
    cdef uint64_t i
    cdef uint64_t size = <uint64_t>nxt.shape[0]
    cdef uint32_t j = head
    for i in range(n):
        if j >= size:
            raise ValueError(f"record chain leaves the pool at step {i} (index {j}, pool of {size})")
        o[i] = j
        j = nxt[j]
    return out


cdef inline bint _vec(cnp.ndarray a, int typenum, bint writable):
    return (cnp.PyArray_NDIM(a) == 1 and cnp.PyArray_TYPE(a) == typenum
            and (cnp.PyArray_ISCARRAY(a) if writable else cnp.PyArray_ISCARRAY_RO(a)))


cdef uint64_t _csr_nodes(cnp.ndarray offsets, cnp.ndarray targets, cnp.ndarray weights) except? 0xFFFFFFFFFFFFFFFF:
    """n of a CSR whose shapes agree (offsets n+1, weights as many as targets, offsets
    inside them); the element checks are CsrGraph's, done once when it is built."""
    cdef uint64_t n, m
    if cnp.PyArray_SIZE(offsets) < 1:
        raise ValueError("offsets needs n+1 entries")
    n = <uint64_t>cnp.PyArray_SIZE(offsets) - 1
    m = <uint64_t>cnp.PyArray_SIZE(targets)
    if <uint64_t>cnp.PyArray_SIZE(weights) != m or (<const uint64_t *>cnp.PyArray_DATA(offsets))[n] > m:
        raise ValueError("weights must match targets and offsets must stay inside them")
    return n


cdef class SpreadKernel:
    """SpreadKernel(address)(offsets, targets, weights, seeds, seed_act, max_depth, decay,
    threshold, cycle_penalty, prefetch_distance, epoch, state, out_nodes, fire) -> touched count."""
    cdef spread_fn fn
    cdef readonly uintptr_t address

    def __cinit__(self, uintptr_t address):
        if address == 0:
            raise ValueError("kernel address is NULL")
        self.fn = <spread_fn>address
        self.address = address

    def __call__(self, cnp.ndarray offsets not None, cnp.ndarray targets not None, cnp.ndarray weights not None,
                 cnp.ndarray seeds not None, cnp.ndarray seed_act not None, uint32_t max_depth, float decay,
                 float threshold, float cycle_penalty, uint32_t prefetch_distance, uint32_t epoch,
                 cnp.ndarray state not None, cnp.ndarray out_nodes not None, cnp.ndarray fire not None):
        cdef uint64_t n, n_seeds, cap
        cdef int64_t got
        if not (_vec(offsets, cnp.NPY_UINT64, False) and _vec(targets, cnp.NPY_UINT32, False)
                and _vec(weights, cnp.NPY_FLOAT32, False) and _vec(seeds, cnp.NPY_UINT32, False)
                and _vec(seed_act, cnp.NPY_FLOAT32, False) and _vec(out_nodes, cnp.NPY_UINT32, True)
                and _vec(fire, cnp.NPY_FLOAT32, True) and cnp.PyArray_ITEMSIZE(state) == 8
                and cnp.PyArray_ISCARRAY(state)):
            raise ValueError("spread arrays must be contiguous 1-D arrays of the documented types: offsets u64, "
                             "targets u32, weights f32, seeds u32, seed_act f32, state SpreadState, "
                             "out_nodes u32, fire f32")
        n = _csr_nodes(offsets, targets, weights)
        if <uint64_t>cnp.PyArray_SIZE(state) < n:
            raise ValueError("state must hold one record per node")
        n_seeds = <uint64_t>cnp.PyArray_SIZE(seeds)
        if <uint64_t>cnp.PyArray_SIZE(seed_act) != n_seeds:
            raise ValueError("seeds and seed_act differ in length")
        cap = <uint64_t>min(cnp.PyArray_SIZE(out_nodes), cnp.PyArray_SIZE(fire))
        with nogil:
            got = self.fn(<const uint64_t *>cnp.PyArray_DATA(offsets), <const uint32_t *>cnp.PyArray_DATA(targets),
                          <const float *>cnp.PyArray_DATA(weights), n,
                          <const uint32_t *>cnp.PyArray_DATA(seeds), <const float *>cnp.PyArray_DATA(seed_act),
                          n_seeds, max_depth, decay, threshold, cycle_penalty, prefetch_distance, epoch,
                          cnp.PyArray_DATA(state), <uint32_t *>cnp.PyArray_DATA(out_nodes),
                          <float *>cnp.PyArray_DATA(fire), cap)
        return got

    def ranked(self, cnp.ndarray offsets not None, cnp.ndarray targets not None, cnp.ndarray weights not None,
               cnp.ndarray seeds not None, cnp.ndarray seed_act not None, uint32_t max_depth, float decay,
               float threshold, float cycle_penalty, uint32_t prefetch_distance, uint32_t epoch,
               cnp.ndarray state not None, cnp.ndarray out_nodes not None, cnp.ndarray fire not None,
               cnp.ndarray hot not None, Py_ssize_t flags_offset, uint8_t hidden):
        """Space.spread in one call: spread from seeds (int64 ids, f32 activations; those
        outside the graph come back as they are, capped at 1), then rank_touched."""
        cdef uint64_t n, cap, n_seeds, j
        cdef int64_t got, inside = 0, outside = 0
        if not (_vec(offsets, cnp.NPY_UINT64, False) and _vec(targets, cnp.NPY_UINT32, False)
                and _vec(weights, cnp.NPY_FLOAT32, False) and _vec(seeds, cnp.NPY_INT64, False)
                and _vec(seed_act, cnp.NPY_FLOAT32, False) and _vec(out_nodes, cnp.NPY_UINT32, True)
                and _vec(fire, cnp.NPY_FLOAT32, True) and cnp.PyArray_ITEMSIZE(state) == 8
                and cnp.PyArray_ISCARRAY(state)):
            raise ValueError("spread arrays must be contiguous 1-D arrays of the documented types: offsets u64, "
                             "targets u32, weights f32, seeds i64, seed_act f32, state SpreadState, "
                             "out_nodes u32, fire f32")
        _hot_ok(hot, flags_offset)
        n = _csr_nodes(offsets, targets, weights)
        if <uint64_t>cnp.PyArray_SIZE(state) < n:
            raise ValueError("state must hold one record per node")
        n_seeds = <uint64_t>cnp.PyArray_SIZE(seeds)
        if <uint64_t>cnp.PyArray_SIZE(seed_act) != n_seeds:
            raise ValueError("seeds and seed_act differ in length")
        cap = <uint64_t>min(cnp.PyArray_SIZE(out_nodes), cnp.PyArray_SIZE(fire))
        split = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>(2 * n_seeds + 1)], cnp.NPY_INT64, 0)
        acts = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>(2 * n_seeds + 1)], cnp.NPY_FLOAT32, 0)
        cdef const int64_t *sd = <const int64_t *>cnp.PyArray_DATA(seeds)
        cdef const float *sa = <const float *>cnp.PyArray_DATA(seed_act)
        cdef uint32_t *in_ids = <uint32_t *>cnp.PyArray_DATA(split)          # the first half, as u32
        cdef int64_t *out_ids = <int64_t *>cnp.PyArray_DATA(split) + n_seeds
        cdef float *in_act = <float *>cnp.PyArray_DATA(acts)
        cdef float *out_act = in_act + n_seeds
        for j in range(n_seeds):
            if 0 <= sd[j] < <int64_t>n:
                in_ids[inside] = <uint32_t>sd[j]
                in_act[inside] = sa[j]
                inside += 1
            else:
                out_ids[outside] = sd[j]
                out_act[outside] = sa[j]
                outside += 1
        with nogil:
            got = self.fn(<const uint64_t *>cnp.PyArray_DATA(offsets), <const uint32_t *>cnp.PyArray_DATA(targets),
                          <const float *>cnp.PyArray_DATA(weights), n, in_ids, in_act, inside, max_depth, decay,
                          threshold, cycle_penalty, prefetch_distance, epoch, cnp.PyArray_DATA(state),
                          <uint32_t *>cnp.PyArray_DATA(out_nodes), <float *>cnp.PyArray_DATA(fire), cap)
        if got < 0:
            return got
        return _ranked(<const uint32_t *>cnp.PyArray_DATA(out_nodes), <const float *>cnp.PyArray_DATA(fire), got,
                       out_ids, out_act, outside, <const uint32_t *>cnp.PyArray_DATA(state), n,
                       <const uint8_t *>cnp.PyArray_DATA(hot), <uint64_t>cnp.PyArray_SIZE(hot),
                       cnp.PyArray_ITEMSIZE(hot), flags_offset, hidden)


cdef class SpreadHopKernel:
    """SpreadHopKernel(address)(offsets, targets, weights, hop, decay, threshold, cycle_penalty,
    prefetch_distance, epoch, state, out_nodes, fire, begin, end, count) -> new count."""
    cdef hop_fn fn

    def __cinit__(self, uintptr_t address):
        if address == 0:
            raise ValueError("kernel address is NULL")
        self.fn = <hop_fn>address

    def __call__(self, cnp.ndarray offsets not None, cnp.ndarray targets not None, cnp.ndarray weights not None,
                 uint32_t hop, float decay, float threshold, float cycle_penalty, uint32_t prefetch_distance,
                 uint32_t epoch, cnp.ndarray state not None, cnp.ndarray out_nodes not None,
                 cnp.ndarray fire not None, uint64_t begin, uint64_t end, uint64_t count):
        cdef uint64_t n, cap
        cdef int64_t got
        if not (_vec(offsets, cnp.NPY_UINT64, False) and _vec(targets, cnp.NPY_UINT32, False)
                and _vec(weights, cnp.NPY_FLOAT32, False) and _vec(out_nodes, cnp.NPY_UINT32, True)
                and _vec(fire, cnp.NPY_FLOAT32, True) and cnp.PyArray_ITEMSIZE(state) == 8
                and cnp.PyArray_ISCARRAY(state)):
            raise ValueError("spread_hop arrays must be contiguous 1-D arrays of the documented types")
        n = _csr_nodes(offsets, targets, weights)
        if <uint64_t>cnp.PyArray_SIZE(state) < n:
            raise ValueError("state must hold one record per node")
        cap = <uint64_t>min(cnp.PyArray_SIZE(out_nodes), cnp.PyArray_SIZE(fire))
        with nogil:
            got = self.fn(<const uint64_t *>cnp.PyArray_DATA(offsets), <const uint32_t *>cnp.PyArray_DATA(targets),
                          <const float *>cnp.PyArray_DATA(weights), n, hop, decay, threshold, cycle_penalty,
                          prefetch_distance, epoch, cnp.PyArray_DATA(state), <uint32_t *>cnp.PyArray_DATA(out_nodes),
                          <float *>cnp.PyArray_DATA(fire), begin, end, count, cap)
        return got

    def budgeted(self, cnp.ndarray offsets not None, cnp.ndarray targets not None, cnp.ndarray weights not None,
                 float decay, float threshold, float cycle_penalty, uint32_t prefetch_distance, uint32_t epoch,
                 cnp.ndarray state not None, cnp.ndarray out_nodes not None, cnp.ndarray fire not None,
                 uint64_t begin, uint64_t end, uint64_t count, uint32_t hop, uint32_t hops,
                 const double[::1] model, double batch_size, double tier_mix, int64_t deadline_ns,
                 uint64_t split_edges, double[:, ::1] log):
        """Up to ``hops`` hops of a spread in C, each first priced by the latency model (its
        weights over LatencyPredictor.hop_features; empty: no prediction yet) and not run if
        it would end past ``deadline_ns`` (CLOCK_MONOTONIC ns; < 0: none). Stops before a hop
        whose frontier fires at least ``split_edges`` edges (0: never), which the caller may
        split among idle workers. Each hop run logs its features, time and prediction in
        ``log`` (rows of 9). Returns (begin, end, count, hop, hops run, status): status 0
        ran out of hops or frontier, 1 stopped for the deadline (partial), 2 stopped for a
        split, or a negative EG_E* code."""
        cdef uint64_t n, cap, i, f_edges
        cdef const uint64_t *off
        cdef uint32_t *nd
        cdef int64_t got, t0, t1, ran = 0, status = 0
        cdef double guess
        cdef double x[7]
        cdef timespec ts
        if not (_vec(offsets, cnp.NPY_UINT64, False) and _vec(targets, cnp.NPY_UINT32, False)
                and _vec(weights, cnp.NPY_FLOAT32, False) and _vec(out_nodes, cnp.NPY_UINT32, True)
                and _vec(fire, cnp.NPY_FLOAT32, True) and cnp.PyArray_ITEMSIZE(state) == 8
                and cnp.PyArray_ISCARRAY(state)):
            raise ValueError("spread_hop arrays must be contiguous 1-D arrays of the documented types")
        n = _csr_nodes(offsets, targets, weights)
        cap = <uint64_t>min(cnp.PyArray_SIZE(out_nodes), cnp.PyArray_SIZE(fire))
        if <uint64_t>cnp.PyArray_SIZE(state) < n or not (begin <= end <= count <= cap):
            raise ValueError("state must hold one record per node and begin <= end <= count <= capacity")
        if model.shape[0] not in (0, 7) or log.shape[1] != 9 or <uint64_t>log.shape[0] < hops:
            raise ValueError("model holds 7 weights (or none) and log a row of 9 per hop")
        off = <const uint64_t *>cnp.PyArray_DATA(offsets)
        nd = <uint32_t *>cnp.PyArray_DATA(out_nodes)
        with nogil:
            while <uint64_t>ran < hops and begin < end:
                f_edges = 0
                for i in range(begin, end):
                    f_edges += off[nd[i] + 1] - off[nd[i]]
                if split_edges and f_edges >= split_edges:
                    status = 2
                    break
                x[0] = 1.0
                x[1] = batch_size
                x[2] = hop + 1
                x[3] = tier_mix
                x[4] = <double>(end - begin)
                x[5] = <double>f_edges
                x[6] = 0.0
                guess = 0.0
                if model.shape[0] == 7:
                    for i in range(7):
                        guess += model[i] * x[i]
                    if guess < 0.0:
                        guess = 0.0
                clock_gettime(CLOCK_MONOTONIC, &ts)
                t0 = ts.tv_sec * 1000000000 + ts.tv_nsec
                if deadline_ns >= 0 and t0 + guess > deadline_ns:
                    status = 1
                    break
                got = self.fn(off, <const uint32_t *>cnp.PyArray_DATA(targets),
                              <const float *>cnp.PyArray_DATA(weights), n, hop + 1, decay, threshold, cycle_penalty,
                              prefetch_distance, epoch, cnp.PyArray_DATA(state), nd,
                              <float *>cnp.PyArray_DATA(fire), begin, end, count, cap)
                if got < 0:
                    status = got
                    break
                clock_gettime(CLOCK_MONOTONIC, &ts)
                t1 = ts.tv_sec * 1000000000 + ts.tv_nsec
                for i in range(7):
                    log[ran, i] = x[i]
                log[ran, 7] = <double>(t1 - t0)
                log[ran, 8] = guess
                begin = end
                end = <uint64_t>got
                count = <uint64_t>got
                hop += 1
                ran += 1
        return begin, end, count, hop, ran, status


cdef class SpreadGatherKernel:
    """SpreadGatherKernel(address)(offsets, targets, weights, decay, threshold, prefetch_distance,
    nodes, fire, acc, out_v, out_s) -> distinct targets (eg_spread_gather: one batch of a split hop)."""
    cdef gather_fn fn

    def __cinit__(self, uintptr_t address):
        if address == 0:
            raise ValueError("kernel address is NULL")
        self.fn = <gather_fn>address

    def __call__(self, cnp.ndarray offsets not None, cnp.ndarray targets not None, cnp.ndarray weights not None,
                 float decay, float threshold, uint32_t prefetch_distance, cnp.ndarray nodes not None,
                 cnp.ndarray fire not None, cnp.ndarray acc not None, cnp.ndarray out_v not None,
                 cnp.ndarray out_s not None):
        cdef uint64_t n, cnt, cap
        cdef int64_t got
        if not (_vec(offsets, cnp.NPY_UINT64, False) and _vec(targets, cnp.NPY_UINT32, False)
                and _vec(weights, cnp.NPY_FLOAT32, False) and _vec(nodes, cnp.NPY_UINT32, False)
                and _vec(fire, cnp.NPY_FLOAT32, False) and _vec(acc, cnp.NPY_FLOAT32, True)
                and _vec(out_v, cnp.NPY_UINT32, True) and _vec(out_s, cnp.NPY_FLOAT32, True)):
            raise ValueError("spread_gather arrays must be contiguous 1-D arrays of the documented types")
        n = _csr_nodes(offsets, targets, weights)
        cnt = <uint64_t>cnp.PyArray_SIZE(nodes)
        if <uint64_t>cnp.PyArray_SIZE(fire) != cnt or <uint64_t>cnp.PyArray_SIZE(acc) < n:
            raise ValueError("fire must match nodes and acc must hold one float per node")
        cap = <uint64_t>min(cnp.PyArray_SIZE(out_v), cnp.PyArray_SIZE(out_s))
        with nogil:
            got = self.fn(<const uint64_t *>cnp.PyArray_DATA(offsets), <const uint32_t *>cnp.PyArray_DATA(targets),
                          <const float *>cnp.PyArray_DATA(weights), n, decay, threshold, prefetch_distance,
                          <const uint32_t *>cnp.PyArray_DATA(nodes), <const float *>cnp.PyArray_DATA(fire), cnt,
                          <float *>cnp.PyArray_DATA(acc), <uint32_t *>cnp.PyArray_DATA(out_v),
                          <float *>cnp.PyArray_DATA(out_s), cap)
        return got


cdef class SpreadMergeKernel:
    """SpreadMergeKernel(address)(n_nodes, hop, cycle_penalty, epoch, state, v, s, out_nodes, count)
    -> new count (eg_spread_merge: apply one gathered batch)."""
    cdef merge_fn fn

    def __cinit__(self, uintptr_t address):
        if address == 0:
            raise ValueError("kernel address is NULL")
        self.fn = <merge_fn>address

    def __call__(self, uint64_t n_nodes, uint32_t hop, float cycle_penalty, uint32_t epoch,
                 cnp.ndarray state not None, cnp.ndarray v not None, cnp.ndarray s not None,
                 cnp.ndarray out_nodes not None, uint64_t count):
        cdef uint64_t n
        cdef int64_t got
        if not (_vec(v, cnp.NPY_UINT32, False) and _vec(s, cnp.NPY_FLOAT32, False)
                and _vec(out_nodes, cnp.NPY_UINT32, True) and cnp.PyArray_ITEMSIZE(state) == 8
                and cnp.PyArray_ISCARRAY(state)):
            raise ValueError("spread_merge arrays must be contiguous 1-D arrays of the documented types")
        n = <uint64_t>cnp.PyArray_SIZE(v)
        if <uint64_t>cnp.PyArray_SIZE(s) != n or <uint64_t>cnp.PyArray_SIZE(state) < n_nodes:
            raise ValueError("s must match v and state must hold one record per node")
        with nogil:
            got = self.fn(n_nodes, hop, cycle_penalty, epoch, cnp.PyArray_DATA(state),
                          <const uint32_t *>cnp.PyArray_DATA(v), <const float *>cnp.PyArray_DATA(s), n,
                          <uint32_t *>cnp.PyArray_DATA(out_nodes), count, <uint64_t>cnp.PyArray_SIZE(out_nodes))
        return got


# --- one-pass CSR validation -------------------------------------------------
# The whole-array spread() checks the caller's CSR on every call; numpy needs
# six passes (diff, min, max, isfinite, < 0, casts) and costs more than a
# 4-hop spread over 10K nodes. Here one branch-free OR-reduction per array
# (which gcc vectorizes) decides; only a bad graph is searched again for the
# first offending index, in Python, where speed no longer matters.
cdef extern from *:
    """
    /* bad |= ...: no early exit, so gcc vectorizes the OR-reduction. Ids compare
       unsigned in their own width (a negative id wraps past n; callers keep n <
       2^31); a weight is valid when its bits are below +inf's (a sign bit, inf
       or NaN is at or above; -0.0 is refused here and accepted by the search). */
    #define EG_CSR_CHECKS(T, U) \
    static int eg_offsets_bad_##T(const void *p, int64_t n) { \
        const T *o = (const T *)p; uint32_t bad = 0; \
        for (int64_t i = 0; i < n; i++) bad |= o[i + 1] < o[i]; \
        return bad != 0; \
    } \
    static int eg_edges_bad_##T(const void *p, const float *w, int64_t m, uint64_t n) { \
        const U *t = (const U *)p; const uint32_t *wb = (const uint32_t *)w; \
        const U nn = (U)n; uint32_t bad = 0; \
        for (int64_t i = 0; i < m; i++) bad |= (uint32_t)(t[i] >= nn) | (uint32_t)(wb[i] >= 0x7F800000u); \
        return bad != 0; \
    }
    EG_CSR_CHECKS(int32_t, uint32_t)
    EG_CSR_CHECKS(int64_t, uint64_t)
    EG_CSR_CHECKS(uint32_t, uint32_t)
    EG_CSR_CHECKS(uint64_t, uint64_t)
    """
    int eg_offsets_bad_int32_t(const void *o, int64_t n) nogil
    int eg_offsets_bad_int64_t(const void *o, int64_t n) nogil
    int eg_offsets_bad_uint32_t(const void *o, int64_t n) nogil
    int eg_offsets_bad_uint64_t(const void *o, int64_t n) nogil
    int eg_edges_bad_int32_t(const void *t, const float *w, int64_t m, uint64_t n) nogil
    int eg_edges_bad_int64_t(const void *t, const float *w, int64_t m, uint64_t n) nogil
    int eg_edges_bad_uint32_t(const void *t, const float *w, int64_t m, uint64_t n) nogil
    int eg_edges_bad_uint64_t(const void *t, const float *w, int64_t m, uint64_t n) nogil


cdef int _offsets_bad(cnp.ndarray o, int64_t n) except -1:
    cdef const void *p = cnp.PyArray_DATA(o)
    cdef int tn = cnp.PyArray_TYPE(o)
    with nogil:
        if tn == cnp.NPY_INT32:
            return eg_offsets_bad_int32_t(p, n)
        if tn == cnp.NPY_INT64:
            return eg_offsets_bad_int64_t(p, n)
        if tn == cnp.NPY_UINT32:
            return eg_offsets_bad_uint32_t(p, n)
        if tn == cnp.NPY_UINT64:
            return eg_offsets_bad_uint64_t(p, n)
    raise TypeError(f"offsets dtype {o.dtype} is not int32, int64, uint32 or uint64")


cdef int _edges_bad(cnp.ndarray t, cnp.ndarray w, int64_t m, uint64_t n) except -1:
    cdef const void *p = cnp.PyArray_DATA(t)
    cdef const float *pw = <const float *>cnp.PyArray_DATA(w)
    cdef int tn = cnp.PyArray_TYPE(t)
    with nogil:
        if tn == cnp.NPY_INT32:
            return eg_edges_bad_int32_t(p, pw, m, n)
        if tn == cnp.NPY_INT64:
            return eg_edges_bad_int64_t(p, pw, m, n)
        if tn == cnp.NPY_UINT32:
            return eg_edges_bad_uint32_t(p, pw, m, n)
        if tn == cnp.NPY_UINT64:
            return eg_edges_bad_uint64_t(p, pw, m, n)
    raise TypeError(f"targets dtype {t.dtype} is not int32, int64, uint32 or uint64")


def csr_check(cnp.ndarray offsets not None, cnp.ndarray targets not None, cnp.ndarray weights not None):
    """(code, where) for contiguous 1-D CSR arrays (offsets and targets int32, int64,
    uint32 or uint64; weights float32): 0 valid; 1 offsets[0] != 0; 2 offsets
    decrease at `where`; 3 offsets[-1] != len(targets); 4 targets[where] out of
    [0, n); 5 weights[where] not finite; 6 weights[where] < 0; 7 lengths differ."""
    if not (_vec(offsets, cnp.PyArray_TYPE(offsets), False) and _vec(targets, cnp.PyArray_TYPE(targets), False)
            and _vec(weights, cnp.NPY_FLOAT32, False)):
        raise TypeError("csr_check takes C-contiguous 1-D arrays, weights float32")
    cdef int64_t n = cnp.PyArray_DIM(offsets, 0) - 1, m = cnp.PyArray_DIM(targets, 0)
    if n >= 2**31:
        raise ValueError("csr_check takes graphs of fewer than 2^31 nodes")
    if cnp.PyArray_DIM(weights, 0) != m:
        return 7, 0
    if n < 0 or offsets[0] != 0:
        return 1, 0
    if _offsets_bad(offsets, n):
        return 2, int((offsets[1:] < offsets[:-1]).argmax()) + 1
    if int(offsets[n]) != m:
        return 3, n
    if _edges_bad(targets, weights, m, <uint64_t>n):
        for i in range(m):
            if targets[i] < 0 or targets[i] >= n:
                return 4, i
            if not (weights[i] == weights[i]) or abs(weights[i]) == float("inf"):
                return 5, i
            if weights[i] < 0:
                return 6, i
    return 0, 0


# --- what a spread touched, ranked ---------------------------------------------------
# Space.spread returns every live memory a spread touched, most active first (ties by
# id). lexsort and fancy indexing in numpy cost ten times the spread; here it is one
# pass to filter and key (~activation << 32 | id, unique keys), numpy's SIMD sort of
# those 64-bit keys in place (PyArray_Sort), and one pass to decode them.
cdef extern from *:
    """
    /* the bits of a float >= 0 grow with it, so 0xFFFFFFFF - bits orders it descending */
    static inline uint32_t eg_f32_bits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }
    static inline float eg_bits_f32(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
    """
    uint32_t eg_f32_bits(float f) nogil
    float eg_bits_f32(uint32_t b) nogil


cdef object _ranked(const uint32_t *nd, const float *ac, int64_t n, const int64_t *xi, const float *xa,
                    int64_t m, const uint32_t *marks, uint64_t n_graph, const uint8_t *hb, uint64_t n_hot,
                    Py_ssize_t rec, Py_ssize_t flags_offset, uint8_t hidden):
    """(ids int64, activation f32, hops u8): the n touched (nd, ac) and the m extras (xi, xa,
    hop 0) whose record is published and shows none of the hidden flags, most active first,
    ties by id, each id once. marks: SpreadState (mark, act) per graph node."""
    keys_a = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>(n + m)], cnp.NPY_UINT64, 0)
    cdef uint64_t *keys = <uint64_t *>cnp.PyArray_DATA(keys_a)
    cdef int64_t i, kept = 0, out = 0
    cdef uint64_t v
    cdef uint64_t low32 = 0xFFFFFFFFu
    cdef float a
    with nogil:
        for i in range(n + m):
            if i < n:
                v = nd[i]
                a = ac[i]
            else:
                if xi[i - n] < 0:
                    continue
                v = <uint64_t>xi[i - n]
                a = xa[i - n] if xa[i - n] < 1.0 else 1.0
            # hidden == 0 (nothing forgotten): no record is read, which at 1M memories saves
            # a cache miss per memory touched
            if v < n_hot and v <= low32 and (hidden == 0 or (hb[v * rec + flags_offset] & hidden) == 0):
                keys[kept] = ((low32 - eg_f32_bits(a)) << 32) | v
                kept += 1
    keys_a = keys_a[:kept]
    cnp.PyArray_Sort(keys_a, 0, cnp.NPY_QUICKSORT)     # equal keys are equal values: stability is moot
    keys = <uint64_t *>cnp.PyArray_DATA(keys_a)
    ids_a = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>kept], cnp.NPY_INT64, 0)
    act_a = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>kept], cnp.NPY_FLOAT32, 0)
    hop_a = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>kept], cnp.NPY_UINT8, 0)
    cdef int64_t *ids = <int64_t *>cnp.PyArray_DATA(ids_a)
    cdef float *out_act = <float *>cnp.PyArray_DATA(act_a)
    cdef uint8_t *hops = <uint8_t *>cnp.PyArray_DATA(hop_a)
    with nogil:
        for i in range(kept):
            if i and keys[i] == keys[i - 1]:        # a seed outside the graph given twice
                continue
            v = keys[i] & low32
            ids[out] = <int64_t>v
            out_act[out] = eg_bits_f32(<uint32_t>(low32 - (keys[i] >> 32)))
            hops[out] = <uint8_t>(marks[2 * v] & 0xFF) if v < n_graph else 0
            out += 1
    if out < kept:
        return ids_a[:out], act_a[:out], hop_a[:out]
    return ids_a, act_a, hop_a


cdef int _hot_ok(cnp.ndarray hot, Py_ssize_t flags_offset) except -1:
    if not (cnp.PyArray_NDIM(hot) == 1 and cnp.PyArray_ISCARRAY_RO(hot)):
        raise ValueError("hot must be a contiguous array of node records")
    if flags_offset < 0 or flags_offset >= cnp.PyArray_ITEMSIZE(hot):
        raise ValueError("flags_offset lies outside a node record")
    return 0


def rank_touched(cnp.ndarray nodes not None, cnp.ndarray act not None, cnp.ndarray state not None,
                 uint64_t n_graph, cnp.ndarray hot not None, Py_ssize_t flags_offset, uint8_t hidden,
                 cnp.ndarray extra_ids not None, cnp.ndarray extra_act not None):
    """(ids int64, activation f32, hops u8) of the memories a spread over a graph of
    ``n_graph`` nodes touched (nodes u32, their activations act f32, hops from state's
    marks) plus seeds outside the graph (extra_ids int64, extra_act f32, hop 0), keeping
    those whose node record (hot: NodeHot records) is published and has none of the
    ``hidden`` flag bits, most active first, ties by id (SpreadKernel.ranked does the
    spread and this in one call)."""
    if not (_vec(nodes, cnp.NPY_UINT32, False) and _vec(act, cnp.NPY_FLOAT32, False)
            and _vec(extra_ids, cnp.NPY_INT64, False) and _vec(extra_act, cnp.NPY_FLOAT32, False)
            and cnp.PyArray_ITEMSIZE(state) == 8 and cnp.PyArray_ISCARRAY_RO(state)):
        raise ValueError("rank_touched takes contiguous nodes u32, act f32, extra_ids i64, extra_act f32, "
                         "state SpreadState")
    _hot_ok(hot, flags_offset)
    if cnp.PyArray_SIZE(act) != cnp.PyArray_SIZE(nodes) or cnp.PyArray_SIZE(extra_act) != cnp.PyArray_SIZE(extra_ids):
        raise ValueError("act must match nodes and extra_act extra_ids")
    if n_graph > <uint64_t>cnp.PyArray_SIZE(state):
        raise ValueError("state must hold a record per node of the graph")
    return _ranked(<const uint32_t *>cnp.PyArray_DATA(nodes), <const float *>cnp.PyArray_DATA(act),
                   cnp.PyArray_SIZE(nodes), <const int64_t *>cnp.PyArray_DATA(extra_ids),
                   <const float *>cnp.PyArray_DATA(extra_act), cnp.PyArray_SIZE(extra_ids),
                   <const uint32_t *>cnp.PyArray_DATA(state), n_graph, <const uint8_t *>cnp.PyArray_DATA(hot),
                   <uint64_t>cnp.PyArray_SIZE(hot), cnp.PyArray_ITEMSIZE(hot), flags_offset, hidden)


def gather_touched(cnp.ndarray nodes not None, cnp.ndarray state not None):
    """(activation f32, hop u8) of each node a spread touched (nodes u32), from its scratch."""
    if not (_vec(nodes, cnp.NPY_UINT32, False) and cnp.PyArray_ITEMSIZE(state) == 8
            and cnp.PyArray_ISCARRAY_RO(state)):
        raise ValueError("gather_touched takes contiguous nodes u32 and state SpreadState")
    cdef int64_t n = cnp.PyArray_SIZE(nodes), i
    cdef uint64_t size = <uint64_t>cnp.PyArray_SIZE(state)
    cdef const uint32_t *nd = <const uint32_t *>cnp.PyArray_DATA(nodes)
    cdef const uint32_t *marks = <const uint32_t *>cnp.PyArray_DATA(state)     # (mark, act) per node
    act_a = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>n], cnp.NPY_FLOAT32, 0)
    hop_a = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>n], cnp.NPY_UINT8, 0)
    cdef float *act = <float *>cnp.PyArray_DATA(act_a)
    cdef uint8_t *hops = <uint8_t *>cnp.PyArray_DATA(hop_a)
    for i in range(n):
        if nd[i] >= size:
            raise ValueError(f"node {nd[i]} is past the spread's state ({size} nodes)")
    with nogil:
        for i in range(n):
            hops[i] = <uint8_t>(marks[2 * nd[i]] & 0xFF)
            memcpy(&act[i], &marks[2 * nd[i] + 1], 4)
    return act_a, hop_a
