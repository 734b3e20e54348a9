"""Recall's ranking in one pass over what a spread touched, in C (the Cython driver).

For each candidate (a node the spread touched, or a seed outside the graph) the score is

    (a0 + lambda (a - a0)) x confidence x retention x priming

where a is its activation after spreading, a0 its own seed activation (0 if only
spreading reached it), retention = strength x exp(-age / tau) (age: seconds since
last access), and priming = 1 + weight x (1 - exp(-(R + S))) (engram/cognition/priming.py)
or 1 when off. Confidence, retention and the priming level are at most 1, so a
candidate whose blended activation x the most priming can lift it cannot beat the
k-th best score is skipped without reading its record; the best k are kept in a heap.
Node records are read through the generated layout (engram_layout.h).
"""
cimport numpy as cnp
from libc.math cimport NAN, exp, expf
from libc.string cimport memcpy
from libc.stdint cimport int8_t, int64_t, uint8_t, uint32_t, uint64_t

from engram.kernels._cy.arrays cimport vec

cnp.import_array()

cdef extern from "engram_layout.h":
    ctypedef struct eg_node_hot_t:
        float activation
        float confidence
        uint8_t flags
        uint32_t primed_s
        float strength
        uint32_t access_count
        uint64_t last_access_ns


cdef struct Cand:
    float score
    uint32_t pos        # candidate index (touched position, or count + seed index)
    uint64_t id


cdef inline bint _worse(Cand *a, Cand *b) noexcept nogil:
    """a ranks below b: a lower score, or the same score and a larger id."""
    return a.score < b.score or (a.score == b.score and a.id > b.id)


cdef void _sift_down(Cand *h, int64_t n, int64_t i) noexcept nogil:
    cdef int64_t c
    cdef Cand t
    while True:
        c = 2 * i + 1
        if c >= n:
            return
        if c + 1 < n and _worse(&h[c + 1], &h[c]):
            c += 1
        if not _worse(&h[c], &h[i]):
            return
        t = h[c]
        h[c] = h[i]
        h[i] = t
        i = c


cdef void _sift_up(Cand *h, int64_t i) noexcept nogil:
    cdef int64_t p
    cdef Cand t
    while i > 0:
        p = (i - 1) // 2
        if not _worse(&h[i], &h[p]):
            return
        t = h[p]
        h[p] = h[i]
        h[i] = t
        i = p


def logistic(cnp.ndarray cos not None, float steepness, float midpoint):
    """1 / (1 + exp(-steepness (cos - midpoint))) per element of a float32 array, in one C
    pass (recall's seed activation: numpy's five calls run cold right after the scan)."""
    if not vec(cos, cnp.NPY_FLOAT32, False):
        raise ValueError("logistic takes a contiguous 1-D float32 array")
    cdef int64_t n = cnp.PyArray_SIZE(cos), i
    out_a = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>n], cnp.NPY_FLOAT32, 0)
    cdef const float *c = <const float *>cnp.PyArray_DATA(cos)
    cdef float *o = <float *>cnp.PyArray_DATA(out_a)
    cdef float z
    with nogil:
        for i in range(n):
            z = -steepness * (c[i] - midpoint)
            o[i] = <float>1.0 / (<float>1.0 + expf(z if z < 80.0 else <float>80.0))
    return out_a


