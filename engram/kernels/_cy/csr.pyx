"""One-pass validation of a caller's CSR graph (KernelTable.spread checks it on every call).

numpy needs six passes (diff, min, max, isfinite, < 0, casts) and costs more than a
4-hop spread over 10K nodes; here one branch-free OR-reduction per array (which gcc
vectorizes) decides, and only a bad graph is searched again for the first offending
index, in Python, where speed no longer matters.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t, uint64_t

from engram.kernels._cy.arrays cimport vec

cnp.import_array()


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
    if not (vec(offsets, cnp.PyArray_TYPE(offsets), False) and vec(targets, cnp.PyArray_TYPE(targets), False)
            and vec(weights, cnp.NPY_FLOAT32, False)):
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


