"""Metric recorders over cells in shared memory: one atomic add per record, no
allocation, the GIL not needed inside. Threads of one process share its slot,
so adds are atomic (relaxed: a counter needs no ordering)."""
from libc.stdint cimport int64_t, uint64_t, uintptr_t

cdef extern from *:
    """
    static inline void eg_cell_add(uint64_t *p, uint64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
    static inline void eg_cell_set(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
    static inline int eg_bit_length(uint64_t v) { return v ? 64 - __builtin_clzll(v) : 0; }
    """
    void eg_cell_add(uint64_t *p, uint64_t v) nogil
    void eg_cell_set(uint64_t *p, uint64_t v) nogil
    int eg_bit_length(uint64_t v) nogil

cdef enum:
    MIN_BITS = 10        # engram/metrics/definitions.py: HIST_MIN_BITS
    BUCKETS = 31         # HIST_BUCKETS


cdef class Counter:
    """counter.inc(v=1): add to this process's cell."""
    cdef uint64_t *cell
    cdef object keep

    def __cinit__(self, uintptr_t address, object keep):
        self.cell = <uint64_t *>address
        self.keep = keep                 # the mapping stays alive while the recorder does

    def inc(self, uint64_t v=1):
        eg_cell_add(self.cell, v)


cdef class Gauge:
    """gauge.set(v): this process's value (int64); readers sum the slots."""
    cdef uint64_t *cell
    cdef object keep

    def __cinit__(self, uintptr_t address, object keep):
        self.cell = <uint64_t *>address
        self.keep = keep

    def set(self, int64_t v):
        eg_cell_set(self.cell, <uint64_t>v)

    def add(self, int64_t v):
        eg_cell_add(self.cell, <uint64_t>v)


cdef class Histogram:
    """histogram.observe_ns(ns): bucket by bit length (powers of two), count, exact sum."""
    cdef uint64_t *cells
    cdef object keep

    def __cinit__(self, uintptr_t address, object keep):
        self.cells = <uint64_t *>address
        self.keep = keep

    def observe_ns(self, int64_t ns):
        cdef uint64_t v = <uint64_t>(ns if ns > 0 else 0)
        cdef int b = eg_bit_length(v) - MIN_BITS
        if b < 0:
            b = 0
        elif b > BUCKETS:
            b = BUCKETS                  # the +Inf bucket
        eg_cell_add(self.cells + b, 1)
        eg_cell_add(self.cells + BUCKETS + 1, 1)
        eg_cell_add(self.cells + BUCKETS + 2, v)
