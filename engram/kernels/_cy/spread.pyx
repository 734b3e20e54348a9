"""Spread driver: calls eg_spread through its raw function pointer (see scan.pyx).

A 4-hop spread over 10K nodes takes tens of microseconds; ctypes would add
2-4 us for each of its nine arrays, so the call goes through here instead.
"""
cimport numpy as cnp
from libc.math cimport isfinite
from libc.string cimport memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t, uintptr_t

cnp.import_array()

from engram.kernels._cy.arrays cimport vec
from engram.kernels._cy.rank cimport hot_ok, ranked
from engram.kernels._cy.abi cimport (eg_spread_fire_fn as fire_fn, eg_spread_fn as spread_fn,
                                     eg_spread_gather_fn as gather_fn, eg_spread_hop_fn as hop_fn,
                                     eg_spread_merge_fn as merge_fn)


cdef uint64_t _csr_nodes(cnp.ndarray offsets, cnp.ndarray targets, cnp.ndarray weights) except? 0xFFFFFFFFFFFFFFFF:
    """n of a CSR whose shapes agree (offsets n+1, weights as many as targets, offsets
    inside them); the element checks are CsrGraph's, done once when it is built."""
    cdef uint64_t n, m
    if cnp.PyArray_SIZE(offsets) < 1:
        raise ValueError("offsets needs n+1 entries")
    n = <uint64_t>cnp.PyArray_SIZE(offsets) - 1
    m = <uint64_t>cnp.PyArray_SIZE(targets)
    if <uint64_t>cnp.PyArray_SIZE(weights) != m or (<const uint64_t *>cnp.PyArray_DATA(offsets))[n] > m:
        raise ValueError("weights must match targets and offsets must stay inside them")
    return n


cdef uint64_t _hop_nodes(cnp.ndarray offsets, cnp.ndarray targets, cnp.ndarray weights, cnp.ndarray state,
                         cnp.ndarray out_nodes, cnp.ndarray fire) except? 0xFFFFFFFFFFFFFFFF:
    """A hop's graph node count, once every array has its documented type and size."""
    cdef uint64_t n
    if not (vec(offsets, cnp.NPY_UINT64, False) and vec(targets, cnp.NPY_UINT32, False)
            and vec(weights, cnp.NPY_FLOAT32, False) and vec(out_nodes, cnp.NPY_UINT32, True)
            and vec(fire, cnp.NPY_FLOAT32, True) and cnp.PyArray_ITEMSIZE(state) == 8
            and cnp.PyArray_ISCARRAY(state)):
        raise ValueError("spread_hop arrays must be contiguous 1-D arrays of the documented types")
    n = _csr_nodes(offsets, targets, weights)
    if <uint64_t>cnp.PyArray_SIZE(state) < n:
        raise ValueError("state must hold one record per node")
    return n


