# What engram/kernels/_cy/spread.pyx calls of rank.pyx: Space.spread's ordering.
cimport numpy as cnp
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t


cdef object ranked(const uint32_t *nd, const float *ac, int64_t n, const int64_t *xi, const float *xa,
                   int64_t m, const uint32_t *marks, uint64_t n_graph, const uint8_t *hb, uint64_t n_hot,
                   Py_ssize_t rec, Py_ssize_t flags_offset, uint8_t hidden)
cdef int hot_ok(cnp.ndarray hot, Py_ssize_t flags_offset) except -1
