"""Spread driver: calls eg_spread through its raw function pointer (see scan.pyx).

A 4-hop spread over 10K nodes takes tens of microseconds; ctypes would add
2-4 us for each of its nine arrays, so the call goes through here instead.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t, uintptr_t

cnp.import_array()

ctypedef int64_t (*spread_fn)(const uint64_t *offsets, const uint32_t *targets, const float *weights,
                              uint64_t n_nodes, const uint32_t *seeds, const float *seed_act, uint64_t n_seeds,
                              uint32_t max_depth, float decay, float threshold, float cycle_penalty,
                              uint32_t prefetch_distance, uint32_t epoch, void *state,
                              uint32_t *out_nodes, float *fire, uint64_t out_cap) noexcept nogil


cdef inline bint _vec(cnp.ndarray a, int typenum, bint writable):
    return (cnp.PyArray_NDIM(a) == 1 and cnp.PyArray_TYPE(a) == typenum
            and (cnp.PyArray_ISCARRAY(a) if writable else cnp.PyArray_ISCARRAY_RO(a)))


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
        cdef uint64_t n, m, n_seeds, cap
        cdef int64_t got
        if not (_vec(offsets, cnp.NPY_UINT64, False) and _vec(targets, cnp.NPY_UINT32, False)
                and _vec(weights, cnp.NPY_FLOAT32, False) and _vec(seeds, cnp.NPY_UINT32, False)
                and _vec(seed_act, cnp.NPY_FLOAT32, False) and _vec(out_nodes, cnp.NPY_UINT32, True)
                and _vec(fire, cnp.NPY_FLOAT32, True) and cnp.PyArray_ITEMSIZE(state) == 8
                and cnp.PyArray_ISCARRAY(state)):
            raise ValueError("spread arrays must be contiguous 1-D arrays of the documented types: offsets u64, "
                             "targets u32, weights f32, seeds u32, seed_act f32, state SpreadState, "
                             "out_nodes u32, fire f32")
        n = <uint64_t>cnp.PyArray_SIZE(offsets) - 1
        m = <uint64_t>cnp.PyArray_SIZE(targets)
        if cnp.PyArray_SIZE(offsets) < 1 or <uint64_t>cnp.PyArray_SIZE(weights) != m:
            raise ValueError("offsets needs n+1 entries and weights as many as targets")
        if (<const uint64_t *>cnp.PyArray_DATA(offsets))[n] > m:
            raise ValueError("offsets point past the end of targets")
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


ctypedef int64_t (*hop_fn)(const uint64_t *offsets, const uint32_t *targets, const float *weights,
                           uint64_t n_nodes, uint32_t hop, float decay, float threshold, float cycle_penalty,
                           uint32_t prefetch_distance, uint32_t epoch, void *state, uint32_t *out_nodes,
                           float *fire, uint64_t begin, uint64_t end, uint64_t count, uint64_t out_cap) noexcept nogil


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
        cdef uint64_t n, m, cap
        cdef int64_t got
        if not (_vec(offsets, cnp.NPY_UINT64, False) and _vec(targets, cnp.NPY_UINT32, False)
                and _vec(weights, cnp.NPY_FLOAT32, False) and _vec(out_nodes, cnp.NPY_UINT32, True)
                and _vec(fire, cnp.NPY_FLOAT32, True) and cnp.PyArray_ITEMSIZE(state) == 8
                and cnp.PyArray_ISCARRAY(state)):
            raise ValueError("spread_hop arrays must be contiguous 1-D arrays of the documented types")
        if cnp.PyArray_SIZE(offsets) < 1:
            raise ValueError("offsets needs n+1 entries")
        n = <uint64_t>cnp.PyArray_SIZE(offsets) - 1
        m = <uint64_t>cnp.PyArray_SIZE(targets)
        if <uint64_t>cnp.PyArray_SIZE(weights) != m or (<const uint64_t *>cnp.PyArray_DATA(offsets))[n] > m:
            raise ValueError("weights must match targets and offsets must stay inside them")
        if <uint64_t>cnp.PyArray_SIZE(state) < n:
            raise ValueError("state must hold one record per node")
        cap = <uint64_t>min(cnp.PyArray_SIZE(out_nodes), cnp.PyArray_SIZE(fire))
        with nogil:
            got = self.fn(<const uint64_t *>cnp.PyArray_DATA(offsets), <const uint32_t *>cnp.PyArray_DATA(targets),
                          <const float *>cnp.PyArray_DATA(weights), n, hop, decay, threshold, cycle_penalty,
                          prefetch_distance, epoch, cnp.PyArray_DATA(state), <uint32_t *>cnp.PyArray_DATA(out_nodes),
                          <float *>cnp.PyArray_DATA(fire), begin, end, count, cap)
        return got