def top_blended(cnp.ndarray nodes not None, cnp.ndarray act not None, cnp.ndarray hops not None, uint64_t n_graph,
                cnp.ndarray seed_ids not None, cnp.ndarray act0 not None, cnp.ndarray cos not None,
                cnp.ndarray hot not None, uint8_t hidden, int64_t now_ns, double forget_tau_s, float spread_weight,
                uint32_t k, bint priming, float priming_weight, double repetition_tau_s, double semantic_tau_s):
    """The best k of a spread's candidates: (ids int64, scores f32, activation f32,
    similarity f32 (NaN where only spreading reached it), hops int8), best first, ties by
    id. The candidates: what the spread over a graph of n_graph nodes touched (nodes u32,
    their activation f32 and hop u8), and the seeds outside that graph. seed_ids (int64,
    the scan's order; those inside the graph are the first touched, in that order), act0
    and cos (f32) are the seeds' activation and cosine. hot: NodeHot records (the
    published ones); a record with a hidden flag, or an id past them, is no candidate."""
    cdef Py_ssize_t rec = cnp.PyArray_ITEMSIZE(hot)
    cdef uint64_t count = <uint64_t>cnp.PyArray_SIZE(nodes)
    if not (cnp.PyArray_NDIM(nodes) == 1 and cnp.PyArray_TYPE(nodes) == cnp.NPY_UINT32
            and cnp.PyArray_ISCARRAY_RO(nodes) and cnp.PyArray_TYPE(act) == cnp.NPY_FLOAT32
            and cnp.PyArray_ISCARRAY_RO(act) and <uint64_t>cnp.PyArray_SIZE(act) == count
            and cnp.PyArray_TYPE(hops) == cnp.NPY_UINT8 and cnp.PyArray_ISCARRAY_RO(hops)
            and <uint64_t>cnp.PyArray_SIZE(hops) == count
            and cnp.PyArray_TYPE(seed_ids) == cnp.NPY_INT64 and cnp.PyArray_ISCARRAY_RO(seed_ids)
            and cnp.PyArray_TYPE(act0) == cnp.NPY_FLOAT32 and cnp.PyArray_ISCARRAY_RO(act0)
            and cnp.PyArray_TYPE(cos) == cnp.NPY_FLOAT32 and cnp.PyArray_ISCARRAY_RO(cos)
            and cnp.PyArray_SIZE(act0) == cnp.PyArray_SIZE(seed_ids) == cnp.PyArray_SIZE(cos)
            and cnp.PyArray_NDIM(hot) == 1 and cnp.PyArray_ISCARRAY_RO(hot) and rec == sizeof(eg_node_hot_t)):
        raise ValueError("top_blended takes nodes u32 with act f32 and hops u8 each, seed_ids i64, act0 and "
                         "cos f32 per seed, hot NodeHot records")
    cdef const uint32_t *nd = <const uint32_t *>cnp.PyArray_DATA(nodes)
    cdef const float *act_in = <const float *>cnp.PyArray_DATA(act)
    cdef const uint8_t *hop_in = <const uint8_t *>cnp.PyArray_DATA(hops)
    cdef const int64_t *sid = <const int64_t *>cnp.PyArray_DATA(seed_ids)
    cdef const float *a0s = <const float *>cnp.PyArray_DATA(act0)
    cdef const float *coss = <const float *>cnp.PyArray_DATA(cos)
    cdef const eg_node_hot_t *hr = <const eg_node_hot_t *>cnp.PyArray_DATA(hot)
    cdef uint64_t n_hot = <uint64_t>cnp.PyArray_SIZE(hot)
    cdef int64_t n_seeds = cnp.PyArray_SIZE(seed_ids)
    heap_a = cnp.PyArray_ZEROS(1, [<cnp.npy_intp>(max(k, 1) * sizeof(Cand))], cnp.NPY_UINT8, 0)
    seed_of_a = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>(n_seeds + 1)], cnp.NPY_INT64, 0)
    cdef Cand *heap = <Cand *>cnp.PyArray_DATA(heap_a)
    cdef int64_t *seed_of = <int64_t *>cnp.PyArray_DATA(seed_of_a)    # touched seed position -> seed index
    cdef int64_t n_in = 0, size = 0, i, j, total
    cdef uint64_t v
    cdef float a, a0, pot, score, ret, lift = <float>(1.0 + (priming_weight if priming else 0.0))
    cdef double age, since, r, s
    cdef const eg_node_hot_t *h
    cdef Cand c
    with nogil:
        for j in range(n_seeds):
            if 0 <= sid[j] < <int64_t>n_graph:
                seed_of[n_in] = j
                n_in += 1
        total = <int64_t>count + n_seeds
        for i in range(total):
            if i < <int64_t>count:
                v = nd[i]
                a = act_in[i]
                a0 = 0.0
                if i < n_in:                  # the seeds inside the graph are touched first, in order
                    j = seed_of[i]
                    if <uint64_t>sid[j] == v:
                        a0 = a0s[j]
                    else:                     # not that layout: find it among the (few) seeds
                        for j in range(n_seeds):
                            if <uint64_t>sid[j] == v:
                                a0 = a0s[j]
                                break
            else:
                j = i - <int64_t>count
                if 0 <= sid[j] < <int64_t>n_graph or sid[j] < 0:
                    continue                  # inside: already a touched candidate
                v = <uint64_t>sid[j]
                a = a0s[j]
                a0 = a
            pot = a0 + spread_weight * (a - a0)
            if size == k and pot * lift < heap[0].score:
                continue                      # cannot beat the k-th best: no record read
            if v >= n_hot:
                continue
            h = &hr[v]
            if hidden and (h.flags & hidden):
                continue
            age = <double>(now_ns - <int64_t>h.last_access_ns) / 1e9 if now_ns > <int64_t>h.last_access_ns else 0.0
            ret = h.strength * expf(-<float>age / <float>forget_tau_s)
            score = pot * h.confidence * ret
            if priming:
                r = exp(-age / repetition_tau_s) if h.access_count > 0 else 0.0
                since = <double>now_ns / 1e9 - <double>h.primed_s
                s = h.activation * exp(-(since if since > 0 else 0.0) / semantic_tau_s)
                score = score * <float>(1.0 + priming_weight * (1.0 - exp(-(r + s))))
            c.score, c.pos, c.id = score, <uint32_t>i, v
            if size < k:
                heap[size] = c
                _sift_up(heap, size)
                size += 1
            elif _worse(&heap[0], &c):
                heap[0] = c
                _sift_down(heap, size, 0)
        # heap -> best first: pop the worst to the back
        total = size
        while size > 1:
            c = heap[0]
            heap[0] = heap[size - 1]
            heap[size - 1] = c
            size -= 1
            _sift_down(heap, size, 0)
    ids_a = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>total], cnp.NPY_INT64, 0)
    score_a = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>total], cnp.NPY_FLOAT32, 0)
    act_a = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>total], cnp.NPY_FLOAT32, 0)
    sim_a = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>total], cnp.NPY_FLOAT32, 0)
    hop_a = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>total], cnp.NPY_INT8, 0)
    cdef int64_t *ids = <int64_t *>cnp.PyArray_DATA(ids_a)
    cdef float *sc = <float *>cnp.PyArray_DATA(score_a)
    cdef float *ac = <float *>cnp.PyArray_DATA(act_a)
    cdef float *sm = <float *>cnp.PyArray_DATA(sim_a)
    cdef int8_t *hp = <int8_t *>cnp.PyArray_DATA(hop_a)
    with nogil:
        for i in range(total):
            c = heap[i]
            ids[i], sc[i] = <int64_t>c.id, c.score
            sm[i] = NAN
            if c.pos < count:
                v = nd[c.pos]
                ac[i] = act_in[c.pos]
                hp[i] = <int8_t>hop_in[c.pos]
                for j in range(n_seeds):
                    if <uint64_t>sid[j] == v:
                        sm[i] = coss[j]
                        break
            else:
                j = c.pos - <int64_t>count
                ac[i] = a0s[j]
                hp[i] = 0
                sm[i] = coss[j]
    return ids_a, score_a, act_a, sim_a, hop_a


