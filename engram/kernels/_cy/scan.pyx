"""Scan driver: calls a top-k kernel through its raw function pointer.

ctypes costs 2-4 us per array argument per call; this driver takes the
kernel's address once (from the ctypes-loaded library) and then calls it
with the arrays' raw pointers, releasing the GIL so concurrent callers scan
in parallel. It checks what memory safety needs (shapes, itemsizes, inner
contiguity); the Python layer above has already validated values.

``TopKKernel.until`` scans a table in chunks against a deadline in one call
without the GIL: a recall's budgeted scan checks the clock between chunks
without taking the GIL back each time (under contention every retake can cost
a switch interval, 5 ms).
"""
cimport numpy as cnp
from libc.stdint cimport int64_t, uint64_t, uint8_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from engram.kernels._cy.abi cimport eg_topk_fn as topk_fn, eg_topk_mn_fn as topk_mn_fn

cnp.import_array()


cdef inline int _row_type(int itemsize):
    return cnp.NPY_FLOAT32 if itemsize == 4 else (cnp.NPY_FLOAT16 if itemsize == 2 else cnp.NPY_INT8)


cdef int _check_binding(uintptr_t address, int row_itemsize) except -1:
    if address == 0:
        raise ValueError("kernel address is NULL")
    if row_itemsize not in (1, 2, 4):
        raise ValueError("row_itemsize must be 1 (int8), 2 (f16) or 4 (f32)")
    return 0


cdef int _check_rows(cnp.ndarray rows, int itemsize, uint64_t *n, uint64_t *dim, uint64_t *stride) except -1:
    """Rows must be 2-D of the kernel's dtype with contiguous rows; reports n, dim and the row stride."""
    if cnp.PyArray_NDIM(rows) != 2 or cnp.PyArray_TYPE(rows) != _row_type(itemsize):
        raise ValueError("rows must be 2-D float32, float16 or int8, matching the kernel")
    n[0] = <uint64_t>cnp.PyArray_DIM(rows, 0)
    dim[0] = <uint64_t>cnp.PyArray_DIM(rows, 1)
    stride[0] = <uint64_t>cnp.PyArray_STRIDE(rows, 0)
    if dim[0] > 1 and cnp.PyArray_STRIDE(rows, 1) != itemsize:
        raise ValueError("rows must be contiguous along their last axis")
    return 0


cdef const float *_norms_ptr(object norms, uint64_t n) except? NULL:
    """NULL for none, else the data of a contiguous float32 array of at least n entries."""
    if norms is None:
        return NULL
    if not (isinstance(norms, cnp.ndarray) and cnp.PyArray_TYPE(<cnp.ndarray>norms) == cnp.NPY_FLOAT32
            and cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>norms) and <uint64_t>cnp.PyArray_SIZE(<cnp.ndarray>norms) >= n):
        raise ValueError("norms must be None or a contiguous float32 array of at least n entries")
    return <const float *>cnp.PyArray_DATA(<cnp.ndarray>norms)


cdef const uint8_t *_mask_ptr(object mask, uint64_t n) except? NULL:
    """NULL for no mask, else the data of a contiguous uint8/bool array of at least n entries."""
    if mask is None:
        return NULL
    if not isinstance(mask, cnp.ndarray) or cnp.PyArray_TYPE(<cnp.ndarray>mask) not in (cnp.NPY_UINT8, cnp.NPY_BOOL):
        raise ValueError("mask must be None or a uint8/bool ndarray")
    if not (cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>mask) and <uint64_t>cnp.PyArray_SIZE(<cnp.ndarray>mask) >= n):
        raise ValueError("mask must be a contiguous uint8 array of at least n entries")
    return <const uint8_t *>cnp.PyArray_DATA(<cnp.ndarray>mask)


