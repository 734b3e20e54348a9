"""Trace writer: emits 64-byte events into this process's ring through
csrc/include/engram_trace.h, the same code a C kernel uses."""
from libc.stdint cimport uint16_t, uint64_t, uintptr_t

cdef extern from "engram_trace.h":
    ctypedef struct eg_trace_ring_header_t:
        uint64_t head
    ctypedef struct eg_trace_event_t:
        uint64_t seq
    int eg_trace_emit(eg_trace_ring_header_t *h, eg_trace_event_t *events, uint16_t kind, uint16_t worker,
                      uint16_t space, uint64_t trace_id, uint64_t node_a, uint64_t node_b, double value,
                      float strength) nogil


cdef class TraceWriter:
    """writer.emit(kind, space=0, trace_id=0, node_a=0, node_b=0, value=0.0, strength=1.0) -> bool"""
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
             double value=0.0, float strength=1.0):
        return bool(eg_trace_emit(self.h, self.events, kind, self.worker, space, trace_id, node_a, node_b,
                                  value, strength))


cdef class NoopWriter:
    """The writer when tracing is off: a compiled call that does nothing."""

    def emit(self, uint16_t kind, uint16_t space=0, uint64_t trace_id=0, uint64_t node_a=0, uint64_t node_b=0,
             double value=0.0, float strength=1.0):
        return False
