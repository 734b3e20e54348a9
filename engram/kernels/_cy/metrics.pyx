"""Metric recorders over cells in shared memory: one atomic add per record, no
allocation, the GIL not needed inside. Threads of one process share its slot,
so adds are atomic (relaxed: a counter needs no ordering). The recording is
csrc/include/engram_metrics.h, the same code C kernels use."""
from libc.stdint cimport int64_t, uint64_t, uintptr_t

cdef extern from "engram_metrics.h":
    void eg_metric_add(uint64_t *cell, uint64_t v) nogil
    void eg_metric_observe_ns(uint64_t *cells, uint64_t ns) nogil

cdef extern from *:
    """
    static inline void eg_cell_set(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
    """
    void eg_cell_set(uint64_t *p, uint64_t v) nogil


cdef class _Cells:
    """Cells of this process's slot; the mapping stays alive while a recorder does."""
    cdef uint64_t *cell
    cdef object keep

    def __cinit__(self, uintptr_t address, object keep):
        self.cell = <uint64_t *>address
        self.keep = keep


cdef class Counter(_Cells):
    """counter.inc(v=1): add to this process's cell."""

    def inc(self, uint64_t v=1):
        eg_metric_add(self.cell, v)


cdef class Gauge(_Cells):
    """gauge.set(v): this process's value (int64); readers sum the slots."""

    def set(self, int64_t v):
        eg_cell_set(self.cell, <uint64_t>v)

    def add(self, int64_t v):
        eg_metric_add(self.cell, <uint64_t>v)


cdef class Histogram(_Cells):
    """histogram.observe_ns(ns): bucket by bit length (powers of two), count, exact sum."""

    def observe_ns(self, int64_t ns):
        eg_metric_observe_ns(self.cell, <uint64_t>(ns if ns > 0 else 0))


cdef class Noop:
    """What every recorder is when metrics are off: C-level calls that do nothing
    (cheaper than a Python method, so turning metrics off never costs more)."""

    def inc(self, uint64_t v=1):
        pass

    def set(self, int64_t v):
        pass

    def add(self, int64_t v):
        pass

    def observe_ns(self, int64_t ns):
        pass
