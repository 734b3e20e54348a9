"""Trace writer: emits 64-byte events into this process's ring through
csrc/include/engram_trace.h, the same code a C kernel uses."""
from libc.stdint cimport int64_t, uint16_t, uint64_t, uintptr_t

cdef extern from "engram_trace.h":
    ctypedef struct eg_trace_ring_header_t:
        uint64_t head
    ctypedef struct eg_trace_event_t:
        uint64_t seq
    int eg_trace_emit_at(eg_trace_ring_header_t *h, eg_trace_event_t *events, uint16_t kind, uint16_t worker,
                         uint16_t space, uint64_t trace_id, uint64_t node_a, uint64_t node_b, double value,
                         float strength, uint64_t ts_ns) nogil


cdef class TraceWriter:
    """writer.emit(kind, space=0, trace_id=0, node_a=0, node_b=0, value=0.0, strength=1.0, start_ns=0) -> bool

    start_ns: a span's CLOCK_MONOTONIC start (time.perf_counter_ns() on Linux), value its
    duration; 0 stamps the event now (an instant)."""
    cdef eg_trace_ring_header_t *h
    cdef eg_trace_event_t *events
    cdef uint16_t worker
    cdef object keep

    def __cinit__(self, uintptr_t header, uintptr_t events, uint16_t worker, object keep):
        self.h = <eg_trace_ring_header_t *>header
        self.events = <eg_trace_event_t *>events
        self.worker = worker
        self.keep = keep

    def emit(self, uint16_t kind, uint16_t space=0, uint64_t trace_id=0, uint64_t node_a=0, uint64_t node_b=0,
             double value=0.0, float strength=1.0, uint64_t start_ns=0):
        return bool(eg_trace_emit_at(self.h, self.events, kind, self.worker, space, trace_id, node_a, node_b,
                                     value, strength, start_ns))

    def emit_each(self, uint16_t kind, uint16_t space, uint64_t trace_id, const int64_t[::1] node_a,
                  const int64_t[::1] node_b, const double[::1] value, const float[::1] strength):
        """One instant per row (a recall's seeds or results), in one call."""
        cdef Py_ssize_t i, n = node_a.shape[0]
        if node_b.shape[0] != n or value.shape[0] != n or strength.shape[0] != n:
            raise ValueError("emit_each: the four arrays must have the same length")
        for i in range(n):      # holding the GIL: the owner's threads share one ring, one writer at a time
            eg_trace_emit_at(self.h, self.events, kind, self.worker, space, trace_id, <uint64_t>node_a[i],
                             <uint64_t>node_b[i], value[i], strength[i], 0)


cdef class NoopWriter:
    """The writer when tracing is off: a compiled call that does nothing."""

    def emit(self, uint16_t kind, uint16_t space=0, uint64_t trace_id=0, uint64_t node_a=0, uint64_t node_b=0,
             double value=0.0, float strength=1.0, uint64_t start_ns=0):
        return False

    def emit_each(self, uint16_t kind, uint16_t space, uint64_t trace_id, node_a, node_b, value, strength):
        pass