cdef inline int64_t _now_ns() noexcept nogil:
    """CLOCK_MONOTONIC in ns: time.perf_counter_ns's clock on Linux."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef uint64_t _merge(int64_t *idx, float *score, uint64_t got, const int64_t *c_idx, const float *c_score,
                     uint64_t c_got, int64_t offset, uint64_t k, int64_t *m_idx, float *m_score) noexcept nogil:
    """Merge a chunk's results (rows from ``offset`` on, after every row already in idx)
    into the best-first (idx, score); equal scores keep the lower row. Returns the count."""
    cdef uint64_t i = 0, j = 0, t = 0
    while t < k and (i < got or j < c_got):
        if j >= c_got or (i < got and not (c_score[j] > score[i])):
            m_idx[t] = idx[i]
            m_score[t] = score[i]
            i += 1
        else:
            m_idx[t] = c_idx[j] + offset
            m_score[t] = c_score[j]
            j += 1
        t += 1
    memcpy(idx, m_idx, t * sizeof(int64_t))
    memcpy(score, m_score, t * sizeof(float))
    return t


cdef class TopKKernel:
    """A top-k kernel bound by address.

    TopKKernel(address)(q, rows, mask, out_idx, out_score) -> results written
    q: f32[dim] contiguous; rows: 2-D f32, f16 or int8 with contiguous rows;
    mask: None or uint8[n]; out_idx: int64[k]; out_score: f32[k].
    """
    cdef topk_fn fn
    cdef readonly uintptr_t address
    cdef readonly int row_itemsize

    def __cinit__(self, uintptr_t address, int row_itemsize):
        _check_binding(address, row_itemsize)
        self.fn = <topk_fn>address
        self.address = address
        self.row_itemsize = row_itemsize

    cdef int _check(self, cnp.ndarray q, cnp.ndarray rows, cnp.ndarray out_idx, cnp.ndarray out_score,
                    uint64_t *n, uint64_t *dim, uint64_t *stride, uint64_t *k) except -1:
        _check_rows(rows, self.row_itemsize, n, dim, stride)
        if not (cnp.PyArray_ISCARRAY_RO(q) and cnp.PyArray_TYPE(q) == cnp.NPY_FLOAT32
                and <uint64_t>cnp.PyArray_SIZE(q) == dim[0]):
            raise ValueError("q must be a contiguous f32 vector of length dim")
        k[0] = <uint64_t>cnp.PyArray_SIZE(out_idx)
        if not (cnp.PyArray_ISCARRAY(out_idx) and cnp.PyArray_ISCARRAY(out_score)
                and cnp.PyArray_TYPE(out_idx) == cnp.NPY_INT64 and cnp.PyArray_TYPE(out_score) == cnp.NPY_FLOAT32
                and <uint64_t>cnp.PyArray_SIZE(out_score) == k[0]):
            raise ValueError("out_idx (int64) and out_score (f32) must be writable, contiguous, same length")
        return 0

    def __call__(self, cnp.ndarray q not None, cnp.ndarray rows not None, object mask,
                 cnp.ndarray out_idx not None, cnp.ndarray out_score not None, object norms=None):
        cdef uint64_t n, dim, stride, k
        cdef const uint8_t *mp = NULL
        cdef const float *np_ = NULL
        cdef int64_t got
        self._check(q, rows, out_idx, out_score, &n, &dim, &stride, &k)
        mp = _mask_ptr(mask, n)
        np_ = _norms_ptr(norms, n)
        if k == 0 or n == 0:
            return 0
        with nogil:
            got = self.fn(<const float *>cnp.PyArray_DATA(q), cnp.PyArray_DATA(rows), n, dim, stride,
                          mp, np_, k, <int64_t *>cnp.PyArray_DATA(out_idx), <float *>cnp.PyArray_DATA(out_score))
        return got

    def until(self, cnp.ndarray q not None, cnp.ndarray rows not None, object mask,
              cnp.ndarray out_idx not None, cnp.ndarray out_score not None, object norms,
              int64_t deadline_ns, uint64_t chunk):
        """As __call__, over ``rows`` in chunks of ``chunk`` rows, stopping at the first
        chunk boundary at or past ``deadline_ns`` (CLOCK_MONOTONIC ns); the first chunk
        always runs. One call without the GIL; the chunks' results are merged best first,
        equal scores by lower row. Returns (got, rows scanned); got < 0: a kernel's error."""
        cdef uint64_t n, dim, stride, k, a = 0, m, kk, got = 0
        cdef const uint8_t *mp = NULL
        cdef const float *np_ = NULL
        cdef int64_t c_got = 0
        cdef const char *base
        cdef const float *qp
        cdef int64_t *idx
        cdef float *score
        self._check(q, rows, out_idx, out_score, &n, &dim, &stride, &k)
        mp = _mask_ptr(mask, n)
        np_ = _norms_ptr(norms, n)
        if chunk == 0:
            raise ValueError("chunk must be at least 1 row")
        if k == 0 or n == 0:
            return 0, n
        cdef char *tmp = <char *>malloc(2 * k * (sizeof(int64_t) + sizeof(float)))
        if tmp == NULL:
            raise MemoryError()
        cdef int64_t *c_idx = <int64_t *>tmp
        cdef int64_t *m_idx = c_idx + k
        cdef float *c_score = <float *>(m_idx + k)
        cdef float *m_score = c_score + k
        base = <const char *>cnp.PyArray_DATA(rows)
        qp = <const float *>cnp.PyArray_DATA(q)
        idx = <int64_t *>cnp.PyArray_DATA(out_idx)
        score = <float *>cnp.PyArray_DATA(out_score)
        with nogil:
            while a < n:
                if a and _now_ns() >= deadline_ns:
                    break
                m = chunk if chunk < n - a else n - a
                kk = k if k < m else m
                c_got = self.fn(qp, base + a * stride, m, dim, stride, mp + a if mp != NULL else NULL,
                                np_ + a if np_ != NULL else NULL, kk, c_idx, c_score)
                if c_got < 0:
                    break
                got = _merge(idx, score, got, c_idx, c_score, <uint64_t>c_got, <int64_t>a, k, m_idx, m_score)
                a += m
        free(tmp)
        if c_got < 0:
            return c_got, a
        return <int64_t>got, a


