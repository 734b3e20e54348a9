"""Drivers for the streaming kernels (decay curves, CRC32C), called through raw
function pointers as in scan.pyx: a WAL checksums every small record, where
ctypes' per-call cost would exceed the checksum itself; and the walk along a chain
of shared pool records (a worker's answer)."""
cimport numpy as cnp
from libc.stdint cimport int64_t, uint32_t, uint64_t, uintptr_t
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

from engram.kernels._cy.abi cimport eg_crc_fn as crc_fn, eg_decay_fn as decay_fn

cnp.import_array()


cdef class DecayKernel:
    cdef decay_fn fn

    def __cinit__(self, uintptr_t address):
        if address == 0:
            raise ValueError("kernel address is NULL")
        self.fn = <decay_fn>address

    def __call__(self, cnp.ndarray strength not None, cnp.ndarray age not None, uint32_t kind, float p0,
                 float p1, float p2, cnp.ndarray out not None):
        cdef uint64_t n = <uint64_t>cnp.PyArray_SIZE(strength)
        cdef int64_t got
        for a in (strength, age, out):
            if not (cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>a) and cnp.PyArray_TYPE(<cnp.ndarray>a) == cnp.NPY_FLOAT32
                    and <uint64_t>cnp.PyArray_SIZE(<cnp.ndarray>a) == n):
                raise ValueError("strength, age and out must be contiguous float32 arrays of one length")
        if not cnp.PyArray_ISWRITEABLE(out):
            raise ValueError("out must be writable")
        with nogil:
            got = self.fn(<const float *>cnp.PyArray_DATA(strength), <const float *>cnp.PyArray_DATA(age), n,
                          kind, p0, p1, p2, <float *>cnp.PyArray_DATA(out))
        return got


cdef class CrcKernel:
    cdef crc_fn fn

    def __cinit__(self, uintptr_t address):
        if address == 0:
            raise ValueError("kernel address is NULL")
        self.fn = <crc_fn>address

    def __call__(self, data, uint32_t crc=0):
        """CRC32C of any contiguous buffer (bytes, bytearray, memoryview, ndarray)."""
        cdef Py_buffer view
        cdef uint32_t out
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            with nogil:
                out = self.fn(crc, view.buf, <uint64_t>view.len)
        finally:
            PyBuffer_Release(&view)
        return out


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
