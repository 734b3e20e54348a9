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
from libc.stdint cimport int8_t, int64_t, uint32_t, uint64_t, uint8_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from engram.kernels._cy.abi cimport eg_sketch_fn as sketch_fn, eg_topk_fn as topk_fn, eg_topk_mn_fn as topk_mn_fn

cnp.import_array()


cdef inline int _row_type(int itemsize):
    return cnp.NPY_FLOAT32 if itemsize == 4 else (cnp.NPY_FLOAT16 if itemsize == 2 else cnp.NPY_INT8)


cdef int _check_binding(uintptr_t address, int row_itemsize) except -1:
    if address == 0:
        raise ValueError("kernel address is NULL")
    if row_itemsize not in (1, 2, 4):
        raise ValueError("row_itemsize must be 1 (int8), 2 (f16) or 4 (f32)")
    return 0


cdef int _check_rows(cnp.ndarray rows, int itemsize, uint64_t *n, uint64_t *dim, uint64_t *stride,
                     int row_type=-1) except -1:
    """Rows must be 2-D of the kernel's dtype (``row_type``, else the top-k kernels' of that
    itemsize) with contiguous rows; reports n, dim and the row stride."""
    if cnp.PyArray_NDIM(rows) != 2 or cnp.PyArray_TYPE(rows) != (_row_type(itemsize) if row_type < 0 else row_type):
        raise ValueError("rows must be 2-D float32, float16, int8 or (a sketch's) uint8, matching the kernel")
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


cdef extern from *:
    void __builtin_prefetch(const void *addr) noexcept nogil


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


cdef class SketchKernel:
    """The sketch's top-k kernel (engram.h's EG_SKETCH_ARGS) bound by address.

    SketchKernel(address)(q, rows, row_scale, out_idx, out_score) -> results written
    rows: 2-D uint8 (two 4-bit codes a byte) with contiguous rows; q: int8[2 x the rows'
    bytes] contiguous; row_scale: f32[n] contiguous; out_idx: int64[k]; out_score: f32[k].
    """
    cdef sketch_fn fn

    def __cinit__(self, uintptr_t address):
        _check_binding(address, 1)
        self.fn = <sketch_fn>address

    def __call__(self, cnp.ndarray q not None, cnp.ndarray rows not None, cnp.ndarray row_scale not None,
                 cnp.ndarray out_idx not None, cnp.ndarray out_score not None):
        cdef uint64_t n, dim, stride, k
        cdef int64_t got
        cdef const float *scale
        _check_rows(rows, 1, &n, &dim, &stride, cnp.NPY_UINT8)
        if not (cnp.PyArray_ISCARRAY_RO(q) and cnp.PyArray_TYPE(q) == cnp.NPY_INT8
                and <uint64_t>cnp.PyArray_SIZE(q) == 2 * dim):
            raise ValueError("q must be a contiguous int8 vector of twice the rows' length")
        scale = _norms_ptr(row_scale, n)
        k = <uint64_t>cnp.PyArray_SIZE(out_idx)
        if not (cnp.PyArray_ISCARRAY(out_idx) and cnp.PyArray_ISCARRAY(out_score)
                and cnp.PyArray_TYPE(out_idx) == cnp.NPY_INT64 and cnp.PyArray_TYPE(out_score) == cnp.NPY_FLOAT32
                and <uint64_t>cnp.PyArray_SIZE(out_score) == k):
            raise ValueError("out_idx (int64) and out_score (f32) must be writable, contiguous, same length")
        if k == 0 or n == 0:
            return 0
        with nogil:
            got = self.fn(<const int8_t *>cnp.PyArray_DATA(q), <const uint8_t *>cnp.PyArray_DATA(rows), n, dim,
                          stride, scale, k, <int64_t *>cnp.PyArray_DATA(out_idx),
                          <float *>cnp.PyArray_DATA(out_score))
        return got


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