# --- what a spread touched, ranked ---------------------------------------------------
# Space.spread returns every live memory a spread touched, most active first (ties by
# id). lexsort and fancy indexing in numpy cost ten times the spread; here it is one
# pass to filter and key (~activation << 32 | id, unique keys), numpy's SIMD sort of
# those 64-bit keys in place (PyArray_Sort), and one pass to decode them.
cdef extern from *:
    """
    /* the bits of a float >= 0 grow with it, so 0xFFFFFFFF - bits orders it descending */
    static inline uint32_t eg_f32_bits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }
    static inline float eg_bits_f32(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
    """
    uint32_t eg_f32_bits(float f) nogil
    float eg_bits_f32(uint32_t b) nogil


cdef object ranked(const uint32_t *nd, const float *ac, int64_t n, const int64_t *xi, const float *xa,
                    int64_t m, const uint32_t *marks, uint64_t n_graph, const uint8_t *hb, uint64_t n_hot,
                    Py_ssize_t rec, Py_ssize_t flags_offset, uint8_t hidden):
    """(ids int64, activation f32, hops u8): the n touched (nd, ac) and the m extras (xi, xa,
    hop 0) whose record is published and shows none of the hidden flags, most active first,
    ties by id, each id once. marks: SpreadState (mark, act) per graph node."""
    keys_a = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>(n + m)], cnp.NPY_UINT64, 0)
    cdef uint64_t *keys = <uint64_t *>cnp.PyArray_DATA(keys_a)
    cdef int64_t i, kept = 0, out = 0
    cdef uint64_t v
    cdef uint64_t low32 = 0xFFFFFFFFu
    cdef float a
    with nogil:
        for i in range(n + m):
            if i < n:
                v = nd[i]
                a = ac[i]
            else:
                if xi[i - n] < 0:
                    continue
                v = <uint64_t>xi[i - n]
                a = xa[i - n] if xa[i - n] < 1.0 else 1.0
            # hidden == 0 (nothing forgotten): no record is read, which at 1M memories saves
            # a cache miss per memory touched
            if v < n_hot and v <= low32 and (hidden == 0 or (hb[v * rec + flags_offset] & hidden) == 0):
                keys[kept] = ((low32 - eg_f32_bits(a)) << 32) | v
                kept += 1
    keys_a = keys_a[:kept]
    cnp.PyArray_Sort(keys_a, 0, cnp.NPY_QUICKSORT)     # equal keys are equal values: stability is moot
    keys = <uint64_t *>cnp.PyArray_DATA(keys_a)
    ids_a = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>kept], cnp.NPY_INT64, 0)
    act_a = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>kept], cnp.NPY_FLOAT32, 0)
    hop_a = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>kept], cnp.NPY_UINT8, 0)
    cdef int64_t *ids = <int64_t *>cnp.PyArray_DATA(ids_a)
    cdef float *out_act = <float *>cnp.PyArray_DATA(act_a)
    cdef uint8_t *hops = <uint8_t *>cnp.PyArray_DATA(hop_a)
    with nogil:
        for i in range(kept):
            if i and keys[i] == keys[i - 1]:        # a seed outside the graph given twice
                continue
            v = keys[i] & low32
            ids[out] = <int64_t>v
            out_act[out] = eg_bits_f32(<uint32_t>(low32 - (keys[i] >> 32)))
            hops[out] = <uint8_t>(marks[2 * v] & 0xFF) if v < n_graph else 0
            out += 1
    if out < kept:
        return ids_a[:out], act_a[:out], hop_a[:out]
    return ids_a, act_a, hop_a


