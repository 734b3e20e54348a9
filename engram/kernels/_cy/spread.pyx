"""Spread driver: calls eg_spread through its raw function pointer (see scan.pyx).

A 4-hop spread over 10K nodes takes tens of microseconds; ctypes would add
2-4 us for each of its nine arrays, so the call goes through here instead.
"""
cimport numpy as cnp
from libc.math cimport isfinite
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