cdef class SpreadKernel:
    """SpreadKernel(address)(offsets, targets, weights, seeds, seed_act, max_depth, decay,
    threshold, cycle_penalty, prefetch_distance, epoch, state, out_nodes, fire) -> touched count."""
    cdef spread_fn fn
    cdef readonly uintptr_t address

    def __cinit__(self, uintptr_t address):
        if address == 0:
            raise ValueError("kernel address is NULL")
        self.fn = <spread_fn>address
        self.address = address

    cdef uint64_t _checked(self, cnp.ndarray offsets, cnp.ndarray targets, cnp.ndarray weights,
                           cnp.ndarray seeds, int seed_type, cnp.ndarray seed_act, cnp.ndarray state,
                           cnp.ndarray out_nodes, cnp.ndarray fire) except? 0xFFFFFFFFFFFFFFFF:
        """The graph's node count, once every array has its documented type and size."""
        cdef uint64_t n
        if not (vec(offsets, cnp.NPY_UINT64, False) and vec(targets, cnp.NPY_UINT32, False)
                and vec(weights, cnp.NPY_FLOAT32, False) and vec(seeds, seed_type, False)
                and vec(seed_act, cnp.NPY_FLOAT32, False) and vec(out_nodes, cnp.NPY_UINT32, True)
                and vec(fire, cnp.NPY_FLOAT32, True) and cnp.PyArray_ITEMSIZE(state) == 8
                and cnp.PyArray_ISCARRAY(state)):
            raise ValueError("spread arrays must be contiguous 1-D arrays of the documented types: offsets u64, "
                             f"targets u32, weights f32, seeds {'u32' if seed_type == cnp.NPY_UINT32 else 'i64'}, "
                             "seed_act f32, state SpreadState, out_nodes u32, fire f32")
        n = _csr_nodes(offsets, targets, weights)
        if <uint64_t>cnp.PyArray_SIZE(state) < n:
            raise ValueError("state must hold one record per node")
        if cnp.PyArray_SIZE(seed_act) != cnp.PyArray_SIZE(seeds):
            raise ValueError("seeds and seed_act differ in length")
        return n

    def __call__(self, cnp.ndarray offsets not None, cnp.ndarray targets not None, cnp.ndarray weights not None,
                 cnp.ndarray seeds not None, cnp.ndarray seed_act not None, uint32_t max_depth, float decay,
                 float threshold, float cycle_penalty, uint32_t prefetch_distance, uint32_t epoch,
                 cnp.ndarray state not None, cnp.ndarray out_nodes not None, cnp.ndarray fire not None):
        cdef uint64_t n = self._checked(offsets, targets, weights, seeds, cnp.NPY_UINT32, seed_act, state,
                                        out_nodes, fire)
        cdef uint64_t n_seeds = <uint64_t>cnp.PyArray_SIZE(seeds)
        cdef uint64_t cap = <uint64_t>min(cnp.PyArray_SIZE(out_nodes), cnp.PyArray_SIZE(fire))
        cdef int64_t got
        with nogil:
            got = self.fn(<const uint64_t *>cnp.PyArray_DATA(offsets), <const uint32_t *>cnp.PyArray_DATA(targets),
                          <const float *>cnp.PyArray_DATA(weights), n,
                          <const uint32_t *>cnp.PyArray_DATA(seeds), <const float *>cnp.PyArray_DATA(seed_act),
                          n_seeds, max_depth, decay, threshold, cycle_penalty, prefetch_distance, epoch,
                          cnp.PyArray_DATA(state), <uint32_t *>cnp.PyArray_DATA(out_nodes),
                          <float *>cnp.PyArray_DATA(fire), cap)
        return got

    def ranked(self, cnp.ndarray offsets not None, cnp.ndarray targets not None, cnp.ndarray weights not None,
               cnp.ndarray seeds not None, cnp.ndarray seed_act not None, uint32_t max_depth, float decay,
               float threshold, float cycle_penalty, uint32_t prefetch_distance, uint32_t epoch,
               cnp.ndarray state not None, cnp.ndarray out_nodes not None, cnp.ndarray fire not None,
               cnp.ndarray hot not None, Py_ssize_t flags_offset, uint8_t hidden):
        """Space.spread in one call: spread from seeds (int64 ids, f32 activations; those
        outside the graph come back as they are, capped at 1), then rank_touched."""
        cdef uint64_t n = self._checked(offsets, targets, weights, seeds, cnp.NPY_INT64, seed_act, state,
                                        out_nodes, fire)
        hot_ok(hot, flags_offset)
        cdef uint64_t n_seeds = <uint64_t>cnp.PyArray_SIZE(seeds), j
        cdef uint64_t cap = <uint64_t>min(cnp.PyArray_SIZE(out_nodes), cnp.PyArray_SIZE(fire))
        cdef int64_t got, inside = 0, outside = 0
        split = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>(2 * n_seeds + 1)], cnp.NPY_INT64, 0)
        acts = cnp.PyArray_EMPTY(1, [<cnp.npy_intp>(2 * n_seeds + 1)], cnp.NPY_FLOAT32, 0)
        cdef const int64_t *sd = <const int64_t *>cnp.PyArray_DATA(seeds)
        cdef const float *sa = <const float *>cnp.PyArray_DATA(seed_act)
        cdef uint32_t *in_ids = <uint32_t *>cnp.PyArray_DATA(split)          # the first half, as u32
        cdef int64_t *out_ids = <int64_t *>cnp.PyArray_DATA(split) + n_seeds
        cdef float *in_act = <float *>cnp.PyArray_DATA(acts)
        cdef float *out_act = in_act + n_seeds
        for j in range(n_seeds):
            if 0 <= sd[j] < <int64_t>n:
                in_ids[inside] = <uint32_t>sd[j]
                in_act[inside] = sa[j]
                inside += 1
            else:
                out_ids[outside] = sd[j]
                out_act[outside] = sa[j]
                outside += 1
        with nogil:
            got = self.fn(<const uint64_t *>cnp.PyArray_DATA(offsets), <const uint32_t *>cnp.PyArray_DATA(targets),
                          <const float *>cnp.PyArray_DATA(weights), n, in_ids, in_act, inside, max_depth, decay,
                          threshold, cycle_penalty, prefetch_distance, epoch, cnp.PyArray_DATA(state),
                          <uint32_t *>cnp.PyArray_DATA(out_nodes), <float *>cnp.PyArray_DATA(fire), cap)
        if got < 0:
            return got
        return ranked(<const uint32_t *>cnp.PyArray_DATA(out_nodes), <const float *>cnp.PyArray_DATA(fire), got,
                       out_ids, out_act, outside, <const uint32_t *>cnp.PyArray_DATA(state), n,
                       <const uint8_t *>cnp.PyArray_DATA(hot), <uint64_t>cnp.PyArray_SIZE(hot),
                       cnp.PyArray_ITEMSIZE(hot), flags_offset, hidden)


