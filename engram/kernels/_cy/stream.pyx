"""Drivers for the streaming kernels (decay curves, CRC32C), called through raw
function pointers as in scan.pyx: a WAL checksums every small record, where
ctypes' per-call cost would exceed the checksum itself; the walk along a chain
of shared pool records (a worker's answer); and the log writer's writev + fdatasync
of a group in one call without the GIL (``write_all``)."""
import os

cimport numpy as cnp
from libc.stdint cimport int64_t, uint32_t, uint64_t, uintptr_t
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from libc.errno cimport errno, EINTR
from libc.stdlib cimport malloc, free
from posix.fcntl cimport posix_fadvise, POSIX_FADV_DONTNEED
from posix.uio cimport iovec, writev
from posix.unistd cimport fdatasync

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


cdef enum:
    CRC_NOGIL_BYTES = 65536     # ~10 us of checksum


cdef class CrcKernel:
    cdef crc_fn fn

    def __cinit__(self, uintptr_t address):
        if address == 0:
            raise ValueError("kernel address is NULL")
        self.fn = <crc_fn>address

    def __call__(self, data, uint32_t crc=0):
        """CRC32C of any contiguous buffer (bytes, bytearray, memoryview, ndarray). The GIL
        is let go only for a long one: taking it back waits for whichever thread holds it
        (up to the switch interval, 5 ms), far longer than a short checksum takes."""
        cdef Py_buffer view
        cdef uint32_t out
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            if view.len < CRC_NOGIL_BYTES:
                out = self.fn(crc, view.buf, <uint64_t>view.len)
            else:
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


cdef int _write_all(int fd, iovec *iov, Py_ssize_t n, bint sync, long long drop_from) noexcept nogil:
    """writev all of iov (IOV_MAX at a time, continuing short writes), then fdatasync if
    ``sync``, then drop the bytes written from the page cache if ``drop_from`` >= 0 (their
    offset): 0, or the errno that stopped it (28, ENOSPC, if a write makes no progress)."""
    cdef Py_ssize_t k = 0
    cdef ssize_t got
    cdef int cnt
    cdef long long total = 0
    for k in range(n):
        total += <long long>iov[k].iov_len
    k = 0
    while k < n:
        cnt = <int>(n - k if n - k < 1024 else 1024)
        got = writev(fd, iov + k, cnt)
        if got < 0:
            if errno == EINTR:
                continue
            return errno
        if got == 0:
            return 28
        while k < n and <size_t>got >= iov[k].iov_len:
            got -= iov[k].iov_len
            k += 1
        if got:
            iov[k].iov_base = <char *>iov[k].iov_base + got
            iov[k].iov_len -= got
        while k < n and iov[k].iov_len == 0:
            k += 1
    if sync and fdatasync(fd) != 0:
        return errno
    if drop_from >= 0:      # advice: a failure changes nothing
        posix_fadvise(fd, drop_from, total, POSIX_FADV_DONTNEED)
    return 0


def write_all(int fd, list buffers, bint sync, long long drop_from=-1):
    """Write all of ``buffers`` (contiguous bytes-like objects) at fd's position, then
    fdatasync if ``sync``, then (``drop_from`` >= 0: the position written from) drop those
    bytes' pages from the page cache, in one call that holds no GIL from the first byte to
    the end; OSError as os.writev / os.fdatasync would raise it."""
    cdef Py_ssize_t n = len(buffers), held = 0, i
    cdef Py_buffer *views = <Py_buffer *>malloc(max(n, 1) * sizeof(Py_buffer))
    cdef iovec *iov = <iovec *>malloc(max(n, 1) * sizeof(iovec))
    cdef int err
    if views == NULL or iov == NULL:
        free(views)
        free(iov)
        raise MemoryError()
    try:
        for i in range(n):
            PyObject_GetBuffer(buffers[i], &views[i], PyBUF_SIMPLE)
            held += 1
            iov[i].iov_base = views[i].buf
            iov[i].iov_len = <size_t>views[i].len
        with nogil:
            err = _write_all(fd, iov, n, sync, drop_from)
        if err:
            raise OSError(err, os.strerror(err))
    finally:
        for i in range(held):
            PyBuffer_Release(&views[i])
        free(views)
        free(iov)