cdef class TopKManyKernel:
    """An M:N top-k kernel bound by address: (qs (m, dim) f32, rows, mask, out_idx (m, k), out_score (m, k), out_count (m,))."""
    cdef topk_mn_fn fn
    cdef readonly int row_itemsize

    def __cinit__(self, uintptr_t address, int row_itemsize):
        _check_binding(address, row_itemsize)
        self.fn = <topk_mn_fn>address
        self.row_itemsize = row_itemsize

    def __call__(self, cnp.ndarray qs not None, cnp.ndarray rows not None, object mask,
                 cnp.ndarray out_idx not None, cnp.ndarray out_score not None, cnp.ndarray out_count not None,
                 object norms=None):
        cdef uint64_t n, dim, stride, k, m
        cdef const uint8_t *mp = NULL
        cdef const float *np_ = NULL
        cdef int64_t got
        _check_rows(rows, self.row_itemsize, &n, &dim, &stride)
        if not (cnp.PyArray_NDIM(qs) == 2 and cnp.PyArray_ISCARRAY_RO(qs) and cnp.PyArray_TYPE(qs) == cnp.NPY_FLOAT32
                and <uint64_t>cnp.PyArray_DIM(qs, 1) == dim):
            raise ValueError("qs must be a C-contiguous (m, dim) float32 array")
        m = <uint64_t>cnp.PyArray_DIM(qs, 0)
        if not (cnp.PyArray_NDIM(out_idx) == 2 and cnp.PyArray_ISCARRAY(out_idx) and cnp.PyArray_ISCARRAY(out_score)
                and cnp.PyArray_ISCARRAY(out_count) and cnp.PyArray_TYPE(out_idx) == cnp.NPY_INT64
                and cnp.PyArray_TYPE(out_score) == cnp.NPY_FLOAT32 and cnp.PyArray_TYPE(out_count) == cnp.NPY_INT64
                and <uint64_t>cnp.PyArray_DIM(out_idx, 0) == m and <uint64_t>cnp.PyArray_SIZE(out_count) == m
                and cnp.PyArray_SIZE(out_idx) == cnp.PyArray_SIZE(out_score)):
            raise ValueError("out_idx (m, k) int64, out_score (m, k) f32 and out_count (m,) int64 must be contiguous")
        k = <uint64_t>cnp.PyArray_DIM(out_idx, 1)
        mp = _mask_ptr(mask, n)
        np_ = _norms_ptr(norms, n)
        with nogil:
            got = self.fn(<const float *>cnp.PyArray_DATA(qs), m, dim, cnp.PyArray_DATA(rows), n, dim, stride, mp, np_, k,
                          <int64_t *>cnp.PyArray_DATA(out_idx), <float *>cnp.PyArray_DATA(out_score),
                          <int64_t *>cnp.PyArray_DATA(out_count))
        return got