cdef class SpreadHopKernel:
    """SpreadHopKernel(hop_address, fire_address=0)(offsets, targets, weights, hop, decay,
    threshold, cycle_penalty, prefetch_distance, epoch, state, out_nodes, fire, begin, end,
    count, ceiling=None) -> new count: eg_spread_hop, or given the whole frontier's echo
    ceiling, eg_spread_fire (part of a split hop's frontier, firing the fire values taken)."""
    cdef hop_fn fn
    cdef fire_fn part

    def __cinit__(self, uintptr_t address, uintptr_t fire_address=0):
        if address == 0:
            raise ValueError("kernel address is NULL")
        self.fn = <hop_fn>address
        self.part = <fire_fn>fire_address

    def __call__(self, cnp.ndarray offsets not None, cnp.ndarray targets not None, cnp.ndarray weights not None,
                 uint32_t hop, float decay, float threshold, float cycle_penalty, uint32_t prefetch_distance,
                 uint32_t epoch, cnp.ndarray state not None, cnp.ndarray out_nodes not None,
                 cnp.ndarray fire not None, uint64_t begin, uint64_t end, uint64_t count, ceiling=None):
        cdef uint64_t n = _hop_nodes(offsets, targets, weights, state, out_nodes, fire)
        cdef uint64_t cap = <uint64_t>min(cnp.PyArray_SIZE(out_nodes), cnp.PyArray_SIZE(fire))
        cdef const uint64_t *off = <const uint64_t *>cnp.PyArray_DATA(offsets)
        cdef const uint32_t *tg = <const uint32_t *>cnp.PyArray_DATA(targets)
        cdef const float *wt = <const float *>cnp.PyArray_DATA(weights)
        cdef void *st = cnp.PyArray_DATA(state)
        cdef uint32_t *nd = <uint32_t *>cnp.PyArray_DATA(out_nodes)
        cdef float *fr = <float *>cnp.PyArray_DATA(fire)
        cdef bint part = ceiling is not None
        cdef float top = ceiling if part else 0.0
        cdef int64_t got
        if part and self.part == NULL:
            raise ValueError("no eg_spread_fire address: this kernel runs whole hops only")
        with nogil:
            if part:
                got = self.part(off, tg, wt, n, hop, decay, threshold, cycle_penalty, top, prefetch_distance, epoch,
                                st, nd, fr, begin, end, count, cap)
            else:
                got = self.fn(off, tg, wt, n, hop, decay, threshold, cycle_penalty, prefetch_distance, epoch, st, nd,
                              fr, begin, end, count, cap)
        return got

    def budgeted(self, cnp.ndarray offsets not None, cnp.ndarray targets not None, cnp.ndarray weights not None,
                 float decay, float threshold, float cycle_penalty, uint32_t prefetch_distance, uint32_t epoch,
                 cnp.ndarray state not None, cnp.ndarray out_nodes not None, cnp.ndarray fire not None,
                 uint64_t begin, uint64_t end, uint64_t count, uint32_t hop, uint32_t hops,
                 const double[::1] model, double batch_size, double tier_mix, int64_t deadline_ns,
                 uint64_t split_edges, double[:, ::1] log):
        """Up to ``hops`` hops of a spread in C, each first priced by the latency model (its
        weights over LatencyPredictor.hop_features; empty: no prediction yet) and not run if
        it would end past ``deadline_ns`` (CLOCK_MONOTONIC ns; < 0: none). Stops before a hop
        whose frontier fires at least ``split_edges`` edges (0: never), which the caller may
        split among idle workers. Each hop run logs its features, time, prediction and start
        (CLOCK_MONOTONIC ns, for its trace span) in ``log`` (rows of 10). Returns (begin, end, count, hop, hops run, status): status 0
        ran out of hops or frontier, 1 stopped for the deadline (partial), 2 stopped for a
        split, or a negative EG_E* code."""
        cdef uint64_t n, cap, i, f_edges
        cdef const uint64_t *off
        cdef uint32_t *nd
        cdef int64_t got, t0, t1, ran = 0, status = 0
        cdef double guess
        cdef double x[7]
        cdef timespec ts
        n = _hop_nodes(offsets, targets, weights, state, out_nodes, fire)
        cap = <uint64_t>min(cnp.PyArray_SIZE(out_nodes), cnp.PyArray_SIZE(fire))
        if not (begin <= end <= count <= cap):
            raise ValueError("begin <= end <= count <= capacity")
        if model.shape[0] not in (0, 7) or log.shape[1] != 10 or <uint64_t>log.shape[0] < hops:
            raise ValueError("model holds 7 weights (or none) and log a row of 10 per hop")
        off = <const uint64_t *>cnp.PyArray_DATA(offsets)
        nd = <uint32_t *>cnp.PyArray_DATA(out_nodes)
        with nogil:
            while <uint64_t>ran < hops and begin < end:
                f_edges = 0
                for i in range(begin, end):
                    f_edges += off[nd[i] + 1] - off[nd[i]]
                if split_edges and f_edges >= split_edges:
                    status = 2
                    break
                x[0] = 1.0
                x[1] = batch_size
                x[2] = hop + 1
                x[3] = tier_mix
                x[4] = <double>(end - begin)
                x[5] = <double>f_edges
                x[6] = 0.0
                guess = 0.0
                if model.shape[0] == 7:
                    for i in range(7):
                        guess += model[i] * x[i]
                    if guess < 0.0:
                        guess = 0.0
                clock_gettime(CLOCK_MONOTONIC, &ts)
                t0 = ts.tv_sec * 1000000000 + ts.tv_nsec
                if deadline_ns >= 0 and t0 + guess > deadline_ns:
                    status = 1
                    break
                got = self.fn(off, <const uint32_t *>cnp.PyArray_DATA(targets),
                              <const float *>cnp.PyArray_DATA(weights), n, hop + 1, decay, threshold, cycle_penalty,
                              prefetch_distance, epoch, cnp.PyArray_DATA(state), nd,
                              <float *>cnp.PyArray_DATA(fire), begin, end, count, cap)
                if got < 0:
                    status = got
                    break
                clock_gettime(CLOCK_MONOTONIC, &ts)
                t1 = ts.tv_sec * 1000000000 + ts.tv_nsec
                for i in range(7):
                    log[ran, i] = x[i]
                log[ran, 7] = <double>(t1 - t0)
                log[ran, 8] = guess
                log[ran, 9] = <double>t0
                begin = end
                end = <uint64_t>got
                count = <uint64_t>got
                hop += 1
                ran += 1
        return begin, end, count, hop, ran, status