cdef int hot_ok(cnp.ndarray hot, Py_ssize_t flags_offset) except -1:
    if not (cnp.PyArray_NDIM(hot) == 1 and cnp.PyArray_ISCARRAY_RO(hot)):
        raise ValueError("hot must be a contiguous array of node records")
    if flags_offset < 0 or flags_offset >= cnp.PyArray_ITEMSIZE(hot):
        raise ValueError("flags_offset lies outside a node record")
    return 0


def rank_touched(cnp.ndarray nodes not None, cnp.ndarray act not None, cnp.ndarray state not None,
                 uint64_t n_graph, cnp.ndarray hot not None, Py_ssize_t flags_offset, uint8_t hidden,
                 cnp.ndarray extra_ids not None, cnp.ndarray extra_act not None):
    """(ids int64, activation f32, hops u8) of the memories a spread over a graph of
    ``n_graph`` nodes touched (nodes u32, their activations act f32, hops from state's
    marks) plus seeds outside the graph (extra_ids int64, extra_act f32, hop 0), keeping
    those whose node record (hot: NodeHot records) is published and has none of the
    ``hidden`` flag bits, most active first, ties by id (SpreadKernel.ranked does the
    spread and this in one call)."""
    if not (vec(nodes, cnp.NPY_UINT32, False) and vec(act, cnp.NPY_FLOAT32, False)
            and vec(extra_ids, cnp.NPY_INT64, False) and vec(extra_act, cnp.NPY_FLOAT32, False)
            and cnp.PyArray_ITEMSIZE(state) == 8 and cnp.PyArray_ISCARRAY_RO(state)):
        raise ValueError("rank_touched takes contiguous nodes u32, act f32, extra_ids i64, extra_act f32, "
                         "state SpreadState")
    hot_ok(hot, flags_offset)
    if cnp.PyArray_SIZE(act) != cnp.PyArray_SIZE(nodes) or cnp.PyArray_SIZE(extra_act) != cnp.PyArray_SIZE(extra_ids):
        raise ValueError("act must match nodes and extra_act extra_ids")
    if n_graph > <uint64_t>cnp.PyArray_SIZE(state):
        raise ValueError("state must hold a record per node of the graph")
    return ranked(<const uint32_t *>cnp.PyArray_DATA(nodes), <const float *>cnp.PyArray_DATA(act),
                   cnp.PyArray_SIZE(nodes), <const int64_t *>cnp.PyArray_DATA(extra_ids),
                   <const float *>cnp.PyArray_DATA(extra_act), cnp.PyArray_SIZE(extra_ids),
                   <const uint32_t *>cnp.PyArray_DATA(state), n_graph, <const uint8_t *>cnp.PyArray_DATA(hot),
                   <uint64_t>cnp.PyArray_SIZE(hot), cnp.PyArray_ITEMSIZE(hot), flags_offset, hidden)