def rescore(cnp.ndarray q not None, cnp.ndarray ids not None, cnp.ndarray hot not None, Py_ssize_t tier_at,
            Py_ssize_t flags_at, int forgotten, cnp.ndarray node_row not None, tuple tables,
            cnp.ndarray out_ids not None, cnp.ndarray out_score not None, cnp.ndarray out_tier not None):
    """Score an approximate index's candidates exactly from their stored rows, with the
    kernel the exact scan uses, in one pass without the GIL (a recall's re-scoring was ~15
    numpy calls, 0.2 ms for 64 candidates).

    ids: int64 candidates; those outside ``hot`` (the node records, 1-D, any record size),
    forgotten (``flags & forgotten``) or whose record points at a row that is not theirs
    (a memory moving between tiers: it is in the tail until the index takes it) are skipped.
    ``tier_at`` / ``flags_at``: byte offsets of the u8 fields in a record; node_row: u32 per
    node. tables: per tier code (the index), None or (TopKKernel, rows (n, dim) with
    contiguous rows, row_node u32, row_norm f32, count: rows published). Writes (id, score,
    tier) of each scored candidate in the order of ``ids``; returns how many (< 0: a kernel's error)."""
    cdef Py_ssize_t n_ids, n_hot, rec, i, t, n_tiers = len(tables)
    cdef uint64_t got = 0, r, n, dim, stride
    cdef int64_t node, one_idx
    cdef float one_score
    cdef int64_t c = 0
    if n_tiers > 8:
        raise ValueError("at most 8 tiers")
    if not (cnp.PyArray_NDIM(ids) == 1 and cnp.PyArray_TYPE(ids) == cnp.NPY_INT64 and cnp.PyArray_ISCARRAY_RO(ids)):
        raise ValueError("ids must be a contiguous int64 vector")
    if not (cnp.PyArray_NDIM(hot) == 1 and 0 <= tier_at < cnp.PyArray_ITEMSIZE(hot)
            and 0 <= flags_at < cnp.PyArray_ITEMSIZE(hot)):
        raise ValueError("hot must be 1-D records holding the tier and flags bytes")
    if not (cnp.PyArray_TYPE(node_row) == cnp.NPY_UINT32 and cnp.PyArray_ISCARRAY_RO(node_row)):
        raise ValueError("node_row must be a contiguous uint32 vector")
    n_ids = cnp.PyArray_SIZE(ids)
    if not (cnp.PyArray_ISCARRAY(out_ids) and cnp.PyArray_TYPE(out_ids) == cnp.NPY_INT64
            and cnp.PyArray_ISCARRAY(out_score) and cnp.PyArray_TYPE(out_score) == cnp.NPY_FLOAT32
            and cnp.PyArray_ISCARRAY(out_tier) and cnp.PyArray_TYPE(out_tier) == cnp.NPY_UINT8
            and cnp.PyArray_SIZE(out_ids) >= n_ids and cnp.PyArray_SIZE(out_score) >= n_ids
            and cnp.PyArray_SIZE(out_tier) >= n_ids):
        raise ValueError("out_ids (int64), out_score (f32) and out_tier (u8) must be writable, contiguous, len(ids)")
    cdef topk_fn fns[8]
    cdef const char *base[8]
    cdef uint64_t t_n[8]
    cdef uint64_t t_dim[8]
    cdef uint64_t t_stride[8]
    cdef const uint32_t *t_node[8]
    cdef const float *t_norm[8]
    cdef TopKKernel kern
    cdef cnp.ndarray rows, rnode, rnorm
    for t in range(n_tiers):
        fns[t] = NULL
        spec = tables[t]
        if spec is None:
            continue
        kern, rows, rnode, rnorm, count = spec
        _check_rows(rows, kern.row_itemsize, &n, &dim, &stride)
        if dim != <uint64_t>cnp.PyArray_SIZE(q) or not (cnp.PyArray_ISCARRAY_RO(q)
                                                         and cnp.PyArray_TYPE(q) == cnp.NPY_FLOAT32):
            raise ValueError("q must be a contiguous f32 vector of the rows' dim")
        if not (cnp.PyArray_TYPE(rnode) == cnp.NPY_UINT32 and cnp.PyArray_ISCARRAY_RO(rnode)
                and cnp.PyArray_TYPE(rnorm) == cnp.NPY_FLOAT32 and cnp.PyArray_ISCARRAY_RO(rnorm)):
            raise ValueError("row_node (u32) and row_norm (f32) must be contiguous")
        n = min(n, <uint64_t>count, <uint64_t>cnp.PyArray_SIZE(rnode), <uint64_t>cnp.PyArray_SIZE(rnorm))
        fns[t], base[t], t_n[t], t_dim[t], t_stride[t] = kern.fn, <const char *>cnp.PyArray_DATA(rows), n, dim, stride
        t_node[t] = <const uint32_t *>cnp.PyArray_DATA(rnode)
        t_norm[t] = <const float *>cnp.PyArray_DATA(rnorm)
    n_hot = min(cnp.PyArray_DIM(hot, 0), cnp.PyArray_SIZE(node_row))
    rec = cnp.PyArray_STRIDE(hot, 0)
    cdef const char *hp = <const char *>cnp.PyArray_DATA(hot)
    cdef const int64_t *ip = <const int64_t *>cnp.PyArray_DATA(ids)
    cdef const uint32_t *nr = <const uint32_t *>cnp.PyArray_DATA(node_row)
    cdef const float *qp = <const float *>cnp.PyArray_DATA(q)
    cdef int64_t *oi = <int64_t *>cnp.PyArray_DATA(out_ids)
    cdef float *os_ = <float *>cnp.PyArray_DATA(out_score)
    cdef uint8_t *ot = <uint8_t *>cnp.PyArray_DATA(out_tier)
    cdef uint64_t j, kept = 0, line
    cdef uint64_t *at = <uint64_t *>malloc(n_ids * sizeof(uint64_t) + 1)
    if at == NULL:
        raise MemoryError()
    with nogil:
        # first every check and a prefetch of every row: the rows are scattered over the
        # table and not in cache after the index search; one at a time, each cost ~1.7 us
        for i in range(n_ids):
            node = ip[i]
            if node < 0 or node >= n_hot:
                continue
            if (<const uint8_t *>(hp + node * rec + flags_at))[0] & forgotten:
                continue
            t = (<const uint8_t *>(hp + node * rec + tier_at))[0]
            if t >= n_tiers or fns[t] == NULL:
                continue
            r = nr[node]
            if r >= t_n[t] or t_node[t][r] != <uint32_t>node:
                continue
            for line in range(0, t_stride[t], 64):
                __builtin_prefetch(base[t] + r * t_stride[t] + line)
            __builtin_prefetch(t_norm[t] + r)
            oi[kept] = node
            ot[kept] = <uint8_t>t
            at[kept] = r
            kept += 1
        for j in range(kept):
            t, r = ot[j], at[j]
            c = fns[t](qp, base[t] + r * t_stride[t], 1, t_dim[t], t_stride[t], NULL, t_norm[t] + r, 1,
                       &one_idx, &one_score)
            if c < 0:
                break
            if c == 0:
                continue
            oi[got] = oi[j]
            os_[got] = one_score
            ot[got] = ot[j]
            got += 1
    free(at)
    if c < 0:
        return c
    return got