cdef class SpreadGatherKernel:
    """SpreadGatherKernel(address)(offsets, targets, weights, decay, threshold, prefetch_distance,
    nodes, fire, acc, out_v, out_s) -> distinct targets (eg_spread_gather: one batch of a split hop)."""
    cdef gather_fn fn

    def __cinit__(self, uintptr_t address):
        if address == 0:
            raise ValueError("kernel address is NULL")
        self.fn = <gather_fn>address

    def __call__(self, cnp.ndarray offsets not None, cnp.ndarray targets not None, cnp.ndarray weights not None,
                 float decay, float threshold, uint32_t prefetch_distance, cnp.ndarray nodes not None,
                 cnp.ndarray fire not None, cnp.ndarray acc not None, cnp.ndarray out_v not None,
                 cnp.ndarray out_s not None):
        cdef uint64_t n, cnt, cap
        cdef int64_t got
        if not (vec(offsets, cnp.NPY_UINT64, False) and vec(targets, cnp.NPY_UINT32, False)
                and vec(weights, cnp.NPY_FLOAT32, False) and vec(nodes, cnp.NPY_UINT32, False)
                and vec(fire, cnp.NPY_FLOAT32, False) and vec(acc, cnp.NPY_FLOAT32, True)
                and vec(out_v, cnp.NPY_UINT32, True) and vec(out_s, cnp.NPY_FLOAT32, True)):
            raise ValueError("spread_gather arrays must be contiguous 1-D arrays of the documented types")
        n = _csr_nodes(offsets, targets, weights)
        cnt = <uint64_t>cnp.PyArray_SIZE(nodes)
        if <uint64_t>cnp.PyArray_SIZE(fire) != cnt or <uint64_t>cnp.PyArray_SIZE(acc) < n:
            raise ValueError("fire must match nodes and acc must hold one float per node")
        cap = <uint64_t>min(cnp.PyArray_SIZE(out_v), cnp.PyArray_SIZE(out_s))
        with nogil:
            got = self.fn(<const uint64_t *>cnp.PyArray_DATA(offsets), <const uint32_t *>cnp.PyArray_DATA(targets),
                          <const float *>cnp.PyArray_DATA(weights), n, decay, threshold, prefetch_distance,
                          <const uint32_t *>cnp.PyArray_DATA(nodes), <const float *>cnp.PyArray_DATA(fire), cnt,
                          <float *>cnp.PyArray_DATA(acc), <uint32_t *>cnp.PyArray_DATA(out_v),
                          <float *>cnp.PyArray_DATA(out_s), cap)
        return got