def gather_touched(cnp.ndarray nodes not None, cnp.ndarray state not None):
    """(activation f32, hop u8) of each node a spread touched (nodes u32), from its scratch."""
    if not (vec(nodes, cnp.NPY_UINT32, False) and cnp.PyArray_ITEMSIZE(state) == 8
            and cnp.PyArray_ISCARRAY_RO(state)):
        raise ValueError("gather_touched takes contiguous nodes u32 and state SpreadState")
    cdef int64_t n = cnp.PyArray_SIZE(nodes), i
    cdef uint64_t size = <uint64_t>cnp.PyArray_SIZE(state)
    cdef const uint32_t *nd = <const uint32_t *>cnp.PyArray_DATA(nodes)
    cdef const uint32_t *marks = <const uint32_t *>cnp.PyArray_DATA(state)     # (mark, act) per node
    act_a = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>n], cnp.NPY_FLOAT32, 0)
    hop_a = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>n], cnp.NPY_UINT8, 0)
    cdef float *act = <float *>cnp.PyArray_DATA(act_a)
    cdef uint8_t *hops = <uint8_t *>cnp.PyArray_DATA(hop_a)
    for i in range(n):
        if nd[i] >= size:
            raise ValueError(f"node {nd[i]} is past the spread's state ({size} nodes)")
    with nogil:
        for i in range(n):
            hops[i] = <uint8_t>(marks[2 * nd[i]] & 0xFF)
            memcpy(&act[i], &marks[2 * nd[i] + 1], 4)
    return act_a, hop_a