cdef class SpreadMergeKernel:
    """SpreadMergeKernel(address)(n_nodes, hop, cycle_penalty, ceiling, epoch, state, v, s, out_nodes,
    count) -> new count (eg_spread_merge: apply one gathered batch under the hop's echo ceiling)."""
    cdef merge_fn fn

    def __cinit__(self, uintptr_t address):
        if address == 0:
            raise ValueError("kernel address is NULL")
        self.fn = <merge_fn>address

    def __call__(self, uint64_t n_nodes, uint32_t hop, float cycle_penalty, float ceiling, uint32_t epoch,
                 cnp.ndarray state not None, cnp.ndarray v not None, cnp.ndarray s not None,
                 cnp.ndarray out_nodes not None, uint64_t count):
        cdef uint64_t n
        cdef int64_t got
        if not (vec(v, cnp.NPY_UINT32, False) and vec(s, cnp.NPY_FLOAT32, False)
                and vec(out_nodes, cnp.NPY_UINT32, True) and cnp.PyArray_ITEMSIZE(state) == 8
                and cnp.PyArray_ISCARRAY(state)):
            raise ValueError("spread_merge arrays must be contiguous 1-D arrays of the documented types")
        n = <uint64_t>cnp.PyArray_SIZE(v)
        if <uint64_t>cnp.PyArray_SIZE(s) != n or <uint64_t>cnp.PyArray_SIZE(state) < n_nodes:
            raise ValueError("s must match v and state must hold one record per node")
        with nogil:
            got = self.fn(n_nodes, hop, cycle_penalty, ceiling, epoch, cnp.PyArray_DATA(state),
                          <const uint32_t *>cnp.PyArray_DATA(v), <const float *>cnp.PyArray_DATA(s), n,
                          <uint32_t *>cnp.PyArray_DATA(out_nodes), count, <uint64_t>cnp.PyArray_SIZE(out_nodes))
        return got
